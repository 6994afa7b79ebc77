"""Several heads on one trunk, their outputs merged into one dict."""

from typing import Dict

import torch
import torch.nn as nn


class MergedHeads(nn.Module):
    """Several heads on the same trunk features; their output dicts merged into one.

    Args:
        heads: modules each mapping the features to ``{name: tensor}``; names must not repeat.
    """

    def __init__(self, *heads: nn.Module):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        for head in self.heads:
            part = head(x)
            repeated = set(part) & set(out)
            if repeated:
                raise ValueError(f"two heads predict {sorted(repeated)}")
            out.update(part)
        return out
