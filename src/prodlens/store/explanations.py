"""The ``explanations`` table: local explanations, their settings key and quality scores.

An explanation is keyed by (run, sample, target, settings); the settings are
``config``, ``seed`` and ``n_samples`` (:func:`~prodlens.store.codec.config_key`).
Fields of :class:`~prodlens.explain.explanation.Explanation` without a column of
their own round-trip through the JSON ``extra`` column.

>>> import numpy as np
>>> from pathlib import Path
>>> from prodlens.data.types import OcrToken, ProductSample
>>> from prodlens.explain.explanation import Explanation
>>> from prodlens.store import Store
>>> store = Store.open(":memory:")
>>> run = store.add_run("demo", model="concat", classes=["Oatly-Oat-Milk", "Arla-Standard-Milk"])
>>> store.add_samples([ProductSample("s1", Path("s1.jpg"), "Oatly-Oat-Milk", "test")])
1
>>> e = Explanation("s1", 0, "Oatly-Oat-Milk", np.array([0.5, -0.1, 0.3]), 0.1, 0.8, 0.9,
...                 np.array([[0, 1], [1, 1]]), (OcrToken("OATLY", (0, 0, 5, 2)),), 2)
>>> store.put_explanation(run.id, e)
1
>>> [x.sample_id for x in store.get_explanations("demo", class_name="Oatly-Oat-Milk")]
['s1']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import numpy as np
from sqlalchemy import Row, func, select

from prodlens.explain.explanation import Explanation
from prodlens.explain.quality import ExplanationQuality
from prodlens.store import codec, schema
from prodlens.store._util import chunks, now
from prodlens.store.backends import OnConflict
from prodlens.store.database import Database, RunRef
from prodlens.store.records import ExplanationSummary, QualitySummary

#: Explanation fields with a column of their own; any other field goes to ``extra``.
_COLUMN_FIELDS = frozenset({
    "sample_id", "target", "target_name", "weights", "intercept", "score", "prediction",
    "segments", "tokens", "n_superpixels", "seed", "n_samples", "config", "quality",
})


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _extra_dumps(e: Explanation) -> str | None:
    extra = {f.name: codec.encode_value(getattr(e, f.name)) for f in fields(e) if f.name not in _COLUMN_FIELDS}
    return codec.dumps(extra) if extra else None


def _extra_loads(text: str | None) -> dict:
    """Extra fields the current Explanation still has (a removed field is dropped)."""
    known = {f.name for f in fields(Explanation)}
    return {k: codec.decode_value(v) for k, v in codec.loads(text, {}).items() if k in known}


_EXPLANATION_KEY = ("run_id", "sample_id", "target", "config_key")


def _explanation_row(rid: int, e: Explanation) -> dict:
    weights = np.asarray(e.weights)
    if weights.ndim != 1 or len(weights) != e.n_features:
        raise ValueError(
            f"explanation {e.sample_id!r}/{e.target_name!r}: weights has shape {weights.shape} "
            f"but n_superpixels + len(tokens) = {e.n_features}"
        )
    return {
        "run_id": rid,
        "sample_id": e.sample_id,
        "target": int(e.target),
        "target_name": e.target_name,
        "config_key": codec.config_key(e.config, e.seed, e.n_samples),
        "weights": codec.encode_array(weights, compress=False),
        "intercept": float(e.intercept),
        "score": float(e.score),
        "prediction": float(e.prediction),
        "n_superpixels": int(e.n_superpixels),
        "n_features": int(e.n_features),
        "segments": codec.encode_array(np.asarray(e.segments)),
        "tokens": codec.tokens_dumps(e.tokens),
        "seed": int(e.seed),
        "n_samples": int(e.n_samples),
        "config": codec.dumps(e.config),
        "image_share": float(e.image_share),
        "extra": _extra_dumps(e),
        "created_at": now(),
        "quality": None if e.quality is None else codec.dumps(e.quality.to_dict()),
        "faithfulness": None if e.quality is None else _finite_or_none(e.quality.faithfulness),
        "stability": None if e.quality is None else _finite_or_none(e.quality.stability),
        "flagged": e.flagged,
    }

_EXPLANATION_KEY = ("run_id", "sample_id", "target", "config_key")


def _explanation_from_row(r: Row) -> Explanation:
    return Explanation(
        sample_id=r.sample_id,
        target=r.target,
        target_name=r.target_name,
        weights=codec.decode_array(r.weights),
        intercept=r.intercept,
        score=r.score,
        prediction=r.prediction,
        segments=codec.decode_array(r.segments),
        tokens=codec.tokens_loads(r.tokens) or (),
        n_superpixels=r.n_superpixels,
        seed=r.seed,
        n_samples=r.n_samples,
        config=codec.loads(r.config, {}),
        quality=None if r.quality is None else ExplanationQuality.from_dict(codec.loads(r.quality)),
        **_extra_loads(r.extra),
    )

def _explanation_where(
    rid: int, class_name: str | None, sample_id: str | None, target: int | None, label: str | None
) -> list[Any]:
    t = schema.explanations
    where: list[Any] = [t.c.run_id == rid]
    if class_name is not None:
        where.append(t.c.target_name == class_name)
    if sample_id is not None:
        where.append(t.c.sample_id == sample_id)
    if target is not None:
        where.append(t.c.target == int(target))
    if label is not None:
        where.append(t.c.sample_id.in_(select(schema.samples.c.id).where(schema.samples.c.label == label)))
    return where



class ExplanationTable:
    """Store methods for local explanations."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put_explanations(self, run: RunRef, explanations: Iterable[Explanation], *, on_conflict: OnConflict = "replace") -> int:
        """Store many explanations in one transaction; returns how many were given.

        The key is (run, sample, target, settings): the settings are ``config``,
        ``seed`` and ``n_samples``. ``config`` must be JSON-able (tuples come back as lists).
        """
        rid = self.db.run_id(run)
        rows = [_explanation_row(rid, e) for e in explanations]
        with self.db.engine.begin() as conn:
            self.db.check_samples(conn, (r["sample_id"] for r in rows))
            self.db.upsert(conn, schema.explanations, rows, _EXPLANATION_KEY, on_conflict)
        return len(rows)

    def put_explanation(self, run: RunRef, explanation: Explanation, *, on_conflict: OnConflict = "replace") -> int:
        """Store one explanation; returns its row id (stable across re-writes)."""
        rid = self.db.run_id(run)
        row = _explanation_row(rid, explanation)
        t = schema.explanations
        with self.db.engine.begin() as conn:
            self.db.check_samples(conn, [row["sample_id"]])
            self.db.upsert(conn, t, [row], _EXPLANATION_KEY, on_conflict)
            return int(conn.execute(
                select(t.c.id).where(*(t.c[k] == row[k] for k in _EXPLANATION_KEY))
            ).scalar_one())

    def get_explanations(
        self,
        run: RunRef,
        *,
        class_name: str | None = None,
        sample_id: str | None = None,
        target: int | None = None,
        label: str | None = None,
        latest_only: bool = True,
    ) -> list[Explanation]:
        """Explanations of ``run``, ordered by sample id and target.

        ``class_name`` filters on the explained (target) class, ``label`` on the
        sample's true class. With ``latest_only`` (default) only the most recently
        written explanation of each (sample, target) is returned when several
        settings were stored.
        """
        rid = self.db.run_id(run)
        t = schema.explanations
        where = _explanation_where(rid, class_name, sample_id, target, label)
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(t).where(*where).order_by(t.c.sample_id, t.c.target, t.c.id)).all()
        if latest_only:
            last: dict[tuple[str, int], Row] = {}
            for r in rows:
                last[(r.sample_id, r.target)] = r
            rows = list(last.values())
        return [_explanation_from_row(r) for r in rows]

    def get_explanation(self, run: RunRef, sample_id: str, class_name: str) -> Explanation | None:
        """The latest explanation of ``sample_id`` for target ``class_name``, or ``None``."""
        rid = self.db.run_id(run)
        t = schema.explanations
        with self.db.engine.connect() as conn:
            r = conn.execute(
                select(t)
                .where(t.c.run_id == rid, t.c.sample_id == sample_id, t.c.target_name == class_name)
                .order_by(t.c.id.desc())
                .limit(1)
            ).first()
        return None if r is None else _explanation_from_row(r)

    def get_segments(self, run: RunRef, sample_id: str) -> np.ndarray | None:
        """The segment map of any explanation of ``sample_id`` in ``run`` (they share it)."""
        rid = self.db.run_id(run)
        t = schema.explanations
        with self.db.engine.connect() as conn:
            blob = conn.execute(
                select(t.c.segments).where(t.c.run_id == rid, t.c.sample_id == sample_id).order_by(t.c.id.desc()).limit(1)
            ).scalar()
        return None if blob is None else codec.decode_array(blob)

    def get_segments_many(self, run: RunRef, sample_ids: Iterable[str]) -> dict[str, np.ndarray]:
        """Segment maps of many samples in ``run`` in one query (samples without an
        explanation are left out)."""
        rid = self.db.run_id(run)
        t = schema.explanations
        out: dict[str, np.ndarray] = {}
        with self.db.engine.connect() as conn:
            for chunk in chunks(sorted(set(sample_ids))):
                latest = (select(func.max(t.c.id)).where(t.c.run_id == rid, t.c.sample_id.in_(chunk))
                          .group_by(t.c.sample_id))
                for sid, blob in conn.execute(select(t.c.sample_id, t.c.segments).where(t.c.id.in_(latest))):
                    out[sid] = codec.decode_array(blob)
        return out

    def explanation_summaries(
        self, run: RunRef, *, class_name: str | None = None, label: str | None = None
    ) -> list[ExplanationSummary]:
        """Explanation rows without their arrays (fast: for lists and histograms)."""
        rid = self.db.run_id(run)
        t = schema.explanations
        where = _explanation_where(rid, class_name, None, None, label)
        cols = [t.c.id, t.c.sample_id, t.c.target, t.c.target_name, t.c.score, t.c.prediction, t.c.image_share, t.c.n_features]
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(*cols).where(*where).order_by(t.c.sample_id, t.c.target, t.c.id)).all()
        return [ExplanationSummary(*r) for r in rows]

    def quality_summaries(
        self, run: RunRef, *, class_name: str | None = None, label: str | None = None
    ) -> list[QualitySummary]:
        """The quality scores of ``run``'s explanations without their arrays (the latest
        explanation of each (sample, target), as :meth:`get_explanations` returns them),
        ordered by sample id and target; ``quality`` is ``None`` for those stored unscored.

        >>> from prodlens.store import Store
        >>> s = Store.open(":memory:")
        >>> s.quality_summaries(s.add_run("r"))
        []
        """
        rid = self.db.run_id(run)
        t = schema.explanations
        where = _explanation_where(rid, class_name, None, None, label)
        cols = [t.c.id, t.c.sample_id, t.c.target, t.c.target_name, t.c.quality]
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(*cols).where(*where).order_by(t.c.sample_id, t.c.target, t.c.id)).all()
        last = {(r.sample_id, r.target): r for r in rows}
        return [
            QualitySummary(r.id, r.sample_id, r.target, r.target_name,
                           None if r.quality is None else ExplanationQuality.from_dict(codec.loads(r.quality)))
            for r in last.values()
        ]

    def explanation_keys(self, run: RunRef) -> set[tuple[str, int, str]]:
        """The ``(sample_id, target, config_key)`` of every explanation stored for ``run``:
        what a resumed job checks to skip work already written.

        >>> from prodlens.store import Store
        >>> s = Store.open(":memory:")
        >>> s.explanation_keys(s.add_run("r"))
        set()
        """
        rid = self.db.run_id(run)
        t = schema.explanations
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(t.c.sample_id, t.c.target, t.c.config_key).where(t.c.run_id == rid)).all()
        return {(r.sample_id, int(r.target), r.config_key) for r in rows}


__all__ = ["ExplanationTable"]
