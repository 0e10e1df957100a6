"""The ``samples`` and ``predictions`` tables.

Samples do not belong to a run: every run's results refer to them by id. A
prediction is keyed by (run, sample).

>>> from pathlib import Path
>>> from prodlens.data.types import ProductSample
>>> from prodlens.store import Prediction, Store
>>> s = Store.open(":memory:")
>>> s.add_samples([ProductSample("s1", Path("s1.jpg"), "milk", "val")])
1
>>> _ = s.put_predictions(s.add_run("r"), [Prediction("s1", "milk", [("milk", 0.9)])])
>>> s.get_predictions("r")[0].correct
True
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Row, func, select

from prodlens.data.types import ProductSample
from prodlens.store import codec, schema
from prodlens.store._util import chunks
from prodlens.store.backends import OnConflict
from prodlens.store.database import Database, RunRef
from prodlens.store.exceptions import SampleNotFoundError
from prodlens.store.records import Prediction


def _sample_from_row(r: Row) -> ProductSample:
    return ProductSample(
        r.id, Path(r.image_path), r.label, r.split, codec.tokens_loads(r.ocr_tokens), codec.loads(r.meta, {})
    )


def _rows_by_id(conn: Any, query: Any, id_column: Any, ids: Iterable[str] | None, where: list[Any]) -> list[Row]:
    """Rows of ``query`` filtered by ``where`` and, when given, ``id_column IN ids`` (chunked), ordered by id."""
    if ids is None:
        return conn.execute(query.where(*where).order_by(id_column)).all()
    rows: list[Row] = []
    for chunk in chunks(sorted(set(ids))):
        rows += conn.execute(query.where(id_column.in_(chunk), *where)).all()
    rows.sort(key=lambda r: getattr(r, id_column.name))
    return rows


class SampleTable:
    """Store methods for samples and predictions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------ samples
    def add_samples(self, samples: Iterable[ProductSample], *, on_conflict: OnConflict = "replace") -> int:
        """Insert or update samples (keyed by id); returns how many were given.

        Samples do not belong to a run: every run's results refer to them by id.
        """
        rows = [
            {
                "id": s.id,
                "image_path": str(s.image_path),
                "label": s.label,
                "split": s.split,
                "ocr_tokens": codec.tokens_dumps(s.ocr_tokens),
                "meta": codec.dumps(s.meta) if s.meta else None,
            }
            for s in samples
        ]
        with self.db.engine.begin() as conn:
            self.db.upsert(conn, schema.samples, rows, ["id"], on_conflict)
        return len(rows)

    def get_sample(self, sample_id: str) -> ProductSample:
        """One sample; raises :class:`SampleNotFoundError`."""
        with self.db.engine.connect() as conn:
            r = conn.execute(select(schema.samples).where(schema.samples.c.id == sample_id)).first()
        if r is None:
            raise SampleNotFoundError(f"no sample {sample_id!r} in {self.db.where}")
        return _sample_from_row(r)

    def get_samples(
        self, ids: Iterable[str] | None = None, *, label: str | None = None, split: str | None = None
    ) -> list[ProductSample]:
        """Samples filtered by ids, label and/or split, ordered by id."""
        t = schema.samples
        where = []
        if label is not None:
            where.append(t.c.label == label)
        if split is not None:
            where.append(t.c.split == split)
        with self.db.engine.connect() as conn:
            rows = _rows_by_id(conn, select(t), t.c.id, ids, where)
        return [_sample_from_row(r) for r in rows]

    def count_samples(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.samples)).scalar_one())

    # ------------------------------------------------------------------ predictions
    def put_predictions(self, run: RunRef, predictions: Iterable[Prediction], *, on_conflict: OnConflict = "replace") -> int:
        """Store predictions (keyed by run and sample). ``correct=None`` is filled in
        from the sample's label when it has one."""
        rid = self.db.run_id(run)
        preds = list(predictions)
        with self.db.engine.begin() as conn:
            self.db.check_samples(conn, (p.sample_id for p in preds))
            labels = self.db.labels(conn, (p.sample_id for p in preds))
            rows = []
            for p in preds:
                correct = p.correct
                if correct is None and labels.get(p.sample_id) is not None:
                    correct = p.predicted == labels[p.sample_id]
                rows.append({
                    "run_id": rid,
                    "sample_id": p.sample_id,
                    "predicted": p.predicted,
                    "top_k": codec.dumps([[n, float(v)] for n, v in p.top_k]),
                    "probabilities": None if p.probabilities is None
                    else codec.encode_array(np.asarray(p.probabilities, dtype=np.float64), compress=False),
                    "correct": correct,
                })
            self.db.upsert(conn, schema.predictions, rows, ["run_id", "sample_id"], on_conflict)
        return len(rows)

    def get_predictions(
        self,
        run: RunRef,
        *,
        label: str | None = None,
        predicted: str | None = None,
        wrong_only: bool = False,
        sample_ids: Iterable[str] | None = None,
        with_probabilities: bool = True,
    ) -> list[Prediction]:
        """Predictions of ``run`` (with each sample's ``label``), ordered by sample id.

        ``label``/``predicted`` filter on the true/predicted class; ``wrong_only`` keeps
        misclassified samples; ``with_probabilities=False`` skips decoding the full
        probability vectors (faster; ``top_k`` is always there).
        """
        rid = self.db.run_id(run)
        p, s = schema.predictions, schema.samples
        where: list[Any] = [p.c.run_id == rid]
        if label is not None:
            where.append(s.c.label == label)
        if predicted is not None:
            where.append(p.c.predicted == predicted)
        if wrong_only:
            where.append(p.c.correct.is_(False))
        cols = [c for c in p.c if with_probabilities or c.name != "probabilities"]
        q = select(*cols, s.c.label).join(s, s.c.id == p.c.sample_id)
        with self.db.engine.connect() as conn:
            rows = _rows_by_id(conn, q, p.c.sample_id, sample_ids, where)
        return [
            Prediction(
                sample_id=r.sample_id,
                predicted=r.predicted,
                top_k=[(n, float(v)) for n, v in codec.loads(r.top_k, [])],
                correct=r.correct,
                probabilities=None if not with_probabilities or r.probabilities is None
                else tuple(codec.decode_array(r.probabilities).tolist()),
                label=r.label,
            )
            for r in rows
        ]


__all__ = ["SampleTable"]
