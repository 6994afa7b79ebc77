"""Trunk weights in and out: reading any recognised weights file (:mod:`.weight_formats`), fitting it to a
trunk in one line's error, and exporting the official VisE hub format (or a VISSL checkpoint, or the
torchvision / timm layout), as a torch file or a ``.safetensors`` file.

The hub format is the state dict of ``nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])``
(keys ``0.weight``, ``1.running_mean``, ``4.0.conv1.weight``, ...), which is also the state dict of
our torchvision trunks. Every file is read with ``torch.load(weights_only=True)``, a TorchScript
archive (OpenAI's CLIP files) by the same unpickler without running its code, and a safetensors file
(named ``*.safetensors`` or starting as one does) by ``safetensors``, which runs no code either.
"""

import logging
import os
import pickle
import pickletools
import struct
import time
import zipfile
from typing import Dict, Optional, Tuple

import safetensors.torch
import torch
import torch._weights_only_unpickler
import torch.jit._pickle
import torch.nn as nn
from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError, error_summary
from vise_plugin.io_utils import replace_file, torch_save_atomic
from vise_plugin.models.weight_formats import convert_weights
from vise_plugin.process_state import keeps_process_state

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIX = ".safetensors"


def read_state_file(path: str, attempts: int = 1, retry_delay_s: float = 1.0) -> dict:
    """``torch.load(weights_only=True)`` of any iopath location (of a TorchScript archive, its tensors: see
    :func:`_torchscript_tensors`; of a safetensors file, its tensors by name); one-line :class:`InputError`
    on failure.

    An I/O error (``OSError``: a storage hiccup, a stale mount) is retried up to ``attempts`` times in
    all, waiting ``retry_delay_s``, then twice as long, ...; a file that is not there, cannot be
    unpickled safely or is cut short fails at once. ``MemoryError`` is not about the file and is
    raised as it is.
    """
    for attempt in range(1, attempts + 1):
        try:
            with g_pathmgr.open(path, "rb") as f:
                if _is_safetensors(f, path):
                    return _safetensors_tensors(f.read(), path)
                script = _torchscript_tensors(f, path)
                return script if script is not None else torch.load(f, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise InputError(f"{path}: weights file not found") from None
        except (MemoryError, InputError):
            raise
        except OSError as e:
            if attempt == attempts:
                raise InputError(f"{path}: cannot read ({error_summary(e)}; tried {attempts} time(s))") from None
            delay = retry_delay_s * 2 ** (attempt - 1)
            logger.warning("%s: read failed (%s); trying again in %.1f s", path, error_summary(e), delay)
            time.sleep(delay)
        except Exception as e:  # unpickling refusals, truncated files, not a torch file
            raise InputError(
                f"{path}: cannot read weights with torch.load(weights_only=True) ({error_summary(e)})"
            ) from None


def _is_safetensors(f, path: str) -> bool:
    """Whether ``f`` holds a safetensors file: ``path`` ends in ``.safetensors``, or the file starts as one
    does (an 8-byte little-endian header length under 100 MB, then the JSON header's ``{``); ``f`` rewound."""
    if path.endswith(SAFETENSORS_SUFFIX):
        return True
    start = f.tell()
    head = f.read(9)
    f.seek(start)
    return len(head) == 9 and head[8:] == b"{" and struct.unpack("<Q", head[:8])[0] < 100_000_000


def _safetensors_tensors(data: bytes, path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes by name (``{"conv1.weight": float32 (64, 3, 7, 7), ...}``,
    on the CPU, in the file's dtypes); a file cut short or not one is one :class:`InputError` line."""
    try:
        return safetensors.torch.load(data)
    except Exception as e:  # safetensors' SafetensorError: bad or truncated header, data not covered
        raise InputError(f"{path}: cannot read safetensors weights ({error_summary(e)})") from None


def _save_safetensors_atomic(state: Dict[str, torch.Tensor], path: str) -> None:
    """``state`` (names to contiguous CPU tensors) as a safetensors file at ``path`` (any iopath location),
    through ``<path>.tmp`` synced before the rename; its metadata ``{"format": "pt"}`` as Hugging Face's
    files have."""
    data = safetensors.torch.save(state, metadata={"format": "pt"})
    tmp = path + ".tmp"
    with g_pathmgr.open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if hasattr(f, "fileno"):
            os.fsync(f.fileno())
    replace_file(tmp, path)


class _ScriptObject:
    """A TorchScript object (``__torch__.*``) of an archive's ``data.pkl``: its attributes, nothing else."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"a TorchScript object's state is a {type(state).__name__}")
        self.attributes = state


# TorchScript's tags of typed lists and dicts: each returns its first argument
_TORCHSCRIPT_TAGS = [
    torch.jit._pickle.restore_type_tag,
    torch.jit._pickle.build_intlist,
    torch.jit._pickle.build_doublelist,
    torch.jit._pickle.build_boollist,
    torch.jit._pickle.build_tensorlist,
]


def _torchscript_tensors(f, path: str) -> Optional[Dict[str, torch.Tensor]]:
    """The tensors of a TorchScript archive (a zip of ``torch.jit.save``) by attribute path, e.g.
    ``{"visual.conv1.weight": ...}`` (the module's parameters and buffers, as its state dict names them, and
    any other tensor attribute); None, ``f`` rewound, when ``f`` is not one.

    Nothing of the archive runs: its ``data.pkl`` goes through torch's weights-only unpickler and storage
    reader (``torch.load(weights_only=True)`` on ``torch.save``'s zips), each TorchScript class it names
    standing for a holder of attributes. A refusal is one :class:`InputError` line.
    """
    start = f.tell()
    try:
        with zipfile.ZipFile(f) as listing:  # torch.load's test: a record <archive>/constants.pkl
            script = any(name.split("/", 1)[-1] == "constants.pkl" for name in listing.namelist())
    except zipfile.BadZipFile:
        script = False
    f.seek(start)
    if not script:
        return None
    serialization = torch.serialization
    try:
        with serialization._open_zipfile_reader(f) as archive:
            classes = {
                arg.replace(" ", ".")
                for op, arg, _ in pickletools.genops(archive.get_record("data.pkl"))
                if op.name == "GLOBAL" and arg.split(" ")[0].split(".")[0] == "__torch__"
            }
            admitted = [(_ScriptObject, name) for name in classes] + _TORCHSCRIPT_TAGS
            with serialization.safe_globals([g for g in admitted if g not in serialization.get_safe_globals()]):
                root = serialization._load(
                    archive, "cpu", torch._weights_only_unpickler, weights_only=True, encoding="utf-8"
                )
        if not isinstance(root, _ScriptObject):
            raise pickle.UnpicklingError(f"the archive holds a {type(root).__name__}, not a module")
        return _attribute_tensors(root)
    except (OSError, MemoryError):
        raise
    except Exception as e:
        raise InputError(
            f"{path}: a TorchScript archive whose tensors cannot be read without running its code "
            f'({error_summary(e)}); if you trust the file, convert it with: python -c "import torch; torch.save('
            f"torch.jit.load('{path}', map_location='cpu').state_dict(), '{os.path.splitext(path)[0]}_state.pt')\""
        ) from None


def _attribute_tensors(obj: _ScriptObject, prefix: str = "") -> Dict[str, torch.Tensor]:
    out = {}
    for name, value in obj.attributes.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            out.update(_attribute_tensors(value, f"{prefix}{name}."))
    return out


def load_trunk_state(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """Reads ``path`` and returns the trunk's state dict (hub keys for ResNets) and, where the file
    records it, the trunk's name. The file's layout is recognised from its keys (the formats of
    :data:`vise_plugin.registry.WEIGHT_FORMATS`: the project's checkpoints, hub files, torchvision /
    IG / WSL state dicts, MoCo v2 / v3, VISSL, EmotionNet, CLIP's ResNet-50 from open_clip or OpenAI's
    TorchScript archive); an unknown layout is one
    line listing them."""
    loaded = read_state_file(path)
    if not isinstance(loaded, dict):
        raise InputError(f"{path}: expected a state dict, found {type(loaded).__name__}")
    state, trunk, fmt = convert_weights(loaded, path)
    logger.info("%s: %s weights", path, fmt)
    return state, trunk


def load_trunk_weights(trunk: nn.Module, path: str) -> nn.Module:
    """Loads ``path`` into ``trunk`` with ``strict=True``; a mismatch is one :class:`InputError` line
    (naming the trunk the file is for, where its layout says)."""
    state, recorded = load_trunk_state(path)
    return fit_trunk_state(trunk, state, path, recorded)


def fit_trunk_state(
    trunk: nn.Module, state: Dict[str, torch.Tensor], path: str, recorded: Optional[str] = None
) -> nn.Module:
    """``trunk.load_state_dict(state, strict=True)``, a mismatch reported as one line naming ``path``."""
    missing, unexpected = _key_mismatch(trunk, state)
    if missing or unexpected:
        hint = f"the file is for config.model.trunk={recorded}" if recorded else "check config.model.trunk"
        raise InputError(
            f"{path}: does not fit the trunk ({len(missing)} missing keys, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); {hint}"
        )
    try:
        trunk.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(f"{path}: does not fit the trunk ({' '.join(str(e).split())[:300]})") from None
    return trunk


def _key_mismatch(module: nn.Module, state: Dict[str, torch.Tensor]):
    expected = set(module.state_dict())
    return sorted(expected - set(state)), sorted(set(state) - expected)


# ``--format`` -> the layout of :data:`vise_plugin.registry.WEIGHT_FORMATS` it writes. timm's ResNets have
# torchvision's keys, so a timm file is the torchvision layout (timm reads ``*.safetensors`` and torch files).
EXPORT_FORMATS = {"hub": "hub", "vissl": "vissl", "torchvision": "torchvision", "timm": "torchvision"}


@keeps_process_state
def export_hub_weights(
    path: str, output: str, trunk_name: Optional[str] = None, fmt: str = "hub"
) -> Tuple[Dict[str, torch.Tensor], str]:
    """Writes the trunk of ``path`` to ``output``: in exactly the official hub format (``fmt="hub"``), as a
    VISSL checkpoint for ``MODEL.WEIGHTS_INIT.PARAMS_FILE`` (``fmt="vissl"``), or in the keys of
    torchvision's and timm's ResNets (``fmt="torchvision"`` or ``"timm"``, the same file: ``conv1.weight``,
    ``layer1.0.conv1.weight``, ... and a zero 1000-class ``fc``, so that
    ``timm.create_model("resnet50", pretrained=True, pretrained_cfg_overlay={"file": output})`` loads it
    strictly; ``num_classes=0`` leaves the classifier out). An ``output`` ending in ``.safetensors`` is a
    safetensors file, anything else a ``torch.save`` file.

    The state dict is checked by loading it with ``strict=True`` into a fresh trunk of
    ``trunk_name`` (default: the name recorded in the checkpoint, else ``resnet50``), then saved
    under a temporary name renamed when complete. Returns the hub-format state dict and the trunk name.
    """
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}")
    from vise_plugin.models.trunks import build_trunk
    from vise_plugin.registry import WEIGHT_FORMATS

    layout = WEIGHT_FORMATS.get(EXPORT_FORMATS[fmt])
    state, recorded = load_trunk_state(path)
    trunk_name = trunk_name or recorded or "resnet50"
    if EXPORT_FORMATS[fmt] == "torchvision" and trunk_name not in layout.trunks:
        raise InputError(
            f"{path}: the {fmt} layout holds a torchvision ResNet ({', '.join(layout.trunks)}), "
            f"not the {trunk_name} trunk"
        )
    trunk = fit_trunk_state(build_trunk(trunk_name), state, path)
    state = {k: v.detach().clone().contiguous() for k, v in trunk.state_dict().items()}
    written = layout.example(state)
    if not output.endswith(SAFETENSORS_SUFFIX):
        torch_save_atomic(written, output)
    elif all(isinstance(v, torch.Tensor) for v in written.values()):
        _save_safetensors_atomic(written, output)
    else:
        raise InputError(f"{output}: a {fmt} file is nested, which safetensors cannot hold; name it .torch or .pth")
    return state, trunk_name
