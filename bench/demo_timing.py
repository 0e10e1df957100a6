"""Wall time of the main job (``prodlens demo``) per stage, from a fresh output folder and
fresh caches, on this machine; writes ``bench/results/demo_timing.json``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/demo_timing.py            # runs the demo (~3-4 min on 2 cores)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/demo_timing.py --summary /tmp/demoQ/summary.json --wall 196.3
        # records a demo that already ran (its summary.json and the `time` wall seconds)

Run it on an otherwise idle machine: the load average at start and end is recorded, and a
second job on the 2 cores roughly doubles every stage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_name, git_state

RESULTS = Path(__file__).parent / "results" / "demo_timing.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--summary", help="record this finished demo's summary.json instead of running one")
    ap.add_argument("--wall", type=float, help="with --summary: the command's wall seconds (from `time`)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    if args.summary:
        summary = json.loads(Path(args.summary).read_text())
        wall = args.wall if args.wall is not None else summary["seconds"]
    else:
        from prodlens.demo import run_demo

        work = Path(tempfile.mkdtemp(prefix="demo-timing-"))
        os.environ["PRODLENS_CACHE"] = str(work / "cache")  # fresh ONNX and feature caches
        t0 = time.perf_counter()
        summary = run_demo(work / "demo", progress=False).to_dict()
        wall = time.perf_counter() - t0
    stages = {s["stage"]: round(s["seconds"], 1) for s in summary["stages"]}
    from prodlens.pipeline import PipelineSummary, StageReport, highlights

    reports = tuple(StageReport(s["stage"], done=s["done"], skipped=s["skipped"], seconds=s["seconds"], status=s["status"],
                                error=s["error"], key=s["key"], outputs=s["outputs"]) for s in summary["stages"])
    printed = highlights(PipelineSummary(summary["run"], reports, summary["store"], summary["seconds"]))
    result = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform()},
        "git": git_state(Path(__file__).parent),
        "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
        "wall_seconds": round(wall, 1), "pipeline_seconds": round(summary["seconds"], 1), "stages": stages,
        "highlights": printed, "stage_outputs": {s["stage"]: s["outputs"] for s in summary["stages"]},
        "note": "prodlens demo from a fresh output folder and fresh caches, after setup (the .venv exists)"
                + (f"; recorded from {args.summary} after the run (load averages at recording time; the git state is "
                   "the checkout's when recorded)" if args.summary else ""),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("| stage | seconds |\n|---|---:|")
    for k, v in stages.items():
        print(f"| {k} | {v} |")
    print(f"| **wall** | **{result['wall_seconds']}** |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
