"""Trunk weights in and out: reading any recognised weights file (:mod:`.weight_formats`), fitting it to a
trunk in one line's error, and exporting the official VisE hub format (or a VISSL checkpoint).

The hub format is the state dict of ``nn.Sequential(*list(torchvision.models.resnet50().children())[:-2])``
(keys ``0.weight``, ``1.running_mean``, ``4.0.conv1.weight``, ...), which is also the state dict of
our torchvision trunks. Every file is read with ``torch.load(weights_only=True)``.
"""

import logging
import time
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from iopath.common.file_io import g_pathmgr

from vise_plugin.errors import InputError
from vise_plugin.io_utils import torch_save_atomic
from vise_plugin.models.weight_formats import convert_weights

logger = logging.getLogger(__name__)


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


def load_trunk_state(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """Reads ``path`` and returns the trunk's state dict (hub keys for ResNets) and, where the file
    records it, the trunk's name. The file's layout is recognised from its keys (the formats of
    :data:`vise_plugin.registry.WEIGHT_FORMATS`: the project's checkpoints, hub files, torchvision /
    IG / WSL state dicts, MoCo v2 / v3, VISSL, EmotionNet, CLIP's ResNet-50); an unknown layout is one
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


def fit_trunk_state(trunk: nn.Module, state: Dict[str, torch.Tensor], path: str,
                    recorded: Optional[str] = None) -> nn.Module:
    """``trunk.load_state_dict(state, strict=True)``, a mismatch reported as one line naming ``path``."""
    missing, unexpected = _key_mismatch(trunk, state)
    if missing or unexpected:
        hint = f"the file is for config.model.trunk={recorded}" if recorded else "check config.model.trunk"
        raise InputError(f"{path}: does not fit the trunk ({len(missing)} missing keys, e.g. {missing[:2]}; "
                         f"{len(unexpected)} unexpected, e.g. {unexpected[:2]}); {hint}")
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
    from vise_plugin.registry import WEIGHT_FORMATS
    from vise_plugin.models.trunks import build_trunk

    state, recorded = load_trunk_state(path)
    trunk_name = trunk_name or recorded or "resnet50"
    trunk = fit_trunk_state(build_trunk(trunk_name), state, path)
    state = {k: v.detach().clone().contiguous() for k, v in trunk.state_dict().items()}
    torch_save_atomic(WEIGHT_FORMATS.get(fmt).example(state), output)
    return state, trunk_name
