"""The results store's front: :class:`Store`, the only place in prodlens that talks SQL.

A store is a SQLite file by default (WAL mode, so the app can read while a job
writes) or any PostgreSQL database given by URL. Every write is idempotent: writing
the same key again replaces the row (``on_conflict="replace"``, the default) or keeps
the old one (``"ignore"``); it never adds a duplicate.

``Store`` is thin: it parses the location once (:class:`~prodlens.store.location.StoreLocation`),
creates the engine through the backend seam (:mod:`prodlens.store.backends`), migrates,
and holds one table module per group of tables, each sharing one
:class:`~prodlens.store.database.Database`:

========================  =====================================================
``store.runs``            :mod:`prodlens.store.runs` (runs, summaries)
``store.samples``         :mod:`prodlens.store.samples` (samples, predictions)
``store.explanations``    :mod:`prodlens.store.explanations`
``store.global_features`` :mod:`prodlens.store.global_features`
``store.deletion``        :mod:`prodlens.store.deletion`
``store.matching``        :mod:`prodlens.store.matching` (queries, match explanations, results)
========================  =====================================================

Their methods are also methods of ``Store`` itself (``store.add_run(...)`` is
``store.runs.add_run(...)``). Sanity checks are stored by :mod:`prodlens.store.sanity`.

>>> store = Store.open(":memory:")
>>> store.add_run("demo", model="concat").name, store.runs.get_run("demo").model
('demo', 'concat')
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from sqlalchemy import Engine, func, inspect, select

from prodlens.data.types import ProductSample
from prodlens.store import schema
from prodlens.store.backends import OnConflict
from prodlens.store.database import Database, RunRef
from prodlens.store.deletion import DeletionTable
from prodlens.store.exceptions import StoreNotFoundError
from prodlens.store.explanations import ExplanationTable
from prodlens.store.global_features import GlobalFeatureTable
from prodlens.store.location import StoreLocation
from prodlens.store.matching import MatchingTables
from prodlens.store.migrations import LATEST, applied_versions, migrate
from prodlens.store.runs import VERSION_PACKAGES, RunSummary, RunTable, package_versions
from prodlens.store.samples import SampleTable

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class _Forward(Generic[P, R]):
    """A ``Store`` method that is a table module's method of the same name."""

    def __init__(self, group: str, method: Callable[Concatenate[Any, P], R]) -> None:
        self.group, self.method = group, method
        self.__doc__ = method.__doc__

    def __get__(self, store: Store | None, owner: type | None = None) -> Callable[P, R]:
        if store is None:  # Store.add_run: the documented function
            return self.method  # type: ignore[return-value]
        return getattr(getattr(store, self.group), self.method.__name__)


class Store:
    """A results store. Open one with :meth:`Store.open`; close it with :meth:`close`
    (or use it as a context manager).

    Methods that take ``run`` accept the run's id, its name or a :class:`Run`.
    """

    def __init__(self, db: Database, root: Path | None = None) -> None:
        self.db = db
        #: folder relative image paths are resolved against (the SQLite file's folder)
        self.root = root or db.location.root or Path.cwd()
        self.runs = RunTable(db)
        self.samples = SampleTable(db)
        self.explanations = ExplanationTable(db)
        self.global_features = GlobalFeatureTable(db)
        self.deletion = DeletionTable(db)
        self.matching = MatchingTables(db)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, target: str | Path | StoreLocation = ":memory:", *, create: bool = True,
             image_root: str | Path | None = None) -> Store:
        """Open (and migrate) a store.

        ``target`` is a SQLite file path, ``":memory:"``, or a URL
        (``sqlite:///runs/results.sqlite``, ``postgresql://user:pw@127.0.0.1/db``).
        With ``create=False`` a missing store raises :class:`StoreNotFoundError`
        instead of being created (and no file is left behind). ``image_root`` overrides
        the folder that relative sample image paths are resolved against.

        >>> Store.open(":memory:").schema_version
        4
        """
        location = StoreLocation.parse(target)
        if location.file is not None:
            if not create and not location.file.is_file():  # before connecting: SQLite would create the file
                raise StoreNotFoundError(str(location.file))
            location.file.parent.mkdir(parents=True, exist_ok=True)
        db = Database.connect(location)
        if not create:
            with db.engine.connect() as conn:
                if not applied_versions(conn):
                    db.engine.dispose()
                    raise StoreNotFoundError(db.where)
        applied = migrate(db.engine)
        if applied:
            log.info("store %s: applied migrations %s", db.where, applied)
        return cls(db, Path(image_root) if image_root else None)

    def close(self) -> None:
        """Release the connections (the data is already committed)."""
        self.db.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.where!r})"

    @property
    def where(self) -> str:
        """The printable location (a server URL's password hidden)."""
        return self.db.where

    @property
    def location(self) -> StoreLocation:
        return self.db.location

    @property
    def engine(self) -> Engine:
        return self.db.engine

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @property
    def schema_version(self) -> int:
        with self.db.engine.connect() as conn:
            return max(applied_versions(conn), default=0)

    @property
    def journal_mode(self) -> str | None:
        """SQLite's journal mode (``"wal"`` for a file store); ``None`` on PostgreSQL."""
        with self.db.engine.connect() as conn:
            return self.db.backend.journal_mode(conn)

    def run_id(self, run: RunRef) -> int:
        """The id of ``run`` (id, name or :class:`Run`); raises :class:`RunNotFoundError`."""
        return self.db.run_id(run)

    def image_path(self, sample: ProductSample) -> Path:
        """The sample's image path, relative ones resolved against :attr:`root`."""
        p = sample.image_path
        return p if p.is_absolute() else self.root / p

    def table_counts(self) -> dict[str, int]:
        """Rows per table (all runs)."""
        out = {}
        with self.db.engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            for name, table in schema.METADATA.tables.items():
                if name in names:
                    out[name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        return out

    # ------------------------------------------------------------------ runs
    add_run = _Forward("runs", RunTable.add_run)
    get_run = _Forward("runs", RunTable.get_run)
    list_runs = _Forward("runs", RunTable.list_runs)
    delete_run = _Forward("runs", RunTable.delete_run)
    class_names = _Forward("runs", RunTable.class_names)
    summary = _Forward("runs", RunTable.summary)
    # ------------------------------------------------------------------ samples, predictions
    add_samples = _Forward("samples", SampleTable.add_samples)
    get_sample = _Forward("samples", SampleTable.get_sample)
    get_samples = _Forward("samples", SampleTable.get_samples)
    count_samples = _Forward("samples", SampleTable.count_samples)
    put_predictions = _Forward("samples", SampleTable.put_predictions)
    get_predictions = _Forward("samples", SampleTable.get_predictions)
    # ------------------------------------------------------------------ explanations
    put_explanations = _Forward("explanations", ExplanationTable.put_explanations)
    put_explanation = _Forward("explanations", ExplanationTable.put_explanation)
    get_explanations = _Forward("explanations", ExplanationTable.get_explanations)
    get_explanation = _Forward("explanations", ExplanationTable.get_explanation)
    get_segments = _Forward("explanations", ExplanationTable.get_segments)
    get_segments_many = _Forward("explanations", ExplanationTable.get_segments_many)
    explanation_summaries = _Forward("explanations", ExplanationTable.explanation_summaries)
    quality_summaries = _Forward("explanations", ExplanationTable.quality_summaries)
    explanation_keys = _Forward("explanations", ExplanationTable.explanation_keys)
    # ------------------------------------------------------------------ global features, deletion test
    put_global_features = _Forward("global_features", GlobalFeatureTable.put_global_features)
    get_global_features = _Forward("global_features", GlobalFeatureTable.get_global_features)
    put_deletion_result = _Forward("deletion", DeletionTable.put_deletion_result)
    get_deletion_results = _Forward("deletion", DeletionTable.get_deletion_results)
    # ------------------------------------------------------------------ matching
    put_match_queries = _Forward("matching", MatchingTables.put_match_queries)
    get_match_queries = _Forward("matching", MatchingTables.get_match_queries)
    put_match_explanations = _Forward("matching", MatchingTables.put_match_explanations)
    get_match_explanations = _Forward("matching", MatchingTables.get_match_explanations)
    get_match_explanation = _Forward("matching", MatchingTables.get_match_explanation)
    match_explanation_pairs = _Forward("matching", MatchingTables.match_explanation_pairs)
    put_match_results = _Forward("matching", MatchingTables.put_match_results)
    get_match_results = _Forward("matching", MatchingTables.get_match_results)


def open_store(target: str | Path = ":memory:", *, create: bool = True) -> Store:
    """Shorthand for :meth:`Store.open`."""
    return Store.open(target, create=create)


__all__ = ["LATEST", "VERSION_PACKAGES", "OnConflict", "RunRef", "RunSummary", "Store", "open_store",
           "package_versions"]
