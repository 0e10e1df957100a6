"""`prodlens db init|runs|inspect|export`: look into a results store."""

from __future__ import annotations

import argparse
import json

from prodlens.cli._common import add_parser
from prodlens.cli._common import text_table as _table
from prodlens.store import RunSummary, Store, export_run

_DB_HELP = "SQLite file of the results store, or a postgresql:// URL"


def _open(args: argparse.Namespace) -> Store:
    return Store.open(args.db, create=False)


def _run_ref(store: Store, text: str) -> str | int:
    """A run name, or an id when ``text`` is all digits and no run has that name."""
    if text.isdigit() and text not in {r.name for r in store.list_runs()}:
        return int(text)
    return text


def _init(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        print(f"store {store.where}: schema version {store.schema_version}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    with _open(args) as store:
        runs = store.list_runs()
        if args.json:
            print(json.dumps([
                {"id": r.id, "name": r.name, "model": r.model, "dataset": r.dataset,
                 "created_at": r.created_at.isoformat() if r.created_at else None} for r in runs
            ], indent=1))
            return 0
        if not runs:
            print(f"no runs in {store.where}")
            return 0
        rows = []
        for r in runs:
            s = store.summary(r)
            acc = f"{s.accuracy:.3f}" if s.accuracy is not None else "-"
            created = r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else ""
            rows.append([r.id, r.name, r.model, r.dataset, s.n_predictions, acc, s.n_explanations, created])
        print(_table(["id", "name", "model", "dataset", "predictions", "accuracy", "explanations", "created"], rows))
    return 0


def _summary_dict(s: RunSummary) -> dict:
    r = s.run
    return {
        "id": r.id, "name": r.name, "model": r.model, "checkpoint": r.checkpoint, "dataset": r.dataset,
        "created_at": r.created_at.isoformat() if r.created_at else None,
        "predictions": s.n_predictions, "correct": s.n_correct, "accuracy": s.accuracy,
        "explanations": s.n_explanations, "explained_samples": s.n_explained_samples,
        "global_features": s.n_global_features, "deletion_results": s.n_deletion_results,
        "match_results": s.n_match_results, "match_queries": s.n_match_queries,
        "match_explanations": s.n_match_explanations, "classes": list(s.classes), "config": r.config, "versions": r.versions,
    }


def _first(names: list[str], n: int = 5) -> str:
    if not names:
        return ""
    return ": " + ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _inspect(args: argparse.Namespace) -> int:
    with _open(args) as store:
        run = _run_ref(store, args.run)
        d = _summary_dict(store.summary(run))
    if args.json:
        print(json.dumps(d, indent=1, ensure_ascii=False))
        return 0
    acc = f"{d['accuracy']:.3f}" if d["accuracy"] is not None else "-"
    lines = [
        f"run {d['id']}: {d['name']}",
        f"  model            {d['model'] or '-'}",
        f"  checkpoint       {d['checkpoint'] or '-'}",
        f"  dataset          {d['dataset'] or '-'}",
        f"  created          {d['created_at'] or '-'}",
        f"  predictions      {d['predictions']} (accuracy {acc})",
        f"  explanations     {d['explanations']} of {d['explained_samples']} samples",
        f"  global features  {d['global_features']}",
        f"  deletion curves  {d['deletion_results']}",
        f"  match results    {d['match_results']} ({d['match_queries']} retrieval queries, "
        f"{d['match_explanations']} match explanations)",
        f"  classes          {len(d['classes'])}{_first(d['classes'])}",
        f"  config           {json.dumps(d['config'], ensure_ascii=False)}",
        f"  versions         {', '.join(f'{k} {v}' for k, v in d['versions'].items())}",
    ]
    print("\n".join(lines))
    return 0


def _export(args: argparse.Namespace) -> int:
    with _open(args) as store:
        run = _run_ref(store, args.run)
        files = export_run(store, run, args.out, args.format, include_segments=args.segments)
    for f in files:
        print(f"wrote {f}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    db = add_parser(sub, "db", "Look into a results store (runs, counts, export).", "prodlens db runs runs/results.sqlite")
    dbsub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)

    p = add_parser(dbsub, "init", "Create (or upgrade) a results store.", "prodlens db init runs/results.sqlite")
    p.add_argument("db", help=_DB_HELP)
    p.set_defaults(func=_init)

    p = add_parser(dbsub, "runs", "List the runs in a store with their accuracy and counts.",
                   "prodlens db runs runs/results.sqlite")
    p.add_argument("db", help=_DB_HELP)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_runs)

    p = add_parser(dbsub, "inspect", "Show one run: settings, package versions and counts.",
                   "prodlens db inspect runs/results.sqlite concat-effnet")
    p.add_argument("db", help=_DB_HELP)
    p.add_argument("run", help="run name or id")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_inspect)

    p = add_parser(dbsub, "export", "Export one run to a JSON file or a folder of CSV files.",
                   "prodlens db export runs/results.sqlite concat-effnet out/concat --format csv")
    p.add_argument("db", help=_DB_HELP)
    p.add_argument("run", help="run name or id")
    p.add_argument("out", help="JSON file (or folder) for --format json; folder for --format csv")
    p.add_argument("--format", choices=["json", "csv"], default="json")
    p.add_argument("--segments", action="store_true", help="include segment maps in JSON (large)")
    p.set_defaults(func=_export)
