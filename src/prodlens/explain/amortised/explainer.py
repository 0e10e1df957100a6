"""An amortised explainer: LIME weights for a photo in one network pass, fitted once per classifier.

:meth:`AmortisedExplainer.fit` draws ``n_masks`` random on/off rows per fitting photo (row 0
the unperturbed photo; LIME's Bernoulli(0.5) rows, the same segmentation, fill and
mask-to-input step as :class:`~prodlens.explain.MultimodalLime`), sends them through the
classifier once (cached on disk under ``cache_dir``: later fits, epochs and reruns cost no
model call), and trains a :class:`~prodlens.explain.amortised.net.WeightNet` on LIME's own
objective (kernel-weighted least squares, FastSHAP-style: the network's weights are the
surrogate's). The network reads the explainer's own frozen features
(:mod:`~prodlens.explain.amortised.features`), never the classifier's, so it works for any
classifier, a user's model wrapped by ``as_classifier`` included.

:meth:`AmortisedExplainer.explain` then costs one model call (the unperturbed photo: its
predicted class and the probabilities the network is conditioned on) plus one frozen
feature pass, and returns the same :class:`~prodlens.explain.result.SampleExplanations` as
``MultimodalLime.explain`` (same signature, same feature index space: superpixels, then OCR
words), so the store, the app, the global step and the deletion test take it unchanged.

The fitted explainer is tied to its classifier by a fingerprint (class names and the
classifier's outputs on a fixed probe photo) and refuses another
(:class:`ClassifierMismatchError`). Save it next to the checkpoint it belongs to
(:func:`amortised_path`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from prodlens._atomic import atomic_write
from prodlens.data.images import load_image
from prodlens.data.types import OcrToken, ProductSample
from prodlens.errors import BadInputError, ProdlensError
from prodlens.explain.amortised.features import Featurizer, PhotoFeatures, make_featurizer
from prodlens.explain.evaluation import CachedEvaluator
from prodlens.explain.explanation import Explanation
from prodlens.explain.interpretable import Fill, MultimodalInput, shrink_photo
from prodlens.explain.kernels import ExponentialKernel
from prodlens.explain.lime import MAX_PIXELS, resolution_work_size, target_index
from prodlens.explain.result import SampleExplanations
from prodlens.explain.sampling import BernoulliSampler
from prodlens.explain.segmentation import SlicSegmenter, make_segmenter, relabel_contiguous
from prodlens.models.base import Classifier

log = logging.getLogger(__name__)

FORMAT = "prodlens-amortised-explainer"
VERSION = 1
#: How close two classifiers' probe outputs must be to count as the same classifier
#: (ONNX Runtime and torch agree to ~1e-6; two trainings differ by far more).
PROBE_TOLERANCE = 2e-3
#: Fitting photos kept in the explainer as probes of the fingerprint (besides the synthetic one).
N_PROBE_PHOTOS = 2
#: The refine prior's precision when the fit could not choose one (too few masks, or an older file).
DEFAULT_REFINE_STRENGTH = 1.0


class ClassifierMismatchError(ProdlensError):
    """The amortised explainer was fitted for another classifier."""


def amortised_path(checkpoint: str | Path) -> Path:
    """Where the amortised explainer of ``checkpoint`` lives: next to it, ``NAME.amortised.pt``.

    >>> amortised_path("runs/concat.pt").as_posix()
    'runs/concat.amortised.pt'
    """
    p = Path(checkpoint)
    return p.with_name(p.stem + ".amortised.pt")


def probe_input() -> tuple[np.ndarray, tuple[OcrToken, ...]]:
    """The fixed photo and words the fingerprint runs the classifier on (deterministic)."""
    rng = np.random.default_rng(20261206)
    yy, xx = np.mgrid[0:160, 0:128]
    base = np.stack([yy * 1.5, xx * 2.0, (yy + xx) * 0.8], -1) % 256
    image = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    tokens = (OcrToken("MILK", (10, 10, 60, 30)), OcrToken("ORGANIC", (10, 40, 100, 60)), OcrToken("1L", (70, 120, 100, 140)))
    return image, tokens


def classifier_fingerprint(classifier: Classifier, photos: Sequence[tuple[np.ndarray, Sequence[OcrToken]]] = ()) -> dict:
    """Class names, their hash and the classifier's probabilities on :func:`probe_input` and on
    ``photos`` (``(image, tokens)`` pairs: the explainer keeps two of its fitting photos, so that
    two classifiers alike on the synthetic probe still differ); one model call per probe.

    >>> class C:
    ...     classes = ["a", "b"]
    ...     def predict_proba(self, ims, tls): return np.tile([0.2, 0.8], (len(ims), 1))
    >>> classifier_fingerprint(C())["probe"]
    [[0.2, 0.8]]
    """
    image, tokens = probe_input()
    classes = [str(c) for c in classifier.classes]
    probes = [(image, tokens), *photos]
    p = np.asarray(classifier.predict_proba([im for im, _ in probes], [list(t) for _, t in probes]), dtype=np.float64)
    digest = hashlib.sha256(json.dumps(classes).encode()).hexdigest()[:16]
    return {"classes": classes, "classes_sha256": digest, "probe": [[round(float(v), 6) for v in row] for row in p]}


def fingerprint_mismatch(expected: dict, actual: dict, tolerance: float = PROBE_TOLERANCE) -> str | None:
    """Why ``actual`` is not the classifier of ``expected`` (``None`` when it is)."""
    if expected["classes"] != actual["classes"]:
        a, b = expected["classes"], actual["classes"]
        return f"it has {len(b)} classes ({', '.join(b[:3])}, ...) where the explainer was fitted for {len(a)} ({', '.join(a[:3])}, ...)"
    diff = float(np.max(np.abs(np.asarray(expected["probe"]) - np.asarray(actual["probe"]))))
    if diff > tolerance:
        return f"its outputs on the fixed probe photos differ by up to {diff:.3g} (tolerance {tolerance:g}): other weights"
    return None


@dataclass(frozen=True)
class _Photo:
    """One photo made ready as ``MultimodalLime`` does: shrunk, segmented, at its work size."""

    sample_id: str
    x: MultimodalInput
    photo_size: tuple[int, int]
    features: PhotoFeatures


class AmortisedExplainer:
    """LIME weights from one network pass; fitted once per classifier (see the module docstring).

    Parameters
    ----------
    n_masks:
        Random on/off rows per fitting photo, the unperturbed row included: the fit's model
        calls are about ``n_masks`` x photos (fewer for fused models with few words, whose
        repeated word subsets are encoded once).
    features:
        The explainer's frozen inputs: ``"backbone"`` (EfficientNet-Lite0 maps pooled per
        superpixel, MiniLM per word; default), ``"simple"`` (mean colour, hashed trigrams) or a
        :class:`~prodlens.explain.amortised.features.Featurizer`.
    segmenter, n_segments, segmenter_params, fill, kernel_width, resolution, max_pixels, batch_size:
        As :class:`~prodlens.explain.MultimodalLime`'s (the same segmentation, fill, kernel and
        perturbed-image size, so the weights mean what LIME's mean).
    refine:
        Real masks per explained photo that correct the network's weights (0: none, one model
        call per photo; ``k``: ``1 + k`` calls): LIME's fit on those rows with the network's
        weights as the ridge prior (:mod:`~prodlens.explain.amortised.refine`). It can be
        changed on a fitted or loaded explainer.
    refine_strength:
        The prior's precision; ``None`` (default) takes the one :meth:`fit` chose on the
        held-out fitting photos (``refine_strength_``).
    hidden, epochs, lr, weight_decay, batch_photos, holdout, patience:
        The network (width ``hidden``) and its training: Adam, ``batch_photos`` photos a step, at
        most ``epochs`` passes, stopped when the LIME loss on a held-out ``holdout`` share of
        the fitting photos has not improved for ``patience`` epochs (the best epoch is kept).
    cache_dir:
        Where evaluated masks and frozen features are kept (keyed by the classifier's
        fingerprint, the photo and the settings); ``None`` keeps nothing.
    seed:
        The one seed of the fit (masks, the held-out split, the network's initialisation).

    Example
    -------
    >>> am = AmortisedExplainer(n_masks=32, features="simple")
    >>> am.n_masks, am.get_params()["features"]
    (32, 'simple')
    """

    def __init__(
        self,
        n_masks: int = 64,
        *,
        features: str | Featurizer = "backbone",
        segmenter: str = "slic",
        n_segments: int = 100,
        segmenter_params: dict | None = None,
        fill: Fill = "mean",
        kernel_width: float = 0.25,
        resolution: str | int | None = "auto",
        max_pixels: int | None = MAX_PIXELS,
        batch_size: int = 8,
        hidden: int = 32,
        epochs: int = 400,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        batch_photos: int = 16,
        holdout: float = 0.15,
        patience: int = 60,
        refine: int = 0,
        refine_strength: float | None = None,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        progress: bool | None = None,
    ) -> None:
        self.n_masks = n_masks
        self.features = features
        self.segmenter = segmenter
        self.n_segments = n_segments
        self.segmenter_params = segmenter_params
        self.fill = fill
        self.kernel_width = kernel_width
        self.resolution = resolution
        self.max_pixels = max_pixels
        self.batch_size = batch_size
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_photos = batch_photos
        self.holdout = holdout
        self.patience = patience
        self.refine = refine
        self.refine_strength = refine_strength
        self.cache_dir = cache_dir
        self.seed = seed
        self.progress = progress

    # -- settings ---------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The settings (what :meth:`save` writes; a featurizer object is saved by its name)."""
        keys = ("n_masks", "segmenter", "n_segments", "segmenter_params", "fill", "kernel_width", "resolution",
                "max_pixels", "batch_size", "hidden", "epochs", "lr", "weight_decay", "batch_photos", "holdout",
                "patience", "refine", "refine_strength", "seed")
        params = {k: getattr(self, k) for k in keys}
        params["fill"] = list(self.fill) if isinstance(self.fill, tuple) else self.fill
        params["features"] = self.features if isinstance(self.features, str) else self.features.name
        return params

    #: Settings that apply when explaining, not when fitting: changing them needs no refit.
    EXPLAIN_TIME_PARAMS = ("refine", "refine_strength")

    def fit_params(self) -> dict[str, Any]:
        """The settings that decide the fit (``get_params`` without ``EXPLAIN_TIME_PARAMS``): what
        a saved fit is keyed on.

        >>> "refine" in AmortisedExplainer(refine=5).fit_params()
        False
        """
        return {k: v for k, v in self.get_params().items() if k not in self.EXPLAIN_TIME_PARAMS}

    def _check(self) -> None:
        if not isinstance(self.n_masks, (int, np.integer)) or self.n_masks < 2:
            raise ValueError(f"n_masks must be an int >= 2 (the original plus perturbations), got {self.n_masks!r}")
        if not isinstance(self.refine, (int, np.integer)) or self.refine < 0:
            raise ValueError(f"refine must be an int >= 0 (real masks per explained photo), got {self.refine!r}")
        if self.refine_strength is not None and not self.refine_strength > 0:
            raise ValueError(f"refine_strength must be > 0 or None (chosen at fit), got {self.refine_strength!r}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be a share in [0, 1), got {self.holdout!r}")
        for name in ("epochs", "batch_photos", "hidden", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")

    def _segmenter(self):  # noqa: ANN202 - a Segmenter
        if self.segmenter == "slic":
            return SlicSegmenter(**{"n_segments": self.n_segments, **(self.segmenter_params or {})})
        return make_segmenter(self.segmenter, **(self.segmenter_params or {}))

    # -- photos, features, masks ----------------------------------------------------------------
    def _photo(self, classifier: object, featurizer: Featurizer, sample: ProductSample | None, *,
               image: np.ndarray | None = None, tokens: Sequence[OcrToken] | None = None,
               segments: np.ndarray | None = None, sample_id: str | None = None) -> _Photo:
        if sample is None and image is None:
            raise ValueError("give a ProductSample or an image (with tokens) to explain")
        if image is None:
            image = load_image(sample.image_path)  # type: ignore[union-attr]
        if tokens is None:
            tokens = sample.tokens if sample is not None else ()
        sid = sample_id or (sample.id if sample is not None else "sample")
        photo_size = (int(image.shape[0]), int(image.shape[1]))
        if segments is None:
            image, tokens = shrink_photo(image, tokens, self.max_pixels)
            segments = self._segmenter()(image)
        else:
            segments = relabel_contiguous(segments)
        x = MultimodalInput(image, segments, tuple(tokens), fill=self.fill, size=resolution_work_size(self.resolution, classifier, image.shape))
        feats = self._cached(("features", featurizer.name, _image_key(image, x.segments, x.tokens)),
                             lambda: featurizer(image, x.segments, x.tokens))
        return _Photo(sid, x, photo_size, feats)

    def _cached(self, key: tuple, compute):  # noqa: ANN001, ANN202 - small helper
        if self.cache_dir is None:
            return compute()
        name = hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:24]
        path = Path(self.cache_dir) / f"{key[0]}-{name}.npz"
        if path.is_file():
            try:
                with np.load(path) as z:
                    if key[0] == "features":
                        return PhotoFeatures(z["superpixels"], z["words"], z["context"])
                    return z["rows"], z["probs"]
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                log.warning("%s: unreadable cache entry, recomputing", path)
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = vars(value) if isinstance(value, PhotoFeatures) else {"rows": value[0], "probs": value[1]}
        with atomic_write(path, "wb", encoding=None) as f:
            np.savez(f, **arrays)
        return value

    def _masks(self, classifier: Classifier, photo: _Photo, fingerprint: dict, rng_seed: int,
               counts: dict) -> tuple[np.ndarray, np.ndarray]:
        x = photo.x

        def evaluate() -> tuple[np.ndarray, np.ndarray]:
            rows = _random_rows(x, int(self.n_masks) - 1, rng_seed)
            ev = CachedEvaluator(classifier, x, batch_size=self.batch_size)
            probs = ev(rows).astype(np.float32)
            for k, v in ev.stats().items():
                if isinstance(v, (int, float)) and k.startswith("n_"):
                    counts[k] = counts.get(k, 0) + v
            counts["photos_evaluated"] = counts.get("photos_evaluated", 0) + 1
            return rows, probs

        key = ("masks", fingerprint["classes_sha256"], fingerprint["probe"], _image_key(x.image, x.segments, x.tokens),
               [int(v) for v in x.size], self.get_params()["fill"], int(self.n_masks), rng_seed)
        return self._cached(key, evaluate)

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, classifier: Classifier, samples: Sequence[ProductSample]) -> AmortisedExplainer:
        """Evaluate ``n_masks`` rows on each photo of ``samples`` (or take them from the cache) and
        train the network on LIME's objective. Sets ``classes_``, ``fingerprint_``, ``net_`` and
        ``fit_report_`` (photos, model rows, encoder passes, seconds, held-out R^2); returns ``self``."""
        import torch

        self._check()
        samples = list(samples)
        if len(samples) < 2:
            raise ValueError(f"fit needs at least 2 photos (some are held out to stop training), got {len(samples)}")
        t0 = time.perf_counter()
        featurizer = make_featurizer(self.features)
        counts: dict[str, float] = {}
        kernel = ExponentialKernel(self.kernel_width)
        prepared: list[tuple[int, _Photo]] = []
        skipped: list[tuple[str, str]] = []
        for i, s in enumerate(tqdm(samples, desc="amortised: features", unit="photo", disable=self._quiet())):
            try:
                prepared.append((i, self._photo(classifier, featurizer, s)))
            except BadInputError as e:
                log.warning("amortised fit: skipping %s: %s", s.id, e)
                skipped.append((s.id, str(e)))
        # the probes: the photos first by id (the same ones whatever order the photos come in)
        probes = [(p.x.work_image, p.x.tokens) for _, p in sorted(prepared, key=lambda ip: ip[1].sample_id)[:N_PROBE_PHOTOS]]
        fingerprint = classifier_fingerprint(classifier, probes)
        data = []
        for _, photo in tqdm(prepared, desc="amortised: masks", unit="photo", disable=self._quiet()):
            rows, probs = self._masks(classifier, photo, fingerprint, _photo_seed(self.seed, photo.sample_id), counts)
            data.append((photo, rows, probs, kernel(rows)))
        self.probe_photos_ = probes
        if len(data) < 2:
            raise ValueError(f"fit needs at least 2 readable photos, got {len(data)}")
        t_masks = time.perf_counter() - t0

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the network is tiny: one thread is fastest (two cost 50x on a busy machine)
        try:
            return self._train(classifier, featurizer, fingerprint, data, skipped, counts, t0, t_masks)
        finally:
            torch.set_num_threads(threads)

    def _train(self, classifier: Classifier, featurizer: Featurizer, fingerprint: dict, data: list,
               skipped: list, counts: dict, t0: float, t_masks: float) -> AmortisedExplainer:
        import torch

        from prodlens.explain.amortised.net import WeightNet

        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(data))
        n_hold = int(round(self.holdout * len(data))) if self.holdout else 0
        n_hold = min(max(n_hold, 1 if self.holdout else 0), len(data) - 1)
        hold, train = [data[i] for i in order[:n_hold]], [data[i] for i in order[n_hold:]]
        C = len(fingerprint["classes"])
        net = WeightNet(C, featurizer.superpixel_dim, featurizer.word_dim, featurizer.context_dim, hidden=self.hidden)
        cat = lambda a: torch.as_tensor(np.concatenate(a) if a else np.zeros((0, 1)), dtype=torch.float32)  # noqa: E731
        net.set_scaling(cat([d[0].features.superpixels for d in train]), cat([d[0].features.words for d in train]),
                        cat([d[0].features.context[None] for d in train]))
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        all_train = _batch(train)  # padded once; each step takes a slice
        batches_hold = [_batch(hold[j:j + self.batch_photos]) for j in range(0, len(hold), self.batch_photos)]
        best, best_state, best_epoch, history = np.inf, None, 0, []
        t1 = time.perf_counter()
        bar = tqdm(range(int(self.epochs)), desc="amortised: train", unit="epoch", disable=self._quiet())
        for epoch in bar:
            net.train()
            perm = torch.as_tensor(rng.permutation(len(train)))
            tr_loss = tr_base = 0.0
            for j in range(0, len(train), self.batch_photos):
                idx = perm[j:j + self.batch_photos]
                loss, base = _loss(net, {k: v[idx] for k, v in all_train.items()})
                opt.zero_grad()
                loss.mean().backward()
                opt.step()
                tr_loss += float(loss.detach().sum())
                tr_base += float(base.sum())
            score = _r2(net, batches_hold) if hold else 1 - tr_loss / max(tr_base, 1e-12)
            history.append(round(score, 5))
            bar.set_postfix(r2=f"{score:.3f}")
            if -score < best - 1e-5:
                best, best_epoch = -score, epoch
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            elif epoch - best_epoch >= self.patience:
                break
        bar.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        selection = _choose_refine_strength(net, hold or train, int(self.refine), int(self.n_masks))
        self.refine_strength_ = float(selection["strength"]) if selection else DEFAULT_REFINE_STRENGTH
        self.classes_ = list(fingerprint["classes"])
        self.fingerprint_ = fingerprint
        self.featurizer_ = featurizer
        self.net_ = net
        self.fit_report_ = {
            "photos": len(data), "held_out_photos": len(hold), "skipped": skipped, "n_masks": int(self.n_masks),
            "model_rows": int(counts.get("n_model_rows", 0)), "image_encodes": int(counts.get("n_image_encodes", 0)),
            "text_encodes": int(counts.get("n_text_encodes", 0)),
            "photos_evaluated": int(counts.get("photos_evaluated", 0)),
            "mask_seconds": round(t_masks, 2), "train_seconds": round(time.perf_counter() - t1, 2),
            "epochs": len(history), "best_epoch": best_epoch + 1,
            "held_out_r2": round(-best, 4) if hold else None, "train_r2": round(_r2(net, [all_train]), 4),
            "refine_strength": self.refine_strength_, "refine_selection": selection,
        }
        self._verified: set[int] = {id(classifier)}
        self.classifier_: Classifier | None = classifier
        log.info("amortised explainer fitted on %d photos: %d model rows, held-out R^2 %s, %.0f s", len(data),
                 self.fit_report_["model_rows"], self.fit_report_["held_out_r2"], time.perf_counter() - t0)
        return self

    def _quiet(self) -> bool | None:
        return None if self.progress is None else not self.progress

    # -- explaining ---------------------------------------------------------------------------
    def check_classifier(self, classifier: Classifier) -> None:
        """Raise :class:`ClassifierMismatchError` unless ``classifier`` is the one this was fitted for
        (one model call, once per classifier object)."""
        self._fitted()
        if id(classifier) in self._verified:
            return
        why = fingerprint_mismatch(self.fingerprint_, classifier_fingerprint(classifier, self.probe_photos_))
        if why:
            raise ClassifierMismatchError(
                f"this amortised explainer was fitted for another classifier: {why}. "
                "Fit one for this classifier (AmortisedExplainer().fit(classifier, train_samples), "
                "or `prodlens explain --amortised` with --fit), or explain it with MultimodalLime")
        self._verified.add(id(classifier))

    def _fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise ProdlensError("this AmortisedExplainer is not fitted: call fit(classifier, samples) or AmortisedExplainer.load(path)")

    def explain(
        self,
        classifier: Classifier | None = None,
        sample: ProductSample | None = None,
        *,
        image: np.ndarray | None = None,
        tokens: Sequence[OcrToken] | None = None,
        segments: np.ndarray | None = None,
        targets: Sequence[int | str] = (),
        true_label: int | str | None = None,
        sample_id: str | None = None,
    ) -> SampleExplanations:
        """Explain one sample for its predicted class, its true class when misclassified and every
        class in ``targets``, as ``MultimodalLime.explain`` does (same arguments); ``classifier``
        ``None`` means the one it was fitted for (or loaded with)."""
        import torch

        t0 = time.perf_counter()
        self._fitted()
        classifier = classifier if classifier is not None else self.classifier_
        if classifier is None:
            raise ValueError("pass the classifier (a loaded explainer holds none unless load(path, classifier) got one)")
        self.check_classifier(classifier)
        photo = self._photo(classifier, self.featurizer_, sample, image=image, tokens=tokens, segments=segments,
                            sample_id=sample_id)
        if true_label is None and sample is not None:
            true_label = sample.label
        x = photo.x
        ev = CachedEvaluator(classifier, x, batch_size=self.batch_size)
        probs0 = ev(np.ones((1, x.n_features), bool))[0].astype(np.float64)
        self.net_.eval()
        with torch.no_grad():
            f = photo.features
            w = self.net_(torch.as_tensor(f.superpixels[None], dtype=torch.float32),
                          torch.as_tensor(f.words[None], dtype=torch.float32),
                          torch.as_tensor(f.context[None], dtype=torch.float32),
                          torch.as_tensor(probs0[None], dtype=torch.float32))[0].numpy().astype(np.float64)
        intercepts = probs0 - w.sum(0)  # the surrogate passes through the model's output on the unperturbed photo
        n_refine = int(self.refine)
        if n_refine:
            w, intercepts = self._refine(ev, x, photo.sample_id, w, n_refine)
        predicted = int(np.argmax(probs0))
        roles = {predicted: "predicted"}
        true_idx = None
        if true_label is not None:
            true_idx = target_index(self.classes_, true_label, "true_label")
            roles.setdefault(true_idx, "true")
        for t in targets:
            roles.setdefault(target_index(self.classes_, t, "targets"), "requested")
        stats = {**ev.stats(), "n_model_calls": 1 + n_refine}
        config = {"explainer": "amortised", "segmenter": repr(self._segmenter()), "fill": self.get_params()["fill"],
                  "features": self.featurizer_.name, "kernel": repr(ExponentialKernel(self.kernel_width)),
                  "work_size": [int(v) for v in x.size], "fit": {k: self.fit_report_[k] for k in ("photos", "n_masks", "held_out_r2")},
                  "refine": n_refine, "refine_strength": self._strength() if n_refine else None,
                  "quality": False, **stats}
        if x.image.shape[:2] != photo.photo_size:
            config["photo_size"] = list(photo.photo_size)
        score = self.fit_report_.get("held_out_r2")
        exps = tuple(
            Explanation(
                sample_id=photo.sample_id, target=t, target_name=self.classes_[t], weights=w[:, t].copy(),
                intercept=float(intercepts[t]), score=float(score if score is not None else np.nan),
                prediction=float(probs0[t]), segments=x.segments, tokens=x.tokens, n_superpixels=x.n_superpixels,
                seed=int(self.seed), n_samples=1 + n_refine, config={**config, "role": role},
                surrogate_prediction=float(intercepts[t] + w[:, t].sum()),
            )
            for t, role in roles.items()
        )
        return SampleExplanations(sample_id=photo.sample_id, explanations=exps, predicted=predicted, true=true_idx,
                                  probabilities=probs0.copy(), n_samples=1 + n_refine, stopped_early=False,
                                  seconds=time.perf_counter() - t0, stats=stats)

    def _strength(self) -> float:
        return float(self.refine_strength if self.refine_strength is not None else self.refine_strength_)

    def _refine(self, ev: CachedEvaluator, x: MultimodalInput, sample_id: str, w: np.ndarray,
                n_refine: int) -> tuple[np.ndarray, np.ndarray]:
        """LIME's fit on ``n_refine`` real rows (plus the unperturbed one) with ``w`` as the prior."""
        from prodlens.explain.amortised.refine import refine_weights

        rows = _random_rows(x, n_refine, _photo_seed(self.seed + 1, sample_id))  # other masks than the fit's
        outputs = ev(rows).astype(np.float64)
        return refine_weights(w, rows, outputs, ExponentialKernel(self.kernel_width)(rows), self._strength())

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path, checkpoint: str | Path | None = None) -> Path:
        """Write the fitted explainer to ``path`` (atomically); ``checkpoint`` records which model file it belongs to."""
        import torch

        self._fitted()
        path = Path(path)
        doc = {"format": FORMAT, "version": VERSION, "params": self.get_params(), "classes": self.classes_,
               "fingerprint": self.fingerprint_, "fit_report": self.fit_report_,
               "probe_photos": [(np.asarray(im), [(t.text, list(t.box)) for t in toks]) for im, toks in self.probe_photos_],
               "checkpoint": str(checkpoint) if checkpoint is not None else None, "state": self.net_.state_dict()}
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb", encoding=None) as f:
            torch.save(doc, f)
        return path

    @classmethod
    def load(cls, path: str | Path, classifier: Classifier | None = None) -> AmortisedExplainer:
        """Read a saved explainer; with ``classifier``, check it is the one it was fitted for (and bind it)."""
        import torch

        from prodlens.explain.amortised.net import WeightNet

        path = Path(path)
        if not path.is_file():
            raise BadInputError(path, "no amortised explainer here",
                                "fit one first: `prodlens explain CHECKPOINT DATASET --amortised PATH --fit`")
        try:
            doc = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same problem to the user
            raise BadInputError(path, f"not a readable amortised explainer ({type(e).__name__}: {e})",
                                "fit it again with AmortisedExplainer().fit(...).save(path)") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BadInputError(path, "not an amortised explainer file", "give the .amortised.pt file AmortisedExplainer.save wrote")
        if doc.get("version") != VERSION:
            raise BadInputError(path, f"amortised explainer format version {doc.get('version')}, this prodlens reads {VERSION}",
                                "fit it again with this version")
        params = dict(doc["params"])
        if isinstance(params.get("fill"), list):
            params["fill"] = tuple(params["fill"])
        self = cls(**params)
        self.featurizer_ = make_featurizer(params["features"])
        self.classes_ = list(doc["classes"])
        self.fingerprint_ = doc["fingerprint"]
        self.probe_photos_ = [(np.asarray(im), tuple(OcrToken(t, tuple(b)) for t, b in toks)) for im, toks in doc["probe_photos"]]
        self.fit_report_ = doc["fit_report"]
        self.refine_strength_ = float(self.fit_report_.get("refine_strength") or DEFAULT_REFINE_STRENGTH)
        self.checkpoint_ = doc.get("checkpoint")
        net = WeightNet(len(self.classes_), self.featurizer_.superpixel_dim, self.featurizer_.word_dim,
                        self.featurizer_.context_dim, hidden=int(params["hidden"]))
        net.load_state_dict(doc["state"])
        self.net_ = net.eval()
        self._verified = set()
        self.classifier_ = None
        if classifier is not None:
            self.check_classifier(classifier)
            self.classifier_ = classifier
        return self

    def __repr__(self) -> str:
        return f"AmortisedExplainer(n_masks={self.n_masks}, features={self.get_params()['features']!r})"


def _photo_seed(seed: int, sample_id: str) -> int:
    """The masks' seed for one photo: from the run's seed and the photo's id, so a photo gets the
    same masks whatever else is fitted with it (and its cached outputs serve any later fit)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{sample_id}".encode(), digest_size=8).digest(), "little")


def _random_rows(x: MultimodalInput, n: int, seed: int) -> np.ndarray:
    """Row 0 the unperturbed photo, then ``n`` Bernoulli(0.5) rows, the superpixel and word columns
    from their own streams of ``seed``: a photo's image masks are the same whether or not it has
    words (an image-only and a fused model then perturb it alike, so an encoder cache serves both)."""
    img = BernoulliSampler().sample(n, x.n_superpixels, np.random.default_rng([seed, 0]))
    txt = BernoulliSampler().sample(n, x.n_tokens, np.random.default_rng([seed, 1]))
    return np.vstack([np.ones((1, x.n_features), bool), np.hstack([img, txt]).astype(bool)])


def _image_key(image: np.ndarray, segments: np.ndarray, tokens: Sequence[OcrToken]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in (np.ascontiguousarray(image), np.ascontiguousarray(segments, dtype=np.int32)):
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(json.dumps([(t.text, [round(float(v), 3) for v in t.box]) for t in tokens]).encode())
    return h.hexdigest()


def _batch(items: list) -> dict:
    """Pad a few photos' features, masks, outputs and kernel weights into tensors."""
    import torch

    B = len(items)
    S = max(p.x.n_superpixels for p, *_ in items)
    T = max(p.x.n_tokens for p, *_ in items)
    K = max(len(r) for _, r, _, _ in items)
    C = items[0][2].shape[1]
    f0 = items[0][0].features
    sp = np.zeros((B, S, f0.superpixels.shape[1]), np.float32)
    wd = np.zeros((B, T, f0.words.shape[1]), np.float32)
    cx = np.stack([p.features.context for p, *_ in items]).astype(np.float32)
    z = np.zeros((B, K, S + T), np.float32)
    y = np.zeros((B, K, C), np.float32)
    pi = np.zeros((B, K), np.float32)
    fmask = np.zeros((B, S + T), np.float32)
    p0 = np.zeros((B, C), np.float32)
    for b, (p, rows, probs, kern) in enumerate(items):
        s, t, k = p.x.n_superpixels, p.x.n_tokens, len(rows)
        sp[b, :s] = p.features.superpixels
        if t:
            wd[b, :t] = p.features.words
        z[b, :k, :s] = rows[:, :s]
        z[b, :k, S:S + t] = rows[:, s:]
        y[b, :k] = probs
        pi[b, :k] = kern
        fmask[b, :s] = 1
        fmask[b, S:S + t] = 1
        p0[b] = probs[0]
    return {k: torch.from_numpy(v) for k, v in
            {"sp": sp, "wd": wd, "cx": cx, "z": z, "y": y, "pi": pi, "fmask": fmask, "p0": p0}.items()}


def _loss(net, b: dict):  # noqa: ANN001, ANN202
    from prodlens.explain.amortised.net import lime_loss

    w = net(b["sp"], b["wd"], b["cx"], b["p0"])
    return lime_loss(w, b["z"], b["y"], b["pi"], b["fmask"])


def _choose_refine_strength(net, items: list, n_refine: int, n_masks: int) -> dict | None:  # noqa: ANN001
    """``refine.choose_strength`` on ``items`` (the held-out fitting photos): the network's weights
    as the prior, the first ``n_refine`` (at most half) perturbed rows refine, the rest score."""
    import torch

    from prodlens.explain.amortised.refine import choose_strength

    k = min(n_refine or 16, (n_masks - 1) // 2)
    if k < 1 or not items:
        return None
    photos = []
    with torch.no_grad():
        for j in range(0, len(items), 16):
            chunk = items[j:j + 16]
            b = _batch(chunk)
            w = net(b["sp"], b["wd"], b["cx"], b["p0"]).numpy().astype(np.float64)
            S = b["sp"].shape[1]
            for i, (p, rows, probs, kern) in enumerate(chunk):
                s, t = p.x.n_superpixels, p.x.n_tokens
                prior = np.vstack([w[i, :s], w[i, S:S + t]])
                photos.append((prior, rows, probs.astype(np.float64), kern, [int(np.argmax(probs[0]))]))
    return choose_strength(photos, k)


def _r2(net, batches: list[dict]) -> float:  # noqa: ANN001
    import torch

    was_training = net.training
    net.eval()
    loss = base = 0.0
    with torch.no_grad():
        for b in batches:
            lo, ba = _loss(net, b)
            loss += float(lo.sum())
            base += float(ba.sum())
    net.train(was_training)
    return 1 - loss / max(base, 1e-12)
