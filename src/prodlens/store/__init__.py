"""Results store: runs, samples, predictions, local and global explanations, deletion,
matching and sanity-check results in SQLite (default) or PostgreSQL. The only module that writes SQL.

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
    GlobalFeatureRecord,
    MatchQuery,
    MatchResult,
    Prediction,
    QualitySummary,
    Run,
)
from prodlens.store.sanity import (
    get_sanity_results,
    is_sanity_run,
    load_sanity_report,
    put_sanity_results,
    sanity_runs,
    save_sanity_report,
)

__all__ = [
    "SCHEMA_VERSION",
    "DeletionResult",
    "ExplanationSummary",
    "GlobalFeatureRecord",
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
    "get_sanity_results",
    "is_sanity_run",
    "load_sanity_report",
    "open_store",
    "put_sanity_results",
    "run_to_dict",
    "sanity_runs",
    "save_match_explanation",
    "save_retrieval",
    "save_sanity_report",
    "package_versions",
    "top_k",
]
