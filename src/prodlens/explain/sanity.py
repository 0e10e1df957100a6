"""The model-randomisation test of Adebayo et al. (2018): do the explanations depend on
what the model learned?

Each photo is explained for the **trained** model's predicted class three ways, with
the same explainer settings, the same segmentation and the same target class:

1. by the trained model (seed ``s``): the reference;
2. by each randomised copy (:func:`~prodlens.models.randomise.randomised_copy`: the head
   re-initialised, optionally the last image-backbone blocks too), seed ``s``;
3. by the trained model again with seed ``s + 1``: the **noise floor**, how similar two
   explanations of the *same* model are.

Each is compared with the reference by the Spearman rank correlation of the signed
weights, the Spearman correlation of ``|weights|`` and the share of the reference's
top-k features (by ``|weight|``) that stay in the top-k.

**Verdict** (per randomisation): ``"pass"`` when the median Spearman(``|w|``) over the
photos is below :data:`SIMILARITY_THRESHOLD` (0.5) *and* at least :data:`NOISE_MARGIN`
(0.2) below the noise floor's median; else ``"fail"``. The first condition asks that
the explanation mostly change; the second that the change be more than the explainer's
own sampling noise (a noisy explainer can look "changed" by a randomised model merely
because it also disagrees with itself). Spearman(``|w|``) is the measure Adebayo et al.
use for saliency maps: a re-initialised model may flip signs, which would let a signed
correlation look low for an explanation that still highlights the same regions.

>>> import numpy as np
>>> round(spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])), 3)
-1.0
>>> top_k_overlap(np.array([0.9, -0.8, 0.1, 0.0]), np.array([0.0, 0.7, 0.6, 0.1]), 2)
0.5
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata
from tqdm.auto import tqdm

from prodlens._validation import check_int
from prodlens.data.images import load_image
from prodlens.data.types import ProductSample
from prodlens.errors import BadInputError, ConfigError, record_skip
from prodlens.explain.explanation import Explanation
from prodlens.explain.lime import MultimodalLime
from prodlens.explain.stopping import top_k_sets
from prodlens.models.randomise import parse_randomisation, randomised_copy

log = logging.getLogger(__name__)

#: "pass" needs the median Spearman(|w|) between trained and randomised below this ...
SIMILARITY_THRESHOLD = 0.5
#: ... and at least this far below the noise floor (trained vs trained, another seed).
NOISE_MARGIN = 0.2
#: Bootstrap resamples of the photos for the 95% intervals of the means.
N_BOOTSTRAP = 2000
#: ``SanityResult.randomised`` of the noise-floor rows starts with this.
CONTROL = "control"

#: Column names of :meth:`SanityReport.summary_rows`.
SUMMARY_HEADERS = ["randomised", "photos", "Spearman", "Spearman |w|", "95% interval", "median |w|",
                   "top-k overlap", "noise floor |w|", "verdict"]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties get average ranks); 0.0 when either side is constant
    (an explanation that does not vary ranks nothing, so it agrees with nothing).

    >>> spearman(np.array([0.1, 0.5, 0.3]), np.array([1.0, 9.0, 2.0]))
    1.0
    >>> spearman(np.zeros(3), np.array([1.0, 2.0, 3.0]))
    0.0
    """
    ra, rb = rankdata(np.asarray(a, float)), rankdata(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def top_k_overlap(reference: np.ndarray, other: np.ndarray, k: int) -> float:
    """Share of ``reference``'s top-``k`` features (by ``|weight|``) also in ``other``'s top-``k``
    (``k`` is capped at the number of features).

    >>> top_k_overlap(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]), 1)
    0.0
    """
    a, b = top_k_sets(np.stack([reference, other]), k)
    return len(a & b) / len(a) if a else 0.0


@dataclass(frozen=True)
class SanityResult:
    """One photo x one randomisation (or the noise-floor control): both weight vectors and
    how alike they are. ``weights_trained`` is the reference explanation (trained model,
    the run's seed); ``weights_randomised`` the one compared with it.

    >>> r = SanityResult.compare(np.array([0.5, 0.1, -0.2]), np.array([0.0, 0.3, 0.2]), sample_id="s",
    ...                          target=1, target_name="milk", randomised="head", n_superpixels=2, top_k=1)
    >>> r.spearman_abs, r.top_k_overlap, r.control
    (-1.0, 0.0, False)
    """

    sample_id: str
    target: int  #: the trained model's predicted class, explained for both models
    target_name: str
    randomised: str  #: "head", "head+blocks1", ... or "control (seed N)"
    spearman: float
    spearman_abs: float
    top_k_overlap: float
    weights_trained: np.ndarray = field(repr=False)
    weights_randomised: np.ndarray = field(repr=False)
    n_superpixels: int = 0  #: features 0..S-1 are superpixels, the rest OCR words
    top_k: int = 10
    control: bool = False  #: the noise-floor row: the trained model with another seed

    @classmethod
    def compare(cls, trained: np.ndarray, other: np.ndarray, *, sample_id: str, target: int, target_name: str,
                randomised: str, n_superpixels: int, top_k: int, control: bool = False) -> SanityResult:
        """The metrics of ``other`` against the reference ``trained``."""
        w0, w1 = np.asarray(trained, np.float64), np.asarray(other, np.float64)
        if w0.shape != w1.shape or w0.ndim != 1:
            raise ValueError(f"{sample_id}: weight vectors of shapes {w0.shape} and {w1.shape} cannot be compared; "
                             "explain both models on the same segmentation and OCR words")
        return cls(sample_id, int(target), target_name, randomised, spearman(w0, w1),
                   spearman(np.abs(w0), np.abs(w1)), top_k_overlap(w0, w1, top_k), w0, w1,
                   int(n_superpixels), int(top_k), bool(control))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; :meth:`from_dict` reads it back exactly."""
        return {
            "sample_id": self.sample_id, "target": self.target, "target_name": self.target_name,
            "randomised": self.randomised, "spearman": self.spearman, "spearman_abs": self.spearman_abs,
            "top_k_overlap": self.top_k_overlap, "weights_trained": self.weights_trained.tolist(),
            "weights_randomised": self.weights_randomised.tolist(), "n_superpixels": self.n_superpixels,
            "top_k": self.top_k, "control": self.control,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SanityResult:
        return cls(
            str(d["sample_id"]), int(d["target"]), str(d["target_name"]), str(d["randomised"]), float(d["spearman"]),
            float(d["spearman_abs"]), float(d["top_k_overlap"]), np.asarray(d["weights_trained"], np.float64),
            np.asarray(d["weights_randomised"], np.float64), int(d.get("n_superpixels", 0)), int(d.get("top_k", 10)),
            bool(d.get("control", False)),
        )


@dataclass(frozen=True)
class MetricSummary:
    """Mean, median and the 95% bootstrap interval of the mean over the photos.

    >>> m = MetricSummary.of([0.2, 0.4, 0.9], np.random.default_rng(0))
    >>> round(m.mean, 3), m.median, m.low <= m.mean <= m.high
    (0.5, 0.4, True)
    """

    mean: float
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float], rng: np.random.Generator, n_bootstrap: int = N_BOOTSTRAP) -> MetricSummary:
        v = np.asarray(values, np.float64)
        if v.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan)
        means = v[rng.integers(0, v.size, (n_bootstrap, v.size))].mean(1)
        low, high = np.percentile(means, [2.5, 97.5])
        return cls(float(v.mean()), float(np.median(v)), float(low), float(high))


@dataclass(frozen=True)
class RandomisationSummary:
    """One randomisation (or the control) over all photos, with its verdict.

    ``verdict`` is ``"pass"``, ``"fail"`` or ``"control"`` (the noise-floor row);
    ``reason`` says why in one line.
    """

    randomised: str
    n: int
    spearman: MetricSummary
    spearman_abs: MetricSummary
    top_k_overlap: MetricSummary
    verdict: str
    reason: str

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


def _verdict(median_abs: float, floor: float, threshold: float, margin: float) -> tuple[str, str]:
    if math.isnan(median_abs):
        return "fail", "no photo was explained"
    if median_abs >= threshold:
        return "fail", (f"median Spearman |w| {median_abs:.2f} >= {threshold:g}: the explanations barely change "
                        "when the learned weights are re-initialised")
    if not median_abs <= floor - margin:
        return "fail", (f"median Spearman |w| {median_abs:.2f} is not {margin:g} below the noise floor {floor:.2f}: "
                        "the explainer disagrees with itself about as much; raise max_samples")
    return "pass", (f"median Spearman |w| {median_abs:.2f} < {threshold:g} and {floor - median_abs:.2f} below "
                    f"the noise floor {floor:.2f}: the explanations depend on the learned weights")


def _summary(name: str, rows: list[SanityResult], rng: np.random.Generator, floor: float | None,
             threshold: float, margin: float) -> RandomisationSummary:
    metrics = [MetricSummary.of([getattr(r, m) for r in rows], rng) for m in ("spearman", "spearman_abs", "top_k_overlap")]
    if floor is None:
        verdict, reason = "control", "the noise floor: the trained model explained with another seed"
    else:
        verdict, reason = _verdict(metrics[1].median, floor, threshold, margin)
    return RandomisationSummary(name, len(rows), *metrics, verdict, reason)


@dataclass(frozen=True)
class SanityReport:
    """The results of :func:`model_randomisation_test`: every comparison, a summary and a
    verdict per randomisation, the noise-floor control, and the photos skipped as bad input.

    Build one from results (also stored ones) with :meth:`from_results`.
    """

    results: tuple[SanityResult, ...]
    summaries: tuple[RandomisationSummary, ...]  #: one per randomisation, in the order asked for
    control: RandomisationSummary
    skipped: tuple[tuple[str, str], ...] = ()  #: (file, what was wrong), like OCR's skips
    config: dict = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def from_results(
        cls,
        results: Iterable[SanityResult],
        *,
        randomise: Sequence[str] | None = None,
        seed: int = 0,
        threshold: float = SIMILARITY_THRESHOLD,
        margin: float = NOISE_MARGIN,
        skipped: Iterable[Sequence[str]] = (),
        config: dict | None = None,
        seconds: float = 0.0,
    ) -> SanityReport:
        """Summaries and verdicts of ``results`` (bootstrap seeded by ``seed``: the same
        results give the same report). ``randomise`` orders the summaries (default: as
        they first appear).

        >>> w = np.array([0.5, 0.2, 0.1, 0.0])
        >>> rs = [SanityResult.compare(w, v, sample_id="s", target=0, target_name="a", randomised=n,
        ...                            n_superpixels=4, top_k=2, control=n.startswith("control"))
        ...       for n, v in [("control (seed 1)", w + 0.01), ("head", np.array([0.0, 0.1, 0.2, 0.5]))]]
        >>> rep = SanityReport.from_results(rs)
        >>> rep.verdict, rep.summary("head").spearman_abs.median, rep.control.spearman_abs.median
        ('pass', -1.0, 1.0)
        """
        results = tuple(results)
        names = list(dict.fromkeys(randomise if randomise is not None else
                                   (r.randomised for r in results if not r.control)))
        rng = np.random.default_rng(seed)
        ctrl_rows = [r for r in results if r.control]
        ctrl_name = ctrl_rows[0].randomised if ctrl_rows else CONTROL
        control = _summary(ctrl_name, ctrl_rows, rng, None, threshold, margin)
        floor = control.spearman_abs.median if ctrl_rows else math.inf
        summaries = tuple(_summary(n, [r for r in results if r.randomised == n and not r.control], rng, floor,
                                   threshold, margin) for n in names)
        cfg = {**(config or {}), "randomise": names, "seed": int(seed), "threshold": float(threshold),
               "margin": float(margin)}
        return cls(results, summaries, control, tuple((str(p), str(w)) for p, w in skipped), cfg, float(seconds))

    def summary(self, randomised: str) -> RandomisationSummary:
        """The summary of one randomisation (or of the control by its name)."""
        for s in (*self.summaries, self.control):
            if s.randomised == randomised:
                return s
        raise KeyError(f"no randomisation {randomised!r} in this report; it has "
                       f"{[s.randomised for s in self.summaries]}")

    @property
    def verdicts(self) -> dict[str, str]:
        """``{randomisation: "pass" | "fail"}``."""
        return {s.randomised: s.verdict for s in self.summaries}

    @property
    def passed(self) -> bool:
        """Every randomisation passed (and there was at least one)."""
        return bool(self.summaries) and all(s.passed for s in self.summaries)

    @property
    def verdict(self) -> str:
        """``"pass"`` when every randomisation passed, else ``"fail"``."""
        return "pass" if self.passed else "fail"

    @property
    def sample_ids(self) -> list[str]:
        """The photos compared, in order."""
        return list(dict.fromkeys(r.sample_id for r in self.results))

    def summary_rows(self) -> list[list]:
        """One row per randomisation, then the control, under :data:`SUMMARY_HEADERS`
        (means over the photos; the verdict uses the medians)."""
        floor = self.control.spearman_abs.median
        rows = []
        for s in (*self.summaries, self.control):
            a = s.spearman_abs
            rows.append([s.randomised, s.n, round(s.spearman.mean, 3), round(a.mean, 3),
                         f"{a.low:.2f} .. {a.high:.2f}", round(a.median, 3), round(s.top_k_overlap.mean, 3),
                         round(floor, 3), s.verdict])
        return rows

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: verdicts, summaries, skips, settings and every result."""
        def metric(m: MetricSummary) -> dict:
            return {"mean": m.mean, "median": m.median, "low": m.low, "high": m.high}

        def summ(s: RandomisationSummary) -> dict:
            return {"randomised": s.randomised, "n": s.n, "spearman": metric(s.spearman),
                    "spearman_abs": metric(s.spearman_abs), "top_k_overlap": metric(s.top_k_overlap),
                    "verdict": s.verdict, "reason": s.reason}

        return {
            "verdict": self.verdict, "summaries": [summ(s) for s in self.summaries], "control": summ(self.control),
            "skipped": [list(s) for s in self.skipped], "config": self.config, "seconds": self.seconds,
            "results": [r.to_dict() for r in self.results],
        }


def _describe(explainer: object) -> dict[str, Any]:
    """The explainer's settings, JSON-able (for the run's config)."""
    out: dict[str, Any] = {"class": type(explainer).__name__}
    for k, v in vars(explainer).items():
        out[k] = v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
    return out


def _with_seed(explainer: MultimodalLime, seed: int) -> MultimodalLime:
    return explainer.with_params(seed=int(seed))


def model_randomisation_test(
    classifier: Any,
    samples: Iterable[ProductSample],
    *,
    explainer: MultimodalLime | None = None,
    randomise: Sequence[str] = ("head",),
    seed: int = 0,
    top_k: int = 10,
    threshold: float = SIMILARITY_THRESHOLD,
    margin: float = NOISE_MARGIN,
    progress: bool | None = None,
) -> SanityReport:
    """Explain every sample with the trained ``classifier``, with each randomised copy of it
    and with the trained one again under another seed; compare and give verdicts.

    ``classifier`` is a prodlens :class:`~prodlens.models.classifier.ProductClassifier`;
    ``randomise`` names what is re-initialised (``"head"``, ``"head+blocks<N>"``; see
    :func:`~prodlens.models.randomise.randomised_copy`). ``explainer`` (default
    ``MultimodalLime(quality=False)``) gives the settings of every explanation; its seed
    is replaced by ``seed``, the one seed of the test: the reference and the randomised
    explanations use ``seed``, the noise-floor control ``seed + 1``, the re-initialisation
    ``seed`` too. Every explanation of a photo uses the reference's segmentation and the
    trained model's predicted class. A photo that cannot be read is skipped
    (``report.skipped`` names the file); the others still run.

    >>> from prodlens.models import load_classifier  # doctest: +SKIP
    >>> rep = model_randomisation_test(load_classifier("work/demo/models/concat.pt"),  # doctest: +SKIP
    ...                                ds.split("val").samples[:5], randomise=["head", "head+blocks1"])
    >>> rep.verdicts  # doctest: +SKIP
    {'head': 'pass', 'head+blocks1': 'pass'}
    """
    t0 = time.perf_counter()
    names = list(dict.fromkeys(parse_randomisation(r).name for r in randomise))
    if not names:
        raise ConfigError("randomise must name at least one randomisation ('head' or 'head+blocks<N>'), got none")
    check_int("top_k", top_k, 1, error=ConfigError)
    models = {n: randomised_copy(classifier, n, seed=seed) for n in names}  # checks the model before any work
    lime = _with_seed(explainer if explainer is not None else MultimodalLime(quality=False), seed)
    control_lime = _with_seed(lime, seed + 1)
    control_name = f"{CONTROL} (seed {seed + 1})"
    results: list[SanityResult] = []
    skipped: list[tuple[str, str]] = []
    samples = list(samples)
    for s in tqdm(samples, desc="sanity check", unit="photo", disable=None if progress is None else not progress):
        try:
            image = load_image(s.image_path)
        except BadInputError as e:
            record_skip(skipped, e)
            continue
        ref = lime.explain(classifier, image=image, tokens=s.tokens, sample_id=s.id).predicted_explanation
        call = {"image": image, "tokens": s.tokens, "segments": ref.segments, "targets": [ref.target], "sample_id": s.id}
        compared = [(control_name, control_lime.explain(classifier, **call), True)]
        compared += [(n, lime.explain(m, **call), False) for n, m in models.items()]
        for name, res, control in compared:
            results.append(_compare(ref, res.for_target(ref.target), name, top_k, control))
        log.info("%s: %s", s.id, ", ".join(f"{r.randomised} Spearman |w| {r.spearman_abs:.2f}"
                                          for r in results[-len(compared):]))
    config = {"kind": "sanity", "explainer": _describe(lime), "control_seed": seed + 1, "top_k": int(top_k),
              "n_photos": len(samples)}
    return SanityReport.from_results(results, randomise=names, seed=seed, threshold=threshold, margin=margin,
                                     skipped=skipped, config=config, seconds=time.perf_counter() - t0)


def _compare(ref: Explanation, other: Explanation, name: str, top_k: int, control: bool) -> SanityResult:
    return SanityResult.compare(ref.weights, other.weights, sample_id=ref.sample_id, target=ref.target,
                                target_name=ref.target_name, randomised=name, n_superpixels=ref.n_superpixels,
                                top_k=top_k, control=control)
