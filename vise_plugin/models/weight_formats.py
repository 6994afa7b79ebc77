"""The layouts of weights files a trunk can start from, each recognised from the file's keys, by name in
:data:`vise_plugin.registry.WEIGHT_FORMATS`.

A format has ``detect(state) -> bool`` (mutually exclusive with the others), ``convert(state) ->
(trunk state dict, trunk name or None)`` in the keys of the project's trunk, and ``example(trunk state)
-> state`` (a file of its layout holding that trunk: the tests' fixtures, and what ``tools/export_hub.py
--format`` writes for ``hub``, ``vissl``, ``torchvision`` and ``timm``). ``trunks`` names the trunks its files
fit. Nothing is downloaded: the files come from the user.
"""

import re
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from vise_plugin.registry import WEIGHT_FORMATS

State = Dict[str, torch.Tensor]
RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
TORCHVISION_TO_HUB = {name: str(i) for i, name in enumerate(RESNET_CHILDREN)}
HUB_TO_TORCHVISION = {v: k for k, v in TORCHVISION_TO_HUB.items()}
PRETRAINING_CHECKPOINT = "vise_pretraining"  # the "kind" of the project's checkpoints
VISSL_BLOCKS = "_feature_blocks."


def unwrap(state: Mapping[str, Any]) -> Dict[str, Any]:
    """A state dict out of ``state_dict`` / ``model`` wrappers, without ``module.`` prefixes."""
    for wrapper in ("state_dict", "model"):
        if wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def _rename_top(state: Mapping[str, torch.Tensor], names: Mapping[str, str], drop: Tuple[str, ...] = ()) -> State:
    """``state`` with each key's top-level module renamed by ``names``; the modules ``drop`` left out."""
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head not in drop:
            out[f"{names.get(head, head)}.{rest}"] = value
    return out


def torchvision_to_hub(state: Mapping[str, torch.Tensor], drop: Tuple[str, ...] = ("fc",)) -> State:
    """torchvision ResNet keys (``conv1.weight``, ``layer1.0...``) -> hub keys (``0.weight``, ``4.0...``);
    the top-level modules ``drop`` are left out."""
    return _rename_top(state, TORCHVISION_TO_HUB, drop)


def hub_to_torchvision(state: Mapping[str, torch.Tensor]) -> State:
    """Hub keys -> torchvision ResNet keys."""
    return _rename_top(state, HUB_TO_TORCHVISION)


def _prefixed(state: Mapping[str, Any], *prefixes: str) -> Optional[str]:
    return next((p for p in prefixes if any(k.startswith(p) for k in state)), None)


@WEIGHT_FORMATS.register("vise_checkpoint")
class VisECheckpoint:
    """The project's pretraining checkpoints (``checkpoint.torch``, ``model_phase<N>.torch``)."""

    trunks = ("resnet50", "resnet101", "resnext101_32x16d", "tiny")

    @staticmethod
    def detect(state: Mapping[str, Any]) -> bool:
        return state.get("kind") == PRETRAINING_CHECKPOINT

    @staticmethod
    def convert(state: Mapping[str, Any]) -> Tuple[State, Optional[str]]:
        return {k[len("trunk.") :]: v for k, v in state["model"].items() if k.startswith("trunk.")}, state.get("trunk")

    @staticmethod
    def example(trunk: State) -> Dict[str, Any]:
        return {
            "kind": PRETRAINING_CHECKPOINT,
            "trunk": "resnet50",
            "model": {f"trunk.{k}": v for k, v in trunk.items()},
        }


@WEIGHT_FORMATS.register("hub")
class Hub:
    """The official VisE torch.hub files (and ``tools/export_hub.py``'s): the state dict of
    ``nn.Sequential(*list(resnet50().children())[:-2])``, keys ``0.weight``, ``4.0.conv1.weight``, ..."""

    trunks = ("resnet50", "resnet101", "resnext101_32x16d")

    @staticmethod
    def detect(state: Mapping[str, Any]) -> bool:
        state = unwrap(state)
        return "0.weight" in state and "4.0.conv1.weight" in state

    @staticmethod
    def convert(state: Mapping[str, Any]) -> Tuple[State, Optional[str]]:
        return unwrap(state), None

    @staticmethod
    def example(trunk: State) -> Dict[str, Any]:
        return dict(trunk)


@WEIGHT_FORMATS.register("torchvision")
class Torchvision:
    """torchvision ResNet / ResNeXt state dicts: ImageNet-supervised weights, the IG / WSL ResNeXt
    releases, and timm's ResNets / ResNeXts (``timm.create_model("resnet50")``), which all use the same keys
    (``conv1.weight``, ``layer1.0...``; ``fc.*`` left out).

    ``example`` adds a zero 1000-class classifier ``fc.weight`` ``(1000, C)`` / ``fc.bias`` ``(1000,)``
    (float32; ``C`` the trunk's output channels), so that torchvision's and timm's default models load the
    file with ``strict=True``; their logits are all zero."""

    trunks = ("resnet50", "resnet101", "resnext101_32x16d")

    @staticmethod
    def detect(state: Mapping[str, Any]) -> bool:
        state = unwrap(state)
        return (
            "conv1.weight" in state
            and "layer1.0.conv1.weight" in state
            and "proj.weight" not in state
            and "attnpool.positional_embedding" not in state
        )

    @staticmethod
    def convert(state: Mapping[str, Any]) -> Tuple[State, Optional[str]]:
        return torchvision_to_hub(unwrap(state)), None

    @staticmethod
    def example(trunk: State) -> Dict[str, Any]:
        width = [v for k, v in trunk.items() if k.endswith("running_mean")][-1].shape[0]  # the last BatchNorm's
        return {**hub_to_torchvision(trunk), "fc.weight": torch.zeros(1000, width), "fc.bias": torch.zeros(1000)}


@WEIGHT_FORMATS.register("emotionnet")
class EmotionNet:
    """EmotionNet's released two-branch / joint ResNet-50 checkpoints (Wei et al. 2020): torchvision trunk
    keys plus the tag classifier ``fc.*`` and the embedding ``proj.*``, possibly under ``module.`` and a
    ``state_dict`` entry; both branches are left out."""

    trunks = ("resnet50",)

    @staticmethod
    def detect(state: Mapping[str, Any]) -> bool:
        state = unwrap(state)
        return "conv1.weight" in state and "proj.weight" in state

    @staticmethod
    def convert(state: Mapping[str, Any]) -> Tuple[State, Optional[str]]:
        return torchvision_to_hub(unwrap(state), drop=("fc", "proj")), None

    @staticmethod
    def example(trunk: State) -> Dict[str, Any]:
        tv = hub_to_torchvision(trunk)
        return {
            "state_dict": {
                **{f"module.{k}": v for k, v in tv.items()},
                "module.fc.weight": torch.zeros(690, 2048),
                "module.proj.weight": torch.zeros(300, 2048),
                "module.proj.bias": torch.zeros(300),
            }
        }


class _OneEncoderOfTwo:
    """A contrastive checkpoint whose trunk is the torchvision-keyed encoder under ``prefix`` (its
    projection ``fc`` left out); the other encoder and everything else ignored."""

    prefix = ""
    trunks = ("resnet50",)

    @classmethod
    def detect(cls, state: Mapping[str, Any]) -> bool:
        return _prefixed(unwrap(state), cls.prefix) is not None

    @classmethod
    def convert(cls, state: Mapping[str, Any]) -> Tuple[State, Optional[str]]:
        encoder = {k[len(cls.prefix) :]: v for k, v in unwrap(state).items() if k.startswith(cls.prefix)}
        return torchvision_to_hub(encoder), None


@WEIGHT_FORMATS.register("moco_v2")
class MoCoV2(_OneEncoderOfTwo):
    """MoCo v2 checkpoints: the query encoder ``module.encoder_q.*`` (torchvision keys; its MLP ``fc`` left
    out), the key encoder and the queue ignored."""

    prefix = "encoder_q."

    @staticmethod
    def example(trunk: State) -> Dict[str, Any]:
        tv = hub_to_torchvision(trunk)
        return {
            "state_dict": {
                **{f"module.encoder_q.{k}": v for k, v in tv.items()},
                **{f"module.encoder_k.{k}": torch.zeros_like(v) for k, v in tv.items()},
                "module.encoder_q.fc.0.weight": torch.zeros(2048, 2048),
                "module.queue": torch.zeros(128, 8),
            },
            "arch": "resnet50",
            "epoch": 200,
        }


@WEIGHT_FORMATS.register("moco_v3")
class MoCoV3(_OneEncoderOfTwo):
    """MoCo v3 ResNet checkpoints: the base encoder ``module.base_encoder.*`` (torchvision keys; its
    projector ``fc`` left out), the momentum encoder and the predictor ignored."""

    prefix = "base_encoder."

    @staticmethod
    def example(trunk: State) -> Dict[str, Any]:
        tv = hub_to_torchvision(trunk)
        return {
            "state_dict": {
                **{f"module.base_encoder.{k}": v for k, v in tv.items()},
                **{f"module.momentum_encoder.{k}": torch.zeros_like(v) for k, v in tv.items()},
                "module.base_encoder.fc.0.weight": torch.zeros(4096, 2048),
                "module.predictor.0.weight": torch.zeros(4096, 256),
            }
        }


@WEIGHT_FORMATS.register("vissl")
class Vissl:
    """VISSL checkpoints: ``classy_state_dict.base_model.model.trunk`` with keys ``_feature_blocks.*``."""

    trunks = ("resnet50", "resnet101", "resnext101_32x16d")

    @staticmethod
    def detect(state: Mapping[str, Any]) -> bool:
        return isinstance(state.get("classy_state_dict"), Mapping)

    @staticmethod
    def convert(state: Mapping[str, Any]) -> Tuple[State, Optional[str]]:
        trunk = state["classy_state_dict"]["base_model"]["model"]["trunk"]
        return torchvision_to_hub(
            {k[len(VISSL_BLOCKS) :] if k.startswith(VISSL_BLOCKS) else k: v for k, v in trunk.items()}
        ), None

    @staticmethod
    def example(trunk: State) -> Dict[str, Any]:
        blocks = {f"{VISSL_BLOCKS}{k}": v for k, v in hub_to_torchvision(trunk).items()}
        return {"classy_state_dict": {"base_model": {"model": {"trunk": blocks, "heads": {}}, "meta": {"trunk": {}}}}}


@WEIGHT_FORMATS.register("clip_rn50")
class ClipRN50:
    """CLIP's ResNet-50 (OpenAI's release or open_clip's): the image tower ``visual.*`` (the text tower
    left out), for the ``clip_rn50`` trunk (its stem of three convolutions and its attention pooling).
    OpenAI's ``RN50.pt`` is a TorchScript archive: :func:`vise_plugin.models.weights.read_state_file`
    gives its state dict, read without running its code."""

    trunks = ("clip_rn50",)

    @staticmethod
    def detect(state: Mapping[str, Any]) -> bool:
        return any(k.endswith("attnpool.positional_embedding") for k in unwrap(state))

    @staticmethod
    def convert(state: Mapping[str, Any]) -> Tuple[State, Optional[str]]:
        from vise_plugin.models.clip_trunk import from_clip_keys

        state = unwrap(state)
        visual = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")} or state
        return from_clip_keys(visual), "clip_rn50"

    @staticmethod
    def example(trunk: State) -> Dict[str, Any]:
        from vise_plugin.models.clip_trunk import to_clip_keys

        return {
            **{f"visual.{k}": v for k, v in to_clip_keys(trunk).items()},
            "token_embedding.weight": torch.zeros(8, 4),
            "logit_scale": torch.zeros(()),
        }


def convert_weights(state: Mapping[str, Any], where: str) -> Tuple[State, Optional[str], str]:
    """``(trunk state dict, trunk name or None, format name)`` of a loaded weights file; a one-line
    error listing the recognised layouts when none matches."""
    from vise_plugin.errors import InputError

    found = [name for name, fmt in WEIGHT_FORMATS if fmt.detect(state)]
    if not found:
        keys = list(unwrap(state))[:3] if isinstance(state, Mapping) else []
        raise InputError(
            f"{where}: weights of an unknown layout (first keys {keys}); recognised: "
            f"{', '.join(WEIGHT_FORMATS.names())}"
        )
    trunk, name = WEIGHT_FORMATS.get(found[0]).convert(state)
    return trunk, name, found[0]
