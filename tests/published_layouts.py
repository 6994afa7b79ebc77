"""Weights files in the layouts of the published checkpoints that the benchmarks compare (docs: benchmarks, "Several
weights side by side"), each written from its release's model definition: the release's wrappers, key
names, shapes and dtypes; nothing is downloaded.

Every tensor holds one number, distinct within its file, expanded (stride 0) to its shape: a file with
the shapes of ResNeXt-101 32x16d's 194M weights takes a few hundred kB, and the number a trunk tensor
ends up with names the file tensor it came from (:func:`came_from`)."""

import itertools
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import Bottleneck, ResNet


class Release(NamedTuple):
    """A written file: the layout that must recognise it, the trunk it fits, its tensors by path
    (``state_dict/module.encoder_q.conv1.weight``) and the paths of the tensors the trunk is made of."""

    layout: str
    trunk: str
    tensors: Dict[str, torch.Tensor]
    trunk_sources: List[str]


def number(t: torch.Tensor) -> float:
    """The number a tensor of these files holds (its first element)."""
    return t[(0,) * t.dim()].item()


def came_from(release: Release, state: Mapping[str, torch.Tensor]) -> Dict[str, str]:
    """For each tensor of a trunk's ``state``, the path of the file tensor whose number it holds."""
    origin = {number(t): p for p, t in release.tensors.items()}
    assert len(origin) == len(release.tensors), "the file's numbers are not distinct"
    return {k: origin[number(v)] for k, v in state.items()}


def tensors_of(obj: Any, path: str = "") -> Dict[str, torch.Tensor]:
    """The tensors inside nested dicts and lists, by their path of keys joined with ``/``."""
    if isinstance(obj, torch.Tensor):
        return {path: obj}
    items = obj.items() if isinstance(obj, Mapping) else enumerate(obj) if isinstance(obj, list) else ()
    out = {}
    for key, value in items:
        out.update(tensors_of(value, f"{path}/{key}" if path else str(key)))
    return out


def _meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` made on the meta device: shapes and dtypes without memory."""
    with torch.device("meta"):
        return build()


def _numbered(state: Mapping[str, torch.Tensor], numbers: Iterator[int], prefix: str = "") -> Dict[str, torch.Tensor]:
    """Each tensor of ``state`` (meta tensors) as the next of ``numbers`` in its dtype, expanded to its shape."""
    return {prefix + k: torch.tensor(next(numbers), dtype=v.dtype).expand(v.shape) for k, v in state.items()}


def _optimizer(params: List[torch.Tensor], numbers: Iterator[int], buffer: str, **group) -> Dict[str, Any]:
    """An optimizer's state dict after some steps: one ``buffer`` per parameter of ``params``."""
    buffers = _numbered({str(i): p for i, p in enumerate(params)}, numbers)
    return {
        "state": {int(i): {buffer: b} for i, b in buffers.items()},
        "param_groups": [{**group, "params": list(range(len(params)))}],
    }


def _under(tensors: Mapping[str, torch.Tensor], prefix: str, drop: tuple = ()) -> List[str]:
    """The paths under ``prefix``, those of its top-level modules ``drop`` left out."""
    return [p for p in tensors if p.startswith(prefix) and p[len(prefix) :].split(".")[0] not in drop]


def _resnet50_with_mlp(fc: nn.Module, num_classes: int = 1000, **kwargs) -> nn.Module:
    """torchvision's ResNet-50 whose ``fc`` is replaced by ``fc`` (a function of the old one)."""
    resnet = torchvision.models.resnet50(num_classes=num_classes, **kwargs)
    resnet.fc = fc(resnet.fc)
    return resnet


def _moco_v2() -> nn.Module:
    """facebookresearch/moco ``builder.MoCo(resnet50, dim=128, K=65536, mlp=True)``."""
    moco = nn.Module()
    for name in ("encoder_q", "encoder_k"):
        moco.add_module(name, _resnet50_with_mlp(lambda fc: nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), fc), 128))
    moco.register_buffer("queue", torch.empty(128, 65536))
    moco.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
    return moco


def moco_v2(path: str) -> Release:
    """``moco_v2_800ep_pretrain.pth.tar``: main_moco.py's checkpoint of the DistributedDataParallel model."""
    moco, numbers = _meta(_moco_v2), itertools.count(1)
    checkpoint = {
        "epoch": 800,
        "arch": "resnet50",
        "state_dict": _numbered(moco.state_dict(), numbers, "module."),
        "optimizer": _optimizer(
            list(moco.encoder_q.parameters()),
            numbers,
            "momentum_buffer",
            lr=0.0,
            momentum=0.9,
            dampening=0,
            weight_decay=1e-4,
            nesterov=False,
        ),
    }
    torch.save(checkpoint, path)
    tensors = tensors_of(checkpoint)
    return Release("moco_v2", "resnet50", tensors, _under(tensors, "state_dict/module.encoder_q.", ("fc",)))


def _moco_v3_mlp(num_layers: int, input_dim: int, mlp_dim: int, output_dim: int, last_bn: bool = True) -> nn.Sequential:
    """facebookresearch/moco-v3 ``builder.MoCo._build_mlp``."""
    layers = []
    for i in range(num_layers):
        layers.append(
            nn.Linear(input_dim if i == 0 else mlp_dim, output_dim if i == num_layers - 1 else mlp_dim, bias=False)
        )
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(mlp_dim), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(output_dim, affine=False))
    return nn.Sequential(*layers)


def _moco_v3() -> nn.Module:
    """facebookresearch/moco-v3 ``builder.MoCo_ResNet(partial(resnet50, zero_init_residual=True), dim=256,
    mlp_dim=4096)``: both encoders' ``fc`` a 3-layer projector, and a 2-layer predictor."""
    moco = nn.Module()
    for name in ("base_encoder", "momentum_encoder"):
        moco.add_module(
            name,
            _resnet50_with_mlp(lambda fc: _moco_v3_mlp(3, fc.in_features, 4096, 256), 4096, zero_init_residual=True),
        )
    moco.predictor = _moco_v3_mlp(2, 256, 4096, 256, last_bn=False)
    return moco


def moco_v3(path: str) -> Release:
    """``r-50-1000ep.pth.tar``: moco-v3 main_moco.py's checkpoint, with its LARS optimizer and AMP scaler."""
    moco, numbers = _meta(_moco_v3), itertools.count(1)
    trained = list(moco.base_encoder.parameters()) + list(moco.predictor.parameters())
    checkpoint = {
        "epoch": 1000,
        "arch": "resnet50",
        "state_dict": _numbered(moco.state_dict(), numbers, "module."),
        "optimizer": _optimizer(
            trained, numbers, "mu", lr=0.0, weight_decay=1e-6, momentum=0.9, trust_coefficient=0.001
        ),
        "scaler": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 0,
        },
    }
    torch.save(checkpoint, path)
    tensors = tensors_of(checkpoint)
    return Release("moco_v3", "resnet50", tensors, _under(tensors, "state_dict/module.base_encoder.", ("fc",)))


def _vissl_resnet50() -> nn.Module:
    """vissl ``models/trunks/resnext.py``'s ResNeXt at depth 50: torchvision's modules in ``_feature_blocks``."""
    resnet = torchvision.models.resnet50()
    trunk = nn.Module()
    trunk._feature_blocks = nn.ModuleDict(
        [
            ("conv1", resnet.conv1),
            ("bn1", resnet.bn1),
            ("conv1_relu", resnet.relu),
            ("maxpool", resnet.maxpool),
            ("layer1", resnet.layer1),
            ("layer2", resnet.layer2),
            ("layer3", resnet.layer3),
            ("layer4", resnet.layer4),
            ("avgpool", resnet.avgpool),
            ("flatten", nn.Flatten(1)),
        ]
    )
    return trunk


def _vissl_mlp(*layers: nn.Module) -> nn.Module:
    """vissl ``models/heads/mlp.py``'s MLP head: its layers in ``clf``."""
    head = nn.Module()
    head.clf = nn.Sequential(*layers)
    return head


def vissl_simclr(path: str) -> Release:
    """VISSL model zoo's SimCLR ResNet-50 (``model_final_checkpoint_phase999.torch``): the LogCheckpointHook's
    content, the trunk and the two MLP heads of the SimCLR config (2048-2048 with ReLU, 2048-128)."""
    trunk = _meta(_vissl_resnet50)
    heads = _meta(
        lambda: nn.ModuleList(
            [_vissl_mlp(nn.Linear(2048, 2048), nn.ReLU(inplace=True)), _vissl_mlp(nn.Linear(2048, 128))]
        )
    )
    numbers = itertools.count(1)
    model = {"trunk": _numbered(trunk.state_dict(), numbers), "heads": _numbered(heads.state_dict(), numbers)}
    optimizer = {"optim": _optimizer(list(trunk.parameters()), numbers, "momentum_buffer", lr=0.0, momentum=0.9)}
    checkpoint = {
        "phase_idx": 999,
        "iteration": 500500,
        "loss": {},
        "iteration_num": 500500,
        "train_phase_idx": 999,
        "classy_state_dict": {
            "train": True,
            "base_model": {"model": model, "meta": {"trunk": {}}},
            "meters": [],
            "optimizer": optimizer,
            "phase_idx": 999,
            "train_phase_idx": 999,
            "num_updates": 512_512_000,
            "losses": [],
            "hooks": {},
            "loss": {},
        },
        "type": "consolidated",
    }
    torch.save(checkpoint, path)
    tensors = tensors_of(checkpoint)
    return Release("vissl", "resnet50", tensors, _under(tensors, "classy_state_dict/base_model/model/trunk/"))


def emotionnet(path: str) -> Release:
    """EmotionNet's joint ResNet-50 (docs: benchmarks): torchvision's ResNet-50 whose ``fc`` scores the 690 emotion
    tags, plus the 300-d embedding ``proj``, saved from DataParallel under ``state_dict``."""

    def build():
        resnet = torchvision.models.resnet50(num_classes=690)
        resnet.proj = nn.Linear(2048, 300)
        return resnet

    checkpoint = {"state_dict": _numbered(_meta(build).state_dict(), itertools.count(1), "module.")}
    torch.save(checkpoint, path)
    tensors = tensors_of(checkpoint)
    return Release("emotionnet", "resnet50", tensors, _under(tensors, "state_dict/module.", ("fc", "proj")))


def _clip_rn50() -> nn.Module:
    """open_clip's ``CLIP`` in its RN50 config: the ModifiedResNet image tower and the text transformer."""
    import open_clip

    return open_clip.model.CLIP(**open_clip.get_model_config("RN50"))


def open_clip_rn50(path: str) -> Release:
    """open_clip's own RN50 releases (e.g. RN50-quickgelu on YFCC-15M): its training script's checkpoint of
    the DistributedDataParallel model, the optimizer left out."""
    checkpoint = {
        "epoch": 32,
        "name": "RN50-quickgelu-yfcc15m",
        "state_dict": _numbered(_meta(_clip_rn50).state_dict(), itertools.count(1), "module."),
    }
    torch.save(checkpoint, path)
    tensors = tensors_of(checkpoint)
    return Release("clip_rn50", "clip_rn50", tensors, _under(tensors, "state_dict/module.visual."))


def _torchscript_tree(state: Mapping[str, torch.Tensor], parameters: set) -> nn.Module:
    """Modules nested as the dotted keys of ``state`` say, holding its tensors (``parameters`` as parameters)."""
    root = nn.Module()
    for key, value in state.items():
        *path, name = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        if key in parameters:
            module.register_parameter(name, nn.Parameter(value, requires_grad=value.is_floating_point()))
        else:
            module.register_buffer(name, value)
    return root


def openai_clip_rn50(path: str) -> Release:
    """OpenAI's ``RN50.pt``: a TorchScript archive (``torch.jit.save``) of CLIP with the convolution, linear and
    attention weights and the text projection in fp16 (clip's ``convert_weights``), and the tensors
    ``input_resolution``, ``context_length``, ``vocab_size``."""
    import open_clip

    def build():
        model = _clip_rn50()
        open_clip.model.convert_weights_to_lp(model)
        for name in ("input_resolution", "context_length", "vocab_size"):
            if hasattr(model, name):  # open_clip keeps two of them as ints
                delattr(model, name)
            model.register_buffer(name, torch.zeros((), dtype=torch.long))
        return model

    model = _meta(build)
    state = _numbered(model.state_dict(), itertools.count(1))
    torch.jit.save(torch.jit.script(_torchscript_tree(state, set(dict(model.named_parameters())))), path)
    return Release("clip_rn50", "clip_rn50", state, _under(state, "visual."))


def _plain(layout_trunk: str, build: Callable[[], nn.Module]) -> Callable[[str], Release]:
    def write(path: str) -> Release:
        state = _numbered(_meta(build).state_dict(), itertools.count(1))
        torch.save(state, path)
        return Release("torchvision", layout_trunk, state, _under(state, "", ("fc",)))

    return write


RELEASES: Dict[str, Callable[[str], Release]] = {
    "moco_v2_800ep": moco_v2,
    "moco_v3_r50_1000ep": moco_v3,
    "vissl_simclr_rn50": vissl_simclr,
    "emotionnet": emotionnet,
    "open_clip_rn50": open_clip_rn50,
    "openai_clip_rn50": openai_clip_rn50,
    # torchvision's ImageNet-supervised ResNet-50 (``resnet50-0676ba61.pth``): its plain state dict
    "torchvision_resnet50": _plain("resnet50", torchvision.models.resnet50),
    # the IG ResNeXt-101 32x16d release (WSL-Images hubconf: torchvision's ResNet with groups=32,
    # width_per_group=16): its plain state dict
    "ig_resnext101_32x16d": _plain(
        "resnext101_32x16d", lambda: ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=16)
    ),
}
