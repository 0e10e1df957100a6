"""Results store: runs, samples, predictions, local and global explanations, deletion
and matching results in SQLite (default) or PostgreSQL. The only module that writes SQL.

>>> from prodlens.store import Store
>>> with Store.open(":memory:") as store:
...     store.add_run("baseline", model="concat").name
'baseline'

See ``docs/store.md`` for the tables and the conventions of JSON payloads.
"""

from prodlens.store.codec import top_k
from prodlens.store.core import RunSummary, Store, open_store, package_versions
from prodlens.store.exceptions import (
    RunExistsError,
    RunNotFoundError,
    SampleNotFoundError,
    SchemaVersionError,
    StoreError,
    StoreNotFoundError,
)
from prodlens.store.export import export_run, run_to_dict
from prodlens.store.match_runs import save_match_explanation, save_retrieval
from prodlens.store.migrations import LATEST as SCHEMA_VERSION
from prodlens.store.records import (
    DeletionResult,
    ExplanationSummary,
    GlobalFeature,
    MatchQuery,
    MatchResult,
    Prediction,
    QualitySummary,
    Run,
)

__all__ = [
    "SCHEMA_VERSION",
    "DeletionResult",
    "ExplanationSummary",
    "GlobalFeature",
    "MatchQuery",
    "MatchResult",
    "Prediction",
    "QualitySummary",
    "Run",
    "RunExistsError",
    "RunNotFoundError",
    "RunSummary",
    "SampleNotFoundError",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreNotFoundError",
    "export_run",
    "open_store",
    "run_to_dict",
    "save_match_explanation",
    "save_retrieval",
    "package_versions",
    "top_k",
]
