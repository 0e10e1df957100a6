"""The current tables, as SQLAlchemy Core objects (what queries are written against).

Tables are created and changed only by the migrations in :mod:`prodlens.store.migrations`;
``tests/store/test_schema.py`` checks that applying every migration gives exactly
these columns. JSON is kept in TEXT columns (canonical, see :mod:`~prodlens.store.codec`)
and arrays in BLOB/``bytea`` columns, so SQLite and PostgreSQL store the same bytes.

>>> sorted(METADATA.tables)[:3]
['deletion_results', 'explanations', 'global_features']
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

METADATA = MetaData()

schema_migrations = Table(
    "schema_migrations",
    METADATA,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("applied_at", String(40), nullable=False),
)

runs = Table(
    "runs",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("model", String(200)),
    Column("checkpoint", Text),
    Column("dataset", Text),
    Column("classes", Text),  # JSON list of class names in the model's order
    Column("config", Text, nullable=False),  # JSON
    Column("versions", Text, nullable=False),  # JSON {package: version}
    Column("created_at", String(40), nullable=False),
    Column("notes", Text),
)

samples = Table(
    "samples",
    METADATA,
    Column("id", String(300), primary_key=True),
    Column("image_path", Text, nullable=False),
    Column("label", String(200), index=True),
    Column("split", String(16), nullable=False),
    Column("ocr_tokens", Text),  # JSON list, NULL = OCR not run
    Column("meta", Text),  # JSON
)

_run_fk = {"ondelete": "CASCADE"}

predictions = Table(
    "predictions",
    METADATA,
    Column("run_id", Integer, ForeignKey("runs.id", **_run_fk), primary_key=True),
    Column("sample_id", String(300), ForeignKey("samples.id"), primary_key=True),
    Column("predicted", String(200), nullable=False),
    Column("top_k", Text, nullable=False),  # JSON [[name, p], ...]
    Column("probabilities", LargeBinary),  # array blob, run's class order
    Column("correct", Boolean),
    Index("ix_predictions_run_predicted", "run_id", "predicted"),
)

explanations = Table(
    "explanations",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", **_run_fk), nullable=False),
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
    Column("tokens", Text, nullable=False),  # JSON, exact floats
    Column("seed", Integer, nullable=False),
    Column("n_samples", Integer, nullable=False),
    Column("config", Text, nullable=False),  # JSON
    Column("image_share", Double, nullable=False),
    Column("extra", Text),  # JSON: Explanation fields without a column of their own
    Column("created_at", String(40), nullable=False),
    # quality scores (migration 3): NULL when the explanation was not scored
    Column("quality", Text),  # JSON: ExplanationQuality.to_dict()
    Column("faithfulness", Double),
    Column("stability", Double),
    Column("flagged", Boolean),
    UniqueConstraint("run_id", "sample_id", "target", "config_key", name="uq_explanations_key"),
    Index("ix_explanations_run_target", "run_id", "target_name"),
    Index("ix_explanations_run_sample", "run_id", "sample_id"),
)

global_features = Table(
    "global_features",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", **_run_fk), nullable=False),
    Column("class_name", String(200), nullable=False),
    Column("modality", String(16), nullable=False),
    Column("method", String(40), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("importance", Double, nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    UniqueConstraint("run_id", "class_name", "modality", "method", "rank", name="uq_global_features_key"),
)

deletion_results = Table(
    "deletion_results",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", **_run_fk), nullable=False),
    Column("model", String(200), nullable=False),
    Column("modality", String(16), nullable=False),
    Column("config_key", String(16), nullable=False),
    Column("steps", Text, nullable=False),  # JSON
    Column("accuracies", Text, nullable=False),  # JSON
    Column("sample_ids", Text, nullable=False),  # JSON
    Column("config", Text, nullable=False),  # JSON
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("run_id", "model", "modality", "config_key", name="uq_deletion_results_key"),
)

match_results = Table(
    "match_results",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", **_run_fk), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("key", String(300), nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    UniqueConstraint("run_id", "kind", "key", name="uq_match_results_key"),
)

match_queries = Table(
    "match_queries",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", **_run_fk), nullable=False),
    Column("query_id", String(300), ForeignKey("samples.id"), nullable=False),
    Column("config_key", String(16), nullable=False),
    Column("gallery_ids", Text, nullable=False),  # JSON, best first
    Column("gallery_labels", Text, nullable=False),  # JSON
    Column("scores", Text, nullable=False),  # JSON, exact floats
    Column("correct", Boolean),  # best match of the query's class
    Column("hit_rank", Integer),  # 1-based rank of the first match of its class, NULL = none
    Column("config", Text, nullable=False),  # JSON
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("run_id", "query_id", "config_key", name="uq_match_queries_key"),
    Index("ix_match_queries_run_query", "run_id", "query_id"),
)

match_explanations = Table(
    "match_explanations",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", **_run_fk), nullable=False),
    Column("query_id", String(300), ForeignKey("samples.id"), nullable=False),
    Column("match_id", String(300), ForeignKey("samples.id"), nullable=False),
    Column("config_key", String(16), nullable=False),
    Column("similarity", Double, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("method", String(40), nullable=False),
    Column("saliency", LargeBinary),  # array blob (query photo), NULL for text-only embeddings
    Column("match_saliency", LargeBinary),  # array blob (match photo), NULL when not computed
    Column("words", Text, nullable=False),  # JSON: shared words with drops and in-box saliency
    Column("deletion", Text),  # JSON curve
    Column("word_deletion", Text),  # JSON curve
    Column("curves", Text),  # JSON {name: curve}: insertion, the match photo's deletion (migration 4)
    Column("deletion_auc", Double),
    Column("deletion_random_auc", Double),
    Column("query_tokens", Text, nullable=False),  # JSON, exact floats
    Column("match_tokens", Text, nullable=False),  # JSON, exact floats
    Column("seed", Integer, nullable=False),
    Column("seconds", Double, nullable=False),
    Column("config", Text, nullable=False),  # JSON
    Column("created_at", String(40), nullable=False),
    UniqueConstraint("run_id", "query_id", "match_id", "config_key", name="uq_match_explanations_key"),
    Index("ix_match_explanations_run_query", "run_id", "query_id"),
)

#: Tables holding one run's results, children first (the order to delete in).
RUN_TABLES = (match_explanations, match_queries, match_results, deletion_results, global_features, explanations,
              predictions)

#: model-randomisation sanity checks (``prodlens sanity``): one row per photo and randomisation
sanity_results = Table(
    "sanity_results",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", **_run_fk), nullable=False),
    Column("sample_id", String(300), ForeignKey("samples.id"), nullable=False),
    Column("target_name", String(200), nullable=False),
    Column("randomised", String(40), nullable=False),  # what was re-initialised: "head", "head+blocks1", ...
    Column("spearman", Double, nullable=False),  # rank correlation of the signed weights
    Column("spearman_abs", Double, nullable=False),  # ... of |weights|
    Column("top_k_overlap", Double, nullable=False),  # share of the trained model's top-k kept
    Column("payload", Text, nullable=False),  # JSON: both weight vectors, settings
    UniqueConstraint("run_id", "sample_id", "randomised", name="uq_sanity_results_key"),
)
