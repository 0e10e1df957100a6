"""Explorer responsiveness on GroceryStore-sized results.

Not a test. Fills a SQLite store with SYNTHETIC-but-realistic results
(``prodlens.app.fixtures``: real photos and real SLIC segments from tests/data/app,
made-up weights) at the size of a full GroceryStore run: 3000 samples over 81
classes, 1000 local explanations (misclassified samples explained for both classes),
global features for every class, deletion curves. Then it switches views the way a
user does, in a random order, and times:

* ``callback``: the app's view callbacks (:class:`prodlens.app.ui.Callbacks`) called
  directly: store queries, decoding, drawing overlays, building tables. ``cold`` is
  the first visit of a (run, class, view) after start, ``warm`` a later one.
* ``http``: the same views through ``prodlens app`` running in its own process on
  127.0.0.1, called with ``gradio_client`` (adds Gradio's queue, JPEG encoding and
  caching, JSON and the client's own overhead); cold visits of distinct classes.

Writes ``bench/results/app_latency.json`` and prints a Markdown table.

Usage::

    python bench/app_latency.py                # full size (~1 min to fill the store)
    python bench/app_latency.py --samples 600 --explanations 200 --visits 10 --no-http
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _machine import git_state

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHOTOS = ROOT / "tests" / "data" / "app"
RESULTS = HERE / "results" / "app_latency.json"
log = logging.getLogger("bench.app_latency")

BRANDS = ["Arla", "Alpro", "Oatly", "God-Morgon", "Bravo", "Tropicana", "Valio", "Yoggi", "Garant"]
PRODUCTS = ["Standard-Milk", "Medium-Fat-Milk", "Oat-Milk", "Orange-Juice", "Apple-Juice", "Vanilla-Yoghurt",
            "Natural-Yoghurt", "Sour-Cream", "Soy-Milk"]
VIEWS = ("single", "sample", "gallery", "misclassified", "global", "histogram", "quality", "compare", "matching")


def class_names(n: int) -> list[str]:
    names = [f"{b}-{p}" for b in BRANDS for p in PRODUCTS]
    return names[:n]


def fill_store(path: Path, n_samples: int, n_classes: int, n_explanations: int, seed: int) -> None:
    """Two runs over the same samples (so that "compare" has two sides)."""
    from prodlens.app.fixtures import fill_synthetic_run, synthetic_samples
    from prodlens.store import Store

    photos = sorted(PHOTOS.glob("*.jpg"))
    img_dir = path.parent / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    classes = class_names(n_classes)
    pairs = []
    for i in range(n_samples):
        src = photos[i % len(photos)]
        dst = img_dir / f"{i:05d}.jpg"  # one file per sample, as in a real dataset (no shared cache hits)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        pairs.append((dst, classes[i % n_classes]))
    samples = synthetic_samples(pairs, seed=seed)
    with Store.open(path) as store:
        t = time.perf_counter()
        fill_synthetic_run(store, samples, classes, run_name="baseline", n_explanations=n_explanations,
                           error_rate=0.12, n_segments=50, seed=seed)
        fill_synthetic_run(store, samples, classes, run_name="variant", n_explanations=n_explanations,
                           error_rate=0.15, n_segments=50, seed=seed + 1)
        from prodlens.app.match_fixtures import fill_synthetic_matching

        # the Matching tab: every sample's top-5 gallery list in "baseline-match", 50 explained pairs
        store.add_run("baseline-match", model="zero_shot/fused", classes=classes)
        fill_synthetic_matching(store, "baseline-match", samples, k=5, n_explained=50, seed=seed)
        log.info("filled %s in %.1f s: %s", path, time.perf_counter() - t, store.table_counts())


def _stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"n": len(ms), "p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "max_ms": round(ms[-1], 1)}


def time_callbacks(path: Path, visits: int, seed: int) -> dict:
    from prodlens.app.ui import Callbacks
    from prodlens.app.views import Explorer
    from prodlens.store import Store

    ex = Explorer(Store.open(path, create=False))
    t = time.perf_counter()
    ex.warm_up()  # as `prodlens app` does at start
    log.info("warm-up (app start) %.2f s", time.perf_counter() - t)
    cb = Callbacks(ex)
    rng = random.Random(seed)
    classes = ex.classes("baseline")
    plan = [(rng.choice(["baseline", "variant"]), rng.choice(classes), v) for _ in range(visits) for v in VIEWS]
    rng.shuffle(plan)
    plan += plan[: len(plan) // 2]  # revisits: warm
    seen: set = set()
    times: dict[str, dict[str, list[float]]] = {v: {"cold": [], "warm": []} for v in VIEWS}
    for run, cls, view in plan:
        other = "variant" if run == "baseline" else "baseline"
        t = time.perf_counter()
        if view == "single":
            cb.on_class(run, cls)
        elif view == "sample":
            choices = ex.sample_choices(run, cls)
            cb.on_sample(run, rng.choice(choices).sample_id if choices else None)
        elif view == "gallery":
            cb.on_gallery(run, cls)
        elif view == "misclassified":
            cb.on_misclassified(run, cls)
        elif view == "global":
            cb.on_global(run, cls)
        elif view == "histogram":
            cb.on_histogram(run, cls)
        elif view == "quality":
            cb.on_quality(run, cls)
        elif view == "compare":
            cb.on_compare_choices(run, other, cls)
        elif view == "matching":  # falls back to the store's matching run, as the app does
            cb.on_match_class(run, cls)
        ms = (time.perf_counter() - t) * 1000
        key = (run, cls, view)
        times[view]["warm" if key in seen else "cold"].append(ms)
        seen.add(key)
    return {v: {k: _stats(x) for k, x in d.items() if x} for v, d in times.items()}


def time_http(path: Path, visits: int, seed: int) -> dict:
    """Cold visits through `prodlens app` running in its own process (as users run it)."""
    import subprocess
    import urllib.request

    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen([sys.executable, "-m", "prodlens.app", "--db", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"prodlens app did not start on {url}") from None
                time.sleep(0.5)
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
        from prodlens.app.views import Explorer
        from prodlens.store import Store

        classes = Explorer(Store.open(path, create=False)).classes("baseline")
        rng = random.Random(seed + 7)
        endpoints = {"single": "/on_class", "gallery": "/on_gallery", "misclassified": "/on_misclassified",
                     "global": "/on_global", "histogram": "/on_histogram"}
        client.predict("baseline", classes[0], api_name="/on_histogram")  # first request sets up the session
        times: dict[str, list[float]] = {v: [] for v in endpoints}
        picks = rng.sample(classes[1:], min(visits, len(classes) - 1))
        plan = [(c, v) for c in picks for v in endpoints]
        rng.shuffle(plan)
        for cls, view in plan:
            t = time.perf_counter()
            client.predict("baseline", cls, api_name=endpoints[view])
            times[view].append((time.perf_counter() - t) * 1000)
        return {v: {"cold": _stats(x)} for v, x in times.items() if x}
    finally:
        proc.terminate()
        proc.wait(30)


def markdown(results: dict, http: dict | None) -> str:
    lines = ["| view | mode | n | p50 ms | p95 ms | max ms |", "|---|---|---:|---:|---:|---:|"]
    for view, modes in results.items():
        for mode, s in modes.items():
            lines.append(f"| {view} | callback {mode} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} |")
    for view, modes in (http or {}).items():
        for mode, s in modes.items():
            lines.append(f"| {view} | HTTP {mode} | {s['n']} | {s['p50_ms']} | {s['p95_ms']} | {s['max_ms']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--classes", type=int, default=81)
    p.add_argument("--explanations", type=int, default=1000, help="per run")
    p.add_argument("--visits", type=int, default=40, help="visits per view (cold; plus half as many warm)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-http", action="store_true", help="skip the end-to-end HTTP timings")
    p.add_argument("--keep", type=Path, help="build the store in this folder and keep it")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="prodlens-app-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "results.sqlite"
    load_before = os.getloadavg()[0]
    try:
        if not db.exists():
            fill_store(db, args.samples, args.classes, args.explanations, args.seed)
        t = time.perf_counter()
        cb = time_callbacks(db, args.visits, args.seed)
        log.info("callbacks timed in %.1f s", time.perf_counter() - t)
        http = None if args.no_http else time_http(db, args.visits, args.seed)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    from prodlens.store import __name__ as _  # noqa: F401  (import check)

    table = markdown(cb, http)
    worst = max(s["p95_ms"] for modes in cb.values() for s in modes.values())
    out = {
        "meta": {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "git": git_state(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "samples": args.samples, "classes": args.classes, "explanations_per_run": args.explanations, "runs": 2,
            "visits_per_view": args.visits, "seed": args.seed, "store": "SQLite file (WAL)",
            "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "data": "SYNTHETIC fixture rows (prodlens.app.fixtures): real photos + SLIC segments, made-up weights",
            "command": "python bench/app_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "callbacks": cb,
        "http": http,
        "worst_callback_p95_ms": worst,
        "target_p95_ms": 300,
        "markdown": table,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(table)
    print(f"\nworst callback p95: {worst} ms (target < 300 ms); load average {out['meta']['load_average_1min']}; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
