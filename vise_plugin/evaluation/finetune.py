"""The fine-tune protocol: the whole network trained on the task, separate trunk and head learning rates."""

import copy
import logging
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vise_plugin.data.transforms import eval_transform, train_transform
from vise_plugin.engine.precision import MixedPrecision
from vise_plugin.evaluation.datasets import ImageListDataset, LabelledImages
from vise_plugin.evaluation.loader_workers import loader_workers
from vise_plugin.models.trunks import trunk_out_channels
from vise_plugin.process_state import seeded
from vise_plugin.registry import METRICS

logger = logging.getLogger(__name__)


class FinetuneModel(nn.Module):
    """``(B, 3, S, S)`` [+ ``(B, E)`` frozen extra features] -> ``(B, K)`` logits.

    Trunk, global average pooling, concatenation with the extra features (the meme text of Hateful
    Memes), one linear layer.
    """

    def __init__(self, trunk: nn.Module, num_classes: int, extra_dim: int = 0):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(trunk_out_channels(trunk) + extra_dim, num_classes)

    def forward(self, images: torch.Tensor, extra: Optional[torch.Tensor] = None) -> torch.Tensor:
        feats = self.trunk(images).mean(dim=(2, 3))
        return self.head(feats if extra is None else torch.cat([feats, extra], dim=1))


@dataclass
class FinetuneSettings:
    epochs: int = 30
    batch_size: int = 32
    trunk_lr: float = 0.001
    head_lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    crop_scale_min: float = 0.08
    image_size: int = 224
    resize_ratio: float = 256 / 224
    num_workers: int = 8
    precision: str = "fp32"

    @classmethod
    def from_config(cls, benchmark_cfg, precision: str = "fp32") -> "FinetuneSettings":
        """From ``config.benchmark``: its ``finetune`` section plus the shared image settings;
        ``precision`` is ``config.speed.precision``."""
        b = benchmark_cfg
        return cls(
            image_size=b.image_size,
            resize_ratio=b.resize_ratio,
            num_workers=b.num_workers,
            precision=precision,
            **{k: v for k, v in dict(b.finetune).items() if k != "sweep"},
        )


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.dim() == 2:
        return F.binary_cross_entropy_with_logits(logits, targets.float())
    return F.cross_entropy(logits, targets)


class _Runner:
    def __init__(
        self,
        model: FinetuneModel,
        data: LabelledImages,
        settings: FinetuneSettings,
        device: str,
        extra: Optional[np.ndarray],
    ):
        self.model, self.data, self.s, self.device = model.to(device), data, settings, device
        self.extra = None if extra is None else torch.tensor(np.asarray(extra), dtype=torch.float32)
        self.amp = MixedPrecision(settings.precision, torch.device(device).type)

    def logits(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` float32 logits of a batch, under autocast when the precision asks for it."""
        with self.amp.autocast():
            return self.model(images.to(self.device, non_blocking=True), self.extra_for(index)).float()

    def extra_for(self, index: torch.Tensor) -> Optional[torch.Tensor]:
        return None if self.extra is None else self.extra[index].to(self.device)

    def loader(self, indices: np.ndarray, train: bool, seed: int = 0) -> torch.utils.data.DataLoader:
        """Batches ``(images (B, 3, S, S), targets, index (B,))``; for training shuffled, and without a
        last batch of one image (BatchNorm in train mode cannot normalise a lone image's 1 x 1 map)
        unless it is the only batch."""
        s = self.s
        transform = (
            train_transform(s.image_size, s.crop_scale_min) if train else eval_transform(s.image_size, s.resize_ratio)
        )
        lone_last = len(indices) > s.batch_size and len(indices) % s.batch_size == 1
        return torch.utils.data.DataLoader(
            ImageListDataset(self.data, indices, transform),
            batch_size=s.batch_size,
            shuffle=train,
            num_workers=loader_workers(s.num_workers),
            drop_last=train and lone_last,
            generator=torch.Generator().manual_seed(seed) if train else None,
            pin_memory=self.device != "cpu",
        )

    @torch.no_grad()
    def scores(self, indices: np.ndarray) -> np.ndarray:
        self.model.eval()
        out = [self.logits(images, index).cpu() for images, _, index in self.loader(indices, train=False)]
        return torch.cat(out).numpy()


def finetune_eval(
    trunk: nn.Module,
    data: LabelledImages,
    fold: Dict[str, np.ndarray],
    settings: FinetuneSettings,
    device: str = "cpu",
    seed: int = 0,
    extra: Optional[np.ndarray] = None,
    metrics: Sequence[str] = ("acc",),
) -> Dict:
    """Fine-tunes ``trunk`` (modified in place) with a new linear head on ``fold["train"]``.

    SGD with momentum, a cosine schedule per iteration, ``trunk_lr`` for the trunk and ``head_lr``
    for the head; an epoch of ``n`` train images drops its last batch when that holds one image and is
    not the only one (``n > batch_size`` and ``n % batch_size == 1``). After every epoch the model is
    scored on val; the epoch with the best ``metrics[0]`` is scored on test. Returns ``{"val_<m>",
    "test_<m>", "best_epoch", "test_scores": (n_test, K), "trunk": the fine-tuned trunk,
    "classifier": (weight (K, C + E), bias (K,))}``. Its random draws come from ``seed``; the caller's
    generators are left as they were.
    """
    with seeded(seed):
        return _finetune(trunk, data, fold, settings, device, seed, extra, metrics)


def _finetune(
    trunk: nn.Module,
    data: LabelledImages,
    fold: Dict[str, np.ndarray],
    settings: FinetuneSettings,
    device: str,
    seed: int,
    extra: Optional[np.ndarray],
    metrics: Sequence[str],
) -> Dict:
    num_classes = data.targets.shape[1] if data.multilabel else len(data.classes)
    model = FinetuneModel(trunk, num_classes, 0 if extra is None else extra.shape[1])
    run = _Runner(model, data, settings, device, extra)
    s = settings
    opt = torch.optim.SGD(
        [{"params": model.trunk.parameters(), "lr": s.trunk_lr}, {"params": model.head.parameters(), "lr": s.head_lr}],
        momentum=s.momentum,
        weight_decay=s.weight_decay,
    )
    loader = run.loader(fold["train"], train=True, seed=seed)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, s.epochs * len(loader)))
    select = METRICS.get(metrics[0])
    best, best_state, best_epoch, start = -np.inf, None, -1, time.time()
    for epoch in range(s.epochs):
        model.train()
        seen, total = 0, torch.zeros((), device=run.device)  # summed on the device, read once for the log line
        for images, targets, index in loader:
            loss = _loss(run.logits(images, index), targets.to(run.device))
            opt.zero_grad(set_to_none=True)
            run.amp.backward_and_step(loss, opt)
            sched.step()
            seen, total = seen + len(images), total + loss.detach() * len(images)
        val = select(run.scores(fold["val"]), data.targets[fold["val"]])
        elapsed = time.time() - start
        logger.info(
            "fine-tune epoch %d/%d  loss %.4f  val %s %.2f  lr %.3g/%.3g  %.1f img/s  eta %ds",
            epoch + 1,
            s.epochs,
            total.item() / max(seen, 1),
            metrics[0],
            val,
            *sched.get_last_lr(),
            seen * (epoch + 1) / max(elapsed, 1e-9),
            elapsed / (epoch + 1) * (s.epochs - epoch - 1),
        )
        if best_state is None or val > best:  # a NaN val metric (one class in val) keeps the first epoch
            best, best_epoch, best_state = val, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    out = {}
    for split in ("val", "test"):
        scores = run.scores(fold[split])
        out.update({f"{split}_{m}": METRICS.get(m)(scores, data.targets[fold[split]]) for m in metrics})
    head = model.head
    out.update(
        {
            "best_epoch": best_epoch + 1,
            "test_scores": scores,
            "trunk": model.trunk,
            "classifier": (head.weight.detach().cpu().numpy(), head.bias.detach().cpu().numpy()),
        }
    )
    return out
