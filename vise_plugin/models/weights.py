"""Trunk weights in and out: our checkpoints, torchvision state dicts and the official VisE hub format.

The hub format is the state dict of ``nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])``
(keys ``0.weight``, ``1.running_mean``, ``4.0.conv1.weight``, ...), which is also the state dict of
our torchvision trunks. Every file is read with ``torch.load(weights_only=True)``.
"""

import logging
import re
import time
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError
from vise_plugin.io_utils import torch_save_atomic

# children of a torchvision ResNet, in the order nn.Sequential numbers them
_RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
_TORCHVISION_TO_HUB = {name: str(i) for i, name in enumerate(_RESNET_CHILDREN)}
logger = logging.getLogger(__name__)

PRETRAINING_CHECKPOINT = "vise_pretraining"  # the "kind" of our checkpoints (vise_plugin.engine.checkpoint)


def read_state_file(path: str, attempts: int = 1, retry_delay_s: float = 1.0) -> dict:
    """``torch.load(weights_only=True)`` of any iopath location; one-line :class:`InputError` on failure.

    An I/O error (``OSError``: a storage hiccup, a stale mount) is retried up to ``attempts`` times in
    all, waiting ``retry_delay_s``, then twice as long, ...; a file that is not there, cannot be
    unpickled safely or is cut short fails at once. ``MemoryError`` is not about the file and is
    raised as it is.
    """
    for attempt in range(1, attempts + 1):
        try:
            with g_pathmgr.open(path, "rb") as f:
                return torch.load(f, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InputError(f"{path}: weights file not found") from None
        except MemoryError:
            raise
        except OSError as e:
            if attempt == attempts:
                raise InputError(f"{path}: cannot read ({_reason(e)}; tried {attempts} time(s))") from None
            delay = retry_delay_s * 2 ** (attempt - 1)
            logger.warning("%s: read failed (%s); trying again in %.1f s", path, _reason(e), delay)
            time.sleep(delay)
        except Exception as e:  # unpickling refusals, truncated files, not a torch file
            raise InputError(f"{path}: cannot read weights with torch.load(weights_only=True) ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def checkpoint_trunk_state(checkpoint: dict) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """Trunk state dict and trunk name of a pretraining checkpoint of this project."""
    state = {k[len("trunk."):]: v for k, v in checkpoint["model"].items() if k.startswith("trunk.")}
    return state, checkpoint.get("trunk")


def to_hub_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Any supported state dict -> hub-format keys.

    Accepts hub keys as they are, torchvision ResNet keys (``conv1.weight``, ``layer1.0...``; ``fc.*``
    dropped), and either wrapped in ``state_dict``/``model`` or prefixed with ``module.``.
    """
    for wrapper in ("state_dict", "model"):
        if wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    state = {re.sub(r"^module\.", "", k): v for k, v in state.items()}
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "fc":
            continue
        out[f"{_TORCHVISION_TO_HUB.get(head, head)}.{rest}" if rest else key] = value
    return out


VISSL_BLOCKS = "_feature_blocks."  # VISSL's ResNe(X)t trunk: _feature_blocks.conv1.weight, ...


def vissl_trunk_state(checkpoint: dict) -> Optional[Dict[str, torch.Tensor]]:
    """The trunk of a VISSL checkpoint (``classy_state_dict.base_model.model.trunk``, keys
    ``_feature_blocks.*``) with torchvision names, or None when ``checkpoint`` is not one."""
    try:
        trunk = checkpoint["classy_state_dict"]["base_model"]["model"]["trunk"]
    except (KeyError, TypeError):
        return None
    return {k[len(VISSL_BLOCKS):] if k.startswith(VISSL_BLOCKS) else k: v for k, v in trunk.items()}


def to_vissl_checkpoint(hub_state: Dict[str, torch.Tensor]) -> dict:
    """A hub-format trunk as a VISSL checkpoint that ``MODEL.WEIGHTS_INIT.PARAMS_FILE`` loads with VISSL's
    default ``STATE_DICT_KEY_NAME: classy_state_dict`` (trunk keys ``trunk._feature_blocks.*``, no heads)."""
    names = {v: k for k, v in _TORCHVISION_TO_HUB.items()}
    trunk = {}
    for key, value in hub_state.items():
        head, _, rest = key.partition(".")
        trunk[f"{VISSL_BLOCKS}{names.get(head, head)}.{rest}"] = value
    return {"classy_state_dict": {"base_model": {"model": {"trunk": trunk, "heads": {}}, "meta": {"trunk": {}}}}}


def load_trunk_state(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """Reads ``path`` (our ``checkpoint.torch``/``model_phase<N>.torch``, an exported hub file, a
    torchvision ResNet state dict or a VISSL checkpoint) and returns the trunk's hub-format state
    dict and, for our checkpoints, the trunk name recorded in it."""
    loaded = read_state_file(path)
    if not isinstance(loaded, dict):
        raise InputError(f"{path}: expected a state dict, found {type(loaded).__name__}")
    if loaded.get("kind") == PRETRAINING_CHECKPOINT:
        return checkpoint_trunk_state(loaded)
    vissl = vissl_trunk_state(loaded)
    return to_hub_state(loaded if vissl is None else vissl), None


def load_trunk_weights(trunk: nn.Module, path: str) -> nn.Module:
    """Loads ``path`` into ``trunk`` with ``strict=True``; a mismatch is one :class:`InputError` line."""
    return fit_trunk_state(trunk, load_trunk_state(path)[0], path)


def fit_trunk_state(trunk: nn.Module, state: Dict[str, torch.Tensor], path: str) -> nn.Module:
    """``trunk.load_state_dict(state, strict=True)``, a mismatch reported as one line naming ``path``."""
    missing, unexpected = _key_mismatch(trunk, state)
    if missing or unexpected:
        raise InputError(f"{path}: does not fit the trunk ({len(missing)} missing keys, e.g. {missing[:2]}; "
                         f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); check config.model.trunk")
    try:
        trunk.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(f"{path}: does not fit the trunk ({' '.join(str(e).split())[:300]})") from None
    return trunk


def _key_mismatch(module: nn.Module, state: Dict[str, torch.Tensor]):
    expected = set(module.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


EXPORT_FORMATS = ("hub", "vissl")


def export_hub_weights(path: str, output: str, trunk_name: Optional[str] = None,
                       fmt: str = "hub") -> Tuple[Dict[str, torch.Tensor], str]:
    """Writes the trunk of ``path`` to ``output``: in exactly the official hub format (``fmt="hub"``),
    or as a VISSL checkpoint for ``MODEL.WEIGHTS_INIT.PARAMS_FILE`` (``fmt="vissl"``).

    The state dict is checked by loading it with ``strict=True`` into a fresh trunk of
    ``trunk_name`` (default: the name recorded in the checkpoint, else ``resnet50``), then saved
    under a temporary name renamed when complete. Returns the hub-format state dict and the trunk name.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    from vise_plugin.models.trunks import build_trunk

    state, recorded = load_trunk_state(path)
    trunk_name = trunk_name or recorded or "resnet50"
    trunk = fit_trunk_state(build_trunk(trunk_name), state, path)
    state = {k: v.detach().clone().contiguous() for k, v in trunk.state_dict().items()}
    torch_save_atomic(state if fmt == "hub" else to_vissl_checkpoint(state), output)
    return state, trunk_name
