"""Images/s per data-loader worker of the pretraining image pipeline versus a plain torchvision one,
on generated large JPEGs, in the same run.

    python benchmarks/data_throughput.py [--images 256] [--width 1440] [--height 1080] [--workers 2]

plain:   torchvision.datasets.ImageFolder (PIL loader: full decode) + the same transform
project: the pretraining dataset's items (label store, lazily opened image, DraftRandomResizedCrop:
         the crop is drawn on the full image and read from a JPEG decoded at the smallest DCT scale
         that still holds it, + flip + normalise)
Both read the same files through a DataLoader with the same batch size and workers; each runs twice
and the faster pass counts. The last line is ``ratio: <project images/s over plain images/s>``.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torchvision
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vise_plugin.data.engagement_dataset import EngagementImages  # noqa: E402
from vise_plugin.data.transforms import MEAN, STD, train_transform  # noqa: E402
from vise_plugin.labels.store import LabelStore, write_label_store  # noqa: E402


def photo(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A photo-like picture: smooth colour gradients, a few shapes, mild sensor noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    slope = rng.normal(0, 0.1, (2, 3))
    pixels = base + x[..., None] * slope[0] + y[..., None] * slope[1] + rng.normal(0, 6, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        size = rng.integers(40, 400)
        draw.ellipse([x0, y0, x0 + size, y0 + size], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def images_per_second(dataset, workers: int, batch_size: int = 32) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    best = 0.0
    for _ in range(2):
        start, seen = time.perf_counter(), 0
        for batch in loader:
            seen += len(batch[0] if isinstance(batch, (list, tuple)) else batch["input"])
        best = max(best, seen / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i in range(args.images):
            name = f"photos/{i % 4}/{i}.jpg"
            os.makedirs(os.path.join(tmp, os.path.dirname(name)), exist_ok=True)
            photo(args.width, args.height, rng).save(os.path.join(tmp, name), quality=90)
            names.append(name)
        store = os.path.join(tmp, "labels")
        write_label_store(
            store,
            [str(i) for i in range(len(names))],
            names,
            [np.array([[0, 1]], np.int32)] * len(names),
            np.zeros(len(names), np.int32),
            {"tasks": {"comments": {"k": 1}, "reactions": {"k": 1}}, "image_root": tmp},
        )
        plain_transform = torchvision.transforms.Compose(
            [
                torchvision.transforms.RandomResizedCrop(224, scale=(0.08, 1.0)),
                torchvision.transforms.RandomHorizontalFlip(),
                torchvision.transforms.ToTensor(),
                torchvision.transforms.Normalize(MEAN, STD),
            ]
        )
        plain = torchvision.datasets.ImageFolder(os.path.join(tmp, "photos"), plain_transform)
        project = EngagementImages(LabelStore(store), tmp, train_transform(224, 0.08))
        plain_ips = images_per_second(plain, args.workers)
        project_ips = images_per_second(project, args.workers)
    workers = max(args.workers, 1)
    print(f"{args.images} JPEGs of {args.width} x {args.height}, RandomResizedCrop(224), {args.workers} workers")
    print(f"plain ImageFolder + PIL:  {plain_ips / workers:8.1f} images/s per worker")
    print(f"project pipeline:         {project_ips / workers:8.1f} images/s per worker")
    print(f"ratio: {project_ips / plain_ips:.2f}")


if __name__ == "__main__":
    main()
