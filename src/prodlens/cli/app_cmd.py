"""`prodlens app`: serve the explorer web app over a results store."""

from __future__ import annotations

import argparse
import logging
import os

from prodlens.cli._common import add_parser

log = logging.getLogger(__name__)


def _app(args: argparse.Namespace) -> int:
    from prodlens.app import launch  # imports Gradio: only when the command runs

    password = args.password or os.environ.get("PRODLENS_APP_PASSWORD") or None
    log.warning("prodlens app: serving %s on http://%s:%d/ (Ctrl-C to stop)", args.db, args.host, args.port)
    launch(args.db, host=args.host, port=args.port, password=password, block=True)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "app", "Explore a results store in the browser (local + global explanations, compare runs).",
        "prodlens app --db runs/results.sqlite --port 7860",
    )
    p.add_argument("--db", required=True, help="SQLite file of the results store, or a postgresql:// URL")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--password", help="ask for this password (any user name); "
                                      "or set PRODLENS_APP_PASSWORD to keep it out of the process list")
    p.set_defaults(func=_app)
