"""The model-randomisation sanity check on the demo's fusion model, as a bench record.

Not a test. Runs :func:`prodlens.explain.sanity.model_randomisation_test` (the library
behind ``prodlens sanity``) on the checkpoint and dataset that ``prodlens demo`` leaves in
``work/demo`` (run the demo first), and writes ``bench/results/sanity_demo.json`` with the
command, date, machine, git commit and dirty flag, the report and its table.

Usage::

    prodlens demo && python bench/sanity_demo.py
    python bench/sanity_demo.py --limit 3 --randomise head
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from _machine import cpu_name, git_state

HERE = Path(__file__).resolve().parent


def main() -> None:
    from prodlens.data.manifest import read_dataset
    from prodlens.explain import MultimodalLime
    from prodlens.explain.sanity import model_randomisation_test
    from prodlens.models.checkpoint import load_classifier

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default=str(HERE.parent / "work" / "demo"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=5)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--randomise", action="append", default=None)
    ap.add_argument("--out", default=str(HERE / "results" / "sanity_demo.json"))
    args = ap.parse_args()
    randomise = tuple(args.randomise or ("head", "head+blocks1"))
    demo = Path(args.demo)
    started = {"git": git_state(HERE), "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "load_average_start": list(os.getloadavg())}
    clf = load_classifier(demo / "models" / "concat.pt")
    ds = read_dataset(demo / "dataset").split(args.split)
    samples = sorted(ds.samples, key=lambda s: s.id)[: args.limit]
    t0 = time.perf_counter()
    report = model_randomisation_test(clf, samples, explainer=MultimodalLime(max_samples=args.samples, progress=False, quality=False),
                                      randomise=randomise, seed=0)
    seconds = time.perf_counter() - t0
    rows = report.summary_rows()
    from prodlens.explain.sanity import SUMMARY_HEADERS

    print("| " + " | ".join(SUMMARY_HEADERS) + " |")
    print("|" + "---|" * len(SUMMARY_HEADERS))
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")
    print(f"verdict: {report.verdict} ({seconds:.0f} s)")
    out = {
        "command": shlex.join(["python", "bench/sanity_demo.py", *sys.argv[1:]]),
        **started,
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform()},
        "checkpoint": str((demo / "models" / "concat.pt").relative_to(HERE.parent)) if demo.is_relative_to(HERE.parent)
        else str(demo / "models" / "concat.pt"),
        "photos": [s.id for s in samples], "seconds": round(seconds, 1),
        "table": {"headers": SUMMARY_HEADERS, "rows": rows}, "report": report.to_dict(),
    }
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
