"""Where a store lives, parsed once: :class:`StoreLocation`.

``Store.open`` accepts a SQLite file path, ``":memory:"`` or a database URL; every
place that needs to know "which backend, which file, how to print it" reads the one
:class:`StoreLocation` parsed from it instead of re-parsing the string.

>>> loc = StoreLocation.parse("sqlite:///runs/r.sqlite")
>>> loc.backend, loc.file.name, loc.memory
('sqlite', 'r.sqlite', False)
>>> StoreLocation.parse(":memory:").where, StoreLocation.parse("sqlite://").memory
(':memory:', True)
>>> StoreLocation.parse("postgresql://u:pw@h/db").where
'postgresql+psycopg://u:***@h/db'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from prodlens.store.exceptions import StoreError

#: The spellings of an in-memory SQLite store.
MEMORY_SPELLINGS = (":memory:", "sqlite://", "sqlite:///:memory:")

#: URL backend names and the backend (``prodlens.store.backends.BACKENDS`` key) they select.
URL_BACKENDS = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store location.

    ``backend`` is a key of :data:`prodlens.store.backends.BACKENDS`; ``file`` is the
    SQLite file (absolute, ``None`` in memory and on a server); ``url`` is the
    SQLAlchemy URL of a server database (``None`` for SQLite).
    """

    backend: str
    file: Path | None = None
    url: URL | None = None

    @property
    def memory(self) -> bool:
        """Whether this is an in-memory SQLite database."""
        return self.backend == "sqlite" and self.file is None

    @property
    def where(self) -> str:
        """The printable location (a server URL's password hidden)."""
        if self.url is not None:
            return self.url.render_as_string(hide_password=True)
        return ":memory:" if self.file is None else str(self.file)

    @property
    def root(self) -> Path | None:
        """The folder relative image paths are resolved against: the SQLite file's folder."""
        return None if self.file is None else self.file.parent

    @classmethod
    def parse(cls, target: str | Path | StoreLocation) -> StoreLocation:
        """Parse a path, ``":memory:"`` or URL; raises :class:`StoreError` for an unknown URL scheme.

        >>> StoreLocation.parse("mysql://u:pw@h/db")
        Traceback (most recent call last):
        ...
        prodlens.store.exceptions.StoreError: unsupported database URL 'mysql://u:***@h/db'; use a SQLite path or postgresql://user:pass@host/db
        """
        if isinstance(target, StoreLocation):
            return target
        s = str(target)
        if s in MEMORY_SPELLINGS:
            return cls("sqlite")
        if "://" not in s:
            return cls("sqlite", file=Path(s).expanduser().resolve())
        url = make_url(s)
        backend = URL_BACKENDS.get(url.get_backend_name())
        if backend is None:
            raise StoreError(
                f"unsupported database URL {url.render_as_string(hide_password=True)!r}; "
                "use a SQLite path or postgresql://user:pass@host/db"
            )
        if backend == "sqlite":
            if not url.database or url.database == ":memory:":
                return cls("sqlite")
            return cls("sqlite", file=Path(url.database).expanduser().resolve())
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        return cls(backend, url=url)


__all__ = ["MEMORY_SPELLINGS", "StoreLocation"]
