"""Images/s of a VisE pretraining step: the project's trainer versus the same step written as a plain
PyTorch loop, in the same run, on synthetic data.

    python benchmarks/train_throughput.py                       # tiny trunk, 32 px, CPU or GPU
    python benchmarks/train_throughput.py --trunk resnet50 --image-size 224 --batch 128 \\
        --precision bf16 --channels-last [--compile] [--workers 8]

Both build the same model (trunk + comments/reactions heads), the VisE loss and SGD with momentum,
use the same precision and memory format, and read the same synthetic items through a DataLoader
(pinned memory on GPU); the project side is :class:`vise_plugin.engine.trainer.Trainer` with its
resumable sampler, per-step learning-rate schedule and logging/checkpoint hooks (checkpoints off).
The loops run in A B B A rounds (plain, project, project, plain), so a warm-up effect cannot favour
either; each loop's median is reported, and the last line is ``ratio: <median project images/s over
median plain images/s>``.
"""

import argparse
import os
import statistics
import sys
import time
from typing import List, Tuple

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vise_plugin.data.resumable_sampler import ResumableBatchSampler  # noqa: E402
from vise_plugin.engine.hooks import HookBase, TrainLogHook  # noqa: E402
from vise_plugin.engine.model_setup import prepare_model  # noqa: E402
from vise_plugin.engine.precision import MixedPrecision  # noqa: E402
from vise_plugin.engine.schedule import lr_schedule  # noqa: E402
from vise_plugin.engine.trainer import Trainer  # noqa: E402
from vise_plugin.losses import VisELoss  # noqa: E402
from vise_plugin.models import VisEModel  # noqa: E402

TASKS = {"comments": 1000, "reactions": 16}
POOL = 16


class SyntheticPosts(torch.utils.data.Dataset):
    """``n`` items ``{"input": (3, S, S), "target": {"comments": (Kc,), "reactions": ()}}`` from a small pool.

    Accepts plain indices and the ``(index, seed)`` pairs of :class:`ResumableBatchSampler`.
    """

    def __init__(self, n: int, size: int):
        gen = torch.Generator().manual_seed(0)
        self.n = n
        self.images = torch.randn(POOL, 3, size, size, generator=gen)
        self.hists = torch.softmax(torch.randn(POOL, TASKS["comments"], generator=gen), dim=1)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        i = i[0] if isinstance(i, tuple) else i
        return {
            "input": self.images[i % POOL],
            "target": {"comments": self.hists[i % POOL], "reactions": torch.tensor(i % TASKS["reactions"])},
        }


class StepClock:
    """Wall time of steps ``warmup`` to the last, waiting for the GPU at both ends."""

    def __init__(self, device: torch.device, warmup: int):
        self.device, self.warmup = device, warmup
        self.start = self.end = 0.0
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self._sync()
            self.start = time.perf_counter()

    def stop(self) -> float:
        self._sync()
        self.end = time.perf_counter()
        return self.steps - self.warmup

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


class ClockHook(HookBase):
    def __init__(self, clock: StepClock):
        self.clock = clock

    def after_step(self, trainer) -> None:
        self.clock.tick()


def _loader(args, dataset, batch_sampler=None):
    kwargs = dict(num_workers=args.workers, pin_memory=args.device.type == "cuda", persistent_workers=args.workers > 0)
    if batch_sampler is not None:
        return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    return torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, **kwargs)


def _model(args):
    torch.manual_seed(0)
    model = VisEModel.build(args.trunk, [{"name": "vise_multi_head", "tasks": TASKS}])
    return model, prepare_model(model, args.device, args.channels_last, compile_model=args.compile)


def project(args) -> float:
    model, wrapped = _model(args)
    dataset = SyntheticPosts(args.batch * args.steps, args.image_size)
    loader = _loader(args, dataset, ResumableBatchSampler(len(dataset), args.batch))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, nesterov=True)
    clock = StepClock(args.device, args.warmup)
    trainer = Trainer(
        wrapped,
        model,
        VisELoss(),
        optimizer,
        lr_schedule(0.01, 1, 0),
        loader,
        1,
        args.device,
        MixedPrecision(args.precision, args.device.type),
        args.channels_last,
        hooks=[TrainLogHook(log_freq=args.steps), ClockHook(clock)],
    )
    trainer.train()
    steps = clock.stop()
    return steps * args.batch / (clock.end - clock.start)


def plain(args) -> float:
    model, wrapped = _model(args)
    wrapped.train()
    loss_fn = VisELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, nesterov=True)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    scaler = torch.amp.GradScaler(args.device.type, enabled=args.precision == "fp16")
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    clock = StepClock(args.device, args.warmup)
    for batch in _loader(args, SyntheticPosts(args.batch * args.steps, args.image_size)):
        x = batch["input"].to(args.device, non_blocking=True, memory_format=memory_format)
        target = {k: v.to(args.device, non_blocking=True) for k, v in batch["target"].items()}
        with torch.autocast(args.device.type, dtype=dtype, enabled=dtype is not None):
            output = wrapped(x)
        loss = loss_fn(output, target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        clock.tick()
    steps = clock.stop()
    return steps * args.batch / (clock.end - clock.start)


def abba(rounds: int) -> List[Tuple[str, str]]:
    """The order of the runs: each round is plain, project, project, plain, so neither loop always runs
    first (warm-up, clocks and caches favour whichever runs later)."""
    return [("plain", "project"), ("project", "plain")] * rounds


def add_step_arguments(parser: argparse.ArgumentParser, batch: int, steps: int, warmup: int, workers: int) -> None:
    """The options of a timed training run: trunk, image size, batch, steps, precision, memory format,
    compilation and data-loading workers (shared with ``pipeline_throughput.py``)."""
    parser.add_argument("--trunk", default="tiny")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=workers)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_step_arguments(parser, batch=64, steps=40, warmup=8, workers=0)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="rounds of A B B A (plain, project, project, plain); the median of each loop is reported",
    )
    args = parser.parse_args()
    args.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    runs = {"plain": [], "project": []}
    loops = {"plain": plain, "project": project}
    for order in abba(args.repeats):
        for which in order:
            runs[which].append(loops[which](args))
    plain_ips, project_ips = (statistics.median(runs[k]) for k in ("plain", "project"))
    name = torch.cuda.get_device_name() if args.device.type == "cuda" else "CPU"
    print(
        f"{args.trunk} at {args.image_size} px, batch {args.batch}, {args.steps} steps ({args.warmup} warm-up), "
        f"{name}, {args.precision}{', channels_last' if args.channels_last else ''}"
        f"{', compiled' if args.compile else ''}, {args.workers} workers"
    )
    for which, median in (("plain PyTorch loop", plain_ips), ("project trainer", project_ips)):
        key = "plain" if which.startswith("plain") else "project"
        print(
            f"{which + ':':20s} {median:8.1f} images/s (median of {len(runs[key])}: "
            f"{', '.join(f'{v:.1f}' for v in runs[key])})"
        )
    print(f"ratio: {project_ips / plain_ips:.2f}")


if __name__ == "__main__":
    main()
