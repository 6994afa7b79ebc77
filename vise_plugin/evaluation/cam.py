"""Class activation maps (Zhou et al. 2016) of a linear classifier on pooled trunk features, as a PNG grid."""

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vise_plugin.data.transforms import MEAN, STD


@torch.no_grad()
def class_activation_maps(
    trunk: nn.Module, weight: np.ndarray, images: torch.Tensor, classes: Sequence[int]
) -> np.ndarray:
    """``(B, S, S)`` maps in [0, 1] of class ``classes[b]`` for ``images: (B, 3, S, S)``.

    ``weight: (K, C')`` is the classifier on globally pooled ``(B, C)`` trunk features; columns past
    ``C`` (extra non-image features) do not take part. The map is ``sum_c w[k, c] * A[c]`` of the
    trunk's ``(B, C, h, w)`` output, upsampled bilinearly and scaled to [0, 1] per image.
    """
    was_training = trunk.training
    feats = trunk.eval()(images)
    trunk.train(was_training)
    w = torch.as_tensor(weight[:, : feats.shape[1]], dtype=feats.dtype, device=feats.device)
    cams = torch.einsum("bc,bchw->bhw", w[torch.as_tensor(list(classes))], feats)
    cams = F.interpolate(cams[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = cams.flatten(1).min(1).values.view(-1, 1, 1)
    high = cams.flatten(1).max(1).values.view(-1, 1, 1)
    return ((cams - low) / (high - low).clamp_min(1e-12)).cpu().numpy()


def save_cam_grid(
    path: str,
    images: torch.Tensor,
    cams: np.ndarray,
    predicted: Sequence[int],
    actual: Sequence[int],
    class_names: Sequence[str],
    columns: int = 4,
) -> str:
    """PNG grid: each image with its map overlaid and the predicted label, green when right, red when wrong."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    pixels = (images.cpu() * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)).clamp(0, 1)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[: len(images)]):
        ax.imshow(pixels[i].permute(1, 2, 0).numpy())
        ax.imshow(cams[i], cmap="jet", alpha=0.45)
        right = predicted[i] == actual[i]
        ax.set_title(
            f"{class_names[predicted[i]]}" + ("" if right else f" (true: {class_names[actual[i]]})"),
            color="green" if right else "red",
            fontsize=9,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
