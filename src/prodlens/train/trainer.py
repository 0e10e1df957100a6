"""Train a recognition model: ``Trainer(...).fit(train, val)`` or :func:`train_model`.

Two modes (:class:`~prodlens.train.config.TrainConfig`):

* ``fast`` (CPU): backbones stay frozen; every training image is encoded in
  ``views`` views (view 0 plain, the rest augmented; texts with word dropout) once,
  cached on disk, and only the head is trained on the cached vectors.
* ``finetune`` (GPU): backbones and head are trained end to end on freshly augmented
  batches, with the paper's settings (Adam, lr 2e-5, weight decay 1e-4, batch 16).

Both stop early on validation top-1; without a validation set a stratified
``val_fraction`` of the training set is held out, or (``holdout="none"``, fast mode)
training runs exactly ``epochs`` epochs on all of it. :func:`grouped_folds` splits a
training set into K folds that keep runs of near-duplicate photos together, for
choosing a recipe and an epoch count without a validation set.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from prodlens._validation import check_int
from prodlens.data.images import load_image
from prodlens.data.manifest import Dataset
from prodlens.data.types import ProductSample
from prodlens.errors import BadInputError, ConfigError
from prodlens.models.checkpoint import init_image_backbone, save_checkpoint
from prodlens.models.classifier import ProductClassifier, build_classifier
from prodlens.models.preprocess import images_to_tensor
from prodlens.train.augment import augment_image, view_rng
from prodlens.train.config import TrainConfig
from prodlens.train.features import FeatureCache, image_features, image_sha, text_features, text_view
from prodlens.train.heads_fit import EpochLog, FeatureSet, best_epoch, fit_head, head_loss

log = logging.getLogger(__name__)


HOLDOUTS = ("tail", "random")


def grouped_folds(ds: Dataset, k: int, group_size: int = 10, seed: int = 0) -> list[int]:
    """The fold (``0..k-1``) of every sample of ``ds``, keeping runs of consecutive photos together.

    Product photos are shot in sequences of near-identical frames, so a photo and its
    neighbours in id order must not land in different folds. Within each class the
    samples, in id order, are cut into groups of ``group_size`` consecutive ids; the
    groups go to the folds in turn, from a seeded random start per class, so every
    fold holds about ``1/k`` of each class (a class with fewer than ``k`` groups is
    missing from some folds).

    >>> from prodlens.data.types import ClassList
    >>> ds = Dataset([ProductSample(f"{c}{i:02d}", "x.jpg", c) for c in "ab" for i in range(6)], ClassList.from_names("ab"))
    >>> grouped_folds(ds, 3, group_size=2)
    [2, 2, 0, 0, 1, 1, 1, 1, 2, 2, 0, 0]
    """
    check_int("k", k, 2, why="the number of folds")
    check_int("group_size", group_size, 1, why="consecutive photos kept together")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, s in enumerate(ds.samples):
        by_class.setdefault(str(s.label), []).append(i)
    fold = [0] * len(ds.samples)
    for label in sorted(by_class):
        idx = sorted(by_class[label], key=lambda i: ds.samples[i].id)
        start = int(rng.integers(k))
        for j, i in enumerate(idx):
            fold[i] = (start + j // group_size) % k
    return fold


def stratified_holdout(ds: Dataset, fraction: float, seed: int = 0, by: str = "tail") -> tuple[Dataset, Dataset]:
    """Split ``ds`` into (train, held-out) keeping about ``fraction`` of every class held out.

    ``by="tail"`` holds out the last samples of each class in id order: product photos
    are usually shot in sequences of near-identical frames, and a random hold-out
    would keep a near-copy of every held-out photo in train (making early stopping
    stop too early). ``by="random"`` draws them at random. A class with at least two
    samples holds out at least one; classes with a single sample stay in train.

    >>> from prodlens.data.types import ClassList
    >>> ds = Dataset([ProductSample(f"{i:02d}", "x.jpg", "ab"[i % 2]) for i in range(20)], ClassList.from_names("ab"))
    >>> tr, ho = stratified_holdout(ds, 0.2)
    >>> len(tr), len(ho), [s.id for s in ho]
    (16, 4, ['16', '18', '17', '19'])
    """
    if by not in HOLDOUTS:
        raise ValueError(f"by must be one of {HOLDOUTS}, got {by!r}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, s in enumerate(ds.samples):
        by_class.setdefault(str(s.label), []).append(i)
    held: list[int] = []
    for idx in by_class.values():
        k = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        if k == 0:
            continue
        if by == "tail":
            held.extend(sorted(idx, key=lambda i: ds.samples[i].id)[-k:])
        else:
            held.extend(rng.permutation(idx)[:k].tolist())
    held_set = set(held)
    tr = [s for i, s in enumerate(ds.samples) if i not in held_set]
    ho = [replace(ds.samples[i], split="val") for i in held]
    return replace(ds, samples=tr, skipped=[]), replace(ds, samples=ho, skipped=[])


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_model` returns: the trained classifier and how training went."""

    classifier: ProductClassifier
    history: tuple[EpochLog, ...]
    best_epoch: int
    metrics: dict[str, Any]
    checkpoint: Path | None = None


def _check_dataset(ds: Dataset, what: str) -> None:
    if not len(ds):
        raise BadInputError(ds.root or what, f"the {what} set is empty", "check the split names and class filter")
    bad = [s.id for s in ds.samples if s.label is None or s.label not in ds.classes]
    if bad:
        raise BadInputError(ds.root or what, f"{len(bad)} {what} sample(s) without a known label, e.g. {bad[:3]}",
                            "label them or remove them from the manifest")


class Trainer:
    """Fit a recognition model (sklearn-like: ``__init__`` stores, ``fit`` returns ``self``).

    After :meth:`fit`: ``classifier_``, ``history_``, ``best_epoch_``, ``metrics_``.

    >>> t = Trainer("concat", config=TrainConfig(views=4))  # doctest: +SKIP
    >>> t.fit(ds.split("train"), ds.split("val")).metrics_["val_top1"]  # doctest: +SKIP
    0.84
    """

    def __init__(
        self,
        model: str = "concat",
        *,
        image_backbone: str = "efficientnet_lite0",
        text_backbone: str = "minilm",
        head_cfg: dict[str, Any] | None = None,
        backbone_cfg: dict[str, Any] | None = None,
        config: TrainConfig | None = None,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.image_backbone = image_backbone
        self.text_backbone = text_backbone
        self.head_cfg = head_cfg
        self.backbone_cfg = backbone_cfg
        self.config = config
        self.progress = progress

    # -- public -----------------------------------------------------------------------
    def fit(self, train: Dataset, val: Dataset | None = None) -> Trainer:
        cfg = (self.config or TrainConfig()).resolved()
        _check_dataset(train, "training")
        if val is None and cfg.holdout == "none":
            val = replace(train, samples=[], skipped=[])
            log.info("no validation set, holdout='none': training %d epochs on all %d samples", cfg.epochs, len(train))
        elif val is None:
            train, val = stratified_holdout(train, cfg.val_fraction, cfg.seed, cfg.holdout)
            if not len(val):
                raise ConfigError("no class has two training photos, so no early-stopping fold can be held out of "
                                  "train: pass a validation set, or add photos")
            log.info("no validation set given: holding out %d of the training samples", len(val))
        else:
            _check_dataset(val, "validation")
        classes = train.classes.names
        torch.manual_seed(cfg.seed)
        clf = build_classifier(
            self.model, classes, image_backbone=self.image_backbone, text_backbone=self.text_backbone,
            head_cfg=self.head_cfg, backbone_cfg=self.backbone_cfg, device=cfg.device,
        )
        if cfg.init_from:
            init_image_backbone(clf, cfg.init_from)
        no_ocr = sum(s.ocr_tokens is None for s in train.samples + val.samples)
        if no_ocr and "text" in clf.modalities:
            log.warning("%d samples have no OCR result; they train/validate with empty text", no_ocr)
        t0 = time.perf_counter()
        if cfg.mode == "fast":
            history = self._fit_fast(clf, train, val, cfg)
        else:
            history = self._fit_finetune(clf, train, val, cfg)
        best = best_epoch(history)
        self.classifier_ = clf
        self.history_ = tuple(history)
        self.best_epoch_ = best.epoch
        self.config_ = cfg
        self.metrics_ = {
            "val_top1": best.val_top1, "val_top5": best.val_top5, "val_loss": best.val_loss,
            "train_top1": best.train_top1, "best_epoch": best.epoch, "epochs_run": len(history),
            "n_train": len(train), "n_val": len(val), "n_classes": len(classes),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        clf.metrics = dict(self.metrics_)
        clf.train_config = cfg.to_dict()
        return self

    def save(self, path: str | Path) -> Path:
        """Write the fitted classifier as a checkpoint (backbones too after fine-tuning)."""
        if not hasattr(self, "classifier_"):
            raise RuntimeError("call fit() before save()")
        return save_checkpoint(
            self.classifier_, path, metrics=self.metrics_, train_config=self.config_.to_dict(),
            include_backbones=self.config_.changes_backbones,
        )

    # -- fast mode ---------------------------------------------------------------------
    def _features(self, clf: ProductClassifier, samples: Sequence[ProductSample], views: Sequence[int],
                  cfg: TrainConfig, cache: FeatureCache | None, labels: list[int]) -> FeatureSet:
        """Cached inputs of the head: image features, or with ``train_blocks`` the trunk's maps."""
        n, v = len(samples), len(views)
        img = txt = None
        if clf.image_backbone is not None and cfg.train_blocks:
            maps = image_features(clf.image_backbone, samples, views, cache=cache, aug=cfg.aug, seed=cfg.seed,
                                  batch_size=clf.batch_size, progress=self.progress, trunk_blocks=cfg.train_blocks)
            img = maps.reshape(n * v, *maps.shape[2:])
        elif clf.image_backbone is not None:
            img = image_features(clf.image_backbone, samples, views, cache=cache, aug=cfg.aug, seed=cfg.seed,
                                 batch_size=clf.batch_size, progress=self.progress).reshape(n * v, -1)
        if clf.text_backbone is not None:
            texts = [text_view(s, view, cfg.aug, cfg.seed) for s in samples for view in views]
            txt = text_features(clf.text_backbone, texts, cache=cache, progress=self.progress)
        return FeatureSet(img, txt, np.repeat(np.asarray(labels), v))

    def _fit_fast(self, clf: ProductClassifier, train: Dataset, val: Dataset, cfg: TrainConfig) -> list[EpochLog]:
        cache = FeatureCache(cfg.feature_cache) if cfg.feature_cache else None
        index = {c: i for i, c in enumerate(clf.classes)}
        tail = None
        if cfg.train_blocks:
            if clf.image_backbone is None:
                raise ConfigError(f"train_blocks={cfg.train_blocks} needs a model with an image backbone; {self.model!r} has none")
            _, tail = clf.image_backbone.split(cfg.train_blocks)
        tr = self._features(clf, train.samples, range(cfg.views), cfg, cache, [index[s.label] for s in train.samples])  # type: ignore[index]
        va = (self._features(clf, val.samples, (0,), cfg, cache, [index[s.label] for s in val.samples])  # type: ignore[index]
              if len(val) else None)
        history = fit_head(
            clf.head, tr, va, lr=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,  # type: ignore[arg-type]
            epochs=cfg.epochs, patience=cfg.patience, label_smoothing=cfg.label_smoothing,  # type: ignore[arg-type]
            seed=cfg.seed, device=cfg.device, progress=self.progress,
            threads=None if tail is not None else 1, image_tail=tail,
            tail_lr=cfg.lr * cfg.tail_lr_scale, schedule=cfg.schedule,  # type: ignore[operator]
        )
        if tail is not None:
            clf.image_backbone.mark_trained()  # type: ignore[union-attr]
            clf.eval()
        return history

    # -- finetune mode -----------------------------------------------------------------
    def _fit_finetune(self, clf: ProductClassifier, train: Dataset, val: Dataset, cfg: TrainConfig) -> list[EpochLog]:
        index = {c: i for i, c in enumerate(clf.classes)}
        device = clf.device
        # standardisation statistics from the pretrained features of (up to) 512 training images
        probe = train.samples[:: max(1, len(train) // 512)]
        clf.eval()
        with torch.inference_mode():
            pi = torch.as_tensor(clf.encode_images([load_image(s.image_path) for s in probe])) if clf.image_backbone else None
            pt = torch.as_tensor(clf.encode_texts([list(s.tokens) for s in probe])) if clf.text_backbone else None
        clf.head.fit_feature_stats(pi, pt)
        data = _AugmentedSamples(train.samples, [index[s.label] for s in train.samples], cfg)  # type: ignore[index]
        gen = torch.Generator().manual_seed(cfg.seed)
        loader = torch.utils.data.DataLoader(
            data, batch_size=cfg.batch_size, shuffle=True, generator=gen, num_workers=cfg.num_workers,
            collate_fn=_collate,
        )
        opt = torch.optim.Adam([p for p in clf.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
        val_labels = torch.tensor([index[s.label] for s in val.samples])  # type: ignore[index]
        history: list[EpochLog] = []
        best: tuple[float, float] | None = None
        best_state = copy.deepcopy(clf.state_dict())
        stale = 0
        for epoch in range(1, cfg.epochs + 1):  # type: ignore[operator]
            t0 = time.perf_counter()
            data.epoch = epoch
            clf.train()
            tot, correct, n = 0.0, 0, 0
            for images, texts, y in tqdm(loader, desc=f"epoch {epoch}", disable=not self.progress, leave=False):
                y = y.to(device)
                img = clf.image_backbone.forward_features(images_to_tensor(images, clf.image_backbone.preprocess).to(device)) if clf.image_backbone else None
                txt = clf.text_backbone.forward_features(texts) if clf.text_backbone else None
                loss, logits = head_loss(clf.head, img, txt, y, cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                n += len(y)
            clf.eval()
            probs = _predict_samples(clf, val.samples)
            logp = torch.log(torch.as_tensor(probs).clamp_min(1e-12))
            vl = float(F.nll_loss(logp.float(), val_labels))
            top = logp.topk(min(5, logp.shape[1]), dim=1).indices
            v1 = float((top[:, 0] == val_labels).float().mean())
            v5 = float((top == val_labels[:, None]).any(1).float().mean())
            history.append(EpochLog(epoch, tot / n, correct / n, vl, v1, v5, time.perf_counter() - t0))
            log.info("epoch %d: loss %.4f val top-1 %.4f", epoch, tot / n, v1)
            if (v1, -vl) > (best or (-1.0, 0.0)):
                best, best_state, stale = (v1, -vl), copy.deepcopy(clf.state_dict()), 0
            else:
                stale += 1
                if stale >= cfg.patience:  # type: ignore[operator]
                    break
        clf.load_state_dict(best_state)
        if clf.image_backbone is not None:
            clf.image_backbone.mark_trained()  # its features must not be cached under the pretrained key
        clf.eval()
        return history


def _predict_samples(clf: ProductClassifier, samples: Sequence[ProductSample], batch: int = 32) -> np.ndarray:
    out = []
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        out.append(clf.predict_proba([load_image(s.image_path) for s in chunk], [list(s.tokens) for s in chunk]))
    return np.concatenate(out)


class _AugmentedSamples(torch.utils.data.Dataset):
    """Loads and augments one training sample per item; randomness keyed by (seed, epoch, sample)."""

    def __init__(self, samples: Sequence[ProductSample], labels: Sequence[int], cfg: TrainConfig) -> None:
        self.samples, self.labels, self.cfg = list(samples), list(labels), cfg
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, str, int]:
        s = self.samples[i]
        view = self.epoch * 100_003 + 1  # a fresh positive view index per epoch
        img = augment_image(load_image(s.image_path), self.cfg.aug, view_rng(self.cfg.seed, image_sha(s.image_path), view))
        return img, text_view(s, view, self.cfg.aug, self.cfg.seed), self.labels[i]


def _collate(batch: list[tuple[np.ndarray, str, int]]) -> tuple[list[np.ndarray], list[str], torch.Tensor]:
    return [b[0] for b in batch], [b[1] for b in batch], torch.tensor([b[2] for b in batch])


def train_model(
    train: Dataset,
    val: Dataset | None = None,
    *,
    model: str = "concat",
    image_backbone: str = "efficientnet_lite0",
    text_backbone: str = "minilm",
    head_cfg: dict[str, Any] | None = None,
    backbone_cfg: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` (a registered head name) on ``train``, early-stopping on ``val``.

    Writes a checkpoint to ``out`` when given.

    >>> ds = read_dataset("data/grocery")  # doctest: +SKIP
    >>> r = train_model(ds.split("train"), ds.split("val"), model="embracenet",
    ...                 config=TrainConfig(mode="fast", views=8, feature_cache="~/.cache/prodlens/features"),
    ...                 out="runs/embracenet.pt")  # doctest: +SKIP
    >>> r.metrics["val_top1"]  # doctest: +SKIP
    0.85
    """
    t = Trainer(model, image_backbone=image_backbone, text_backbone=text_backbone, head_cfg=head_cfg,
                backbone_cfg=backbone_cfg, config=config, progress=progress).fit(train, val)
    path = t.save(out) if out is not None else None
    return TrainResult(t.classifier_, t.history_, t.best_epoch_, dict(t.metrics_), path)
