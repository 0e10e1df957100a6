"""Hand-rolled schema migrations, recorded in the ``schema_migrations`` table.

Each migration is a numbered function of a connection. :func:`migrate` applies the
pending ones in order inside one transaction and records them; a database whose
recorded version is above :data:`LATEST` was written by a newer prodlens and is
refused with :class:`~prodlens.store.exceptions.SchemaVersionError`.

To change the schema: append a migration (never edit an applied one) and change
:mod:`prodlens.store.schema` to match; ``tests/store/test_schema.py`` compares the two.
Migration 1 therefore keeps its own frozen copy of the first tables.

>>> from sqlalchemy import create_engine
>>> engine = create_engine("sqlite://")
>>> migrate(engine)
[1, 2, 3, 4]
>>> migrate(engine)
[]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
)

from prodlens.store import schema
from prodlens.store.backends import backend_for
from prodlens.store.exceptions import SchemaVersionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    """Frozen: the first tables exactly as released. Do not edit; add a migration."""
    md = MetaData()
    fk = {"ondelete": "CASCADE"}
    Table(
        "runs", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("model", String(200)),
        Column("checkpoint", Text),
        Column("dataset", Text),
        Column("classes", Text),
        Column("config", Text, nullable=False),
        Column("versions", Text, nullable=False),
        Column("created_at", String(40), nullable=False),
        Column("notes", Text),
    )
    Table(
        "samples", md,
        Column("id", String(300), primary_key=True),
        Column("image_path", Text, nullable=False),
        Column("label", String(200), index=True),
        Column("split", String(16), nullable=False),
        Column("ocr_tokens", Text),
        Column("meta", Text),
    )
    Table(
        "predictions", md,
        Column("run_id", Integer, ForeignKey("runs.id", **fk), primary_key=True),
        Column("sample_id", String(300), ForeignKey("samples.id"), primary_key=True),
        Column("predicted", String(200), nullable=False),
        Column("top_k", Text, nullable=False),
        Column("probabilities", LargeBinary),
        Column("correct", Boolean),
        Index("ix_predictions_run_predicted", "run_id", "predicted"),
    )
    Table(
        "explanations", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, ForeignKey("runs.id", **fk), nullable=False),
        Column("sample_id", String(300), ForeignKey("samples.id"), nullable=False),
        Column("target", Integer, nullable=False),
        Column("target_name", String(200), nullable=False),
        Column("config_key", String(16), nullable=False),
        Column("weights", LargeBinary, nullable=False),
        Column("intercept", Double, nullable=False),
        Column("score", Double, nullable=False),
        Column("prediction", Double, nullable=False),
        Column("n_superpixels", Integer, nullable=False),
        Column("n_features", Integer, nullable=False),
        Column("segments", LargeBinary, nullable=False),
        Column("tokens", Text, nullable=False),
        Column("seed", Integer, nullable=False),
        Column("n_samples", Integer, nullable=False),
        Column("config", Text, nullable=False),
        Column("image_share", Double, nullable=False),
        Column("extra", Text),
        Column("created_at", String(40), nullable=False),
        UniqueConstraint("run_id", "sample_id", "target", "config_key", name="uq_explanations_key"),
        Index("ix_explanations_run_target", "run_id", "target_name"),
        Index("ix_explanations_run_sample", "run_id", "sample_id"),
    )
    Table(
        "global_features", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, ForeignKey("runs.id", **fk), nullable=False),
        Column("class_name", String(200), nullable=False),
        Column("modality", String(16), nullable=False),
        Column("method", String(40), nullable=False),
        Column("rank", Integer, nullable=False),
        Column("importance", Double, nullable=False),
        Column("payload", Text, nullable=False),
        UniqueConstraint("run_id", "class_name", "modality", "method", "rank", name="uq_global_features_key"),
    )
    Table(
        "deletion_results", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, ForeignKey("runs.id", **fk), nullable=False),
        Column("model", String(200), nullable=False),
        Column("modality", String(16), nullable=False),
        Column("config_key", String(16), nullable=False),
        Column("steps", Text, nullable=False),
        Column("accuracies", Text, nullable=False),
        Column("sample_ids", Text, nullable=False),
        Column("config", Text, nullable=False),
        Column("created_at", String(40), nullable=False),
        UniqueConstraint("run_id", "model", "modality", "config_key", name="uq_deletion_results_key"),
    )
    Table(
        "match_results", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, ForeignKey("runs.id", **fk), nullable=False),
        Column("kind", String(40), nullable=False),
        Column("key", String(300), nullable=False),
        Column("payload", Text, nullable=False),
        UniqueConstraint("run_id", "kind", "key", name="uq_match_results_key"),
    )
    md.create_all(conn)


def _v2_match_tables(conn: Connection) -> None:
    """Frozen: per-query retrieval results and match explanations. Do not edit; add a migration."""
    md = MetaData()
    fk = {"ondelete": "CASCADE"}
    Table("runs", md, Column("id", Integer, primary_key=True))
    Table("samples", md, Column("id", String(300), primary_key=True))
    Table(
        "match_queries", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, ForeignKey("runs.id", **fk), nullable=False),
        Column("query_id", String(300), ForeignKey("samples.id"), nullable=False),
        Column("config_key", String(16), nullable=False),
        Column("gallery_ids", Text, nullable=False),
        Column("gallery_labels", Text, nullable=False),
        Column("scores", Text, nullable=False),
        Column("correct", Boolean),
        Column("hit_rank", Integer),
        Column("config", Text, nullable=False),
        Column("created_at", String(40), nullable=False),
        UniqueConstraint("run_id", "query_id", "config_key", name="uq_match_queries_key"),
        Index("ix_match_queries_run_query", "run_id", "query_id"),
    )
    Table(
        "match_explanations", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, ForeignKey("runs.id", **fk), nullable=False),
        Column("query_id", String(300), ForeignKey("samples.id"), nullable=False),
        Column("match_id", String(300), ForeignKey("samples.id"), nullable=False),
        Column("config_key", String(16), nullable=False),
        Column("similarity", Double, nullable=False),
        Column("kind", String(40), nullable=False),
        Column("method", String(40), nullable=False),
        Column("saliency", LargeBinary),
        Column("match_saliency", LargeBinary),
        Column("words", Text, nullable=False),
        Column("deletion", Text),
        Column("word_deletion", Text),
        Column("deletion_auc", Double),
        Column("deletion_random_auc", Double),
        Column("query_tokens", Text, nullable=False),
        Column("match_tokens", Text, nullable=False),
        Column("seed", Integer, nullable=False),
        Column("seconds", Double, nullable=False),
        Column("config", Text, nullable=False),
        Column("created_at", String(40), nullable=False),
        UniqueConstraint("run_id", "query_id", "match_id", "config_key", name="uq_match_explanations_key"),
        Index("ix_match_explanations_run_query", "run_id", "query_id"),
    )
    for name in ("match_queries", "match_explanations"):
        md.tables[name].create(conn)


def _add_column(conn: Connection, table: str, column: Column) -> None:
    type_sql = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column.name} {type_sql}"))


def _v3_quality_and_sanity(conn: Connection) -> None:
    """Frozen: explanation quality scores, sanity-check results. Do not edit; add a migration."""
    for col in (Column("quality", Text), Column("faithfulness", Double), Column("stability", Double),
                Column("flagged", Boolean)):
        _add_column(conn, "explanations", col)
    md = MetaData()
    fk = {"ondelete": "CASCADE"}
    Table("runs", md, Column("id", Integer, primary_key=True))
    Table("samples", md, Column("id", String(300), primary_key=True))
    Table(
        "sanity_results", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, ForeignKey("runs.id", **fk), nullable=False),
        Column("sample_id", String(300), ForeignKey("samples.id"), nullable=False),
        Column("target_name", String(200), nullable=False),
        Column("randomised", String(40), nullable=False),
        Column("spearman", Double, nullable=False),
        Column("spearman_abs", Double, nullable=False),
        Column("top_k_overlap", Double, nullable=False),
        Column("payload", Text, nullable=False),
        UniqueConstraint("run_id", "sample_id", "randomised", name="uq_sanity_results_key"),
    ).create(conn)


def _v4_match_curves(conn: Connection) -> None:
    """Frozen: a match explanation's other faithfulness curves (insertion, the match photo's). Do not edit; add a migration."""
    _add_column(conn, "match_explanations", Column("curves", Text))


#: Every migration, in order. Append only.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial tables", _v1_initial),
    Migration(2, "match queries and explanations", _v2_match_tables),
    Migration(3, "explanation quality scores and sanity checks", _v3_quality_and_sanity),
    Migration(4, "match explanation curves", _v4_match_curves),
)
LATEST = MIGRATIONS[-1].version


def applied_versions(conn: Connection) -> list[int]:
    """Versions recorded in ``schema_migrations`` (empty for a new database)."""
    if not inspect(conn).has_table("schema_migrations"):
        return []
    return sorted(conn.execute(select(schema.schema_migrations.c.version)).scalars())


def migrate(engine: Engine, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply pending ``migrations`` in one transaction; returns the versions applied.

    Raises :class:`SchemaVersionError` when the database is ahead of ``migrations``.
    """
    latest = migrations[-1].version
    with engine.begin() as conn:
        backend_for(conn.dialect.name).lock_migrations(conn)  # serialise concurrent first opens
        schema.schema_migrations.create(conn, checkfirst=True)
        done = set(applied_versions(conn))
        if done and max(done) > latest:
            raise SchemaVersionError(
                f"the store's schema is version {max(done)} but this prodlens knows up to {latest}; "
                "upgrade prodlens (pip install -U prodlens) to open it"
            )
        applied = []
        for m in migrations:
            if m.version in done:
                continue
            log.info("applying store migration %d: %s", m.version, m.name)
            m.apply(conn)
            conn.execute(
                insert(schema.schema_migrations).values(
                    version=m.version, name=m.name, applied_at=datetime.now(timezone.utc).isoformat()
                )
            )
            applied.append(m.version)
    return applied
