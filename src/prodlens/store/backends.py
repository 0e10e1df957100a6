"""The store's backend seam: everything that differs between SQLite and PostgreSQL.

A backend creates the engine for a :class:`~prodlens.store.location.StoreLocation`,
writes idempotent upserts in its dialect, serialises concurrent migrations and reports
its journal mode. The table modules (``store/runs.py``, ``store/explanations.py``, ...)
are written once against SQLAlchemy Core and call only this seam for the rest.

**Adding a backend**: subclass :class:`Backend`, implement ``create_engine`` and
``insert`` (a dialect ``INSERT`` with ``on_conflict_do_update``/``do_nothing``), add it to
:data:`BACKENDS` and its URL scheme to ``location.URL_BACKENDS``; then run the store
tests against it (the ``store`` fixture in ``tests/conftest.py``).

>>> from prodlens.store.location import StoreLocation
>>> backend = backend_for(StoreLocation.parse(":memory:"))
>>> engine = backend.create_engine(StoreLocation.parse(":memory:"))
>>> backend.name, engine.dialect.name
('sqlite', 'sqlite')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, event, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.pool import StaticPool

from prodlens.store._util import chunks
from prodlens.store.exceptions import StoreError
from prodlens.store.location import StoreLocation

#: What a write does when its key is already stored: overwrite the row, or keep the old one.
OnConflict = Literal["replace", "ignore"]
ON_CONFLICT = ("replace", "ignore")

#: Lock id that serialises concurrent first opens (migrations) on a server database.
_MIGRATION_LOCK = 724302611


class Backend:
    """One database dialect behind the store."""

    name: str = ""

    def create_engine(self, location: StoreLocation) -> Engine:  # pragma: no cover - abstract
        raise NotImplementedError

    def insert(self, table: Table) -> Any:  # pragma: no cover - abstract
        """The dialect's ``INSERT`` construct (with ``on_conflict_do_*``)."""
        raise NotImplementedError

    def upsert(self, conn: Connection, table: Table, rows: list[dict], keys: Sequence[str],
               on_conflict: OnConflict = "replace") -> None:
        """Insert ``rows``; a row whose ``keys`` are stored already replaces it or is ignored."""
        if not rows:
            return
        if on_conflict not in ON_CONFLICT:
            raise ValueError(f"on_conflict must be 'replace' or 'ignore', got {on_conflict!r}")
        stmt = self.insert(table)
        if on_conflict == "ignore":
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        else:
            cols = [c for c in rows[0] if c not in keys and c != "id"]
            stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in cols})
        for chunk in chunks(rows):
            conn.execute(stmt, list(chunk))

    def lock_migrations(self, conn: Connection) -> None:
        """Serialise concurrent migrations (inside the migrating transaction); a no-op by default."""

    def journal_mode(self, conn: Connection) -> str | None:
        """The journal mode (SQLite's ``PRAGMA journal_mode``); ``None`` where there is none."""
        return None


def _sqlite_pragmas(is_file: bool):  # noqa: ANN202 - event hook
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=15000")
        if is_file:  # WAL: the app reads while a job writes
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return on_connect


class SqliteBackend(Backend):
    """A SQLite file (WAL mode, 15 s busy timeout, foreign keys on) or an in-memory database."""

    name = "sqlite"

    def create_engine(self, location: StoreLocation) -> Engine:
        if location.file is None:
            engine = sa_create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        else:
            engine = sa_create_engine(f"sqlite:///{location.file}",
                                      connect_args={"check_same_thread": False, "timeout": 15})
        event.listen(engine, "connect", _sqlite_pragmas(location.file is not None))
        return engine

    def insert(self, table: Table) -> Any:
        from sqlalchemy.dialects.sqlite import insert

        return insert(table)

    def journal_mode(self, conn: Connection) -> str | None:
        return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())


class PostgresBackend(Backend):
    """A PostgreSQL database through psycopg 3; migrations take a transaction-level advisory lock."""

    name = "postgresql"

    def create_engine(self, location: StoreLocation) -> Engine:
        if location.url is None:  # pragma: no cover - StoreLocation.parse always sets it
            raise StoreError("a PostgreSQL store needs a URL (postgresql://user:pass@host/db)")
        return sa_create_engine(location.url, pool_pre_ping=True)

    def insert(self, table: Table) -> Any:
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)

    def lock_migrations(self, conn: Connection) -> None:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))


#: The backends by name (``StoreLocation.backend``, SQLAlchemy's dialect name).
BACKENDS: dict[str, Backend] = {b.name: b for b in (SqliteBackend(), PostgresBackend())}


def backend_for(location: StoreLocation | str) -> Backend:
    """The backend of a location (or of a dialect name such as ``conn.dialect.name``).

    >>> backend_for("postgresql").name
    'postgresql'
    """
    name = location if isinstance(location, str) else location.backend
    try:
        return BACKENDS[name]
    except KeyError:  # pragma: no cover - locations are parsed against BACKENDS' schemes
        raise StoreError(f"unsupported database {name!r}; prodlens stores use {', '.join(BACKENDS)}") from None


__all__ = ["BACKENDS", "ON_CONFLICT", "Backend", "OnConflict", "PostgresBackend", "SqliteBackend", "backend_for"]
