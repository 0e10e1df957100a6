"""Does photo size decide the cost? Seconds and peak memory of one explanation of a
bundled GroceryStore photo at its own size and upscaled to a phone-camera size.

Not a test. Each case runs in a fresh process (peak RSS is per process):
``load_image`` + ``MultimodalLime(max_samples=N, early_stop=False, quality=False)`` with a
cheap stand-in model that, like a CNN's preprocessing, resizes every image to its
256 px input and scores colour means and one word: what is measured is what prodlens
does around the model (decode, segmentation, masks, fills), which is what grew with the
photo. The normal-size case also prints a digest of its weights, to compare versions.

With ``--before DIR`` (the ``src`` folder of another checkout, e.g. a ``git worktree``
of the commit before a change) both versions run, interleaved, ``--repeats`` times each,
and the JSON (``bench/results/large_photo.json``) holds every run plus mean and sd.

Usage::

    python bench/large_photo.py                    # 24 MP, 64 perturbations, this checkout
    python bench/large_photo.py --before /tmp/old/src --repeats 5
    python bench/large_photo.py --megapixels 12 --samples 128
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PHOTO = Path(__file__).resolve().parent.parent / "src/prodlens/sample_data/grocery_mini/images/train/Oatly-Oat-Milk_001.jpg"


def _case(path: str, samples: int) -> dict:
    import resource
    import time

    import numpy as np
    from PIL import Image

    from prodlens.data.images import load_image
    from prodlens.data.types import OcrToken
    from prodlens.explain import MultimodalLime

    class Stand_in:  # noqa: N801 - a 256 px "model": resize, then colour means + one word
        classes = ["other", "oatly"]
        input_size = 256

        def predict_proba(self, images, token_lists):
            out = []
            for im, ts in zip(images, token_lists):
                small = np.asarray(Image.fromarray(im).resize((256, 256), Image.BILINEAR), float) / 255
                z = small[:128, :, 1].mean() - small[128:, :, 2].mean() + any(t.text == "OATLY" for t in ts)
                out.append([1 / (1 + np.exp(z)), 1 - 1 / (1 + np.exp(z))])
            return np.array(out)

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    image = load_image(path)
    t_load = time.perf_counter() - t0
    h, w = image.shape[:2]
    tokens = (OcrToken("OATLY", (0.1 * w, 0.1 * h, 0.5 * w, 0.2 * h)), OcrToken("1L", (0.6 * w, 0.8 * h, 0.8 * w, 0.9 * h)))
    lime = MultimodalLime(max_samples=samples, early_stop=False, quality=False, seed=0, progress=False)
    t1 = time.perf_counter()
    res = lime.explain(Stand_in(), image=image, tokens=tokens)
    t_explain = time.perf_counter() - t1
    e = res.predicted_explanation
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "photo": f"{w}x{h} ({w * h / 1e6:.1f} MP)", "load_s": round(t_load, 2), "explain_s": round(t_explain, 2),
        "peak_rss_mb": round(peak / 1024), "rss_after_imports_mb": round(base / 1024),
        "segments": list(np.asarray(e.segments).shape), "superpixels": e.n_superpixels,
        "weights_sha1": hashlib.sha1(np.round(e.weights, 10).tobytes()).hexdigest()[:12],
    }


def _run(path: Path, samples: int, src: str | None) -> dict:
    import os

    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, __file__, "--case", str(path), "--samples", str(samples)],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import datetime as dt
    import os
    import platform
    import shlex

    import numpy as np
    from _machine import cpu_name, git_state

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=24.0)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--before", help="src folder of the version to compare with (run interleaved)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "large_photo.json"))
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(_case(args.case, args.samples)))
        return
    from PIL import Image

    versions = {"this checkout": None, **({"before": args.before} if args.before else {})}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.jpg"
        with Image.open(PHOTO) as im:
            scale = (args.megapixels * 1e6 / (im.width * im.height)) ** 0.5
            im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC).save(big, quality=90)
        for r in range(args.repeats):
            for name, src in versions.items():  # interleaved: each repeat runs every version
                for label, path in (("bundled photo", PHOTO), (f"upscaled to {args.megapixels:g} MP", big)):
                    row = {"version": name, "case": label, "repeat": r, **_run(path, args.samples, src)}
                    print(json.dumps(row), flush=True)
                    runs.append(row)
    summary = []
    for name in versions:
        for label in sorted({r["case"] for r in runs}):
            rows = [r for r in runs if r["version"] == name and r["case"] == label]
            stat = {k: (round(float(np.mean([x[k] for x in rows])), 2), round(float(np.std([x[k] for x in rows], ddof=1)), 2)
                        if len(rows) > 1 else None) for k in ("explain_s", "load_s", "peak_rss_mb")}
            summary.append({"version": name, "case": label, "n": len(rows), "mean_sd": stat,
                            "photo": rows[0]["photo"], "segments": rows[0]["segments"],
                            "weights_sha1": sorted({x["weights_sha1"] for x in rows})})
    print("| version | case | n | explain s (mean, sd) | peak RSS MB | segments |")
    print("|---|---|---:|---:|---:|---|")
    for s_ in summary:
        m = s_["mean_sd"]
        print(f"| {s_['version']} | {s_['case']} | {s_['n']} | {m['explain_s'][0]} ({m['explain_s'][1]}) | "
              f"{m['peak_rss_mb'][0]} | {s_['segments']} |")
    result = {
        "command": shlex.join(["python", "bench/large_photo.py", *sys.argv[1:]]),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                    "load_average_start": list(os.getloadavg())},
        "git": git_state(), "before_src": args.before,
        "settings": {"megapixels": args.megapixels, "samples": args.samples, "repeats": args.repeats,
                     "model": "256 px stand-in (resize + colour means + one word): prodlens' own work is timed"},
        "summary": summary, "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
