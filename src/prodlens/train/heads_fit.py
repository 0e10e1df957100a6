"""Fit a head on precomputed features (the inner loop of the fast training mode).

Adam + cross-entropy (plus the head's auxiliary losses), shuffled minibatches,
early stopping on validation top-1 (ties broken by validation loss); the weights of
the best epoch are restored at the end.

With ``image_tail`` the image "features" are cached feature maps of a frozen trunk
and the tail (the backbone's last blocks) trains together with the head, at its own
learning rate and with its batch-norm statistics frozen.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from prodlens.models.heads import Head

log = logging.getLogger(__name__)

#: Learning-rate schedules of :func:`fit_head`.
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class FeatureSet:
    """Per-modality features of ``n`` examples and their integer labels.

    ``img``/``txt`` may be ``None`` when no head that will see them reads that modality.

    >>> fs = FeatureSet(np.zeros((2, 3), np.float32), None, np.array([0, 1]))
    >>> len(fs)
    2
    """

    img: np.ndarray | None
    txt: np.ndarray | None
    y: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.y)
        for name in ("img", "txt"):
            a = getattr(self, name)
            if a is not None and len(a) != n:
                raise ValueError(f"FeatureSet.{name} has {len(a)} rows but y has {n}")

    def __len__(self) -> int:
        return len(self.y)

    def tensors(self, idx: torch.Tensor | slice | None = None, device: torch.device | str = "cpu") -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        sel = slice(None) if idx is None else idx

        def t(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.as_tensor(a)[sel].float().to(device)

        return t(self.img), t(self.txt), torch.as_tensor(self.y)[sel].long().to(device)


@dataclass(frozen=True)
class EpochLog:
    """One epoch of training: mean training loss and validation metrics."""

    epoch: int
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    val_top5: float
    seconds: float


def head_loss(head: Head, img: torch.Tensor | None, txt: torch.Tensor | None, y: torch.Tensor,
              label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Training loss of ``head`` on one batch and its main logits."""
    outs = head.training_logits(img, txt)
    aux_w = float(getattr(head, "aux_weight", 1.0))
    loss = F.cross_entropy(outs[0], y, label_smoothing=label_smoothing)
    for o in outs[1:]:
        loss = loss + aux_w * F.cross_entropy(o, y, label_smoothing=label_smoothing)
    return loss, outs[0]


def _freeze_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def score_head(head: Head, fs: FeatureSet, batch_size: int = 1024, device: torch.device | str = "cpu",
               image_tail: nn.Module | None = None) -> tuple[float, float, float]:
    """``(loss, top1, top5)`` of ``head`` (after ``image_tail``, if given) in eval mode on ``fs``."""
    head.eval()
    if image_tail is not None:
        image_tail.eval()
        batch_size = min(batch_size, 128)
    if len(fs) == 0:
        return float("nan"), float("nan"), float("nan")
    losses, c1, c5 = 0.0, 0, 0
    for i in range(0, len(fs), batch_size):
        img, txt, y = fs.tensors(slice(i, i + batch_size), device)
        if image_tail is not None and img is not None:
            img = image_tail(img)
        logits = head(img, txt)
        losses += float(F.cross_entropy(logits, y, reduction="sum"))
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        c1 += int((top[:, 0] == y).sum())
        c5 += int((top == y[:, None]).any(1).sum())
    n = len(fs)
    return losses / n, c1 / n, c5 / n


def fit_head(
    head: Head,
    train: FeatureSet,
    val: FeatureSet | None,
    *,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 16,
    epochs: int = 100,
    patience: int = 10,
    label_smoothing: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    threads: int | None = 1,
    image_tail: nn.Module | None = None,
    tail_lr: float | None = None,
    schedule: str = "constant",
) -> list[EpochLog]:
    """Train ``head`` in place; returns the per-epoch history (best weights restored).

    Feature standardisation is fitted on ``train`` first. Without ``val`` it trains
    for ``epochs`` epochs and keeps the last weights. ``threads`` sets torch's CPU
    threads while fitting (restored after): heads are small, and one thread is much
    faster than several on a busy machine; ``None`` keeps torch's setting.

    ``image_tail`` (a module mapping ``train.img`` rows, e.g. trunk feature maps, to
    image features) trains too, at ``tail_lr`` (default ``0.3 * lr``); its weights at
    the best epoch are restored with the head's.

    ``schedule="cosine"`` warms the learning rates up over the first 5% of steps and
    then decays them to zero along a cosine over ``epochs`` (``"constant"``: no change).

    >>> from prodlens.models.registry import create_model
    >>> rng = np.random.default_rng(0); y = rng.integers(0, 3, 300)
    >>> x = rng.normal(size=(300, 8)).astype(np.float32) + 3 * np.eye(3, 8)[y]
    >>> head = create_model("image", num_classes=3, image_dim=8)
    >>> hist = fit_head(head, FeatureSet(x, None, y), FeatureSet(x, None, y), lr=1e-2, epochs=5, progress=False)
    >>> max(h.val_top1 for h in hist) > 0.9
    True
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _fit_head(head, train, val, lr, weight_decay, batch_size, epochs, patience, label_smoothing, seed,
                         device, progress, image_tail, 0.3 * lr if tail_lr is None else tail_lr, schedule)
    finally:
        torch.set_num_threads(old_threads)


def _fit_head(head: Head, train: FeatureSet, val: FeatureSet | None, lr: float, weight_decay: float, batch_size: int,
              epochs: int, patience: int, label_smoothing: float, seed: int, device: str | torch.device,
              progress: bool, image_tail: nn.Module | None, tail_lr: float, schedule: str) -> list[EpochLog]:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    torch.manual_seed(seed)
    if image_tail is None:
        img_all, txt_all, y_all = train.tensors(None, device)
        stats_img = img_all
    else:
        _, txt_all, y_all = FeatureSet(None, train.txt, train.y).tensors(None, device)
        img_all = torch.as_tensor(train.img)  # maps stay in their (half) precision; batches go to float
        image_tail.to(device).eval()
        probe = torch.arange(0, len(train), max(1, len(train) // 2048))  # standardisation from <= ~2048 rows
        with torch.no_grad():
            stats_img = torch.cat([image_tail(img_all[probe[i:i + 128]].float().to(device)) for i in range(0, len(probe), 128)])
    head.to(device)
    head.fit_feature_stats(stats_img, txt_all)
    groups: list[dict] = [{"params": list(head.parameters()), "lr": lr}]
    if image_tail is not None:
        groups.append({"params": [p for p in image_tail.parameters() if p.requires_grad], "lr": tail_lr})
    opt = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    total = epochs * ((len(train) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(schedule, total))
    gen = torch.Generator().manual_seed(seed)
    history: list[EpochLog] = []
    best: tuple[float, float] | None = None
    best_state = _state(head, image_tail)
    stale = 0
    bar = tqdm(range(1, epochs + 1), desc=f"train {head.name}", disable=not progress, unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        head.train()
        if image_tail is not None:
            image_tail.train()
            _freeze_batchnorm(image_tail)
        perm = torch.randperm(len(train), generator=gen)
        tot, correct = 0.0, 0
        steps = range(0, len(train), batch_size)
        if image_tail is not None:  # an epoch through the backbone's blocks takes minutes: show the batches
            steps = tqdm(steps, desc=f"epoch {epoch}", disable=not progress, leave=False, unit="batch")
        for i in steps:
            idx = perm[i : i + batch_size]
            img = img_all[idx].to(device) if img_all is not None else None
            if image_tail is not None and img is not None:
                img = image_tail(img.float())
            idx = idx.to(device)
            txt = txt_all[idx] if txt_all is not None else None
            y = y_all[idx]
            loss, logits = head_loss(head, img, txt, y, label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
        vl, v1, v5 = (score_head(head, val, device=device, image_tail=image_tail) if val is not None and len(val)
                      else (float("nan"),) * 3)
        history.append(EpochLog(epoch, tot / len(train), correct / len(train), vl, v1, v5, time.perf_counter() - t0))
        bar.set_postfix(loss=f"{tot / len(train):.3f}", val_top1=f"{v1:.3f}")
        if val is None or not len(val):
            best_state = _state(head, image_tail)
            continue
        score = (v1, -vl)
        if best is None or score > best:
            best, best_state, stale = score, _state(head, image_tail), 0
        else:
            stale += 1
            if stale >= patience:
                log.info("%s: early stop at epoch %d (best val top-1 %.4f)", head.name, epoch, best[0])
                break
    head.load_state_dict(best_state[0])
    head.eval()
    if image_tail is not None:
        image_tail.load_state_dict(best_state[1])
        image_tail.eval()
    return history


def _lr_factor(schedule: str, total_steps: int):
    """Multiplier of the base learning rates after ``step`` optimiser steps."""
    warm = max(1, total_steps // 20)

    def factor(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total_steps - warm))))

    return factor


def _state(head: Head, tail: nn.Module | None) -> tuple[dict, dict | None]:
    return copy.deepcopy(head.state_dict()), (copy.deepcopy(tail.state_dict()) if tail is not None else None)


def best_epoch(history: list[EpochLog]) -> EpochLog:
    """The epoch whose weights :func:`fit_head` kept."""
    if not history:
        raise ValueError("empty history")
    if all(np.isnan(h.val_top1) for h in history):
        return history[-1]
    return max(history, key=lambda h: (h.val_top1, -h.val_loss))
