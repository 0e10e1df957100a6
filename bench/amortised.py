"""Amortised explainer vs LIME: agreement, deletion / insertion, model calls (CPU).

Not a test. Two models trained as ``prodlens demo`` does (fast mode, frozen EfficientNet-Lite0
+ MiniLM, RapidOCR words): **image** (image-only head, explained over its superpixels alone)
and **concat** (Feature Concatenation fusion, superpixels + OCR words). ``--setting full``
(default): on all 81 classes of the GroceryStore import at ``--data`` (train + val, OCR'd by
``prodlens ocr``), trained on the train split alone (early stopping on a held-out tail of
train, so val is unseen), into ``--models-dir``. ``--setting sample``: the bundled 10-class
sample's models (the same checkpoints and OCR cache as bench/explain_speed.py). Parts (``--part``):

* ``references``: per held-out val photo (``--photos``, val photos with >= 3 OCR words, round
  robin over classes; never used in fitting) and model: a 10,000-row plain-LIME reference, two
  independent 2000-row plain runs (the noise floor) and the factorised / early-stopping default
  (``MultimodalLime(seed=1, quality=False)``), all on one SLIC segmentation. Cached under
  ``runs/bench-amortised/refs`` per photo and model (keyed by its checkpoint hash, rows and
  seeds), so a rerun costs nothing. Both models perturb the photo alike and share one frozen
  backbone, so each run's image-encoder outputs are kept on disk and the second model replays
  them (``SharedImageFeatures``, ``SharedImageRows``): ``--models image`` can run before the
  concat model exists; the replaying model's seconds are not timings.
* ``fit``: ``AmortisedExplainer.fit`` on the train photos (``--fit-photos``, 0 = all; their
  masks cached on disk, the image model replaying the concat model's image features), saved
  under ``runs/bench-amortised``; the ``amortised`` part loads it (``--refit`` fits again).
* ``amortised``: the fit (or the saved one), then explains the held-out photos; agreement with
  the reference (top-10 overlap, Spearman, sign agreement on the reference's top 10) next to
  the noise floor and the default; the network's weights refined by ``--refine`` real masks
  against plain LIME on as many rows (equal budget); deletion / insertion AUC
  (``QualityCheck.curves``, the same steps and fill) of every arm on the same photos; cost:
  fitting seconds and model rows, model calls and seconds per explained photo, break-even
  photo count against 2000-row LIME.
* ``pipeline``: ``prodlens run`` over the whole val split with ``[explain] method =
  "amortised"`` and the concat model: wall seconds per stage and load average (its fit reuses
  the masks the ``fit`` part cached; the fit's one-off cost is in the ``amortised`` section).

Writes ``bench/results/amortised.json`` (command, date, machine, git state, load average,
``machine_busy``) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import cpu_name, git_state  # noqa: E402

RESULTS = HERE / "results" / "amortised.json"
RUNS = HERE.parent / "runs" / "bench-speed"  # the checkpoints bench/explain_speed.py trains (shared)
CACHE = HERE.parent / "runs" / "bench-amortised"
SHARED_CACHE = CACHE / "pipeline-cache"  # the fit's masks, shared with the pipeline part's `prodlens run`
OCR_CACHE = Path("/work/cache/ocr-sample")
MODELS = ("concat", "image")  # concat first: the image model replays its image features
log = logging.getLogger("bench.amortised")


def setup(args: argparse.Namespace) -> tuple:
    """The dataset, the two models and what to record of them, for ``--setting``."""
    if args.setting == "sample":
        import explain_speed as es

        return es.train_models(threads=2)
    return full_models(args.data, args.models_dir, tuple(args.models))


def full_models(data: Path, runs: Path, names: tuple[str, ...] = MODELS) -> tuple:
    """The full GroceryStore import at ``data`` (train + val, RapidOCR words in its manifest: see
    ``prodlens ocr``) and demo-style fast models on all 81 classes, trained once into ``runs`` on
    the train split alone (early stopping on a held-out tail of train: val stays unseen)."""
    import explanation_quality as eq
    from prodlens.data.manifest import read_dataset
    from prodlens.train import TrainConfig

    ds = read_dataset(data)
    train, val = ds.split("train"), ds.split("val")
    no_words = sum(not s.tokens for s in ds.samples)
    cfg = TrainConfig(mode="fast", views=2, seed=0, feature_cache=str(eq.FEATURES))
    models, info = eq.fast_models(train, val, names, runs, cfg, early_stop_on_val=False)
    for name in names:
        info[name].update(sha256=hashlib.sha256(Path(info[name]["checkpoint"]).read_bytes()).hexdigest()[:16],
                          classes=len(models[name].classes))
    return ds, models, {"models": info, "dataset": str(data), "photos": {"train": len(train), "val": len(val)},
                        "photos_without_words": no_words, "train_config": cfg.to_dict(),
                        "early_stopping": "held-out tail of train (val unseen)"}


def held_out(ds, n: int) -> list:
    import explanation_quality as eq

    return eq.pick_photos(ds, n, min_words=3)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


RUNS_OF_REFERENCE = {"reference": ("reference", 10_001), "plain-A": ("plain", 20_001), "plain-B": ("plain", 30_001),
                     "default": (None, 1)}


def _feature_store(path: Path) -> dict:
    """Image-encoder outputs kept on disk, keyed by the perturbed image's bytes (see ``references``)."""
    if not path.is_file():
        return {}
    with np.load(path) as z:
        return {bytes(k): f for k, f in zip(z["keys"], z["features"])}


def _save_store(store: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.array([np.frombuffer(k, np.uint8) for k in store]),
             features=np.stack(list(store.values())))
    tmp.replace(path)


def ref_path(sample, mname: str, info: dict, args: argparse.Namespace) -> Path:
    """Where one model's references of one photo are cached."""
    key = _key(sample.id, info[mname]["sha256"], args.reference, args.plain, 2)
    return CACHE / "refs" / f"{sample.id.replace('/', '_')}_{mname}_{key}.npz"


def references(sample, models: dict, info: dict, args: argparse.Namespace, names: tuple[str, ...] = MODELS) -> dict:
    """Reference, floor and default weights per model for one photo, each model's cached on disk
    (keyed by photo, its checkpoint hash, rows and seeds). Both models perturb the photo with the
    same image columns (``SharedImageRows``) and share one frozen EfficientNet-Lite0, so the
    image-encoder outputs of each run are kept on disk by the perturbed image's bytes and the
    second model to run replays them: a model can be run as soon as it exists, the other later."""
    import explain_speed as es
    import explanation_quality as eq
    from prodlens.data.images import load_image
    from prodlens.explain import MultimodalLime, SlicSegmenter

    image = load_image(sample.image_path)
    segments = SlicSegmenter(n_segments=100)(image)
    S = int(segments.max()) + 1
    sid = sample.id.replace("/", "_")
    out: dict = {"segments": segments, "n_superpixels": S, "tokens": tuple(sample.tokens), "models": {}}
    for mname in names:
        path = ref_path(sample, mname, info, args)
        if path.is_file():
            with np.load(path, allow_pickle=True) as z:
                out["models"][mname] = z["doc"].item()
            continue
        tokens = tuple(sample.tokens) if mname == "concat" else ()
        doc: dict = {}
        target = None
        for name, (rows_arg, seed) in RUNS_OF_REFERENCE.items():
            n = getattr(args, rows_arg) if rows_arg else None
            store_path = CACHE / "refs" / f"{sid}_images_{_key(sample.id, name, n, seed, 'frozen efficientnet_lite0')}.npz"
            store = _feature_store(store_path)
            n_stored = len(store)
            shared = eq.SharedImageFeatures(models[mname], store, replay=True)
            if n is None:
                lime = MultimodalLime(seed=seed, quality=False, progress=False)
            else:
                lime = MultimodalLime(max_samples=n, sampler=es.SharedImageRows(S, seed, seed + 1), early_stop=False,
                                      quality=False, seed=seed, progress=False)
            t0 = time.perf_counter()
            res = lime.explain(shared, image=image, tokens=tokens, segments=segments, sample_id=sample.id,
                               targets=[target] if target is not None else [])
            target = res.predicted if target is None else target
            e = res.for_target(target)
            doc.setdefault("target", target)
            doc.setdefault("target_name", e.target_name)
            doc.setdefault("p_target", float(e.prediction))
            doc[name] = {"weights": e.weights, "rows": int(res.n_samples), "image_passes": shared.image_passes,
                         "text_passes": shared.text_passes if mname == "concat" else 0,
                         "image_computed": shared.image_computed, "seconds": round(time.perf_counter() - t0, 2)}
            if len(store) > n_stored:
                _save_store(store, store_path)
            log.info("%s %s %s: %d rows, %d image passes (%d computed), %.0f s", sample.id, mname, name,
                     res.n_samples, shared.image_passes, shared.image_computed, time.perf_counter() - t0)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, doc=np.array(doc, dtype=object))
        tmp.replace(path)
        out["models"][mname] = doc
    return out


def _auc(fractions: np.ndarray, values: np.ndarray) -> float:
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(fractions)))


def fit_explainers(ds, models: dict, args: argparse.Namespace) -> tuple[dict, dict]:
    """One AmortisedExplainer per model, fitted on the train photos (the concat model with their
    words, the image model over superpixels alone), the image model replaying the concat model's
    image features (same masks: ``AmortisedExplainer`` draws image columns from their own stream)."""
    from dataclasses import replace

    import explanation_quality as eq
    from prodlens.explain import AmortisedExplainer

    from prodlens.pipeline.stages import pick_samples

    train = pick_samples(ds.split("train").samples, args.fit_photos)  # spread over classes, as the pipeline picks them
    store: dict = {}
    out, info = {}, {}
    for i, mname in enumerate(MODELS):
        shared = eq.SharedImageFeatures(models[mname], store, replay=i > 0)
        photos = train if mname == "concat" else [replace(s, ocr_tokens=()) for s in train]
        width = f"_h{args.hidden}" if args.hidden != 32 else ""
        path = CACHE / f"{mname}_{_key(info_of(models, mname))}_m{args.fit_masks}_p{len(train)}{width}.amortised.pt"
        if path.is_file() and not args.refit:
            am = AmortisedExplainer.load(path, models[mname])
            info[mname] = json.loads(path.with_suffix(".json").read_text())
            out[mname] = am
            log.info("loaded %s (fitted earlier: %s)", path, info[mname])
            continue
        t0 = time.perf_counter()
        am = AmortisedExplainer(n_masks=args.fit_masks, hidden=args.hidden, cache_dir=SHARED_CACHE / "amortised", seed=0,
                                progress=False).fit(shared, photos)
        am.save(path, checkpoint=str(RUNS / f"{mname}_fast_v2_s0.pt"))
        sec = time.perf_counter() - t0
        r = am.fit_report_
        info[mname] = {**r, "fit_seconds_wall": round(sec, 1), "image_passes_requested": shared.image_passes,
                       "image_passes_computed": shared.image_computed, "text_passes": shared.text_passes if mname == "concat" else 0,
                       "explainer": str(path.relative_to(HERE.parent))}
        path.with_suffix(".json").write_text(json.dumps(info[mname], default=float))
        log.info("fitted %s: %s", mname, info[mname])
        out[mname] = am
    return out, info


def info_of(models: dict, mname: str) -> str:
    """What identifies a model's weights (its class names and outputs on the fingerprint probe)."""
    from prodlens.explain.amortised.explainer import classifier_fingerprint

    return json.dumps(classifier_fingerprint(models[mname])["probe"])


def evaluate_photo(sample, refs: dict, explainers: dict, models: dict, refine: tuple[int, ...] = ()) -> list[dict]:
    """Amortised vs reference / floor / default on one held-out photo, per model, plus deletion / insertion AUC."""
    from prodlens.data.images import load_image
    from prodlens.explain import CachedEvaluator, MultimodalInput, MultimodalLime, QualityCheck
    from prodlens.explain.lime import resolution_work_size
    from prodlens.explain.agreement import agreement
    import explain_speed as es

    image = load_image(sample.image_path)
    rows = []
    for mname in MODELS:
        m = refs["models"][mname]
        tokens = refs["tokens"] if mname == "concat" else ()
        clf, am = models[mname], explainers[mname]
        am.check_classifier(clf)  # once per classifier object (3 probe rows), not a per-photo cost
        t0 = time.perf_counter()
        res = am.explain(clf, image=image, tokens=tokens, segments=refs["segments"], targets=[m["target"]], sample_id=sample.id)
        sec = time.perf_counter() - t0
        w_am = res.for_target(m["target"]).weights
        ref = m["reference"]["weights"]
        arms = {"amortised": w_am}
        calls = {"amortised": int(res.stats.get("n_model_calls", 1))}
        S = refs["n_superpixels"]
        for k in refine:
            # the network's weights corrected by k real masks, against plain LIME on k + 1 rows (equal budget)
            am.refine = k
            r = am.explain(clf, image=image, tokens=tokens, segments=refs["segments"], targets=[m["target"]], sample_id=sample.id)
            am.refine = 0
            arms[f"amortised + refine {k}"] = r.for_target(m["target"]).weights
            calls[f"amortised + refine {k}"] = int(r.stats["n_model_calls"])
            lime = MultimodalLime(max_samples=k + 1, sampler=es.SharedImageRows(S, 40_001, 40_002), early_stop=False,
                                  quality=False, seed=40_001, progress=False)
            r = lime.explain(clf, image=image, tokens=tokens, segments=refs["segments"], targets=[m["target"]], sample_id=sample.id)
            arms[f"plain-{k + 1}"] = r.for_target(m["target"]).weights
            calls[f"plain-{k + 1}"] = int(r.n_samples)
        arms.update({"plain-2000 A": m["plain-A"]["weights"], "plain-2000 B": m["plain-B"]["weights"],
                     "default": m["default"]["weights"]})
        calls.update({"plain-2000 A": 2000, "plain-2000 B": 2000,
                      "default": int(m["default"]["image_passes"])})
        # deletion / insertion curves of each ranking on the same photo, same fill, one evaluator
        x = MultimodalInput(image, refs["segments"], tokens, size=resolution_work_size("auto", clf, image.shape))
        ev = CachedEvaluator(clf, x, batch_size=8)
        names = ["reference", *arms]
        fr, curves = QualityCheck(n_steps=20).curves(ev, np.vstack([ref, *arms.values()]), [m["target"]] * len(names),
                                                     np.random.default_rng(0))
        auc = {n: {"deletion_auc": round(_auc(fr, curves["deletion"][j]), 4), "insertion_auc": round(_auc(fr, curves["insertion"][j]), 4)}
               for j, n in enumerate(names)}
        auc["random"] = {"deletion_auc": round(_auc(fr, curves["random_deletion"][0]), 4),
                         "insertion_auc": round(_auc(fr, curves["random_insertion"][0]), 4)}
        row = {"photo": sample.id, "label": sample.label, "model": mname, "target": m["target_name"], "p_target": round(m["p_target"], 4),
               "n_superpixels": S, "n_words": len(tokens),
               "vs_reference": {n: agreement(w, ref) for n, w in arms.items()},
               "floor_pair": agreement(m["plain-A"]["weights"], m["plain-B"]["weights"]),
               "auc": auc, "model_calls": calls, "amortised_seconds": round(sec, 3), "amortised_model_rows": int(res.stats.get("n_model_rows", 1)),
               "lime_rows": {"plain-2000": 2000, "default_image_passes": m["default"]["image_passes"],
                             "default_text_passes": m["default"]["text_passes"]},
               # the concat model's runs computed their own image features (comparable seconds); the image model replayed them
               "lime_seconds": {"plain-2000": m["plain-A"]["seconds"], "default": m["default"]["seconds"]} if mname == "concat" else None,
               "words_in_reference_top10": int(sum(i >= S for i in np.argsort(-np.abs(ref), kind="stable")[:10]))}
        rows.append(row)
        log.info("%s %s: amortised %s; plain-A %s", sample.id, mname, row["vs_reference"]["amortised"], row["vs_reference"]["plain-2000 A"])
    return rows


def summarise(rows: list[dict], fit: dict) -> list[dict]:
    out = []
    for mname in MODELS:
        mine = [r for r in rows if r["model"] == mname]
        if not mine:
            continue
        for arm in mine[0]["vs_reference"]:
            agg = {k: [r["vs_reference"][arm][k] for r in mine] for k in ("top10_overlap", "spearman", "sign_top10")}
            out.append({"model": mname, "arm": arm, "photos": len(mine),
                        "model_calls_per_photo": round(float(np.mean([r["model_calls"][arm] for r in mine])), 1),
                        **{k: round(float(np.mean(v)), 3) for k, v in agg.items()},
                        **{f"{k}_sd": round(float(np.std(v, ddof=1)), 3) if len(v) > 1 else None for k, v in agg.items()},
                        "deletion_auc": round(float(np.mean([r["auc"][arm]["deletion_auc"] for r in mine])), 4),
                        "insertion_auc": round(float(np.mean([r["auc"][arm]["insertion_auc"] for r in mine])), 4)})
        ref_auc = {k: round(float(np.mean([r["auc"]["reference"][k] for r in mine])), 4) for k in ("deletion_auc", "insertion_auc")}
        rnd_auc = {k: round(float(np.mean([r["auc"]["random"][k] for r in mine])), 4) for k in ("deletion_auc", "insertion_auc")}
        floor = {k: [r["floor_pair"][k] for r in mine] for k in ("top10_overlap", "spearman", "sign_top10")}
        out.append({"model": mname, "arm": "noise floor (plain-2000 A vs B)", "photos": len(mine),
                    **{k: round(float(np.mean(v)), 3) for k, v in floor.items()},
                    **{f"{k}_sd": round(float(np.std(v, ddof=1)), 3) if len(v) > 1 else None for k, v in floor.items()}})
        out.append({"model": mname, "arm": "reference (10,000 rows)", "photos": len(mine), **ref_auc})
        out.append({"model": mname, "arm": "random order", "photos": len(mine), **rnd_auc})
        f = fit[mname]
        fit_calls = f["image_passes_computed"] + f["text_passes"] if mname == "concat" else f["image_passes_requested"]
        per_photo = float(np.mean([r["amortised_model_rows"] for r in mine]))
        out.append({"model": mname, "arm": "cost", "fit_model_rows": fit_calls, "fit_photos": f["photos"],
                    "fit_seconds_busy": f["fit_seconds_wall"], "amortised_model_rows_per_photo": per_photo,
                    "amortised_seconds_per_photo_busy": round(float(np.mean([r["amortised_seconds"] for r in mine])), 3),
                    "lime_seconds_per_photo_busy": ({k: round(float(np.mean([r["lime_seconds"][k] for r in mine])), 1)
                                                     for k in ("plain-2000", "default")} if mname == "concat" else None),
                    "default_encoder_passes_per_photo": round(float(np.mean([r["lime_rows"]["default_image_passes"]
                                                                             + r["lime_rows"]["default_text_passes"] for r in mine])), 1),
                    "call_ratio_vs_plain_2000": round(2000 / per_photo, 1),
                    "break_even_photos_vs_plain_2000": int(np.ceil(fit_calls / (2000 - per_photo)))})
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["| model | arm | photos | model calls / photo | top-10 overlap | Spearman | sign top-10 | deletion AUC | insertion AUC |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        if s["arm"] == "cost":
            continue
        def ms(k: str) -> str:
            if k not in s:
                return "-"
            sd = s.get(f"{k}_sd")
            return f"{s[k]:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")
        lines.append(f"| {s['model']} | {s['arm']} | {s['photos']} | {s.get('model_calls_per_photo', '-')} | {ms('top10_overlap')} | {ms('spearman')} | "
                     f"{ms('sign_top10')} | {s.get('deletion_auc', '-')} | {s.get('insertion_auc', '-')} |")
    lines += ["", "| model | fit photos | fit model rows | fit s (busy) | rows per explained photo | s per photo (busy) | "
              "call ratio vs 2000-row LIME | break-even photos |", "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        if s["arm"] == "cost":
            lines.append(f"| {s['model']} | {s['fit_photos']} | {s['fit_model_rows']} | {s['fit_seconds_busy']} | "
                         f"{s['amortised_model_rows_per_photo']:.0f} | {s['amortised_seconds_per_photo_busy']} | "
                         f"{s['call_ratio_vs_plain_2000']}x | {s['break_even_photos_vs_plain_2000']} |")
    return "\n".join(lines)


def per_photo_markdown(rows: list[dict]) -> str:
    """Top-10 overlap per photo and arm, with the photo's class, words and the words in the reference's top 10."""
    if not rows:
        return ""
    arms = [a for a in rows[0]["vs_reference"] if not a.startswith("plain-2000")]
    lines = ["| model | photo | p(target) | words | words in ref top 10 | " + " | ".join(arms) + " | floor |",
             "|---|---|---|---|---|" + "---|" * (len(arms) + 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['photo'].split('/')[-1]} | {r['p_target']:.2f} | {r['n_words']} | "
                     f"{r['words_in_reference_top10']} | " + " | ".join(str(r["vs_reference"][a]["top10_overlap"]) for a in arms)
                     + f" | {r['floor_pair']['top10_overlap']} |")
    return "\n".join(lines)


def run_pipeline_part(ds, args: argparse.Namespace, setup_info: dict) -> dict:
    """``prodlens run`` over the sample's whole val split with ``[explain] method = "amortised"`` (the
    concat checkpoint, the OCR'd dataset written once; the fit's masks come from the shared cache when
    the ``amortised`` part made them). Wall seconds per stage, the load average around it."""
    import subprocess

    from prodlens.data.manifest import write_dataset

    data = CACHE / f"dataset-{args.setting}"
    if not (data / "manifest.jsonl").is_file():
        write_dataset(ds, data)
    out = CACHE / f"pipeline-{int(time.time())}"
    cfg = {"name": "bench-amortised", "out": str(out), "cache_dir": str(SHARED_CACHE), "store": str(out / "prodlens.sqlite"),
           "data": {"dataset": str(data)}, "ocr": {"engine": "none"},
           "train": {"checkpoint": str(HERE.parent / setup_info["models"]["concat"]["checkpoint"])},
           "explain": {"split": "val", "method": "amortised", "verify": args.verify, "fit_masks": args.fit_masks,
                       "fit_photos": args.fit_photos, "refine": args.pipeline_refine},
           "deletion": {"enabled": not args.no_deletion}, "executor": {"threads": 2}}
    path = out.with_suffix(".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg))
    load0 = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", "from prodlens.cli import main; raise SystemExit(main())", "run", str(path), "--no-progress"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - t0
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    stages = {st["stage"]: {"seconds": round(st.get("seconds", 0.0), 1), "done": st.get("done"), "status": st.get("status")}
              for st in summary.get("stages", [])}
    explain = next((st for st in summary.get("stages", []) if st["stage"] == "explain"), {})
    return {"command": " ".join(["prodlens", "run", str(path.relative_to(HERE.parent))]), "config": cfg, "returncode": proc.returncode,
            "wall_seconds": round(wall, 1), "stages": stages, "explain_outputs": explain.get("outputs", {}),
            "load_average_start": load0, "load_average_end": [round(v, 2) for v in os.getloadavg()], "machine_busy": load0[0] > 1.0}


def run_meta(argv: list[str]) -> dict:
    return {"command": "python bench/amortised.py " + " ".join(argv), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpu": cpu_name(), "cores": os.cpu_count()}, "git": git_state(HERE.parent),
            "load_average_start": [round(v, 2) for v in os.getloadavg()], "machine_busy": os.getloadavg()[0] > 1.0}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("references", "fit", "amortised", "pipeline", "all"), default="all")
    ap.add_argument("--photos", type=int, default=5, help="held-out val photos per model")
    ap.add_argument("--reference", type=int, default=10000)
    ap.add_argument("--plain", type=int, default=2000)
    ap.add_argument("--fit-masks", type=int, default=64, help="masks per train photo of the amortised fit")
    ap.add_argument("--fit-photos", type=int, default=0, help="train photos to fit on (0 = all 100)")
    ap.add_argument("--refine", type=int, nargs="*", default=[20, 100],
                    help="amortised part: also refine with these many real masks (vs plain LIME on as many rows)")
    ap.add_argument("--hidden", type=int, default=32, help="the amortised network's width (AmortisedExplainer(hidden=))")
    ap.add_argument("--refit", action="store_true", help="amortised part: fit again even when a saved fit exists")
    ap.add_argument("--cached-only", action="store_true",
                    help="amortised part: evaluate only the held-out photos whose references are already cached")
    ap.add_argument("--verify", type=float, default=0.1, help="pipeline part: share re-explained with LIME")
    ap.add_argument("--pipeline-section", default="pipeline",
                    help="pipeline part: the JSON section to write (e.g. a second run that loads the saved fit)")
    ap.add_argument("--pipeline-refine", type=int, default=0, help="pipeline part: [explain] refine")
    ap.add_argument("--no-deletion", action="store_true", help="pipeline part: skip the deletion stage")
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                    help="the models to run (references can run one model now and the other later)")
    ap.add_argument("--setting", choices=("full", "sample"), default="full",
                    help="full: models on all 81 classes of --data; sample: the bundled 10-class sample's models")
    ap.add_argument("--data", type=Path, default=Path("/work/cache/grocery"),
                    help="full setting: the OCR'd GroceryStore import (train + val)")
    ap.add_argument("--models-dir", type=Path, default=HERE.parent / "runs" / "bench-amortised-full")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("prodlens").setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ds, models, setup_info = setup(args)
    photos = held_out(ds, args.photos)
    doc: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    meta = run_meta(argv)

    def write() -> None:
        # another part may have written since this run started: keep its sections
        fresh = json.loads(args.out.read_text()) if args.out.is_file() else {}
        doc.update({k: v for k, v in fresh.items() if k not in ("amortised", args.pipeline_section) or k not in doc})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n", encoding="utf-8")
        tmp.replace(args.out)

    if args.part in ("references", "all"):
        for s in tqdm(photos, desc="references", unit="photo"):
            references(s, models, setup_info["models"], args, tuple(args.models))
    if args.part == "fit":  # fit and save only (the amortised part then loads the fit)
        fit_explainers(ds, models, args)
    if args.part in ("amortised", "all"):
        explainers, fit = fit_explainers(ds, models, args)
        rows, left_out = [], []
        for s in tqdm(photos, desc="held-out photos", unit="photo"):
            if args.cached_only and not all(ref_path(s, m, setup_info["models"], args).is_file() for m in MODELS):
                left_out.append(s.id)
                continue
            rows += evaluate_photo(s, references(s, models, setup_info["models"], args), explainers, models, tuple(args.refine))
        summary = summarise(rows, fit)
        doc["amortised"] = {"run": {**meta, "load_average_end": [round(v, 2) for v in os.getloadavg()]},
                            "setup": setup_info, "settings": {"fit_masks": args.fit_masks, "reference_rows": args.reference,
                                                              "plain_rows": args.plain, "held_out_photos": [s.id for s in photos],
                                                              "left_out_no_reference": left_out},
                            "fit": fit, "summary": summary, "rows": rows}
        (CACHE / "amortised_section.json").write_text(json.dumps(doc["amortised"], default=float))
        write()
        print("\n## Amortised vs LIME on held-out val photos\n")
        print(markdown(summary))
        print("\n## Top-10 overlap with the reference, per held-out photo\n")
        print(per_photo_markdown(rows))
    if args.part in ("pipeline", "all"):
        part = run_pipeline_part(ds, args, setup_info)
        doc[args.pipeline_section] = {"run": meta, **part}
        write()
        e = part["explain_outputs"]
        print(f"\n## prodlens run, amortised, the {args.setting} setting's val split ({e.get('photos')} photos)\n")
        print(f"wall {part['wall_seconds']} s ({'busy' if part['machine_busy'] else 'idle'} machine, "
              f"load {part['load_average_start']} -> {part['load_average_end']}); "
              f"stages: {part['stages']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
