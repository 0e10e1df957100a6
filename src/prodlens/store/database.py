"""What every table module of the store shares: :class:`Database`.

A :class:`Database` holds the engine, its :class:`~prodlens.store.backends.Backend`
and the parsed :class:`~prodlens.store.location.StoreLocation`, and offers the few
operations the table modules have in common: resolve a run reference to its id,
upsert rows, check that samples exist, read samples' labels. The table modules
(``runs``, ``samples``, ``explanations``, ``global_features``, ``deletion``,
``matching``, ``sanity``) each take a ``Database``; :class:`~prodlens.store.Store`
is the thin front that holds them.

>>> from prodlens.store.location import StoreLocation
>>> db = Database.connect(StoreLocation.parse(":memory:"))
>>> db.where, db.dialect
(':memory:', 'sqlite')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Table, select

from prodlens._validation import did_you_mean
from prodlens.store import schema
from prodlens.store._util import chunks
from prodlens.store.backends import Backend, OnConflict, backend_for
from prodlens.store.exceptions import RunNotFoundError, SampleNotFoundError
from prodlens.store.location import StoreLocation
from prodlens.store.records import Run

#: How methods that take a run accept it: its id, its name or the :class:`Run`.
RunRef = int | str | Run


def where_equal(table: Table, **values: Any) -> list[Any]:
    """``column == value`` conditions for the values that are not ``None``.

    >>> [str(c) for c in where_equal(schema.runs, name="r", model=None)]
    ['runs.name = :name_1']
    """
    return [table.c[k] == v for k, v in values.items() if v is not None]


class Database:
    """An open store's engine, backend and run-id cache."""

    def __init__(self, engine: Engine, location: StoreLocation, backend: Backend | None = None) -> None:
        self.engine = engine
        self.location = location
        self.backend = backend or backend_for(location)
        self._run_ids: dict[str, int] = {}

    @classmethod
    def connect(cls, location: StoreLocation) -> Database:
        """Create the engine for ``location`` (connects lazily; creates no file yet)."""
        backend = backend_for(location)
        return cls(backend.create_engine(location), location, backend)

    @property
    def where(self) -> str:
        return self.location.where

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def upsert(self, conn: Connection, table: Table, rows: list[dict], keys: Sequence[str],
               on_conflict: OnConflict = "replace") -> None:
        """Idempotent insert in the backend's dialect (see :meth:`Backend.upsert`)."""
        self.backend.upsert(conn, table, rows, keys, on_conflict)

    # ------------------------------------------------------------------ samples
    def check_samples(self, conn: Connection, ids: Iterable[str]) -> None:
        """Raise :class:`SampleNotFoundError` unless every id is a stored sample."""
        wanted = sorted(set(ids))
        found: set[str] = set()
        for chunk in chunks(wanted):
            found.update(conn.execute(select(schema.samples.c.id).where(schema.samples.c.id.in_(chunk))).scalars())
        missing = [i for i in wanted if i not in found]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise SampleNotFoundError(
                f"sample(s) {', '.join(map(repr, missing[:3]))}{more} not in the store; "
                "add them first with store.add_samples(dataset.samples)"
            )

    @staticmethod
    def labels(conn: Connection, ids: Iterable[str]) -> dict[str, str | None]:
        """The true class of each stored sample in ``ids``."""
        s = schema.samples
        out: dict[str, str | None] = {}
        for chunk in chunks(sorted(set(ids))):
            out.update((sid, lab) for sid, lab in conn.execute(select(s.c.id, s.c.label).where(s.c.id.in_(chunk))))
        return out

    # ------------------------------------------------------------------ runs
    def run_id(self, run: RunRef) -> int:
        """The id of ``run`` (id, name or :class:`Run`); raises :class:`RunNotFoundError`."""
        if isinstance(run, Run):
            return run.id
        if isinstance(run, (int, np.integer)) and not isinstance(run, bool):
            rid = int(run)
            if rid in self._run_ids.values():
                return rid
            with self.engine.connect() as conn:
                name = conn.execute(select(schema.runs.c.name).where(schema.runs.c.id == rid)).scalar()
            if name is None:
                raise RunNotFoundError(f"no run with id {rid} in {self.where}; see `prodlens db runs`")
            self._run_ids[name] = rid
            return rid
        if isinstance(run, str):
            if run in self._run_ids:
                return self._run_ids[run]
            with self.engine.connect() as conn:
                rid = conn.execute(select(schema.runs.c.id).where(schema.runs.c.name == run)).scalar()
                if rid is None:
                    names = list(conn.execute(select(schema.runs.c.name)).scalars())
            if rid is None:
                raise RunNotFoundError(f"no run named {run!r} in {self.where}{did_you_mean(run, names)} ({len(names)} runs)")
            self._run_ids[run] = int(rid)
            return int(rid)
        raise TypeError(f"run must be an id, a name or a Run, got {type(run).__name__}")

    def remember_run(self, name: str, rid: int) -> None:
        self._run_ids[name] = rid

    def forget_run(self, rid: int) -> None:
        self._run_ids = {k: v for k, v in self._run_ids.items() if v != rid}


__all__ = ["Database", "RunRef", "where_equal"]
