"""SimCLR from lightly, with VisE's engagement targets as a second loss on the same backbone.

    pip install -e ".[lightly]"   # in a clone of the project, after torch and torchvision
    python examples/lightly_simclr_vise.py --labels /tmp/vise_example/labels --steps 40

Without a label store at ``--labels``, a small one of synthetic posts is written there first
(``vise_plugin.demo.example_store``). With your own, point ``--labels`` at the folder ``vise-labels`` wrote:
the images are read from the store's image root.
"""

import argparse
import os
from typing import Dict, List

import torch
import torchvision
from lightly.data import LightlyDataset
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from torch import nn

from vise_plugin import VisELoss, VisEMultiHead, VisETargets


def train(labels: str, steps: int = 40, lr: float = 1e-3, batch_size: int = 32, image_size: int = 32, seed: int = 0):
    """Trains a ResNet-18 with SimCLR + VisE for ``steps`` steps on CPU; returns each step's two losses."""
    # the image root and the number of clusters come from the store; images the label job left out (posts
    # without engagement) get targets with nothing to learn
    targets = VisETargets.open(labels, missing="empty")
    # lightly's items are (views, label, filename); targets.collate turns the filenames into VisE targets
    dataset = LightlyDataset(targets.image_root, transform=SimCLRTransform(input_size=image_size, gaussian_blur=0.0))
    targets.check_paths(dataset.get_filenames(), min_fraction=0.9)  # one line naming images the store lacks
    history: List[Dict[str, float]] = []
    with torch.random.fork_rng(devices=[]):  # the weights' and augmentations' draws; the caller's RNG stays
        torch.manual_seed(seed)
        backbone = torchvision.models.resnet18()
        backbone.fc = nn.Identity()  # (B, 3, H, W) -> (B, 512) pooled features
        projection = SimCLRProjectionHead(512, 512, 128)
        vise_head = VisEMultiHead(512, tasks=targets.tasks)  # {"comments": Kc, "reactions": Kr}
        simclr_loss, vise_loss = NTXentLoss(), VisELoss()
        modules = nn.ModuleList([backbone, projection, vise_head])
        optimizer = torch.optim.AdamW(modules.parameters(), lr=lr)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=targets.collate,
            generator=torch.Generator().manual_seed(seed),
        )
        modules.train()
        while len(history) < steps:
            for (x0, x1), _, vise_targets in loader:
                f0, f1 = backbone(x0), backbone(x1)
                ssl = simclr_loss(projection(f0), projection(f1))
                vise = vise_loss([vise_head(f0), vise_head(f1)], vise_targets)  # both views, averaged
                optimizer.zero_grad()
                (ssl + vise).backward()
                optimizer.step()
                history.append({"simclr": ssl.item(), "vise": vise.item()})
                if len(history) == steps:
                    break
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", default="/tmp/vise_example/labels", help="a label store folder")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    if os.path.exists(os.path.join(args.labels, "meta.json")):
        print(f"label store: {args.labels}")
    else:
        from vise_plugin.demo import example_store

        print(f"writing a label store of synthetic posts to {args.labels}")
        example_store(args.labels)
    history = train(args.labels, steps=args.steps, lr=args.lr)
    for step, losses in enumerate(history, 1):
        if step % 5 == 0 or step == 1:
            print(f"step {step:3d}  simclr {losses['simclr']:.3f}  vise {losses['vise']:.3f}")


if __name__ == "__main__":
    main()
