"""Named targets packed side by side in one ``(B, W)`` float tensor, for trainers that carry a single
target tensor per batch (VISSL's train step reads ``target.size(0)``), and unpacked by the loss."""

from functools import lru_cache
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch

from vise_plugin.data.target_sources import TargetSource, build_target_sources, empty_targets


class TargetLayout:
    """Where each target sits in a packed row: names in sorted order, each flattened; integer targets
    (class ids such as ``reactions``) are stored as floats and come back as int64.

    Args:
        example: one item's targets ``{name: tensor}`` (e.g. a source's ``empty()``), for the shapes
            and dtypes.
    """

    def __init__(self, example: Mapping[str, torch.Tensor]):
        self.names = sorted(example)
        self.shapes = {n: tuple(example[n].shape) for n in self.names}
        self.integer = {n for n in self.names if not example[n].is_floating_point()}
        self.widths = {n: int(example[n].numel()) for n in self.names}

    @property
    def width(self) -> int:
        return sum(self.widths.values())

    def pack(self, items: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
        """``B`` items' targets -> ``(B, W)`` float32."""
        return torch.stack([torch.cat([item[n].reshape(-1).float() for n in self.names]) for item in items])

    def unpack(self, packed: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``(B, W)`` -> ``{name: (B, *shape)}`` (int64 for the integer targets)."""
        out, start = {}, 0
        for n in self.names:
            part = packed[:, start : start + self.widths[n]].reshape(packed.shape[0], *self.shapes[n])
            out[n] = part.round().long() if n in self.integer else part
            start += self.widths[n]
        return out


def packed_sources(params: Mapping[str, Any]) -> Sequence[TargetSource]:
    """The target sources that ``params`` names: ``label_store`` (engagement labels) and, with
    ``tag_list`` and ``tag_vocab``, web tags matched by image path."""
    data = {
        "labels": params.get("label_store"),
        "tags": {
            "list": params.get("tag_list"),
            "vocab": params.get("tag_vocab"),
            "text_encoder": None,
            "image_root": params.get("tag_image_root"),
        },
    }
    names = (["engagement_labels"] if params.get("label_store") else []) + (
        ["web_tags"] if params.get("tag_list") else []
    )
    return build_target_sources(names, data)


@lru_cache(maxsize=4)
def _opened(
    label_store: Optional[str], tag_list: Optional[str], tag_vocab: Optional[str], tag_image_root: Optional[str]
) -> Tuple[Sequence[TargetSource], Dict[str, torch.Tensor], TargetLayout]:
    params = {
        "label_store": label_store,
        "tag_list": tag_list,
        "tag_vocab": tag_vocab,
        "tag_image_root": tag_image_root,
    }
    sources = packed_sources(params)
    empty = empty_targets(sources)
    return sources, empty, TargetLayout(empty)


def packed_targets(params: Mapping[str, Any]) -> Tuple[Sequence[TargetSource], Dict[str, torch.Tensor], TargetLayout]:
    """``(sources, empty targets, layout)`` of :func:`packed_sources` (``params``: the collator's
    parameters), opened once per process (the collator's, per batch)."""
    return _opened(*(params.get(k) for k in ("label_store", "tag_list", "tag_vocab", "tag_image_root")))


def packed_layout(params: Mapping[str, Any]) -> TargetLayout:
    """The layout of the targets of :func:`packed_sources` (``params``: the collator's parameters), read
    afresh (a loss built after its label store was refitted gets the new widths)."""
    return TargetLayout(empty_targets(packed_sources(params)))
