"""Fit a head on precomputed features (the inner loop of the fast training mode).

Adam + cross-entropy (plus the head's auxiliary losses), shuffled minibatches,
early stopping on validation top-1 (ties broken by validation loss); the weights of
the best epoch are restored at the end.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from prodlens.models.heads import Head

log = logging.getLogger(__name__)


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


@torch.no_grad()
def score_head(head: Head, fs: FeatureSet, batch_size: int = 1024, device: torch.device | str = "cpu") -> tuple[float, float, float]:
    """``(loss, top1, top5)`` of ``head`` in eval mode on ``fs``."""
    head.eval()
    if len(fs) == 0:
        return float("nan"), float("nan"), float("nan")
    losses, c1, c5 = 0.0, 0, 0
    for i in range(0, len(fs), batch_size):
        img, txt, y = fs.tensors(slice(i, i + batch_size), device)
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
) -> list[EpochLog]:
    """Train ``head`` in place; returns the per-epoch history (best weights restored).

    Feature standardisation is fitted on ``train`` first. Without ``val`` it trains
    for ``epochs`` epochs and keeps the last weights. ``threads`` sets torch's CPU
    threads while fitting (restored after): heads are small, and one thread is much
    faster than several on a busy machine; ``None`` keeps torch's setting.

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
                         device, progress)
    finally:
        torch.set_num_threads(old_threads)


def _fit_head(head: Head, train: FeatureSet, val: FeatureSet | None, lr: float, weight_decay: float, batch_size: int,
              epochs: int, patience: int, label_smoothing: float, seed: int, device: str | torch.device,
              progress: bool) -> list[EpochLog]:
    torch.manual_seed(seed)
    img_all, txt_all, y_all = train.tensors(None, device)
    head.to(device)
    head.fit_feature_stats(img_all, txt_all)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history: list[EpochLog] = []
    best: tuple[float, float] | None = None
    best_state = copy.deepcopy(head.state_dict())
    stale = 0
    bar = tqdm(range(1, epochs + 1), desc=f"train {head.name}", disable=not progress, unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        head.train()
        perm = torch.randperm(len(train), generator=gen)
        tot, correct = 0.0, 0
        for i in range(0, len(train), batch_size):
            idx = perm[i : i + batch_size].to(device)
            img = img_all[idx] if img_all is not None else None
            txt = txt_all[idx] if txt_all is not None else None
            y = y_all[idx]
            loss, logits = head_loss(head, img, txt, y, label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
        vl, v1, v5 = score_head(head, val, device=device) if val is not None and len(val) else (float("nan"),) * 3
        history.append(EpochLog(epoch, tot / len(train), correct / len(train), vl, v1, v5, time.perf_counter() - t0))
        bar.set_postfix(loss=f"{tot / len(train):.3f}", val_top1=f"{v1:.3f}")
        if val is None or not len(val):
            best_state = copy.deepcopy(head.state_dict())
            continue
        score = (v1, -vl)
        if best is None or score > best:
            best, best_state, stale = score, copy.deepcopy(head.state_dict()), 0
        else:
            stale += 1
            if stale >= patience:
                log.info("%s: early stop at epoch %d (best val top-1 %.4f)", head.name, epoch, best[0])
                break
    head.load_state_dict(best_state)
    head.eval()
    return history


def best_epoch(history: list[EpochLog]) -> EpochLog:
    """The epoch whose weights :func:`fit_head` kept."""
    if not history:
        raise ValueError("empty history")
    if all(np.isnan(h.val_top1) for h in history):
        return history[-1]
    return max(history, key=lambda h: (h.val_top1, -h.val_loss))
