"""The ``global_features`` table: the ranked features of a global explanation.

A feature is keyed by (run, class, modality, method, rank).

>>> from prodlens.store import GlobalFeatureRecord, Store
>>> s = Store.open(":memory:")
>>> s.put_global_features(s.add_run("r"), [GlobalFeatureRecord("milk", "text", 0, 0.7, {"word": "OAT"})])
1
>>> [f.payload["word"] for f in s.get_global_features("r", modality="text")]
['OAT']
"""

from __future__ import annotations

from collections.abc import Iterable
from sqlalchemy import delete, select

from prodlens.store import codec, schema
from prodlens.store.database import Database, RunRef, where_equal
from prodlens.store.records import GlobalFeatureRecord


class GlobalFeatureTable:
    """Store methods for global explanations."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put_global_features(self, run: RunRef, features: Iterable[GlobalFeatureRecord], *, replace: bool = True) -> int:
        """Store a global explanation. With ``replace`` (default) the old entries of every
        (class, modality, method) in ``features`` are deleted first, so a re-run that
        finds fewer clusters leaves no stale ranks behind."""
        rid = self.db.run_id(run)
        feats = list(features)
        t = schema.global_features
        rows = [
            {
                "run_id": rid,
                "class_name": f.class_name,
                "modality": f.modality,
                "method": f.method,
                "rank": int(f.rank),
                "importance": float(f.importance),
                "payload": codec.dumps(f.payload),
            }
            for f in feats
        ]
        with self.db.engine.begin() as conn:
            if replace:
                for cls, mod, meth in sorted({(f.class_name, f.modality, f.method) for f in feats}):
                    conn.execute(delete(t).where(
                        t.c.run_id == rid, t.c.class_name == cls, t.c.modality == mod, t.c.method == meth
                    ))
            self.db.upsert(conn, t, rows, ["run_id", "class_name", "modality", "method", "rank"], "replace")
        return len(rows)

    def get_global_features(
        self, run: RunRef, *, class_name: str | None = None, modality: str | None = None, method: str | None = None
    ) -> list[GlobalFeatureRecord]:
        """Global features ordered by class, modality, method and rank."""
        t = schema.global_features
        where = where_equal(t, run_id=self.db.run_id(run), class_name=class_name, modality=modality, method=method)
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                select(t).where(*where).order_by(t.c.class_name, t.c.modality, t.c.method, t.c.rank)
            ).all()
        return [
            GlobalFeatureRecord(r.class_name, r.modality, r.rank, r.importance, codec.loads(r.payload, {}), r.method)
            for r in rows
        ]


__all__ = ["GlobalFeatureTable"]
