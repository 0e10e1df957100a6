"""Multimodal LIME: superpixels and OCR tokens explained together.

:class:`MultimodalLime` composes swappable parts, in the manner of captum's
``LimeBase``:

* a **segmenter** (SLIC by default) that cuts the photo into 0-based superpixels,
* a **sampler** that draws on/off rows over superpixels + tokens (one index space),
* the **mask-to-input** step (:class:`~prodlens.explain.interpretable.MultimodalInput`)
  that paints off superpixels with a fill and drops off tokens,
* a **kernel** that weights each row by its cosine distance to the original,
* a **surrogate** (weighted ridge) fitted to the model's probabilities,
* a **stopping rule** that decides how many rows are enough.

Speed on CPU comes from fewer encoder passes, not from cutting corners: rows are drawn
in chunks and the surrogate is refitted after each; the run stops as soon as the top-k
features are stable (:class:`~prodlens.explain.stopping.EarlyStopping`); repeated rows
are sent to the model once, and fused models that expose ``encode_images`` /
``encode_texts`` / ``predict_from_features`` encode each distinct image mask and each
distinct token subset once (:class:`~prodlens.explain.evaluation.CachedEvaluator`).
For such fused models and samples with OCR words the default goes further
(:class:`~prodlens.explain.factorised.FactorisedSampler`): 512 image masks crossed
with up to 64 text masks, each encoded once, ``n * m`` surrogate rows for ``n + m``
encoder passes. ``early_stop=False`` gives plain LIME with exactly ``max_samples`` rows.
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from prodlens._validation import check_int, did_you_mean
from prodlens.data.images import load_image
from prodlens.data.types import ClassList, OcrToken, ProductSample
from prodlens.explain.evaluation import CachedEvaluator, has_feature_path
from prodlens.explain.factorised import FactorGrid, FactorisedSampler, GridSampler, full_rank_masks
from prodlens.explain.explanation import Explanation
from prodlens.explain.interpretable import Fill, MultimodalInput, _check_fill, shrink_photo, work_size
from prodlens.explain.kernels import ExponentialKernel, Kernel
from prodlens.explain.quality import QualityCheck
from prodlens.explain.result import SampleExplanations
from prodlens.explain.sampling import BernoulliSampler, OrthogonalSampler, PairedSampler, Sampler
from prodlens.explain.segmentation import Segmenter, SlicSegmenter, make_segmenter, relabel_contiguous
from prodlens.explain.stopping import EarlyStopping
from prodlens.explain.surrogate import RidgeSurrogate, Surrogate
from prodlens.models.base import Classifier, input_side

log = logging.getLogger(__name__)

#: ``resolution="auto"`` shrinks photos to this many times the model's input size, at most.
AUTO_FACTOR = 2

#: Photos above this many pixels are segmented, masked and filled on a copy shrunk to it
#: (``max_pixels``): a 24 MP phone photo costs what a 2 MP one does, and the model sees 256 px.
MAX_PIXELS = 2_000_000

#: ``sampler="auto"`` with the default early stopping, for a fused model exposing per-modality
#: encoders and a sample with OCR words: ``FactorisedSampler(n_image=min(512, max_samples), n_text=64)``.
#: Measured on 5 GroceryStore photos x 2 fusion heads (bench/factorised_sampling.py): agreement
#: with joint-2000 at the noise floor's level (top-10 overlap 9.0-9.2 vs 9.0, Spearman 0.910-0.911
#: vs 0.903-0.906) from 5.1x fewer encoder passes; 256 image masks fell short (8.4, 0.877).
AUTO_FACTORISED_IMAGES = 512
AUTO_FACTORISED_TEXTS = 64

#: Named samplers; ``"auto"`` is ``"orthogonal"`` with early stopping (``"factorised"`` for fused
#: models and samples with OCR words, see ``AUTO_FACTORISED_IMAGES``), ``"bernoulli"`` without.
SAMPLERS: dict[str, Callable[[], Sampler | GridSampler]] = {
    "bernoulli": BernoulliSampler,
    "paired": PairedSampler,
    "orthogonal": OrthogonalSampler,
    "factorised": FactorisedSampler,
}


def resolution_work_size(resolution: str | int | None, classifier: object, shape: tuple[int, ...]) -> tuple[int, int]:
    """Where perturbed images are built for an explainer's ``resolution`` setting: ``None`` the
    photo's own size, ``"model"`` the classifier's input side, ``"auto"`` ``AUTO_FACTOR`` times
    that (the photo's size for a classifier that declares none), an int that side."""
    if resolution is None:
        return work_size(shape, None)
    if resolution in ("auto", "model"):
        side = input_side(classifier)
        if side is None:
            return work_size(shape, None)
        return work_size(shape, side if resolution == "model" else AUTO_FACTOR * side)
    return work_size(shape, int(resolution))


def target_index(classes: Sequence[str], target: int | str, what: str) -> int:
    """The index of ``target`` (a class index or name) in ``classes``; ``what`` names the argument in errors."""
    if isinstance(target, (int, np.integer)):
        if not 0 <= int(target) < len(classes):
            raise ValueError(f"{what} must be a class index in 0..{len(classes) - 1} or a class name, got {target}")
        return int(target)
    return ClassList.from_names(classes).index(str(target))


def _same(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - arrays and odd objects: not a default
        return False


def _describe(part: object) -> str:
    return repr(part) if not callable(part) or hasattr(part, "__dataclass_fields__") else getattr(part, "__name__", repr(part))


class MultimodalLime:
    """LIME over superpixels and OCR tokens in one feature space.

    ``__init__`` only stores settings; :meth:`explain` does the work and returns a
    :class:`~prodlens.explain.result.SampleExplanations` with one
    :class:`~prodlens.explain.explanation.Explanation` per target class.

    Parameters
    ----------
    max_samples:
        Most perturbation rows per sample, the unperturbed row included (lime: 1000,
        the paper: 2000). With early stopping it is the cap; for the factorised
        default (see ``sampler``) it caps the image masks instead.
    segmenter:
        ``"slic"`` (default, ``n_segments`` superpixels), ``"grid"``, a
        :class:`~prodlens.explain.segmentation.Segmenter` or any ``image -> labels``
        callable (labels are made 0-based and contiguous).
    fill:
        What shows through an off superpixel: ``"mean"`` (its mean colour, default),
        ``"black"``, ``"blur"`` or an ``(R, G, B)`` tuple.
    sampler:
        How on/off rows are drawn. ``"auto"`` (default): with the default
        ``early_stop=True``, for a fused model exposing ``encode_images`` /
        ``encode_texts`` / ``predict_from_features`` (prodlens' ``ProductClassifier``)
        and a sample with OCR words, ``FactorisedSampler(n_image=min(512, max_samples),
        n_text=64)`` (fixed budget, no early stopping; measured in ``docs/explain.md``);
        otherwise ``"orthogonal"`` (:class:`~prodlens.explain.sampling.OrthogonalSampler`,
        fold-over orthogonal blocks) with early stopping, and ``"bernoulli"`` (lime's
        independent Bernoulli(0.5) rows) without; or ``"paired"``, ``"factorised"`` or
        any :class:`~prodlens.explain.sampling.Sampler`.
        Every sampler draws each row from the same Bernoulli(0.5) distribution, so all
        estimate the same LIME weights; the structured ones with less noise per model call.
        ``"factorised"`` or a :class:`~prodlens.explain.factorised.FactorisedSampler`
        crosses ``n_image`` image masks with ``n_text`` text masks (at most ``2**T``):
        ``n_image * n_text`` rows for ``n_image + n_text`` encoder passes, for fused models
        exposing ``encode_images`` / ``encode_texts`` / ``predict_from_features``; its grid
        is a fixed budget (``max_samples`` and early stopping do not apply).
    kernel, surrogate:
        Defaults are lime's: exponential kernel of width ``kernel_width`` on the cosine
        distance to the all-on row, weighted ridge with ``alpha`` (closed form).
    early_stop:
        ``True`` (default) uses :class:`~prodlens.explain.stopping.EarlyStopping` with
        its defaults (refit every 128 rows, stop when the top-10 features hold, up to
        one swap, over two refits), or pass one. ``False`` is plain LIME: exactly
        ``max_samples`` independent Bernoulli rows (with ``sampler="auto"``), one fit.
    batch_size:
        Rows per ``predict_proba`` call.
    resolution:
        Where perturbed images are built. ``"auto"`` (default): at the photo's size,
        but large photos are first shrunk to a shorter side of twice the model's input
        size (when the classifier tells it: ``input_size`` or
        ``preprocess.input_size``), which keeps the model's own resize smoothing the
        superpixel edges as it does for lime. ``"model"`` builds them at the input size
        itself — cheapest, but hard superpixel edges there change a CNN's outputs
        (measured: correlation 0.89 with lime-style images on the benchmark photo), so
        it is not the default. ``None``: always the photo's size; an int: that shorter side.
    max_pixels:
        A photo with more pixels (default :data:`MAX_PIXELS`, 2 MP; GroceryStore photos
        have 0.12) is shrunk to about that many before it is segmented, so segmentation,
        masks and fills cost what a 2 MP photo's do. The explanation's ``segments`` and
        token boxes are then at the shrunk size (``config["photo_size"]`` keeps the
        photo's own); renderers fit them to the photo (``Explanation.fitted_to``).
        ``None``: never shrink. Not applied when ``segments`` are given to :meth:`explain`.
    cache:
        Send each distinct row to the model only once.
    quality:
        ``True`` (default) scores every explanation with
        :class:`~prodlens.explain.quality.QualityCheck` (deletion / insertion curves
        against a random order, bootstrap stability, surrogate fit; about 28 more model
        rows per sample) and flags the ones not to trust; pass a ``QualityCheck`` to set
        its thresholds, ``False`` to skip it.
    seed:
        The one seed of the run (a ``numpy.random.Generator``): same seed, same weights.
    n_samples:
        Deprecated: the old name of ``max_samples`` (a ``FutureWarning``).

    Example
    -------
    >>> import numpy as np
    >>> from prodlens.data.types import OcrToken
    >>> class Toy:  # class 1 likes the left half of the photo and the word MILK
    ...     classes = ["other", "milk"]
    ...     def predict_proba(self, images, token_lists):
    ...         z = np.array([im[:, :4].mean() / 255 + 2 * any(t.text == "MILK" for t in ts)
    ...                       for im, ts in zip(images, token_lists)])
    ...         p = 1 / (1 + np.exp(-(z - 1)))
    ...         return np.stack([1 - p, p], 1)
    >>> img = np.full((8, 8, 3), 255, np.uint8)
    >>> toks = (OcrToken("MILK", (0, 0, 4, 2)), OcrToken("FAT", (4, 0, 8, 2)))
    >>> lime = MultimodalLime(max_samples=300, segmenter="grid", segmenter_params={"rows": 2, "cols": 2},
    ...                       fill="black", early_stop=False, seed=0)
    >>> res = lime.explain(Toy(), image=img, tokens=toks)
    >>> e = res.predicted_explanation
    >>> e.target_name, e.feature_name(e.top_features(1)[0])
    ('milk', "token 'MILK'")
    """

    def __init__(
        self,
        max_samples: int = 2000,
        *,
        segmenter: str | Segmenter | Callable[[np.ndarray], np.ndarray] = "slic",
        n_segments: int = 100,
        segmenter_params: dict | None = None,
        fill: Fill = "mean",
        sampler: Sampler | str = "auto",
        kernel: Kernel | None = None,
        kernel_width: float = 0.25,
        surrogate: Surrogate | None = None,
        alpha: float = 1.0,
        early_stop: bool | EarlyStopping = True,
        batch_size: int = 8,
        resolution: str | int | None = "auto",
        max_pixels: int | None = MAX_PIXELS,
        cache: bool = True,
        quality: bool | QualityCheck = True,
        seed: int = 0,
        progress: bool | None = None,
        n_samples: int | None = None,
    ) -> None:
        if n_samples is not None:  # the old name of the cap (prodlens <= 0.x); n_samples now means rows used
            warnings.warn("MultimodalLime(n_samples=) is now max_samples= (the cap; Explanation.n_samples is the "
                          "number of rows used)", FutureWarning, stacklevel=2)
            max_samples = n_samples
        #: deprecated alias of ``max_samples``, always ``None`` once constructed
        self.n_samples = None
        self.max_samples = max_samples
        self.segmenter = segmenter
        self.n_segments = n_segments
        self.segmenter_params = segmenter_params
        self.fill = fill
        self.sampler = sampler
        self.kernel = kernel
        self.kernel_width = kernel_width
        self.surrogate = surrogate
        self.alpha = alpha
        self.early_stop = early_stop
        self.batch_size = batch_size
        self.resolution = resolution
        self.max_pixels = max_pixels
        self.cache = cache
        self.quality = quality
        self.seed = seed
        self.progress = progress

    # -- parameters -------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """The settings given to ``__init__`` (what a copy needs; what travels to workers).

        >>> MultimodalLime(max_samples=64).get_params()["max_samples"]
        64
        """
        return {name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters if name != "self"}

    def with_params(self, **params: Any) -> MultimodalLime:
        """A copy with some settings changed (``__init__`` only stores them).

        >>> MultimodalLime(seed=1).with_params(seed=2).seed
        2
        """
        unknown = sorted(set(params) - set(self.get_params()))
        if unknown:
            raise TypeError(f"MultimodalLime has no setting {unknown[0]!r}{did_you_mean(unknown[0], self.get_params())}")
        return type(self)(**{**self.get_params(), **params})

    def validate(self) -> MultimodalLime:
        """Check every setting now rather than at the first :meth:`explain`; returns ``self``.

        >>> MultimodalLime(max_samples=1).validate()
        Traceback (most recent call last):
        ...
        ValueError: max_samples must be an int >= 2 (the original plus perturbations), got 1
        """
        self._parts()
        self._quality_check()
        _check_fill(self.fill)
        return self

    def __repr__(self) -> str:
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items() if n != "self"}
        changed = {k: v for k, v in self.get_params().items() if not _same(v, defaults.get(k))}
        return f"MultimodalLime({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- validation and defaults ----------------------------------------------------
    def _parts(self) -> tuple[Segmenter, Sampler | GridSampler, Kernel, Surrogate, EarlyStopping | None]:
        check_int("max_samples", self.max_samples, 2, why="the original plus perturbations")
        check_int("batch_size", self.batch_size, 1)
        if not (self.resolution is None or self.resolution in ("auto", "model")
                or (isinstance(self.resolution, int) and self.resolution > 0)):
            raise ValueError(f"resolution must be 'auto', 'model', None or a positive int, got {self.resolution!r}")
        if self.segmenter == "slic":
            params = {"n_segments": self.n_segments, **(self.segmenter_params or {})}
            seg: Segmenter = SlicSegmenter(**params)
        else:
            seg = make_segmenter(self.segmenter, **(self.segmenter_params or {}))
        kernel = self.kernel or ExponentialKernel(self.kernel_width)
        surrogate = self.surrogate or RidgeSurrogate(self.alpha)
        if self.early_stop is True:
            stop: EarlyStopping | None = EarlyStopping()
        elif self.early_stop is False or self.early_stop is None:
            stop = None
        elif isinstance(self.early_stop, EarlyStopping):
            stop = self.early_stop
        else:
            raise ValueError(f"early_stop must be True, False or an EarlyStopping, got {self.early_stop!r}")
        sampler = self._sampler(stop)
        return seg, sampler, kernel, surrogate, stop

    def _quality_check(self) -> QualityCheck | None:
        if self.quality is True:
            return QualityCheck()
        if self.quality is False or self.quality is None:
            return None
        if isinstance(self.quality, QualityCheck):
            return self.quality
        raise ValueError(f"quality must be True, False or a QualityCheck, got {self.quality!r}")

    def _sampler(self, stop: EarlyStopping | None) -> Sampler | GridSampler:
        spec = self.sampler
        if spec == "auto":
            spec = "orthogonal" if stop is not None else "bernoulli"
        if isinstance(spec, str):
            if spec not in SAMPLERS:
                raise ValueError(f"sampler must be 'auto', one of {tuple(SAMPLERS)} or a Sampler, got {spec!r}")
            return SAMPLERS[spec]()
        if not (callable(getattr(spec, "sample", None)) or callable(getattr(spec, "grid", None))):
            raise ValueError(f"sampler must be 'auto', one of {tuple(SAMPLERS)}, a Sampler or a GridSampler, got {spec!r}")
        return spec

    def _auto_factorised(self, sampler: Sampler | GridSampler, classifier: object, n_tokens: int) -> Sampler | GridSampler:
        """``sampler="auto"`` + default early stopping -> factorised for a fused model with OCR words."""
        if self.sampler == "auto" and self.early_stop is True and n_tokens > 0 and has_feature_path(classifier):
            return FactorisedSampler(n_image=min(AUTO_FACTORISED_IMAGES, int(self.max_samples)), n_text=AUTO_FACTORISED_TEXTS)
        return sampler

    @staticmethod
    def _rows(sampler: Sampler | GridSampler, classifier: object, x: MultimodalInput, max_samples: int,
              rng: np.random.Generator) -> tuple[np.ndarray, FactorGrid | None, bool, dict]:
        """The run's on/off rows (row 0 the unperturbed input), the grid of a factorised run,
        whether the rows are a fixed budget (a grid or its joint fallback: no early stop),
        and what the design was (``config["design"]``)."""
        design: dict[str, Any] = {}
        if isinstance(sampler, GridSampler):
            if not isinstance(sampler, FactorisedSampler) or sampler.check(classifier):
                grid = sampler.grid(x.n_superpixels, x.n_tokens, rng)
                if grid.full_rank or not isinstance(sampler, FactorisedSampler):
                    return grid.rows(), grid, True, dict(grid.design)
                # a modality's masks could not reach full rank within max_image / max_text
                n_joint = max(grid.n_image + grid.n_text, 2 * (x.n_features + 1))
                log.warning("%d image x %d text masks do not identify %d + %d weights: %d joint rows instead",
                            grid.n_image, grid.n_text, x.n_superpixels, x.n_tokens, n_joint)
                design = {**grid.design, "fallback": "joint: the factorised grid was rank-deficient"}
                masks, _ = full_rank_masks(n_joint, x.n_features, sampler.joint_sampler, rng)
                return masks, None, True, design
            log.info("%s has no per-modality encoders: %d joint rows instead of a factorised grid",
                     type(classifier).__name__, sampler.encoder_budget)
            design = {"fallback": "joint: the classifier has no per-modality encoders"}
            sampler, max_samples, fixed = sampler.joint_sampler, sampler.encoder_budget, True
        else:
            fixed = False
        # the sampler's rows follow row 0, so chunks of an even size keep a paired sampler's pairs whole
        rows = np.vstack([np.ones((1, x.n_features), bool), sampler.sample(max_samples - 1, x.n_features, rng).astype(bool)])
        return rows, None, fixed, design

    # -- the run ------------------------------------------------------------------
    def explain(
        self,
        classifier: Classifier,
        sample: ProductSample | None = None,
        *,
        image: np.ndarray | None = None,
        tokens: Sequence[OcrToken] | None = None,
        segments: np.ndarray | None = None,
        targets: Sequence[int | str] = (),
        true_label: int | str | None = None,
        sample_id: str | None = None,
    ) -> SampleExplanations:
        """Explain one sample for its predicted class, its true class when misclassified,
        and every class in ``targets`` — all from one set of perturbations.

        Give a :class:`~prodlens.data.types.ProductSample` (its photo is loaded, its OCR
        tokens and label used) or an ``image`` with ``tokens``; ``image``/``tokens``/
        ``true_label`` override the sample's. ``segments`` skips segmentation (labels
        are made 0-based and contiguous).
        """
        t0 = time.perf_counter()
        seg_fn, sampler, kernel, surrogate, stop = self._parts()
        check = self._quality_check()
        image, tokens, true_label, sid = self._resolve_inputs(sample, image, tokens, true_label, sample_id)
        classes = list(classifier.classes)
        true_idx = None if true_label is None else target_index(classes, true_label, "true_label")
        requested = [target_index(classes, t, "targets") for t in targets]
        photo_size = image.shape[:2]
        x = self._interpretable_input(classifier, image, tokens, segments, seg_fn, sid)

        rng = np.random.default_rng(self.seed)
        sampler = self._auto_factorised(sampler, classifier, x.n_tokens)
        rows, grid, fixed, design = self._rows(sampler, classifier, x, int(self.max_samples), rng)
        if fixed:
            stop = None
        weights = kernel(rows)
        bar = tqdm(total=len(rows), desc=f"explain {sid}", unit="row", disable=None if self.progress is None else not self.progress, leave=False)
        ev = CachedEvaluator(classifier, x, batch_size=self.batch_size, cache=self.cache, progress=bar.update)
        try:
            run = _sample_and_fit(ev, rows, weights, surrogate, stop, x.n_features, _Targets.of(true_idx, requested))
        finally:
            bar.close()
        stats = ev.stats()
        identified = self._identified(run, design, x.n_features, sid)
        qualities: list = [None] * len(run.targets)
        if check is not None:
            ev.progress = None
            t_quality = time.perf_counter()
            qualities = check.assess(
                ev, surrogate, rows[:run.n_done], run.y, weights[:run.n_done], run.fit.coef, run.fit.score,
                run.fit.local_prediction, run.probs0[run.targets], run.targets, rng, grid=grid, identified=identified)
            stats["quality_seconds"] = round(time.perf_counter() - t_quality, 4)
        seconds = time.perf_counter() - t0
        if run.stopped_early:
            log.info("%s: top-%d stable after %d of %d rows", sid, stop.top_k, run.n_done, self.max_samples)  # type: ignore[union-attr]

        config: dict[str, Any] = {
            "segmenter": _describe(seg_fn),
            "fill": list(self.fill) if isinstance(self.fill, tuple) else self.fill,
            "sampler": _describe(sampler),
            "kernel": _describe(kernel),
            "surrogate": _describe(surrogate),
            "early_stop": _describe(stop) if stop is not None else False,
            "max_samples": len(rows),
            "stopped_early": run.stopped_early,
            "batch_size": self.batch_size,
            "work_size": [int(x.size[0]), int(x.size[1])],
            "design": design,
            "quality": _describe(check) if check is not None else False,
            **stats,
        }
        if grid is not None:
            config["factorised"] = {"n_image": grid.n_image, "n_text": grid.n_text}
        if x.image.shape[:2] != photo_size:
            config["photo_size"] = [int(photo_size[0]), int(photo_size[1])]
        log.info("%s explained in %.2fs: %d rows, %d model rows, R^2 %s", sid, seconds, run.n_done,
                 stats["n_model_rows"], ", ".join(f"{s:.3f}" for s in run.fit.score))
        return SampleExplanations(
            sample_id=sid, explanations=self._explanations(sid, classes, x, run, config, qualities),
            predicted=run.predicted, true=true_idx, probabilities=run.probs0.copy(), n_samples=run.n_done,
            stopped_early=run.stopped_early, seconds=seconds, stats=stats,
        )

    # -- the run's steps ------------------------------------------------------------
    @staticmethod
    def _resolve_inputs(
        sample: ProductSample | None, image: np.ndarray | None, tokens: Sequence[OcrToken] | None,
        true_label: int | str | None, sample_id: str | None,
    ) -> tuple[np.ndarray, Sequence[OcrToken], int | str | None, str]:
        """The photo, its words, its true class and its id: the sample's unless given."""
        if sample is None and image is None:
            raise ValueError("give a ProductSample or an image (with tokens) to explain")
        if image is None:
            image = load_image(sample.image_path)  # type: ignore[union-attr]
        if tokens is None:
            tokens = sample.tokens if sample is not None else ()
        if true_label is None and sample is not None:
            true_label = sample.label
        return image, tokens, true_label, sample_id or (sample.id if sample is not None else "sample")

    def _interpretable_input(self, classifier: object, image: np.ndarray, tokens: Sequence[OcrToken],
                             segments: np.ndarray | None, seg_fn: Segmenter, sid: str) -> MultimodalInput:
        """Superpixels and words in one on/off space, built at the work resolution
        (a large photo shrunk first unless ``segments`` are given)."""
        if segments is None:
            image, tokens = shrink_photo(image, tokens, self.max_pixels)
        segments = seg_fn(image) if segments is None else relabel_contiguous(segments)
        size = resolution_work_size(self.resolution, classifier, image.shape)
        x = MultimodalInput(image, segments, tuple(tokens), fill=self.fill, size=size)
        log.info("explaining %s: %d superpixels + %d tokens, perturbed at %dx%d",
                 sid, x.n_superpixels, x.n_tokens, size[1], size[0])
        return x

    @staticmethod
    def _identified(run: _Run, design: dict[str, Any], n_features: int, sid: str) -> bool:
        """Whether the rows identify every weight (recorded in ``design``; a warning if not)."""
        identified = run.fit.identifies(n_features)
        if run.fit.rank is not None:
            design.update(rank=int(run.fit.rank), n_features=int(n_features), full_rank=identified)
            if not identified:
                log.warning("%s: %d rows identify only %d of %d weights (the rest come from the ridge penalty); "
                            "raise max_samples", sid, run.n_done, run.fit.rank, n_features)
        return identified

    def _explanations(self, sid: str, classes: Sequence[str], x: MultimodalInput, run: _Run,
                      config: dict[str, Any], qualities: Sequence[Any]) -> tuple[Explanation, ...]:
        """One :class:`Explanation` per explained target, all sharing the run's settings."""
        return tuple(
            Explanation(
                sample_id=sid,
                target=int(t),
                target_name=str(classes[t]),
                weights=run.fit.coef[j].copy(),
                intercept=float(run.fit.intercept[j]),
                score=float(run.fit.score[j]),
                prediction=float(run.probs0[t]),
                segments=x.segments,
                tokens=x.tokens,
                n_superpixels=x.n_superpixels,
                seed=int(self.seed),
                n_samples=run.n_done,
                config={**config, "role": run.roles[int(t)]},
                surrogate_prediction=float(run.fit.local_prediction[j]),
                quality=qualities[j],
            )
            for j, t in enumerate(run.targets)
        )



@dataclass(frozen=True)
class _Targets:
    """The classes asked for besides the predicted one: the true class and ``targets``."""

    true: int | None
    requested: tuple[int, ...]

    @classmethod
    def of(cls, true: int | None, requested: Sequence[int]) -> _Targets:
        return cls(true, tuple(requested))

    def order(self, predicted: int) -> tuple[np.ndarray, dict[int, str]]:
        """The explained classes (predicted first, then true, then requested; no repeats) and their roles."""
        roles = {predicted: "predicted"}
        if self.true is not None and self.true != predicted:
            roles[self.true] = "true"
        for t in self.requested:
            roles.setdefault(t, "requested")
        return np.array(list(roles)), roles


@dataclass(frozen=True)
class _Run:
    """What sampling and fitting found: the unperturbed probabilities, the explained classes
    with their roles, the model outputs of the rows used and the surrogate fitted to them."""

    probs0: np.ndarray
    targets: np.ndarray
    roles: dict[int, str]
    y: np.ndarray
    n_done: int
    fit: Any
    stopped_early: bool

    @property
    def predicted(self) -> int:
        return int(np.argmax(self.probs0))


def _sample_and_fit(ev: CachedEvaluator, rows: np.ndarray, weights: np.ndarray, surrogate: Surrogate,
                    stop: EarlyStopping | None, n_features: int, asked: _Targets) -> _Run:
    """Send the rows to the model in chunks, refitting the surrogate after each when
    early stopping is on, until it says stop or the rows run out; fit once at the end otherwise."""
    probs0 = ev(rows[:1])[0]
    tgt, roles = asked.order(int(np.argmax(probs0)))
    n_total = len(rows)
    ys = [probs0[None, tgt]]
    n_done = 1
    fit = None
    history: list[np.ndarray] = []
    chunk = stop.chunk_size if stop is not None else n_total
    while n_done < n_total and fit is None:
        end = min(n_done + chunk, n_total)
        ys.append(ev(rows[n_done:end])[:, tgt])
        n_done = end
        if stop is not None and n_done < n_total:
            refit = surrogate.fit(rows[:n_done], np.concatenate(ys), weights[:n_done])
            history.append(refit.coef)
            # never stop while some weights are set by the penalty rather than the data
            if refit.identifies(n_features) and stop.should_stop(history, n_done):
                fit = refit
    stopped_early = fit is not None
    y = np.concatenate(ys)
    if fit is None:
        fit = surrogate.fit(rows[:n_done], y, weights[:n_done])
    return _Run(probs0, tgt, roles, y, int(n_done), fit, stopped_early)


def explain_sample(classifier: Classifier, sample: ProductSample, **params: Any) -> SampleExplanations:
    """One-call convenience: ``MultimodalLime(**params).explain(classifier, sample)``.

    Keyword arguments of :meth:`MultimodalLime.explain` (``targets``, ``image``, ...)
    are passed there; everything else configures the explainer.
    """
    call_keys = {"image", "tokens", "segments", "targets", "true_label", "sample_id"}
    call = {k: params.pop(k) for k in list(params) if k in call_keys}
    return MultimodalLime(**params).explain(classifier, sample, **call)
