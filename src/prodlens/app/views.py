"""What each view of the app shows, computed from the store alone (no model runs).

:class:`Explorer` turns store rows into plain view records (pictures as ``uint8`` RGB
arrays, tables as lists of rows); :mod:`prodlens.app.ui` only lays them out with
Gradio. Keeping the two apart lets tests and ``bench/app_latency.py`` call the views
directly.

>>> from prodlens.store import Store
>>> ex = Explorer(Store.open(":memory:"))
>>> ex.run_names()
[]
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from prodlens.app.images import (
    LRU,
    montage,
    placeholder,
    read_photo,
    render_overlay,
    superpixel_view,
)
from prodlens.app.match_views import MatchViews
from prodlens.app.panels import DISPLAY_SIDE, THUMB_SIDE, Panel
from prodlens.app.quality_views import GALLERY_ORDERS, NOT_SCORED, QualityViews, order_and_filter, trust_mark
from prodlens.data.types import ProductSample
from prodlens.explain.explanation import Explanation
from prodlens.store import Prediction, Store
from prodlens.store.records import GlobalFeatureRecord

log = logging.getLogger(__name__)

#: Sides of the representative and the supporting superpixel crops in the global view.
REP_SIDE = 154
CROP_SIDE = 76
#: Image clusters shown per class; supporting crops shown per cluster.
TOP_IMAGE_FEATURES = 5
SUPPORTING_CROPS = 8
TOP_TEXT_FEATURES = 15
HIST_BINS = 10
#: Threads that draw gallery thumbnails and crops (PIL and zlib release the GIL).
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="prodlens-app")


@dataclass(frozen=True)
class SampleChoice:
    sample_id: str
    label: str | None
    predicted: str | None
    correct: bool | None
    explained: bool

    @property
    def caption(self) -> str:
        mark = {True: "✓", False: f"✗ → {self.predicted}", None: "(no prediction)"}[self.correct]
        return f"{self.sample_id} {mark}{'' if self.explained else ' · not explained'}"


@dataclass(frozen=True)
class SingleView:
    sample_id: str
    photo: np.ndarray
    ocr_text: str
    panels: list[Panel]
    status: str
    top_k: list[list]  #: [class, probability]
    words: list[list]  #: [word, weight for panel 1, (weight for panel 2)]
    word_headers: list[str]
    #: per explanation panel: its quality note (Markdown caption) and deletion / insertion curves
    quality: list[Panel] = field(default_factory=list)


@dataclass(frozen=True)
class GalleryView:
    summary: str
    items: list[Panel]


@dataclass(frozen=True)
class MisclassifiedView:
    summary: str
    rows: list[list]  #: [sample, true class, predicted, confidence, kind]
    items: list[Panel]


@dataclass(frozen=True)
class ImageFeatureView:
    rank: int
    importance: float
    caption: str
    crops: list[Panel]  #: representative first, then supporting crops
    picture: np.ndarray  #: the crops in one montage (representative large, framed)


@dataclass(frozen=True)
class GlobalView:
    summary: str
    image_features: list[ImageFeatureView]
    text_rows: list[list]  #: [rank, text, variants, count, importance]


@dataclass(frozen=True)
class ShareHistogram:
    summary: str
    bins: list[str]
    run_counts: list[int]
    class_counts: list[int]


@dataclass(frozen=True)
class CompareSide:
    run: str
    summary: str
    panel: Panel
    text_rows: list[list]


@dataclass(frozen=True)
class CompareView:
    left: CompareSide
    right: CompareSide


@dataclass(frozen=True)
class DeletionView:
    summary: str
    points: list[dict] = field(default_factory=list)  #: {"step", "accuracy", "curve"}


def _paired_note(config: dict) -> str:
    """`` (top - random +0.21 [0.05, 0.38], train → val)`` for a global-vs-random deletion
    result with paired intervals (stored by ``DeletionRow.as_steps``), else ``""``.

    >>> _paired_note({"intervals": {"top_minus_random": {"estimate": 0.2, "low": 0.05, "high": 0.4}},
    ...               "global_splits": ["train"], "test_splits": ["val"], "in_sample": False})
    ' (top − random +0.20 [+0.05, +0.40], train → val)'
    """
    iv = (config.get("intervals") or {}).get("top_minus_random")
    if not iv:
        return ""
    splits = f"{'/'.join(config.get('global_splits') or ['?'])} → {'/'.join(config.get('test_splits') or ['?'])}"
    flag = ", in-sample" if config.get("in_sample") else ""
    return f" (top − random {iv['estimate']:+.2f} [{iv['low']:+.2f}, {iv['high']:+.2f}], {splits}{flag})"


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


class Explorer(MatchViews, QualityViews):
    """Read-only views over one store, with caches for pictures and run metadata.

    The Matching tab's views (``match_choices``, ``match_list``, ``why_match``) are
    in :class:`~prodlens.app.match_views.MatchViews`; the explanations' quality
    (``quality_view``, ``flagged_note``, ``quality_panel``) in
    :class:`~prodlens.app.quality_views.QualityViews`.

    Every method takes run *names*; unknown names raise
    :class:`~prodlens.store.RunNotFoundError`.
    """

    def __init__(self, store: Store, *, cache_size: int = 768) -> None:
        self.store = store
        self._photos: LRU[np.ndarray] = LRU(max(16, cache_size // 4))
        self._pictures: LRU[np.ndarray] = LRU(cache_size)
        self._meta: LRU[object] = LRU(512)

    def warm_up(self) -> None:
        """Load every run's predictions, explanation index and class list now, so that
        the first visit of a run is as fast as later ones (called at app start)."""
        for run in self.run_names():
            self.classes(run)
            self._predictions(run)
            self._explained(run)
            self._quality(run)
            self.run_summary(run)
            self._match_queries(run)
            self._explained_pairs(run)

    def clear_caches(self) -> None:
        """Forget cached pictures and metadata (after a job wrote new results)."""
        self._photos.clear()
        self._pictures.clear()
        self._meta.clear()

    # ------------------------------------------------------------------ basics
    def run_names(self) -> list[str]:
        return [r.name for r in self.store.list_runs()]

    def richest_run(self) -> str | None:
        """The run to open on: most explanations, then most global features, then the newest.

        >>> from prodlens.store import Store
        >>> Explorer(Store.open(":memory:")).richest_run() is None
        True
        """
        runs = self.store.list_runs()
        if not runs:
            return None
        scores = {}
        for i, r in enumerate(runs):
            s = self.store.summary(r.name)
            scores[r.name] = (s.n_explanations, s.n_global_features, i)
        return max(scores, key=scores.__getitem__)

    def richest_class(self, run: str) -> str | None:
        """The class to open on: the one with the most explained photos labelled with it in ``run``
        (the class picker lists a class's own photos; first in class order on ties)."""
        classes = self.classes(run)
        if not classes:
            return None
        preds = self._predictions(run)
        counts: dict[str, int] = {}
        for sid, targets in self._explained(run).items():
            p = preds.get(sid)
            label = p.label if p is not None and p.label else None
            for name in [label] if label else {n for _, n in targets}:
                counts[name] = counts.get(name, 0) + 1
        return max(classes, key=lambda c: (counts.get(c, 0), -classes.index(c)))

    def classes(self, run: str) -> list[str]:
        return self._meta.get(("classes", run), lambda: self.store.class_names(run))  # type: ignore[return-value]

    def run_summary(self, run: str) -> str:
        """A one-paragraph Markdown description of ``run``."""

        def make() -> str:
            s = self.store.summary(run)
            r = s.run
            acc = f"accuracy **{_fmt(s.accuracy)}** on {s.n_predictions} samples" if s.n_predictions else "no predictions"
            return (
                f"**{r.name}** — model `{r.model or '?'}`, {acc}, {s.n_explanations} local explanations "
                f"of {s.n_explained_samples} samples, {len(s.classes)} classes"
            )

        return self._meta.get(("summary", run), make)  # type: ignore[return-value]

    def _predictions(self, run: str) -> dict[str, Prediction]:
        def make() -> dict[str, Prediction]:
            return {p.sample_id: p for p in self.store.get_predictions(run, with_probabilities=False)}

        return self._meta.get(("predictions", run), make)  # type: ignore[return-value]

    def _explained(self, run: str) -> dict[str, list[tuple[int, str]]]:
        """sample id -> [(target, target_name)] of its explanations."""

        def make() -> dict[str, list[tuple[int, str]]]:
            out: dict[str, list[tuple[int, str]]] = {}
            for s in self.store.explanation_summaries(run):
                out.setdefault(s.sample_id, []).append((s.target, s.target_name))
            return out

        return self._meta.get(("explained", run), make)  # type: ignore[return-value]

    def _class_samples(self, class_name: str) -> list[ProductSample]:
        return self._meta.get(("samples", class_name), lambda: self.store.get_samples(label=class_name))  # type: ignore[return-value]

    def _photo(self, sample: ProductSample, side: int) -> np.ndarray:
        path = self.store.image_path(sample)

        def make() -> np.ndarray:
            try:
                return read_photo(path, side)
            except (OSError, ValueError) as e:
                log.warning("cannot read %s: %s", path, e)
                return placeholder(side)

        return self._photos.get((str(path), side), make)

    def _overlay(self, run: str, sample: ProductSample, e: Explanation, side: int) -> np.ndarray:
        key = (run, sample.id, e.target, e.target_name, side)
        return self._pictures.get(key, lambda: render_overlay(self._photo(sample, side), e))

    # ------------------------------------------------------------------ local
    def sample_choices(self, run: str, class_name: str) -> list[SampleChoice]:
        """Samples labelled ``class_name`` (explained ones first), for the sample picker."""
        preds = self._predictions(run)
        explained = self._explained(run)
        out = []
        for s in self._class_samples(class_name):
            p = preds.get(s.id)
            if p is None and s.id not in explained:
                continue
            out.append(SampleChoice(s.id, s.label, p.predicted if p else None, p.correct if p else None, s.id in explained))
        out.sort(key=lambda c: (not c.explained, c.correct is not False, c.sample_id))
        return out

    def single(self, run: str, sample_id: str) -> SingleView:
        """Photo, OCR text and explanation(s) of one sample.

        A misclassified sample gets two panels: the explanations for its true and for
        its predicted class, side by side.
        """
        sample = self.store.get_sample(sample_id)
        pred = self._predictions(run).get(sample_id)
        photo = self._photo(sample, DISPLAY_SIDE)
        targets = [sample.label] if sample.label else []
        if pred is not None and pred.predicted not in targets:
            targets.append(pred.predicted)
        if not targets:
            targets = [t for _, t in self._explained(run).get(sample_id, [])][:2]
        panels: list[Panel] = []
        quality: list[Panel] = []
        expls: list[Explanation | None] = []
        for t in targets:
            e = self.store.get_explanation(run, sample_id, t)
            expls.append(e)
            role = "true class" if t == sample.label else "predicted class"
            if e is None:
                panels.append(Panel(f"{role} {t}: not explained in this run", None))
                quality.append(Panel("", None))
            else:
                panels.append(Panel(
                    f"{role}: {t} · p={e.prediction:.2f} · image {e.image_share:.0%} · R²={e.score:.2f} · "
                    f"{trust_mark(e.quality)}",
                    self._overlay(run, sample, e, DISPLAY_SIDE),
                ))
                quality.append(self.quality_panel(e.quality))
        if pred is None:
            status = f"**{sample_id}** — true class **{sample.label}**; no prediction stored for this run"
        elif pred.correct:
            status = f"**{sample_id}** — correctly classified as **{pred.predicted}** ({pred.confidence:.2f})"
        else:
            status = (f"**{sample_id}** — true class **{sample.label}**, predicted **{pred.predicted}** "
                      f"({pred.confidence:.2f}): misclassified")
        top = [[n, round(p, 4)] for n, p in pred.top_k] if pred else []
        words, headers = self._word_table(expls, targets)
        return SingleView(sample_id, photo, sample.text or "(no text found)", panels, status, top, words, headers, quality)

    @staticmethod
    def _word_table(expls: list[Explanation | None], targets: list[str]) -> tuple[list[list], list[str]]:
        present = [(e, t) for e, t in zip(expls, targets, strict=True) if e is not None]
        headers = ["word"] + [f"weight for {t}" for _, t in present]
        if not present:
            return [], headers
        base = present[0][0]
        rows = []
        for j, tok in enumerate(base.tokens):
            row: list = [tok.text]
            for e, _ in present:
                w = e.text_weights[j] if j < len(e.text_weights) else float("nan")
                row.append(round(float(w), 4))
            rows.append(row)
        rows.sort(key=lambda r: -abs(r[1]))
        return rows, headers

    def gallery(self, run: str, class_name: str, *, order: str = "sample id", show: str = "all") -> GalleryView:
        """Every sample labelled ``class_name``: its overlay for the true class when it
        was explained, else the plain photo; each caption says whether the explanation
        is flagged.

        ``order`` (a key of :data:`~prodlens.app.quality_views.GALLERY_ORDERS`) sorts by
        a quality score, unscored samples last; ``show`` (one of
        :data:`~prodlens.app.quality_views.GALLERY_SHOW`) keeps all, only trusted or
        only flagged explanations.
        """
        preds = self._predictions(run)
        explained = self._explained(run)
        wanted = {s.id for s in self._class_samples(class_name) if s.id in explained}
        expls: dict[str, Explanation] = {}
        if wanted:
            for e in self.store.get_explanations(run, label=class_name):
                if e.target_name == class_name or e.sample_id not in expls:
                    expls[e.sample_id] = e
        spec = GALLERY_ORDERS.get(order)

        def item(s: ProductSample) -> Panel:
            p = preds.get(s.id)
            mark = "" if p is None else ("✓" if p.correct else f"✗ {p.predicted}")
            e = expls.get(s.id)
            if e is None:
                return Panel(f"{s.id} {mark} · not explained", self._photo(s, THUMB_SIDE))
            # the flag first: a caption longer than the thumbnail is cut at its end
            value = "" if spec is None or e.quality is None else f" · {spec[0]} {getattr(e.quality, spec[0]):.2f}"
            return Panel(f"{trust_mark(e.quality)}{value} · {s.id} {mark} · image {e.image_share:.0%}",
                         self._overlay(run, s, e, THUMB_SIDE))

        shown = [s for s in self._class_samples(class_name) if s.id in preds or s.id in expls]
        shown.sort(key=lambda s: (s.id not in expls, s.id))
        entries = [(s, expls[s.id].quality if s.id in expls else None) for s in shown]
        kept = order_and_filter(entries, order, show)
        # JPEG decoding and resizing release the GIL: draw the thumbnails in parallel
        items = list(_POOL.map(item, kept))
        n_expl = sum(1 for s in shown if s.id in expls)
        n_flag = sum(1 for s in shown if s.id in expls and expls[s.id].flagged)
        n_scored = sum(1 for s in shown if s.id in expls and expls[s.id].quality is not None)
        summary = (f"{len(shown)} samples of **{class_name}**, {n_expl} with explanations (overlay for the true class)"
                   f", {n_flag} of {n_scored} scored ones flagged as not trustworthy.")
        if n_expl and not n_scored:
            summary += f" The quality order and filter need scores: {NOT_SCORED}."
        if show != "all":
            summary += f" Showing {len(items)} ({show})."
        return GalleryView(summary, items)

    def misclassified(self, run: str, class_name: str) -> MisclassifiedView:
        """Samples of ``class_name`` predicted as another class ("missed"), and samples
        of other classes predicted as ``class_name`` ("confused")."""
        preds = self._predictions(run)
        labelled = {s.id for s in self._class_samples(class_name)}
        rows, items = [], []
        for p in preds.values():
            if p.correct is not False:
                continue
            if p.sample_id in labelled:
                kind = "missed"
            elif p.predicted == class_name:
                kind = "confused"
            else:
                continue
            rows.append([p.sample_id, p.label, p.predicted, round(p.confidence, 4), kind])
        rows.sort(key=lambda r: (r[4] != "missed", -r[3]))
        samples = {s.id: s for s in self.store.get_samples([r[0] for r in rows])}
        for r in rows:
            s = samples[r[0]]
            e = self.store.get_explanation(run, s.id, r[2])  # why it chose the wrong class
            img = self._overlay(run, s, e, THUMB_SIDE) if e is not None else self._photo(s, THUMB_SIDE)
            items.append(Panel(f"{s.id}: {r[1]} → {r[2]}{'' if e else ' · not explained'}", img))
        n_class = sum(1 for sid in labelled if sid in preds)
        missed = sum(1 for r in rows if r[4] == "missed")
        summary = (f"**{missed}** of {n_class} samples of **{class_name}** misclassified; "
                   f"**{len(rows) - missed}** samples of other classes predicted as {class_name}.")
        return MisclassifiedView(summary, rows, items)

    # ------------------------------------------------------------------ global
    def global_view(self, run: str, class_name: str, method: str | None = None) -> GlobalView:
        """Top image clusters (representative + supporting crops) and top text groups."""
        feats = self.store.get_global_features(run, class_name=class_name, method=method)
        images = [f for f in feats if f.modality == "image"][:TOP_IMAGE_FEATURES]
        texts = [f for f in feats if f.modality == "text"][:TOP_TEXT_FEATURES]
        needed: set[str] = set()
        for f in images:
            for m in self._crop_members(f):
                needed.add(m[0])
        samples = {s.id: s for s in self.store.get_samples(needed)} if needed else {}
        # only the crops are cached (small); segment maps are fetched in one query
        uncached = {sid for f in images for i, (sid, sp) in enumerate(self._crop_members(f))
                    if ("crop", run, sid, sp, REP_SIDE if i == 0 else CROP_SIDE) not in self._pictures}
        segments = self.store.get_segments_many(run, uncached) if uncached else {}

        def crop(sid: str, sp: int, size: int) -> np.ndarray:
            def make() -> np.ndarray:
                s = samples.get(sid)
                seg = segments.get(sid)
                if seg is None:
                    seg = self.store.get_segments(run, sid)
                if s is None or seg is None:
                    return placeholder(size)
                return superpixel_view(self._photo(s, DISPLAY_SIDE), seg, sp, size)

            return self._pictures.get(("crop", run, sid, sp, size), make)

        wanted = list(dict.fromkeys(
            (sid, sp, REP_SIDE if i == 0 else CROP_SIDE) for f in images for i, (sid, sp) in enumerate(self._crop_members(f))
        ))
        pictures = {m: crop(*m) for m in wanted}
        views = []
        for f in images:
            members = self._crop_members(f)
            crops = [Panel(("representative · " if i == 0 else "") + f"{sid} #{sp}",
                           pictures[(sid, sp, REP_SIDE if i == 0 else CROP_SIDE)])
                     for i, (sid, sp) in enumerate(members)]
            n = f.payload.get("n_samples") or len({m.get("sample_id") for m in f.payload.get("members", [])})
            ids = ", ".join(dict.fromkeys(sid for sid, _ in members[1:]))
            views.append(ImageFeatureView(
                f.rank, f.importance,
                f"**Image feature {f.rank + 1}** — importance {f.importance:.3f}, found in {n} samples. "
                f"Representative (framed): {members[0][0] if members else '-'}; supporting: {ids or '-'}",
                crops,
                montage(crops[0].image, [c.image for c in crops[1:]], big=REP_SIDE + 6, small=CROP_SIDE)
                if crops else placeholder(REP_SIDE),
            ))
        text_rows = []
        for f in texts:
            p = f.payload
            variants = p.get("variants") or {}
            var_text = ", ".join(f"{k} ×{v}" for k, v in sorted(variants.items(), key=lambda kv: -kv[1]))
            count = p.get("count", sum(variants.values()))
            text_rows.append([f.rank + 1, p.get("text", ""), var_text, count, round(f.importance, 4)])
        if not feats:
            summary = (f"No global explanation stored for **{class_name}** in this run. It is built from the "
                       "explanations of many photos of the class: `prodlens run CONFIG` (the global stage), e.g. "
                       "`prodlens demo` for the bundled milks.")
        else:
            summary = f"**{class_name}**: {len(images)} image features and {len(texts)} text features (top by importance)."
            if not images:
                summary += (" No image clusters: HDBSCAN found no group of similar top superpixels among this class's "
                            "explanations. Explaining more of its photos helps, and so does embedding with a trained "
                            "image model (`[global] embedding`, `prodlens global --embed-model`).")
        flagged = self.flagged_note(run, class_name)
        return GlobalView(f"{summary} {flagged}" if flagged else summary, views, text_rows)

    @staticmethod
    def _crop_members(f: GlobalFeatureRecord) -> list[tuple[str, int]]:
        p = f.payload
        out: list[tuple[str, int]] = []
        rep = p.get("representative")
        if rep:
            out.append((str(rep["sample_id"]), int(rep["superpixel"])))
        for m in p.get("members", []):
            key = (str(m["sample_id"]), int(m["superpixel"]))
            if key not in out:
                out.append(key)
            if len(out) > SUPPORTING_CROPS:
                break
        return out

    def share_histogram(self, run: str, class_name: str | None = None) -> ShareHistogram:
        """Histogram of the image share of |weight| over the run's explanations
        (and over the explanations for ``class_name``)."""

        def shares() -> list[tuple[str, float]]:
            return [(s.target_name, s.image_share) for s in self.store.explanation_summaries(run)]

        rows: list[tuple[str, float]] = self._meta.get(("shares", run), shares)  # type: ignore[assignment]
        edges = np.linspace(0, 1, HIST_BINS + 1)
        labels = [f"{edges[i]:.1f}–{edges[i + 1]:.1f}" for i in range(HIST_BINS)]
        all_v = np.array([v for _, v in rows], dtype=float)
        cls_v = np.array([v for t, v in rows if t == class_name], dtype=float)
        run_counts = np.histogram(all_v, edges)[0].tolist() if len(all_v) else [0] * HIST_BINS
        class_counts = np.histogram(cls_v, edges)[0].tolist() if len(cls_v) else [0] * HIST_BINS
        if not len(all_v):
            summary = "No explanations in this run."
        else:
            summary = (f"Image share of |weight| over {len(all_v)} explanations: median **{np.median(all_v):.2f}** "
                       f"(text {1 - np.median(all_v):.2f}).")
            if len(cls_v):
                summary += f" For **{class_name}** ({len(cls_v)}): median **{np.median(cls_v):.2f}**."
        return ShareHistogram(summary, labels, run_counts, class_counts)

    def deletion(self, run: str) -> DeletionView:
        """Deletion-test curves stored for ``run``."""
        results = self.store.get_deletion_results(run)
        if not results:
            return DeletionView("No deletion test stored for this run.")
        points = [
            {"step": float(s), "accuracy": float(a), "curve": f"{d.model} / {d.modality}"}
            for d in results for s, a in zip(d.steps, d.accuracies, strict=True)
        ]
        summary = "; ".join(
            f"{d.model} / {d.modality}: {d.accuracies[0]:.2f} → {d.accuracies[-1]:.2f}{_paired_note(d.config)}"
            for d in results
        )
        return DeletionView(f"Accuracy as top features are removed — {summary}", points)

    # ------------------------------------------------------------------ compare
    def compare_choices(self, run_a: str, run_b: str, class_name: str) -> list[str]:
        """Samples labelled ``class_name`` explained in either run (both first)."""
        ea, eb = self._explained(run_a), self._explained(run_b)
        ids = [s.id for s in self._class_samples(class_name) if s.id in ea or s.id in eb]
        return sorted(ids, key=lambda i: (not (i in ea and i in eb), i))

    def _compare_side(self, run: str, class_name: str, sample: ProductSample | None) -> CompareSide:
        preds = self._predictions(run)
        labelled = [s.id for s in self._class_samples(class_name) if s.id in preds]
        correct = sum(1 for i in labelled if preds[i].correct)
        shares = [v for t, v in self._meta.get(("shares", run), lambda: [
            (s.target_name, s.image_share) for s in self.store.explanation_summaries(run)])  # type: ignore[union-attr]
            if t == class_name]
        recall = f"{correct}/{len(labelled)} = {correct / len(labelled):.2f}" if labelled else "-"
        med = f"{np.median(shares):.2f}" if shares else "-"
        summary = f"**{run}** — {class_name}: recall {recall}; median image share {med}"
        panel = Panel("no sample chosen", None)
        if sample is not None:
            e = self.store.get_explanation(run, sample.id, class_name)
            p = preds.get(sample.id)
            verdict = "" if p is None else ("✓" if p.correct else f"✗ predicted {p.predicted}")
            if e is None:
                panel = Panel(f"{sample.id} {verdict}: not explained for {class_name} in this run", None)
            else:
                panel = Panel(f"{sample.id} {verdict} · p={e.prediction:.2f} · image {e.image_share:.0%}",
                              self._overlay(run, sample, e, DISPLAY_SIDE))
        texts = self.store.get_global_features(run, class_name=class_name, modality="text")[:10]
        rows = [[f.rank + 1, f.payload.get("text", ""), f.payload.get("count", ""), round(f.importance, 4)] for f in texts]
        return CompareSide(run, summary, panel, rows)

    def explained_runs(self) -> list[str]:
        """Runs that hold at least one local explanation, in store order.

        >>> from prodlens.store import Store
        >>> Explorer(Store.open(":memory:")).explained_runs()
        []
        """
        return [r for r in self.run_names() if self.store.summary(r).n_explanations]

    def compare_note(self, run_a: str | None) -> str:
        """Why run B shows no explanation, and what fills it (another explained run).

        >>> from prodlens.store import Store
        >>> Explorer(Store.open(":memory:")).compare_note("demo")[:41]
        'Only one run of this store holds explanat'
        """
        others = [r for r in self.explained_runs() if r != run_a]
        if others:
            return "Choose a run with explanations of this sample to compare with: " + ", ".join(f"**{r}**" for r in others)
        return ("Only one run of this store holds explanations, so there is nothing to compare it with yet: explain "
                "the same photos with another model into this store, e.g. `prodlens run CONFIG` with another "
                "`[train] model` and `store` set to this store, or `prodlens explain CHECKPOINT DATASET --db STORE`.")

    def compare(self, run_a: str, run_b: str, class_name: str, sample_id: str | None) -> CompareView:
        """The same class (and sample) in two runs, side by side."""
        sample = self.store.get_sample(sample_id) if sample_id else None
        return CompareView(self._compare_side(run_a, class_name, sample), self._compare_side(run_b, class_name, sample))

