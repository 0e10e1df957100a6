"""Matching results in the store: per-query retrieval results, match explanations and
generic matching results.

:class:`MatchingTables` holds the SQL of the ``match_queries``, ``match_explanations``
and ``match_results`` tables; :class:`~prodlens.store.core.Store` holds one and
forwards to it, so these are ordinary store methods. Writes are idempotent like every other store write:

* a retrieval query is keyed by (run, query sample, settings); settings are the
  :class:`~prodlens.store.records.MatchQuery` ``config`` (embedding, kind, gallery, ...);
* a match explanation by (run, query, match, settings); settings are the explanation's
  ``kind``, ``method``, ``seed`` and ``config``.

Saliency maps are stored with :func:`~prodlens.store.codec.encode_map` (16-bit,
compressed); everything else round-trips exactly.

>>> from pathlib import Path
>>> from prodlens.data.types import ProductSample
>>> from prodlens.store import MatchQuery, Store
>>> store = Store.open(":memory:")
>>> store.add_samples([ProductSample(i, Path(f"{i}.jpg"), lab, "val") for i, lab in
...                    [("q", "Oatly-Oat-Milk"), ("g1", "Arla-Milk"), ("g2", "Oatly-Oat-Milk")]])
3
>>> run = store.add_run("match", model="zero_shot")
>>> store.put_match_queries(run, [MatchQuery("q", ("g1", "g2"), (0.9, 0.8))])
1
>>> q = store.get_match_queries(run)[0]
>>> q.gallery_labels, q.correct, q.hit_rank
(('Arla-Milk', 'Oatly-Oat-Milk'), False, 2)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Row, select

from prodlens.match.attributes import WordAttribution
from prodlens.match.deletion import DeletionCurve
from prodlens.match.explanation import MatchExplanation
from prodlens.match.words import WordMatch
from prodlens.store import codec, schema
from prodlens.store._util import now
from prodlens.store.backends import OnConflict
from prodlens.store.database import Database, RunRef, where_equal
from prodlens.store.records import MatchQuery, MatchResult

_QUERY_KEY = ("run_id", "query_id", "config_key")
_EXPLANATION_KEY = ("run_id", "query_id", "match_id", "config_key")


def _word_to_json(w: WordAttribution) -> dict:
    """A shared word with every float exact (``WordAttribution.to_dict`` rounds token boxes)."""
    m = w.match
    return {
        "word": m.word, "ratio": float(m.ratio),
        "query_tokens": [codec.token_to_json(t) for t in m.query_tokens],
        "match_tokens": [codec.token_to_json(t) for t in m.match_tokens],
        "text_drop": float(w.text_drop), "image_drop": float(w.image_drop), "drop": float(w.drop),
        "saliency": None if w.saliency is None else float(w.saliency),
        "match_saliency": None if w.match_saliency is None else float(w.match_saliency),
    }


def _word_from_json(d: dict) -> WordAttribution:
    match = WordMatch(
        d["word"], tuple(codec.token_from_json(t) for t in d["query_tokens"]),
        tuple(codec.token_from_json(t) for t in d["match_tokens"]), float(d["ratio"]),
    )
    sal, msal = d.get("saliency"), d.get("match_saliency")
    return WordAttribution(match, float(d["text_drop"]), float(d["image_drop"]), float(d["drop"]),
                           None if sal is None else float(sal), None if msal is None else float(msal))


def _curve_dumps(c: DeletionCurve | None) -> str | None:
    return None if c is None else codec.dumps(c.to_dict())


def _curve_loads(text: str | None) -> DeletionCurve | None:
    return None if text is None else DeletionCurve.from_dict(codec.loads(text))


def _map_dumps(values: Any) -> bytes | None:
    return None if values is None else codec.encode_map(values)


def _map_loads(blob: bytes | None) -> Any:
    return None if blob is None else codec.decode_map(blob)


def explanation_config_key(e: MatchExplanation) -> str:
    """The settings part of a match explanation's key.

    >>> e = MatchExplanation("q", "m", 0.8, "fused", "rise", None, None, (), None, None, (), (), seed=1)
    >>> explanation_config_key(e) == explanation_config_key(e) != explanation_config_key(
    ...     MatchExplanation("q", "m", 0.8, "fused", "rise", None, None, (), None, None, (), (), seed=2))
    True
    """
    return codec.config_key({"kind": e.kind, "method": e.method, "config": e.config}, e.seed, 0)


class MatchingTables:
    """Store methods for product-matching results (held by :class:`~prodlens.store.Store`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ retrieval
    def put_match_queries(self, run: RunRef, queries: Iterable[MatchQuery], *, on_conflict: OnConflict = "replace") -> int:
        """Store retrieval results, one row per query; returns how many were given.

        The query and every gallery item must be samples of the store (add them first
        with ``add_samples``); their labels give ``gallery_labels``, ``correct`` and
        ``hit_rank``.
        """
        rid = self.db.run_id(run)
        qs = list(queries)
        with self.db.engine.begin() as conn:
            ids = {q.query_id for q in qs} | {g for q in qs for g in q.gallery_ids}
            self.db.check_samples(conn, ids)
            labels = self.db.labels(conn, ids)
            rows = []
            for q in qs:
                full = MatchQuery(q.query_id, tuple(q.gallery_ids), tuple(float(s) for s in q.scores),
                                  tuple(labels[g] for g in q.gallery_ids), labels[q.query_id], q.config)
                rows.append({
                    "run_id": rid, "query_id": q.query_id, "config_key": codec.config_key(q.config, 0, 0),
                    "gallery_ids": codec.dumps(list(full.gallery_ids)),
                    "gallery_labels": codec.dumps(list(full.gallery_labels)),
                    "scores": codec.dumps(list(full.scores)),
                    "correct": full.correct, "hit_rank": full.hit_rank,
                    "config": codec.dumps(q.config), "created_at": now(),
                })
            self.db.upsert(conn, schema.match_queries, rows, _QUERY_KEY, on_conflict)
        return len(rows)

    def get_match_queries(
        self, run: RunRef, *, label: str | None = None, query_id: str | None = None, latest_only: bool = True
    ) -> list[MatchQuery]:
        """Retrieval results of ``run`` ordered by query id, filtered by the query's true
        class (``label``) or id. With ``latest_only`` (default) only the most recently
        written row of each query is returned when several settings were stored.
        """
        t, s = schema.match_queries, schema.samples
        where = where_equal(t, run_id=self.db.run_id(run), query_id=query_id) + where_equal(s, label=label)
        q = select(t, s.c.label).join(s, s.c.id == t.c.query_id).where(*where).order_by(t.c.query_id, t.c.id)
        with self.db.engine.connect() as conn:
            rows = conn.execute(q).all()
        if latest_only:
            rows = list({r.query_id: r for r in rows}.values())
        return [
            MatchQuery(r.query_id, tuple(codec.loads(r.gallery_ids)), tuple(float(v) for v in codec.loads(r.scores)),
                       tuple(codec.loads(r.gallery_labels)), r.label, codec.loads(r.config, {}))
            for r in rows
        ]

    # ------------------------------------------------------------------ explanations
    @staticmethod
    def _match_explanation_row(rid: int, e: MatchExplanation) -> dict:
        return {
            "run_id": rid, "query_id": e.query_id, "match_id": e.match_id,
            "config_key": explanation_config_key(e),
            "similarity": float(e.similarity), "kind": e.kind, "method": e.method,
            "saliency": _map_dumps(e.saliency), "match_saliency": _map_dumps(e.match_saliency),
            "words": codec.dumps([_word_to_json(w) for w in e.words]),
            "deletion": _curve_dumps(e.deletion), "word_deletion": _curve_dumps(e.word_deletion),
            "curves": codec.dumps({k: c.to_dict() for k, c in e.curves.items()}),
            "deletion_auc": None if e.deletion is None else e.deletion.auc,
            "deletion_random_auc": None if e.deletion is None else e.deletion.random_auc,
            "query_tokens": codec.tokens_dumps(e.query_tokens), "match_tokens": codec.tokens_dumps(e.match_tokens),
            "seed": int(e.seed), "seconds": float(e.seconds), "config": codec.dumps(e.config), "created_at": now(),
        }

    def put_match_explanations(
        self, run: RunRef, explanations: Iterable[MatchExplanation], *, on_conflict: OnConflict = "replace"
    ) -> int:
        """Store match explanations in one transaction; returns how many were given.

        Both products of each pair must be samples of the store.
        """
        rid = self.db.run_id(run)
        rows = [self._match_explanation_row(rid, e) for e in explanations]
        with self.db.engine.begin() as conn:
            self.db.check_samples(conn, {r["query_id"] for r in rows} | {r["match_id"] for r in rows})
            self.db.upsert(conn, schema.match_explanations, rows, _EXPLANATION_KEY, on_conflict)
        return len(rows)

    @staticmethod
    def _match_explanation_from_row(r: Row) -> MatchExplanation:
        return MatchExplanation(
            query_id=r.query_id, match_id=r.match_id, similarity=r.similarity, kind=r.kind, method=r.method,
            saliency=_map_loads(r.saliency), match_saliency=_map_loads(r.match_saliency),
            words=tuple(_word_from_json(d) for d in codec.loads(r.words, [])),
            deletion=_curve_loads(r.deletion), word_deletion=_curve_loads(r.word_deletion),
            curves={k: DeletionCurve.from_dict(c) for k, c in codec.loads(r.curves, {}).items()},
            query_tokens=codec.tokens_loads(r.query_tokens) or (), match_tokens=codec.tokens_loads(r.match_tokens) or (),
            seed=r.seed, seconds=r.seconds, config=codec.loads(r.config, {}),
        )

    def get_match_explanations(
        self, run: RunRef, *, query_id: str | None = None, match_id: str | None = None, latest_only: bool = True
    ) -> list[MatchExplanation]:
        """Match explanations of ``run`` ordered by query and match id; with
        ``latest_only`` (default) the most recently written one per pair."""
        t = schema.match_explanations
        where = where_equal(t, run_id=self.db.run_id(run), query_id=query_id, match_id=match_id)
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(t).where(*where).order_by(t.c.query_id, t.c.match_id, t.c.id)).all()
        if latest_only:
            rows = list({(r.query_id, r.match_id): r for r in rows}.values())
        return [self._match_explanation_from_row(r) for r in rows]

    def get_match_explanation(self, run: RunRef, query_id: str, match_id: str) -> MatchExplanation | None:
        """The latest explanation of why ``query_id`` matches ``match_id``, or ``None``."""
        found = self.get_match_explanations(run, query_id=query_id, match_id=match_id)
        return found[-1] if found else None

    def match_explanation_pairs(self, run: RunRef) -> list[tuple[str, str]]:
        """The (query, match) pairs explained in ``run``, without reading their maps (fast)."""
        rid = self.db.run_id(run)
        t = schema.match_explanations
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(t.c.query_id, t.c.match_id).distinct().where(t.c.run_id == rid)
                                .order_by(t.c.query_id, t.c.match_id)).all()
        return [(q, m) for q, m in rows]

    # ------------------------------------------------------------------ generic results
    def put_match_results(self, run: RunRef, results: Iterable[MatchResult], *, on_conflict: OnConflict = "replace") -> int:
        """Store generic matching results (keyed by run, kind and key)."""
        rid = self.db.run_id(run)
        rows = [{"run_id": rid, "kind": m.kind, "key": m.key, "payload": codec.dumps(m.payload)} for m in results]
        with self.db.engine.begin() as conn:
            self.db.upsert(conn, schema.match_results, rows, ["run_id", "kind", "key"], on_conflict)
        return len(rows)

    def get_match_results(self, run: RunRef, *, kind: str | None = None) -> list[MatchResult]:
        t = schema.match_results
        where = where_equal(t, run_id=self.db.run_id(run), kind=kind)
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(t).where(*where).order_by(t.c.kind, t.c.key)).all()
        return [MatchResult(r.kind, r.key, codec.loads(r.payload, {})) for r in rows]
