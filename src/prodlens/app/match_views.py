"""The Matching tab's views: a query's best gallery matches and why one of them matches.

Read from the store alone (``match_queries``, ``match_explanations`` and the
retrieval summary in ``match_results``), like every other view; mixed into
:class:`~prodlens.app.views.Explorer`.

>>> from prodlens.app.views import Explorer
>>> from prodlens.store import Store
>>> store = Store.open(":memory:")
>>> _ = store.add_run("r")
>>> Explorer(store).match_choices("r", "Oatly-Oat-Milk")
[]
>>> print(Explorer(store).match_note("r", "Oatly-Oat-Milk"))
No matching results in this store yet: store some with `prodlens match DATASET --db STORE` (top-k matches) and `prodlens match-explain DATASET QUERY --db STORE` (why they match).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from prodlens.app.images import LRU, photo_shape, placeholder, render_saliency
from prodlens.app.panels import DISPLAY_SIDE, THUMB_SIDE, Panel
from prodlens.data.types import ProductSample
from prodlens.match.contrast import MatchContrast, contrast_matches
from prodlens.match.explanation import MatchExplanation
from prodlens.store import MatchQuery, SampleNotFoundError, Store

#: Shared words outlined on the photos (the table lists them all).
TOP_WORDS = 5
WORD_HEADERS = ["rank", "word", "query reads", "match reads", "spelling match", "similarity drop",
                "text removed", "box masked", "query saliency in box", "match saliency in box"]
WHY_NOT_HEADERS = ["word", "shared by the query with", "similarity drop (match)", "similarity drop (runner-up)",
                   "advantage of the match"]
_HOW = ("store some with `prodlens match DATASET --db STORE` (top-k matches) and "
        "`prodlens match-explain DATASET QUERY --db STORE` (why they match).")


@dataclass(frozen=True)
class MatchChoice:
    """A query in the picker."""

    query_id: str
    correct: bool | None
    n_explained: int

    @property
    def caption(self) -> str:
        mark = {True: "✓ best match of its class", False: "✗ best match of another class", None: ""}[self.correct]
        return f"{self.query_id} {mark}" + (f" · {self.n_explained} explained" if self.n_explained else "")


@dataclass(frozen=True)
class MatchCandidate:
    """One gallery match of the query."""

    rank: int  #: 1-based; 0 for an explained match outside the stored top-k
    gallery_id: str
    label: str | None
    score: float
    same_class: bool | None
    explained: bool

    @property
    def caption(self) -> str:
        mark = {True: "✓", False: f"✗ {self.label}", None: ""}[self.same_class]
        where = f"#{self.rank}" if self.rank else "explained"
        return f"{where} {self.gallery_id} · {self.score:.3f} {mark}".rstrip() + ("" if self.explained else " · not explained")


@dataclass(frozen=True)
class MatchListView:
    status: str
    query: Panel
    matches: list[Panel]
    candidates: list[MatchCandidate]

    @property
    def default_match(self) -> str | None:
        """The match to explain first: the best explained one, else the best one."""
        explained = [c for c in self.candidates if c.explained]
        pick = explained[0] if explained else (self.candidates[0] if self.candidates else None)
        return None if pick is None else pick.gallery_id


@dataclass(frozen=True)
class WhyView:
    summary: str
    query: Panel
    match: Panel
    words: list[list]  #: rows under WORD_HEADERS, largest similarity drop first


@dataclass(frozen=True)
class WhyNotView:
    """Why the runner-up did not match: the difference of its explanation and the match's."""

    summary: str
    query: Panel  #: the query with match saliency minus runner-up saliency
    runner_up: Panel  #: the runner-up with its own saliency
    words: list[list]  #: rows under WHY_NOT_HEADERS, largest advantage of the match first
    runner_up_id: str | None = None


def _fmt(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _word_rows(e: MatchExplanation) -> list[list]:
    ranked = sorted(e.words, key=lambda w: -w.drop)
    return [
        [i + 1, w.word, ", ".join(dict.fromkeys(t.text for t in w.match.query_tokens)),
         ", ".join(dict.fromkeys(t.text for t in w.match.match_tokens)), round(w.match.ratio, 3),
         _fmt(w.drop), _fmt(w.text_drop), _fmt(w.image_drop), _fmt(w.saliency), _fmt(w.match_saliency)]
        for i, w in enumerate(ranked)
    ]


def _contrast_rows(c: MatchContrast) -> list[list]:
    return [[w.word, w.where, _fmt(w.match_drop), _fmt(w.runner_up_drop), _fmt(w.advantage)] for w in c.words]


def _word_boxes(e: MatchExplanation, side: str) -> list[tuple[int, tuple[float, float, float, float]]]:
    ranked = sorted(e.words, key=lambda w: -w.drop)[:TOP_WORDS]
    return [(i, t.box) for i, w in enumerate(ranked)
            for t in (w.match.query_tokens if side == "query" else w.match.match_tokens)]


class MatchViews:
    """Matching views of :class:`~prodlens.app.views.Explorer` (which provides the store and caches)."""

    store: Store
    _pictures: LRU[np.ndarray]
    _meta: LRU[object]

    if TYPE_CHECKING:  # provided by Explorer
        def _photo(self, sample: ProductSample, side: int) -> np.ndarray: ...
        def run_names(self) -> list[str]: ...

    def _match_queries(self, run: str) -> dict[str, MatchQuery]:
        def make() -> dict[str, MatchQuery]:
            return {q.query_id: q for q in self.store.get_match_queries(run)}

        return self._meta.get(("match_queries", run), make)  # type: ignore[return-value]

    def _explained_pairs(self, run: str) -> dict[str, list[str]]:
        """query id -> the match ids explained for it."""

        def make() -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for q, m in self.store.match_explanation_pairs(run):
                out.setdefault(q, []).append(m)
            return out

        return self._meta.get(("match_pairs", run), make)  # type: ignore[return-value]

    def match_runs(self) -> list[str]:
        """Runs that hold matching results (for the empty-state message)."""
        return [r for r in self.run_names() if self._match_queries(r) or self._explained_pairs(r)]

    def match_run_for(self, run: str) -> str:
        """The run the Matching tab shows for ``run``: itself when it holds matching results,
        else the store's matching run (``{run}-match`` first), else ``run`` (the note says why).

        >>> from prodlens.app.views import Explorer
        >>> from prodlens.store import Store
        >>> Explorer(Store.open(":memory:")).match_run_for("demo")
        'demo'
        """
        if run not in self.run_names() or self._match_queries(run) or self._explained_pairs(run):
            return run
        others = self.match_runs()
        return f"{run}-match" if f"{run}-match" in others else (others[0] if others else run)

    def match_choices(self, run: str, class_name: str) -> list[MatchChoice]:
        """Queries labelled ``class_name`` with stored matches or explanations (explained first)."""
        queries, pairs = self._match_queries(run), self._explained_pairs(run)
        if not queries and not pairs:
            return []
        ids = {s.id for s in self.store.get_samples(set(queries) | set(pairs), label=class_name)}
        out = [MatchChoice(i, queries[i].correct if i in queries else None, len(pairs.get(i, []))) for i in sorted(ids)]
        out.sort(key=lambda c: (not c.n_explained, c.correct is not False, c.query_id))
        return out

    def match_note(self, run: str, class_name: str | None) -> str:
        """What the Matching tab says above its views (accuracy, or why it is empty)."""
        if self._match_queries(run) or self._explained_pairs(run):
            note = self._retrieval_summary(run)
            if class_name and not self.match_choices(run, class_name):
                note += f"\n\nNo query of **{class_name}** has matching results in this run; choose another class."
            return note
        others = self.match_runs()
        if others:
            return (f"No matching results in run **{run}**. Runs with matching results: "
                    + ", ".join(f"**{r}**" for r in others) + ".")
        return "No matching results in this store yet: " + _HOW

    def _retrieval_summary(self, run: str) -> str:
        results = self.store.get_match_results(run, kind="retrieval")
        queries = self._match_queries(run)
        if not results:
            return f"**{run}**: {len(queries)} queries with stored matches."
        p = results[-1].payload
        cfg = p.get("config", {})
        acc = ", ".join(f"top-{k} **{v:.3f}**" for k, v in sorted(p.get("accuracy", {}).items(), key=lambda kv: int(kv[0])))
        how = " ".join(f"{k} `{cfg[k]}`" for k in ("method", "kind", "gallery") if cfg.get(k) is not None)
        return f"**{run}**: {acc} over {p.get('n_queries', len(queries))} queries in {p.get('n_gallery', '?')} gallery items ({how})."

    def _sample_or_none(self, sample_id: str) -> ProductSample | None:
        try:
            return self.store.get_sample(sample_id)
        except SampleNotFoundError:
            return None

    def match_list(self, run: str, query_id: str, *, side: int = DISPLAY_SIDE, thumb: int = THUMB_SIDE) -> MatchListView:
        """The query's photo and its best gallery matches, best first (explained matches
        outside the stored top-k are appended)."""
        q = self._match_queries(run).get(query_id)
        explained = self._explained_pairs(run).get(query_id, [])
        sample = self.store.get_sample(query_id)
        cands = []
        if q is not None:
            cands = [MatchCandidate(i + 1, g, lab, s, None if sample.label is None else lab == sample.label, g in explained)
                     for i, (g, lab, s) in enumerate(zip(q.gallery_ids, q.gallery_labels, q.scores, strict=True))]
        listed = {c.gallery_id for c in cands}
        for m in explained:
            if m not in listed:
                e = self.store.get_match_explanation(run, query_id, m)
                ms = self._sample_or_none(m)
                label = ms.label if ms else None
                cands.append(MatchCandidate(0, m, label, e.similarity if e else float("nan"),
                                            None if sample.label is None or label is None else label == sample.label, True))
        samples = {s.id: s for s in self.store.get_samples([c.gallery_id for c in cands])}
        matches = [Panel(c.caption, self._photo(samples[c.gallery_id], thumb) if c.gallery_id in samples else placeholder(thumb))
                   for c in cands]
        if q is None:
            status = f"**{query_id}** ({sample.label}): no stored top-k list; explained matches only."
        elif q.correct:
            status = f"**{query_id}** ({sample.label}): best match **{q.gallery_ids[0]}** is of its class ({q.scores[0]:.3f})."
        else:
            hit = f"first of its class at rank {q.hit_rank}" if q.hit_rank else f"none of its class in the top {len(q.gallery_ids)}"
            status = (f"**{query_id}** ({sample.label}): best match **{q.gallery_ids[0]}** is "
                      f"{q.gallery_labels[0]} ({q.scores[0]:.3f}) ✗; {hit}.")
        return MatchListView(status, Panel(f"query {query_id} · {sample.label}", self._photo(sample, side)), matches, cands)

    def why_match(self, run: str, query_id: str, match_id: str, *, side: int = DISPLAY_SIDE) -> WhyView:
        """Why ``query_id`` matches ``match_id``: saliency overlays, shared words, faithfulness."""
        query = self.store.get_sample(query_id)
        match = self._sample_or_none(match_id)
        e = self.store.get_match_explanation(run, query_id, match_id)
        if e is None:
            photo = self._photo(match, side) if match else None
            return WhyView(
                f"**{query_id} → {match_id}** is not explained in this run: run `prodlens match-explain DATASET "
                f"{query_id} --match {match_id} --db STORE --run {run}`.",
                Panel(f"query {query_id}", self._photo(query, side)),
                Panel(f"match {match_id}: not explained", photo), [])

        def overlay(sample: ProductSample, values: np.ndarray | None, role: str) -> np.ndarray:
            def make() -> np.ndarray:
                photo = self._photo(sample, side)
                shape = values.shape if values is not None else photo_shape(self.store.image_path(sample))
                return render_saliency(photo, values, _word_boxes(e, role), source_shape=shape)

            return self._pictures.get(("why", run, query_id, match_id, role, side), make)

        try:
            q_img = overlay(query, e.saliency, "query")
            m_img = overlay(match, e.match_saliency, "match") if match else placeholder(side)
        except OSError:  # a photo that cannot be read: placeholders, as elsewhere
            q_img, m_img = placeholder(side), placeholder(side)
        summary = f"**{query_id} → {match_id}**: similarity **{e.similarity:.3f}** ({e.kind} embedding, {e.method} saliency)"
        if e.deletion is not None:
            verdict = "faithful" if e.deletion.faithful else "not better than random"
            summary += (f"; image deletion AUC {e.deletion.auc:.3f} vs random {e.deletion.random_auc:.3f} "
                        f"(lower is better: {verdict})")
        if e.word_deletion is not None:
            summary += f"; word deletion AUC {e.word_deletion.auc:.3f} vs random {e.word_deletion.random_auc:.3f}"
        summary += f"; {len(e.words)} shared words." if e.words else "; no shared OCR words."
        q_cap = "query: saliency for the similarity" if e.saliency is not None else "query (no image saliency)"
        m_cap = "match: saliency" if e.match_saliency is not None else "match (saliency not computed)"
        return WhyView(summary, Panel(q_cap, q_img), Panel(m_cap, m_img), _word_rows(e))

    def runner_up(self, run: str, query_id: str, match_id: str) -> str | None:
        """The runner-up of ``match_id`` for ``query_id``: the best other candidate with a stored
        explanation, of another class than the match where there is one (else ``None``)."""
        explained = [m for m in self._explained_pairs(run).get(query_id, []) if m != match_id]
        if not explained:
            return None
        q = self._match_queries(run).get(query_id)
        rank = {g: i for i, g in enumerate(q.gallery_ids)} if q is not None else {}
        labels = {s.id: s.label for s in self.store.get_samples([match_id, *explained])}
        return min(explained, key=lambda m: (labels.get(m) == labels.get(match_id), rank.get(m, len(rank)), m))

    def why_not(self, run: str, query_id: str, match_id: str, *, side: int = DISPLAY_SIDE) -> WhyNotView:
        """Why the runner-up of ``match_id`` did not match ``query_id`` (see :mod:`prodlens.match.contrast`)."""
        other = self.runner_up(run, query_id, match_id)
        e = self.store.get_match_explanation(run, query_id, match_id)
        if other is None or e is None:
            how = (f"explain another candidate: `prodlens match-explain DATASET {query_id} --match GALLERY_ID --db STORE --run {run}`")
            return WhyNotView(f"No runner-up of **{match_id}** is explained for **{query_id}**: {how}.",
                              Panel("query", None), Panel("runner-up: not explained", None), [])
        r = self.store.get_match_explanation(run, query_id, other)
        c = contrast_matches(e, r) if e.similarity >= r.similarity else contrast_matches(r, e)
        query, runner = self.store.get_sample(query_id), self._sample_or_none(other)

        def draw(sample: ProductSample | None, values: np.ndarray | None, role: str, expl: MatchExplanation) -> np.ndarray:
            if sample is None:
                return placeholder(side)

            def make() -> np.ndarray:
                photo = self._photo(sample, side)
                shape = values.shape if values is not None else photo_shape(self.store.image_path(sample))
                return render_saliency(photo, values, _word_boxes(expl, role), source_shape=shape)

            return self._pictures.get(("whynot", run, query_id, match_id, other, role, side), make)

        try:
            q_img = draw(query, c.query_saliency_difference, "query", e)
            r_img = draw(runner, r.match_saliency, "match", r)
        except OSError:
            q_img, r_img = placeholder(side), placeholder(side)
        label = f" ({runner.label})" if runner is not None and runner.label else ""
        summary = f"**Runner-up {other}{label}**, similarity {r.similarity:.3f} vs {e.similarity:.3f}: {c.summary()}."
        q_cap = ("query: where it looks more like the match than the runner-up (match saliency − runner-up saliency)"
                 if c.query_saliency_difference is not None else "query (no saliency to compare)")
        r_cap = f"runner-up {other}: saliency" if r.match_saliency is not None else f"runner-up {other} (saliency not computed)"
        return WhyNotView(summary, Panel(q_cap, q_img), Panel(r_cap, r_img), _contrast_rows(c), other)
