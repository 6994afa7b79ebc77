"""VisE alone in a plain PyTorch loop: a torchvision or timm ResNet-18, VisE's head and loss, a label store.

    python examples/plain_pytorch_vise.py --labels /tmp/vise_example/labels --steps 40
    python examples/plain_pytorch_vise.py --labels /tmp/vise_example/labels --backbone timm   # pip install timm

Without a label store at ``--labels``, a small one of synthetic posts is written there first
(``vise_plugin.demo.example_store``).
"""

import argparse
import os
from typing import Dict, List, Tuple

import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision import transforms

from vise_plugin import VisELoss, VisEMultiHead, VisETargets


class StoreImages(torch.utils.data.Dataset):
    """The images of a label store as ``(image (3, S, S) float32, path)``; any dataset that can name its
    image files will do."""

    def __init__(self, targets: VisETargets, image_size: int):
        self.root, self.paths = targets.image_root, [targets.path(i) for i in range(len(targets))]
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size, scale=(0.5, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, str]:
        with Image.open(os.path.join(self.root, self.paths[i])) as image:
            return self.transform(image.convert("RGB")), self.paths[i]


def backbone_and_width(name: str) -> Tuple[nn.Module, int]:
    """A ResNet-18 returning ``(B, C)`` pooled features, and ``C``."""
    if name == "timm":
        import timm

        model = timm.create_model("resnet18", pretrained=False, num_classes=0)  # no classifier: pooled features
        return model, model.num_features
    model = torchvision.models.resnet18()
    model.fc = nn.Identity()
    return model, 512


def train(
    labels: str,
    steps: int = 40,
    lr: float = 1e-3,
    batch_size: int = 32,
    image_size: int = 32,
    seed: int = 0,
    backbone: str = "torchvision",
) -> List[Dict[str, float]]:
    """Trains the backbone and VisE's head for ``steps`` steps on CPU; returns each step's losses."""
    targets = VisETargets.open(labels)  # image root and the tasks' cluster counts from the store
    history: List[Dict[str, float]] = []
    with torch.random.fork_rng(devices=[]):  # the weights' and augmentations' draws; the caller's RNG stays
        torch.manual_seed(seed)
        model, width = backbone_and_width(backbone)
        head = VisEMultiHead(width, tasks=targets.tasks)  # {task: logits (B, K_task)}
        loss_fn = VisELoss()
        optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=lr)
        loader = torch.utils.data.DataLoader(
            StoreImages(targets, image_size),
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=targets.collate,  # (image, path) items -> images (B, 3, S, S), {task: (B, ...)} targets
            generator=torch.Generator().manual_seed(seed),
        )
        model.train()
        while len(history) < steps:
            for images, batch_targets in loader:
                loss = loss_fn(head(model(images)), batch_targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                history.append({"vise": loss.item(), **{k: v.item() for k, v in loss_fn.last_values.items()}})
                if len(history) == steps:
                    break
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", default="/tmp/vise_example/labels", help="a label store folder")
    parser.add_argument("--backbone", choices=["torchvision", "timm"], default="torchvision")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    if os.path.exists(os.path.join(args.labels, "meta.json")):
        print(f"label store: {args.labels}")
    else:
        from vise_plugin.demo import example_store

        print(f"writing a label store of synthetic posts to {args.labels}")
        example_store(args.labels)
    history = train(args.labels, steps=args.steps, lr=args.lr, backbone=args.backbone)
    for step, losses in enumerate(history, 1):
        if step % 5 == 0 or step == 1:
            print(f"step {step:3d}  " + "  ".join(f"{k} {v:.3f}" for k, v in losses.items()))


if __name__ == "__main__":
    main()
