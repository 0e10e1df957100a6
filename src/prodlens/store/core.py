"""The results store: the only place in prodlens that talks SQL.

A store is a SQLite file by default (WAL mode, so the app can read while a job
writes) or any PostgreSQL database given by URL. Every write is idempotent: writing
the same key again replaces the row (``on_conflict="replace"``, the default) or keeps
the old one (``"ignore"``); it never adds a duplicate.

>>> import numpy as np
>>> from pathlib import Path
>>> from prodlens.data.types import OcrToken, ProductSample
>>> from prodlens.explain.explanation import Explanation
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

import difflib
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from prodlens.data.types import ProductSample
from prodlens.explain.explanation import Explanation
from prodlens.explain.quality import ExplanationQuality
from prodlens.store import codec, schema
from prodlens.store._util import chunks as _chunks
from prodlens.store._util import now as _now
from prodlens.store.exceptions import (
    RunExistsError,
    RunNotFoundError,
    SampleNotFoundError,
    StoreError,
    StoreNotFoundError,
)
from prodlens.store.matching import MatchingTables
from prodlens.store.migrations import LATEST, applied_versions, migrate
from prodlens.store.records import (
    DeletionResult,
    ExplanationSummary,
    GlobalFeature,
    MatchResult,
    Prediction,
    QualitySummary,
    Run,
)

log = logging.getLogger(__name__)

RunRef = int | str | Run
OnConflict = Literal["replace", "ignore"]

#: Packages whose versions are recorded with each run (never imported, only looked up).
VERSION_PACKAGES = (
    "prodlens", "numpy", "torch", "torchvision", "timm", "sentence-transformers",
    "rapidocr_onnxruntime", "onnxruntime", "scikit-image", "scikit-learn", "pillow", "sqlalchemy",
)


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


def _sqlite_pragmas(is_file: bool):  # noqa: ANN202 - event hook
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=15000")
        if is_file:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return on_connect


#: The spellings of an in-memory SQLite store.
_MEMORY = (":memory:", "sqlite://", "sqlite:///:memory:")


def _sqlite_file(target: str | Path) -> Path | None:
    """The SQLite file a store location names (a path or a ``sqlite:///`` URL), else ``None``.

    >>> _sqlite_file("sqlite:///runs/r.sqlite").name, _sqlite_file(":memory:"), _sqlite_file("postgresql://h/db")
    ('r.sqlite', None, None)
    """
    s = str(target)
    if s in _MEMORY:
        return None
    if "://" in s:
        url = make_url(s)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return None
        return Path(url.database).expanduser()
    return Path(s).expanduser()


def _engine_for(target: str | Path) -> tuple[Engine, str, Path | None]:
    """(engine, printable location, folder of the SQLite file or None)."""
    s = str(target)
    if s in _MEMORY:
        engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas(False))
        return engine, ":memory:", None
    if "://" in s:
        url = make_url(s)
        if url.get_backend_name() in ("postgresql", "postgres"):
            if url.drivername in ("postgresql", "postgres"):
                url = url.set(drivername="postgresql+psycopg")
            engine = create_engine(url, pool_pre_ping=True)
            return engine, url.render_as_string(hide_password=True), None
        if url.get_backend_name() == "sqlite":
            if not url.database or url.database == ":memory:":
                return _engine_for(":memory:")
            return _engine_for(Path(url.database))
        raise StoreError(
            f"unsupported database URL {url.render_as_string(hide_password=True)!r}; "
            "use a SQLite path or postgresql://user:pass@host/db"
        )
    path = Path(s).expanduser().resolve()
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 15})
    event.listen(engine, "connect", _sqlite_pragmas(True))
    return engine, str(path), path.parent


class Store(MatchingTables):
    """A results store. Open one with :meth:`Store.open`; close it with :meth:`close`
    (or use it as a context manager).

    Methods that take ``run`` accept the run's id, its name or a :class:`Run`.
    Matching results (retrieval queries, match explanations) have their methods in
    :class:`~prodlens.store.matching.MatchingTables`.
    """

    def __init__(self, engine: Engine, where: str, root: Path | None = None) -> None:
        self._engine = engine
        self.where = where
        #: folder relative image paths are resolved against (the SQLite file's folder)
        self.root = root or Path.cwd()
        self._run_ids: dict[str, int] = {}

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, target: str | Path = ":memory:", *, create: bool = True, image_root: str | Path | None = None) -> Store:
        """Open (and migrate) a store.

        ``target`` is a SQLite file path, ``":memory:"``, or a URL
        (``sqlite:///runs/results.sqlite``, ``postgresql://user:pw@127.0.0.1/db``).
        With ``create=False`` a missing store raises :class:`StoreNotFoundError`
        instead of being created. ``image_root`` overrides the folder that relative
        sample image paths are resolved against.

        >>> Store.open(":memory:").schema_version
        3
        """
        file = _sqlite_file(target)
        if not create and file is not None:
            if not file.is_file():  # checked before connecting: SQLite would create an empty file
                raise StoreNotFoundError(str(file))
        elif isinstance(target, Path):
            target.expanduser().parent.mkdir(parents=True, exist_ok=True)
        elif "://" not in target and target != ":memory:":
            Path(target).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine, where, root = _engine_for(target)
        if not create:
            with engine.connect() as conn:
                if not applied_versions(conn):
                    engine.dispose()
                    raise StoreNotFoundError(where)
        applied = migrate(engine)
        if applied:
            log.info("store %s: applied migrations %s", where, applied)
        return cls(engine, where, Path(image_root) if image_root else root)

    def close(self) -> None:
        """Release the connections (the data is already committed)."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.where!r})"

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def schema_version(self) -> int:
        with self._engine.connect() as conn:
            return max(applied_versions(conn), default=0)

    @property
    def journal_mode(self) -> str | None:
        """SQLite's journal mode (``"wal"`` for a file store); ``None`` on PostgreSQL."""
        if self.dialect != "sqlite":
            return None
        with self._engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())

    # ------------------------------------------------------------------ helpers
    def _upsert(self, conn: Connection, table: Table, rows: list[dict], keys: Sequence[str], on_conflict: OnConflict) -> None:
        if not rows:
            return
        if on_conflict not in ("replace", "ignore"):
            raise ValueError(f"on_conflict must be 'replace' or 'ignore', got {on_conflict!r}")
        name = conn.dialect.name
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        elif name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:  # pragma: no cover - only sqlite and postgresql are supported
            raise StoreError(f"unsupported database {name!r}")
        stmt = dialect_insert(table)
        if on_conflict == "ignore":
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        else:
            cols = [c for c in rows[0] if c not in keys and c != "id"]
            stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in cols})
        for chunk in _chunks(rows):
            conn.execute(stmt, list(chunk))

    def _check_samples(self, conn: Connection, ids: Iterable[str]) -> None:
        wanted = sorted(set(ids))
        found: set[str] = set()
        for chunk in _chunks(wanted):
            found.update(conn.execute(select(schema.samples.c.id).where(schema.samples.c.id.in_(chunk))).scalars())
        missing = [i for i in wanted if i not in found]
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise SampleNotFoundError(
                f"sample(s) {', '.join(map(repr, missing[:3]))}{more} not in the store; "
                "add them first with store.add_samples(dataset.samples)"
            )

    def run_id(self, run: RunRef) -> int:
        """The id of ``run`` (id, name or :class:`Run`); raises :class:`RunNotFoundError`."""
        if isinstance(run, Run):
            return run.id
        if isinstance(run, (int, np.integer)) and not isinstance(run, bool):
            rid = int(run)
            if rid in self._run_ids.values():
                return rid
            with self._engine.connect() as conn:
                name = conn.execute(select(schema.runs.c.name).where(schema.runs.c.id == rid)).scalar()
            if name is None:
                raise RunNotFoundError(f"no run with id {rid} in {self.where}; see `prodlens db runs`")
            self._run_ids[name] = rid
            return rid
        if isinstance(run, str):
            if run in self._run_ids:
                return self._run_ids[run]
            with self._engine.connect() as conn:
                rid = conn.execute(select(schema.runs.c.id).where(schema.runs.c.name == run)).scalar()
                if rid is None:
                    names = list(conn.execute(select(schema.runs.c.name)).scalars())
            if rid is None:
                close = difflib.get_close_matches(run, names, n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise RunNotFoundError(f"no run named {run!r} in {self.where}{hint} ({len(names)} runs)")
            self._run_ids[run] = int(rid)
            return int(rid)
        raise TypeError(f"run must be an id, a name or a Run, got {type(run).__name__}")

    # ------------------------------------------------------------------ runs
    @staticmethod
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

        >>> s = Store.open(":memory:")
        >>> s.add_run("r1", model="concat").id
        1
        >>> s.add_run("r1", model="concat", if_exists="reuse").id
        1
        """
        if if_exists not in ("error", "reuse", "replace"):
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
        with self._engine.begin() as conn:
            rid = conn.execute(select(t.c.id).where(t.c.name == name)).scalar()
            if rid is not None:
                if if_exists == "error":
                    raise RunExistsError(
                        f"a run named {name!r} exists in {self.where}; pick another name, "
                        "or pass if_exists='reuse' (resume) or 'replace' (start over)"
                    )
                if if_exists == "replace":
                    for child in schema.RUN_TABLES:
                        conn.execute(delete(child).where(child.c.run_id == rid))
                conn.execute(update(t).where(t.c.id == rid).values(**values))
            else:
                rid = conn.execute(insert(t).values(created_at=_now(), **values).returning(t.c.id)).scalar_one()
        self._run_ids[name] = int(rid)
        return self.get_run(int(rid))

    def get_run(self, run: RunRef) -> Run:
        """The :class:`Run` for an id or name."""
        rid = self.run_id(run)
        with self._engine.connect() as conn:
            r = conn.execute(select(schema.runs).where(schema.runs.c.id == rid)).one()
        return self._run_from_row(r)

    def list_runs(self) -> list[Run]:
        """All runs, oldest first.

        >>> Store.open(":memory:").list_runs()
        []
        """
        with self._engine.connect() as conn:
            rows = conn.execute(select(schema.runs).order_by(schema.runs.c.id)).all()
        return [self._run_from_row(r) for r in rows]

    def delete_run(self, run: RunRef) -> None:
        """Delete a run and every result stored for it (samples stay)."""
        rid = self.run_id(run)
        with self._engine.begin() as conn:
            for child in schema.RUN_TABLES:
                conn.execute(delete(child).where(child.c.run_id == rid))
            conn.execute(delete(schema.runs).where(schema.runs.c.id == rid))
        self._run_ids = {k: v for k, v in self._run_ids.items() if v != rid}

    def class_names(self, run: RunRef) -> list[str]:
        """The run's classes: as recorded with the run, else every label and target seen."""
        r = self.get_run(run)
        if r.classes:
            return list(r.classes)
        s, p, e = schema.samples, schema.predictions, schema.explanations
        with self._engine.connect() as conn:
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

        with self._engine.connect() as conn:
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
        with self._engine.begin() as conn:
            self._upsert(conn, schema.samples, rows, ["id"], on_conflict)
        return len(rows)

    def _sample_from_row(self, r: Row) -> ProductSample:
        return ProductSample(
            r.id, Path(r.image_path), r.label, r.split, codec.tokens_loads(r.ocr_tokens), codec.loads(r.meta, {})
        )

    def image_path(self, sample: ProductSample) -> Path:
        """The sample's image path, relative ones resolved against :attr:`root`."""
        p = sample.image_path
        return p if p.is_absolute() else self.root / p

    def get_sample(self, sample_id: str) -> ProductSample:
        """One sample; raises :class:`SampleNotFoundError`."""
        with self._engine.connect() as conn:
            r = conn.execute(select(schema.samples).where(schema.samples.c.id == sample_id)).first()
        if r is None:
            raise SampleNotFoundError(f"no sample {sample_id!r} in {self.where}")
        return self._sample_from_row(r)

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
        out: list[ProductSample] = []
        with self._engine.connect() as conn:
            if ids is None:
                rows = conn.execute(select(t).where(*where).order_by(t.c.id)).all()
            else:
                rows = []
                for chunk in _chunks(sorted(set(ids))):
                    rows += conn.execute(select(t).where(t.c.id.in_(chunk), *where)).all()
                rows.sort(key=lambda r: r.id)
        out = [self._sample_from_row(r) for r in rows]
        return out

    def count_samples(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.samples)).scalar_one())

    # ------------------------------------------------------------------ predictions
    def put_predictions(self, run: RunRef, predictions: Iterable[Prediction], *, on_conflict: OnConflict = "replace") -> int:
        """Store predictions (keyed by run and sample). ``correct=None`` is filled in
        from the sample's label when it has one."""
        rid = self.run_id(run)
        preds = list(predictions)
        with self._engine.begin() as conn:
            self._check_samples(conn, (p.sample_id for p in preds))
            labels: dict[str, str | None] = {}
            for chunk in _chunks(sorted({p.sample_id for p in preds})):
                for sid, lab in conn.execute(
                    select(schema.samples.c.id, schema.samples.c.label).where(schema.samples.c.id.in_(chunk))
                ):
                    labels[sid] = lab
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
            self._upsert(conn, schema.predictions, rows, ["run_id", "sample_id"], on_conflict)
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
        rid = self.run_id(run)
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
        with self._engine.connect() as conn:
            if sample_ids is None:
                rows = conn.execute(q.where(*where).order_by(p.c.sample_id)).all()
            else:
                rows = []
                for chunk in _chunks(sorted(set(sample_ids))):
                    rows += conn.execute(q.where(p.c.sample_id.in_(chunk), *where)).all()
                rows.sort(key=lambda r: r.sample_id)
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

    # ------------------------------------------------------------------ explanations
    @staticmethod
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
            "created_at": _now(),
            "quality": None if e.quality is None else codec.dumps(e.quality.to_dict()),
            "faithfulness": None if e.quality is None else _finite_or_none(e.quality.faithfulness),
            "stability": None if e.quality is None else _finite_or_none(e.quality.stability),
            "flagged": e.flagged,
        }

    _EXPLANATION_KEY = ("run_id", "sample_id", "target", "config_key")

    def put_explanations(self, run: RunRef, explanations: Iterable[Explanation], *, on_conflict: OnConflict = "replace") -> int:
        """Store many explanations in one transaction; returns how many were given.

        The key is (run, sample, target, settings): the settings are ``config``,
        ``seed`` and ``n_samples``. ``config`` must be JSON-able (tuples come back as lists).
        """
        rid = self.run_id(run)
        rows = [self._explanation_row(rid, e) for e in explanations]
        with self._engine.begin() as conn:
            self._check_samples(conn, (r["sample_id"] for r in rows))
            self._upsert(conn, schema.explanations, rows, self._EXPLANATION_KEY, on_conflict)
        return len(rows)

    def put_explanation(self, run: RunRef, explanation: Explanation, *, on_conflict: OnConflict = "replace") -> int:
        """Store one explanation; returns its row id (stable across re-writes)."""
        rid = self.run_id(run)
        row = self._explanation_row(rid, explanation)
        t = schema.explanations
        with self._engine.begin() as conn:
            self._check_samples(conn, [row["sample_id"]])
            self._upsert(conn, t, [row], self._EXPLANATION_KEY, on_conflict)
            return int(conn.execute(
                select(t.c.id).where(*(t.c[k] == row[k] for k in self._EXPLANATION_KEY))
            ).scalar_one())

    @staticmethod
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
        self, rid: int, class_name: str | None, sample_id: str | None, target: int | None, label: str | None
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
        rid = self.run_id(run)
        t = schema.explanations
        where = self._explanation_where(rid, class_name, sample_id, target, label)
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(*where).order_by(t.c.sample_id, t.c.target, t.c.id)).all()
        if latest_only:
            last: dict[tuple[str, int], Row] = {}
            for r in rows:
                last[(r.sample_id, r.target)] = r
            rows = list(last.values())
        return [self._explanation_from_row(r) for r in rows]

    def get_explanation(self, run: RunRef, sample_id: str, class_name: str) -> Explanation | None:
        """The latest explanation of ``sample_id`` for target ``class_name``, or ``None``."""
        rid = self.run_id(run)
        t = schema.explanations
        with self._engine.connect() as conn:
            r = conn.execute(
                select(t)
                .where(t.c.run_id == rid, t.c.sample_id == sample_id, t.c.target_name == class_name)
                .order_by(t.c.id.desc())
                .limit(1)
            ).first()
        return None if r is None else self._explanation_from_row(r)

    def get_segments(self, run: RunRef, sample_id: str) -> np.ndarray | None:
        """The segment map of any explanation of ``sample_id`` in ``run`` (they share it)."""
        rid = self.run_id(run)
        t = schema.explanations
        with self._engine.connect() as conn:
            blob = conn.execute(
                select(t.c.segments).where(t.c.run_id == rid, t.c.sample_id == sample_id).order_by(t.c.id.desc()).limit(1)
            ).scalar()
        return None if blob is None else codec.decode_array(blob)

    def get_segments_many(self, run: RunRef, sample_ids: Iterable[str]) -> dict[str, np.ndarray]:
        """Segment maps of many samples in ``run`` in one query (samples without an
        explanation are left out)."""
        rid = self.run_id(run)
        t = schema.explanations
        out: dict[str, np.ndarray] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(sorted(set(sample_ids))):
                latest = (select(func.max(t.c.id)).where(t.c.run_id == rid, t.c.sample_id.in_(chunk))
                          .group_by(t.c.sample_id))
                for sid, blob in conn.execute(select(t.c.sample_id, t.c.segments).where(t.c.id.in_(latest))):
                    out[sid] = codec.decode_array(blob)
        return out

    def explanation_summaries(
        self, run: RunRef, *, class_name: str | None = None, label: str | None = None
    ) -> list[ExplanationSummary]:
        """Explanation rows without their arrays (fast: for lists and histograms)."""
        rid = self.run_id(run)
        t = schema.explanations
        where = self._explanation_where(rid, class_name, None, None, label)
        cols = [t.c.id, t.c.sample_id, t.c.target, t.c.target_name, t.c.score, t.c.prediction, t.c.image_share, t.c.n_features]
        with self._engine.connect() as conn:
            rows = conn.execute(select(*cols).where(*where).order_by(t.c.sample_id, t.c.target, t.c.id)).all()
        return [ExplanationSummary(*r) for r in rows]

    def quality_summaries(
        self, run: RunRef, *, class_name: str | None = None, label: str | None = None
    ) -> list[QualitySummary]:
        """The quality scores of ``run``'s explanations without their arrays (the latest
        explanation of each (sample, target), as :meth:`get_explanations` returns them),
        ordered by sample id and target; ``quality`` is ``None`` for those stored unscored.

        >>> s = Store.open(":memory:")
        >>> s.quality_summaries(s.add_run("r"))
        []
        """
        rid = self.run_id(run)
        t = schema.explanations
        where = self._explanation_where(rid, class_name, None, None, label)
        cols = [t.c.id, t.c.sample_id, t.c.target, t.c.target_name, t.c.quality]
        with self._engine.connect() as conn:
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

        >>> s = Store.open(":memory:")
        >>> s.explanation_keys(s.add_run("r"))
        set()
        """
        rid = self.run_id(run)
        t = schema.explanations
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.c.sample_id, t.c.target, t.c.config_key).where(t.c.run_id == rid)).all()
        return {(r.sample_id, int(r.target), r.config_key) for r in rows}

    # ------------------------------------------------------------------ global features
    def put_global_features(self, run: RunRef, features: Iterable[GlobalFeature], *, replace: bool = True) -> int:
        """Store a global explanation. With ``replace`` (default) the old entries of every
        (class, modality, method) in ``features`` are deleted first, so a re-run that
        finds fewer clusters leaves no stale ranks behind."""
        rid = self.run_id(run)
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
        with self._engine.begin() as conn:
            if replace:
                for cls, mod, meth in sorted({(f.class_name, f.modality, f.method) for f in feats}):
                    conn.execute(delete(t).where(
                        t.c.run_id == rid, t.c.class_name == cls, t.c.modality == mod, t.c.method == meth
                    ))
            self._upsert(conn, t, rows, ["run_id", "class_name", "modality", "method", "rank"], "replace")
        return len(rows)

    def get_global_features(
        self, run: RunRef, *, class_name: str | None = None, modality: str | None = None, method: str | None = None
    ) -> list[GlobalFeature]:
        """Global features ordered by class, modality, method and rank."""
        rid = self.run_id(run)
        t = schema.global_features
        where: list[Any] = [t.c.run_id == rid]
        for col, val in (("class_name", class_name), ("modality", modality), ("method", method)):
            if val is not None:
                where.append(t.c[col] == val)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(t).where(*where).order_by(t.c.class_name, t.c.modality, t.c.method, t.c.rank)
            ).all()
        return [
            GlobalFeature(r.class_name, r.modality, r.rank, r.importance, codec.loads(r.payload, {}), r.method)
            for r in rows
        ]

    # ------------------------------------------------------------------ deletion test
    def put_deletion_result(self, run: RunRef, result: DeletionResult, *, on_conflict: OnConflict = "replace") -> None:
        """Store one deletion-test curve (keyed by run, model, modality and config)."""
        if len(result.steps) != len(result.accuracies):
            raise ValueError(
                f"deletion result: {len(result.steps)} steps but {len(result.accuracies)} accuracies; give one accuracy per step"
            )
        rid = self.run_id(run)
        row = {
            "run_id": rid,
            "model": result.model,
            "modality": result.modality,
            "config_key": codec.config_key(result.config, 0, 0),
            "steps": codec.dumps(list(result.steps)),
            "accuracies": codec.dumps([float(a) for a in result.accuracies]),
            "sample_ids": codec.dumps(list(result.sample_ids)),
            "config": codec.dumps(result.config),
            "created_at": _now(),
        }
        with self._engine.begin() as conn:
            self._upsert(conn, schema.deletion_results, [row], ["run_id", "model", "modality", "config_key"], on_conflict)

    def get_deletion_results(self, run: RunRef, *, model: str | None = None) -> list[DeletionResult]:
        rid = self.run_id(run)
        t = schema.deletion_results
        where: list[Any] = [t.c.run_id == rid]
        if model is not None:
            where.append(t.c.model == model)
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(*where).order_by(t.c.model, t.c.modality, t.c.id)).all()
        return [
            DeletionResult(r.model, r.modality, codec.loads(r.steps), codec.loads(r.accuracies),
                           codec.loads(r.sample_ids), codec.loads(r.config, {}))
            for r in rows
        ]

    # ------------------------------------------------------------------ matching
    def put_match_results(self, run: RunRef, results: Iterable[MatchResult], *, on_conflict: OnConflict = "replace") -> int:
        """Store generic matching results (keyed by run, kind and key)."""
        rid = self.run_id(run)
        rows = [{"run_id": rid, "kind": m.kind, "key": m.key, "payload": codec.dumps(m.payload)} for m in results]
        with self._engine.begin() as conn:
            self._upsert(conn, schema.match_results, rows, ["run_id", "kind", "key"], on_conflict)
        return len(rows)

    def get_match_results(self, run: RunRef, *, kind: str | None = None) -> list[MatchResult]:
        rid = self.run_id(run)
        t = schema.match_results
        where: list[Any] = [t.c.run_id == rid]
        if kind is not None:
            where.append(t.c.kind == kind)
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(and_(*where)).order_by(t.c.kind, t.c.key)).all()
        return [MatchResult(r.kind, r.key, codec.loads(r.payload, {})) for r in rows]

    # ------------------------------------------------------------------ maintenance
    def table_counts(self) -> dict[str, int]:
        """Rows per table (all runs)."""
        out = {}
        with self._engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            for name, table in schema.METADATA.tables.items():
                if name in names:
                    out[name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        return out


def open_store(target: str | Path = ":memory:", *, create: bool = True) -> Store:
    """Shorthand for :meth:`Store.open`."""
    return Store.open(target, create=create)


__all__ = ["LATEST", "RunSummary", "Store", "open_store", "package_versions"]
