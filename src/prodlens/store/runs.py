"""The ``runs`` table: one row per job, its metadata, and the counts of what it holds.

>>> from prodlens.store import Store
>>> s = Store.open(":memory:")
>>> s.add_run("r1", model="concat").id, [r.name for r in s.list_runs()]
(1, ['r1'])
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Row, Table, delete, func, insert, select, update

from prodlens.store import codec, schema
from prodlens.store._util import now
from prodlens.store.database import Database, RunRef
from prodlens.store.exceptions import RunExistsError
from prodlens.store.records import Run

#: Packages whose versions are recorded with each run (never imported, only looked up).
VERSION_PACKAGES = (
    "prodlens", "numpy", "torch", "torchvision", "timm", "sentence-transformers",
    "rapidocr_onnxruntime", "onnxruntime", "scikit-image", "scikit-learn", "pillow", "sqlalchemy",
)

IF_EXISTS = ("error", "reuse", "replace")


def package_versions(names: Iterable[str] = VERSION_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (missing ones left out) plus Python's.

    >>> "python" in package_versions(["numpy"])
    True
    """
    out = {"python": sys.version.split()[0]}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass(frozen=True)
class RunSummary:
    """Counts of what a run holds (``prodlens db inspect``)."""

    run: Run
    n_predictions: int
    n_correct: int
    n_explanations: int
    n_explained_samples: int
    n_global_features: int
    n_deletion_results: int
    n_match_results: int
    classes: tuple[str, ...]
    n_match_queries: int = 0
    n_match_explanations: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.n_correct / self.n_predictions if self.n_predictions else None


def _run_from_row(r: Row) -> Run:
    return Run(
        id=r.id,
        name=r.name,
        model=r.model,
        checkpoint=r.checkpoint,
        dataset=r.dataset,
        classes=tuple(codec.loads(r.classes, [])),
        config=codec.loads(r.config, {}),
        versions=codec.loads(r.versions, {}),
        created_at=datetime.fromisoformat(r.created_at) if r.created_at else None,
        notes=r.notes,
    )


class RunTable:
    """Store methods for runs (``Store.add_run``, ``get_run``, ``list_runs``, ...)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_run(
        self,
        name: str,
        *,
        model: str | None = None,
        checkpoint: str | Path | None = None,
        dataset: str | Path | None = None,
        classes: Sequence[str] = (),
        config: dict | None = None,
        notes: str | None = None,
        versions: dict | None = None,
        if_exists: Literal["error", "reuse", "replace"] = "error",
    ) -> Run:
        """Record a run and return it.

        ``if_exists``: ``"error"`` raises :class:`RunExistsError` when ``name`` is taken;
        ``"reuse"`` updates its metadata and keeps its results (resume a job);
        ``"replace"`` deletes its results first. ``versions`` defaults to
        :func:`package_versions`.

        >>> from prodlens.store import Store
        >>> s = Store.open(":memory:")
        >>> s.add_run("r1", model="concat").id
        1
        >>> s.add_run("r1", model="concat", if_exists="reuse").id
        1
        """
        if if_exists not in IF_EXISTS:
            raise ValueError(f"if_exists must be 'error', 'reuse' or 'replace', got {if_exists!r}")
        values = {
            "name": name,
            "model": model,
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "dataset": None if dataset is None else str(dataset),
            "classes": codec.dumps(list(classes)),
            "config": codec.dumps(config or {}),
            "versions": codec.dumps(versions if versions is not None else package_versions()),
            "notes": notes,
        }
        t = schema.runs
        with self.db.engine.begin() as conn:
            rid = conn.execute(select(t.c.id).where(t.c.name == name)).scalar()
            if rid is not None:
                if if_exists == "error":
                    raise RunExistsError(
                        f"a run named {name!r} exists in {self.db.where}; pick another name, "
                        "or pass if_exists='reuse' (resume) or 'replace' (start over)"
                    )
                if if_exists == "replace":
                    _delete_results(conn, rid)
                conn.execute(update(t).where(t.c.id == rid).values(**values))
            else:
                rid = conn.execute(insert(t).values(created_at=now(), **values).returning(t.c.id)).scalar_one()
        self.db.remember_run(name, int(rid))
        return self.get_run(int(rid))

    def get_run(self, run: RunRef) -> Run:
        """The :class:`Run` for an id or name."""
        rid = self.db.run_id(run)
        with self.db.engine.connect() as conn:
            r = conn.execute(select(schema.runs).where(schema.runs.c.id == rid)).one()
        return _run_from_row(r)

    def list_runs(self) -> list[Run]:
        """All runs, oldest first.

        >>> from prodlens.store import Store
        >>> Store.open(":memory:").list_runs()
        []
        """
        with self.db.engine.connect() as conn:
            rows = conn.execute(select(schema.runs).order_by(schema.runs.c.id)).all()
        return [_run_from_row(r) for r in rows]

    def delete_run(self, run: RunRef) -> None:
        """Delete a run and every result stored for it (samples stay)."""
        rid = self.db.run_id(run)
        with self.db.engine.begin() as conn:
            _delete_results(conn, rid)
            conn.execute(delete(schema.runs).where(schema.runs.c.id == rid))
        self.db.forget_run(rid)

    def class_names(self, run: RunRef) -> list[str]:
        """The run's classes: as recorded with the run, else every label and target seen."""
        r = self.get_run(run)
        if r.classes:
            return list(r.classes)
        s, p, e = schema.samples, schema.predictions, schema.explanations
        with self.db.engine.connect() as conn:
            labels = set(conn.execute(
                select(s.c.label).distinct().join(p, p.c.sample_id == s.c.id).where(p.c.run_id == r.id)
            ).scalars())
            labels |= set(conn.execute(select(e.c.target_name).distinct().where(e.c.run_id == r.id)).scalars())
        return sorted(x for x in labels if x is not None)

    def summary(self, run: RunRef) -> RunSummary:
        """Counts of everything stored for ``run``."""
        r = self.get_run(run)
        p, e = schema.predictions, schema.explanations

        def count(conn: Connection, table: Table, *where: Any) -> int:
            return int(conn.execute(select(func.count()).select_from(table).where(table.c.run_id == r.id, *where)).scalar_one())

        with self.db.engine.connect() as conn:
            n_pred = count(conn, p)
            n_correct = count(conn, p, p.c.correct.is_(True))
            n_expl = count(conn, e)
            n_expl_samples = int(conn.execute(
                select(func.count(func.distinct(e.c.sample_id))).where(e.c.run_id == r.id)
            ).scalar_one())
            n_glob = count(conn, schema.global_features)
            n_del = count(conn, schema.deletion_results)
            n_match = count(conn, schema.match_results)
            n_mq = count(conn, schema.match_queries)
            n_mx = count(conn, schema.match_explanations)
        return RunSummary(r, n_pred, n_correct, n_expl, n_expl_samples, n_glob, n_del, n_match,
                          tuple(self.class_names(r)), n_mq, n_mx)


def _delete_results(conn: Connection, rid: int) -> None:
    for child in schema.RUN_TABLES:
        conn.execute(delete(child).where(child.c.run_id == rid))


__all__ = ["VERSION_PACKAGES", "RunSummary", "RunTable", "package_versions"]
