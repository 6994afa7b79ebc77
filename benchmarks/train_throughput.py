"""Images/s of a VisE pretraining step: the project's classy-vision task versus the same step written
as a plain PyTorch loop, in the same run, on synthetic in-memory data.

    python benchmarks/train_throughput.py [--trunk tiny] [--image-size 32] [--batch 64] [--steps 30]

Both build the same model (trunk + comments/reactions heads), the VisE loss and SGD; the data are
pre-made tensors, so the figure is the step itself. The last line is
``ratio: <project images/s over plain images/s>``.
"""

import argparse
import os
import sys
import time

import torch
from classy_vision.dataset import ClassyDataset
from classy_vision.hooks import ClassyHook
from classy_vision.optim import SGD
from classy_vision.trainer import LocalTrainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vise_plugin.losses import VisELoss  # noqa: E402
from vise_plugin.models import VisEModel  # noqa: E402
from vise_plugin.tasks import VisEPretrainTask  # noqa: E402

TASKS = {"comments": 1000, "reactions": 16}


class SyntheticPosts(torch.utils.data.Dataset):
    """``n`` items ``{"input": (3, S, S), "target": {"comments": (Kc,), "reactions": ()}}`` from a small pool."""

    def __init__(self, n: int, size: int):
        gen = torch.Generator().manual_seed(0)
        self.n = n
        self.images = torch.randn(16, 3, size, size, generator=gen)
        self.hists = torch.softmax(torch.randn(16, TASKS["comments"], generator=gen), dim=1)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return {"input": self.images[i % 16], "target": {"comments": self.hists[i % 16],
                                                        "reactions": torch.tensor(i % TASKS["reactions"])}}


class StepTimes(ClassyHook):
    on_start = on_phase_start = on_phase_end = on_end = ClassyHook._noop

    def __init__(self):
        super().__init__()
        self.times = []

    def on_step(self, task) -> None:
        self.times.append(time.perf_counter())


def images_per_second(times, batch: int, warmup: int) -> float:
    return batch * (len(times) - 1 - warmup) / (times[-1] - times[warmup])


def project(args, device) -> float:
    torch.manual_seed(0)
    hook = StepTimes()
    task = (VisEPretrainTask().set_num_epochs(1)
            .set_dataset(ClassyDataset(SyntheticPosts(args.batch * args.steps, args.image_size), args.batch, False,
                                       None, None), "train")
            .set_model(VisEModel.build(args.trunk, TASKS)).set_loss(VisELoss())
            .set_optimizer(SGD(lr=0.01, momentum=0.9, weight_decay=1e-4)).set_meters([]).set_hooks([hook]))
    task.set_use_gpu(device == "cuda")
    LocalTrainer().train(task)
    return images_per_second(hook.times, args.batch, args.warmup)


def plain(args, device) -> float:
    torch.manual_seed(0)
    model = VisEModel.build(args.trunk, TASKS).to(device).train()
    loss_fn = VisELoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(SyntheticPosts(args.batch * args.steps, args.image_size), args.batch)
    times = []
    for batch in loader:
        x = batch["input"].to(device, non_blocking=True)
        target = {k: v.to(device, non_blocking=True) for k, v in batch["target"].items()}
        loss = loss_fn(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())
    return images_per_second(times, args.batch, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trunk", default="tiny")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    plain_ips, project_ips = plain(args, device), project(args, device)
    plain_ips = max(plain_ips, plain(args, device))
    project_ips = max(project_ips, project(args, device))
    print(f"{args.trunk} at {args.image_size} px, batch {args.batch}, {args.steps} steps, {device}, fp32")
    print(f"plain PyTorch loop:  {plain_ips:8.1f} images/s")
    print(f"project task step:   {project_ips:8.1f} images/s")
    print(f"ratio: {project_ips / plain_ips:.2f}")


if __name__ == "__main__":
    main()
