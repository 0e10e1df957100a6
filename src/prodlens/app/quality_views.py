"""How far to trust each explanation, in the app: quality notes, gallery order and filter,
and the run's distribution of every score.

The scores are those of :class:`~prodlens.explain.quality.ExplanationQuality`, stored with
each explanation; the thresholds shown are the ones stored with them (parameters of
:class:`~prodlens.explain.quality.QualityCheck`). Everything is read from the store
(:meth:`~prodlens.store.Store.quality_summaries` selects no arrays); mixed into
:class:`~prodlens.app.views.Explorer`.

>>> from prodlens.explain.quality import ExplanationQuality
>>> q = ExplanationQuality((0.0, 1.0), (0.8, 0.1), (0.1, 0.8), (0.8, 0.1), (0.1, 0.8), 0.41, 10, 0.6, 0.01,
...                        flags=("unstable",), thresholds={"min_stability": 0.5})
>>> flag_reasons(q)
['unstable (stability 0.41 < 0.50)']
>>> trust_mark(q), trust_mark(None)
('⚠ flagged: unstable', 'no quality score')
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from prodlens.app.images import LRU
from prodlens.app.panels import Panel
from prodlens.explain.quality import ExplanationQuality
from prodlens.store import QualitySummary, Store
from prodlens.viz.quality import quality_curves, score_histogram

T = TypeVar("T")

#: Bins of the score histograms.
QUALITY_BINS = 10
#: What fills the store with scored explanations (scores are on by default).
HOW_TO_SCORE = ("re-run the explain stage, `prodlens run CONFIG` (or `prodlens demo`), to score them: "
                "quality scores are on by default (`MultimodalLime(quality=True)`)")
NOT_SCORED = f"these explanations were stored without quality scores; {HOW_TO_SCORE}"


@dataclass(frozen=True)
class Score:
    """One quality score: how to read it from an :class:`ExplanationQuality`, the flag it
    raises and the stored threshold that raises it."""

    key: str  #: attribute of ExplanationQuality
    label: str
    plain: str  #: the label in ASCII, for pictures (PIL's default font has no ² or ≤)
    flag: str
    threshold_key: str  #: key in ExplanationQuality.thresholds
    flagged_when: str  #: how a value compares with the threshold when it is flagged
    bounds: tuple[float | None, float | None]  #: fixed ends of the histogram (None: from the data)

    @property
    def higher_is_better(self) -> bool:
        return self.flagged_when != ">"

    def value(self, q: ExplanationQuality) -> float:
        return float(getattr(q, self.key))


SCORES = (
    Score("faithfulness", "faithfulness", "faithfulness", "unfaithful", "min_faithfulness", "≤", (None, None)),
    Score("stability", "stability", "stability", "unstable", "min_stability", "<", (0.0, 1.0)),
    Score("r2", "R²", "R^2", "poor_fit", "min_r2", "<", (None, 1.0)),
    Score("local_error", "local error", "local error", "off_target", "max_local_error", ">", (0.0, None)),
)
_BY_FLAG = {s.flag: s for s in SCORES}
_BY_KEY = {s.key: s for s in SCORES}

#: Gallery orders: label -> (score key, best first), ``None`` for sample id order.
GALLERY_ORDERS: dict[str, tuple[str, bool] | None] = {
    "sample id": None,
    "faithfulness, best first": ("faithfulness", True),
    "faithfulness, worst first": ("faithfulness", False),
    "stability, best first": ("stability", True),
    "stability, worst first": ("stability", False),
}
#: Gallery filters.
GALLERY_SHOW = ("all", "trusted only", "flagged only")


def _num(x: float, digits: int = 2) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def flag_reasons(q: ExplanationQuality) -> list[str]:
    """Each flag of ``q`` with the score and the threshold that raised it."""
    out = []
    for flag in q.flags:
        s = _BY_FLAG.get(flag)
        if flag == "unidentified":
            out.append("unidentified (fewer independent perturbations than features: some weights come from "
                       "the ridge penalty, not the model; raise max_samples)")
            continue
        if s is None:
            out.append(flag)
            continue
        thr = q.thresholds.get(s.threshold_key)
        limit = "" if thr is None else f" {s.flagged_when} {_num(float(thr))}"
        out.append(f"{flag} ({s.label} {_num(s.value(q))}{limit})")
    return out


def trust_mark(q: ExplanationQuality | None) -> str:
    """A few words for a caption: flagged (and why), trusted, or not scored."""
    if q is None:
        return "no quality score"
    return f"⚠ flagged: {', '.join(q.flags)}" if q.flags else "quality ok"


def quality_markdown(q: ExplanationQuality | None) -> str:
    """The scores of one explanation in Markdown, with a warning first when it is flagged.

    >>> print(quality_markdown(None).split(";")[0])
    **Quality:** these explanations were stored without quality scores
    """
    if q is None:
        return f"**Quality:** {NOT_SCORED}."
    head = (f"**⚠ flagged: do not trust this explanation** — {'; '.join(flag_reasons(q))}\n\n" if q.flags
            else "**Quality: no flag raised** (faithful, stable and well fitted by its thresholds)\n\n")
    return head + (
        f"faithfulness **{_num(q.faithfulness, 3)}** (probability gained over a random order: deletion "
        f"{_num(q.deletion_gain, 3)}, insertion {_num(q.insertion_gain, 3)}) · stability **{_num(q.stability)}** "
        f"(expected top-{q.stability_k} overlap of two seeds) · R² **{_num(q.r2)}** · local error "
        f"**{_num(q.local_error, 3)}** (surrogate vs model on the photo as it is)"
    )


def order_and_filter(items: Sequence[tuple[T, ExplanationQuality | None]], order: str, show: str) -> list[T]:
    """``items`` kept by ``show`` (one of :data:`GALLERY_SHOW`) and sorted by ``order``
    (one of :data:`GALLERY_ORDERS`; unscored items last). ``"sample id"`` keeps the
    given order.

    >>> from dataclasses import replace
    >>> q = ExplanationQuality((0.0, 1.0), (0.8, 0.1), (0.1, 0.8), (0.8, 0.1), (0.1, 0.8), 0.9, 10, 0.6, 0.01)
    >>> items = [("a", replace(q, stability=0.6)), ("b", None), ("c", q), ("d", replace(q, flags=("poor_fit",)))]
    >>> order_and_filter(items, "stability, worst first", "all"), order_and_filter(items, "sample id", "flagged only")
    (['a', 'c', 'd', 'b'], ['d'])
    """
    if order not in GALLERY_ORDERS:
        raise ValueError(f"order must be one of {tuple(GALLERY_ORDERS)}, got {order!r}")
    if show not in GALLERY_SHOW:
        raise ValueError(f"show must be one of {GALLERY_SHOW}, got {show!r}")
    kept = [(x, q) for x, q in items if show == "all" or (q is not None and q.trusted == (show == "trusted only"))]
    spec = GALLERY_ORDERS[order]
    if spec is None:
        return [x for x, _ in kept]
    score, best_first = _BY_KEY[spec[0]], spec[1]
    sign = -1.0 if best_first == score.higher_is_better else 1.0

    def key(item: tuple[T, ExplanationQuality | None]) -> tuple[bool, float]:
        q = item[1]
        v = float("nan") if q is None else score.value(q)
        return (not math.isfinite(v), sign * v if math.isfinite(v) else 0.0)

    return [x for x, _ in sorted(kept, key=key)]


def _edges(score: Score, values: np.ndarray, threshold: float | None) -> np.ndarray:
    """Histogram edges: the score's fixed bounds, else the data (and the threshold), rounded out to 0.05."""
    pool = [float(v) for v in values if math.isfinite(v)] + ([threshold] if threshold is not None else []) + [0.0]
    lo = score.bounds[0] if score.bounds[0] is not None else math.floor(min(pool) * 20) / 20
    hi = score.bounds[1] if score.bounds[1] is not None else math.ceil(max(pool) * 20) / 20
    if hi <= lo:
        hi = lo + 0.05
    return np.linspace(lo, hi, QUALITY_BINS + 1)


@dataclass(frozen=True)
class ScoreHistogram:
    """One score over the run's explanations (and the class's), with its threshold."""

    score: str  #: Score.key
    label: str
    edges: list[float]
    run_counts: list[int]
    class_counts: list[int]
    threshold: float | None
    n_flagged_run: int  #: explanations of the run flagged by this score
    n_flagged_class: int
    picture: np.ndarray


@dataclass(frozen=True)
class QualityView:
    summary: str
    histograms: list[ScoreHistogram]
    rows: list[list]  #: [score, flag, flagged when, run: median, run: flagged, class: median, class: flagged]
    #: amortised runs: how their explanations agreed with LIME on the verified share ("" otherwise)
    verify: str = ""


QUALITY_HEADERS = ["score", "flag", "flagged when", "run: median", "run: flagged", "class: median", "class: flagged"]


def _share(n: int, of: int) -> str:
    return f"{n} of {of} ({n / of:.0%})" if of else "-"


def _median(values: Sequence[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return round(float(np.median(finite)), 4) if finite else None


def _threshold(qs: Sequence[ExplanationQuality], key: str) -> float | None:
    """The threshold most explanations were scored with (they may differ between jobs)."""
    seen = Counter(float(q.thresholds[key]) for q in qs if key in q.thresholds)
    return seen.most_common(1)[0][0] if seen else None


class QualityViews:
    """Quality views of :class:`~prodlens.app.views.Explorer` (which provides the store and caches)."""

    store: Store
    _meta: LRU[object]

    def _quality(self, run: str) -> list[QualitySummary]:
        """The latest explanation of each (sample, target) of ``run``, with its scores."""
        return self._meta.get(("quality", run), lambda: self.store.quality_summaries(run))  # type: ignore[return-value]

    def quality_panel(self, q: ExplanationQuality | None) -> Panel:
        """The quality note of one explanation (Markdown caption) and its curves (``None`` unscored)."""
        return Panel(quality_markdown(q), None if q is None else quality_curves(q))

    def flagged_note(self, run: str, class_name: str) -> str:
        """How many of the run's explanations for ``class_name`` (what its global
        explanation is built from) are flagged; empty when there are none."""
        mine = [s for s in self._quality(run) if s.target_name == class_name]
        if not mine:
            return ""
        scored = [s.quality for s in mine if s.quality is not None]
        if not scored:
            return f"Its {len(mine)} supporting explanations have no quality scores: {NOT_SCORED}."
        flagged = [q for q in scored if q.flags]
        counts = Counter(f for q in flagged for f in q.flags)
        why = f" ({', '.join(f'{f} {n}' for f, n in counts.most_common())})" if counts else ""
        unscored = f"; {len(mine) - len(scored)} have no quality score" if len(scored) < len(mine) else ""
        return (f"**{len(flagged)} of {len(scored)}** supporting explanations (the run's explanations for "
                f"{class_name}) are flagged as not trustworthy{why}{unscored}.")

    def verify_note(self, run: str) -> str:
        """How the run's amortised explanations agreed with LIME on the photos its verify mode
        re-explained (``[explain] verify``); empty for other runs."""
        config = self._meta.get(("run-config", run), lambda: self.store.get_run(run).config)
        s = (config.get("amortised_verify") or {}).get("summary") or {}  # type: ignore[union-attr]
        if not s.get("photos"):
            return ""
        worst = s.get("worst") or {}
        return (f"**Amortised explanations checked against LIME** on {s['photos']} photos ({s['fraction']:.0%} of the run: "
                f"the least confident half and a random half): top-10 overlap **{s['top10_overlap']:.1f} of 10**, "
                f"Spearman **{s['spearman']:.2f}**, sign agreement on LIME's top 10 **{s['sign_top10']:.0%}**; "
                f"least confident photos' Spearman {_num(s.get('lowest_confidence_spearman', float('nan')))}; "
                f"worst {worst.get('sample_id')} (Spearman {_num(worst.get('spearman', float('nan')))}).")

    def quality_view(self, run: str, class_name: str | None = None) -> QualityView:
        """Histograms of every score over the run's explanations and over those for
        ``class_name``, the thresholds, and the share flagged (and, for an amortised run,
        its agreement with LIME: ``verify``)."""
        summaries = self._quality(run)
        scored = [s for s in summaries if s.quality is not None]
        verify = self.verify_note(run)
        if not summaries:
            return QualityView("No explanations in this run: store some with `prodlens run CONFIG`.", [], [], verify)
        if not scored:
            return QualityView(f"{len(summaries)} explanations in this run, none scored: {NOT_SCORED}.", [], [], verify)
        run_q = [s.quality for s in scored if s.quality is not None]
        cls_q = [s.quality for s in scored if s.quality is not None and s.target_name == class_name]
        hists, rows = [], []
        for score in SCORES:
            run_v = np.array([score.value(q) for q in run_q])
            cls_v = np.array([score.value(q) for q in cls_q])
            thr = _threshold(run_q, score.threshold_key)
            edges = _edges(score, run_v, thr)
            n_run = sum(score.flag in q.flags for q in run_q)
            n_cls = sum(score.flag in q.flags for q in cls_q)
            lo, hi = float(edges[0]), float(edges[-1])
            when = score.flagged_when.replace("≤", "<=")
            title = f"{score.plain}: flagged {when} {_num(thr)}" if thr is not None else score.plain
            hists.append(ScoreHistogram(
                score.key, score.label, [float(e) for e in edges],
                np.histogram(np.clip(run_v, lo, hi), edges)[0].tolist(),
                np.histogram(np.clip(cls_v, lo, hi), edges)[0].tolist(),
                thr, n_run, n_cls, score_histogram(run_v, cls_v, edges, threshold=thr, title=title),
            ))
            rows.append([score.label, score.flag, f"{score.flagged_when} {_num(thr)}" if thr is not None else "-",
                         _median(run_v.tolist()), _share(n_run, len(run_q)), _median(cls_v.tolist()),
                         _share(n_cls, len(cls_q))])
        n_flag = sum(bool(q.flags) for q in run_q)
        summary = (f"**{_share(n_flag, len(run_q))}** explanations of the run are flagged as not trustworthy "
                   "(grey bars: the run; blue: the class; red dashed line: the threshold stored with the scores).")
        if class_name and cls_q:
            summary += f" For **{class_name}**: {_share(sum(bool(q.flags) for q in cls_q), len(cls_q))}."
        elif class_name:
            summary += f" No scored explanation for **{class_name}**."
        if len(scored) < len(summaries):
            summary += f" {len(summaries) - len(scored)} explanations have no quality score: {NOT_SCORED}."
        return QualityView(summary, hists, rows, verify)

