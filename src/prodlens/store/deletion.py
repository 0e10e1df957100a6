"""The ``deletion_results`` table: deletion-test curves (keyed by run, model, modality, settings).

>>> from prodlens.store import DeletionResult, Store
>>> s = Store.open(":memory:")
>>> s.put_deletion_result(s.add_run("r"), DeletionResult("concat", "image", [0, 1], [0.9, 0.5], ["s1"], {}))
>>> s.get_deletion_results("r")[0].accuracies
[0.9, 0.5]
"""

from __future__ import annotations

from sqlalchemy import select

from prodlens.store import codec, schema
from prodlens.store._util import now
from prodlens.store.backends import OnConflict
from prodlens.store.database import Database, RunRef, where_equal
from prodlens.store.records import DeletionResult


class DeletionTable:
    """Store methods for deletion-test results."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put_deletion_result(self, run: RunRef, result: DeletionResult, *, on_conflict: OnConflict = "replace") -> None:
        """Store one deletion-test curve (keyed by run, model, modality and config)."""
        if len(result.steps) != len(result.accuracies):
            raise ValueError(
                f"deletion result: {len(result.steps)} steps but {len(result.accuracies)} accuracies; give one accuracy per step"
            )
        rid = self.db.run_id(run)
        row = {
            "run_id": rid,
            "model": result.model,
            "modality": result.modality,
            "config_key": codec.config_key(result.config, 0, 0),
            "steps": codec.dumps(list(result.steps)),
            "accuracies": codec.dumps([float(a) for a in result.accuracies]),
            "sample_ids": codec.dumps(list(result.sample_ids)),
            "config": codec.dumps(result.config),
            "created_at": now(),
        }
        with self.db.engine.begin() as conn:
            self.db.upsert(conn, schema.deletion_results, [row], ["run_id", "model", "modality", "config_key"], on_conflict)

    def get_deletion_results(self, run: RunRef, *, model: str | None = None) -> list[DeletionResult]:
        t = schema.deletion_results
        where = where_equal(t, run_id=self.db.run_id(run), model=model)
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(t).where(*where).order_by(t.c.model, t.c.modality, t.c.id)).all()
        return [
            DeletionResult(r.model, r.modality, codec.loads(r.steps), codec.loads(r.accuracies),
                           codec.loads(r.sample_ids), codec.loads(r.config, {}))
            for r in rows
        ]


__all__ = ["DeletionTable"]
