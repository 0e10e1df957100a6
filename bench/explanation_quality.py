"""How good are prodlens' explanations, and do their quality scores say so?

Not a test. Three parts, one JSON (``bench/results/explanation_quality.json``), Markdown on stdout:

1. **Known-answer models** (``--part known``, seconds per model): ``AdditiveFusedModel.random(T)``
   for T OCR words, additive or with image x word interactions, several model seeds. Arms at
   equal encoder-pass budgets (image + text encodes of the fused toy, the cost of a fused
   model; the budget is what the default used): prodlens' default ``MultimodalLime()``
   (factorised for a fused model with words), ``sampler="orthogonal"`` with early stopping,
   plain Bernoulli LIME (``early_stop=False``), ``lime`` (``LimeBase`` and its kernel on
   lime_image-style joint binary rows) and ``captum.attr.Lime`` (on a forward function over
   the binary interpretable vector); for T > 32 also the old rank-deficient factorised
   design (64 text masks in complementary pairs: centred rank <= 33). Measured: recovery of
   the true top-10 features and Spearman with the true effects (all features, words only).
2. **Real GroceryStore models** (``--part real``): an image-only and a Feature Concatenation
   fusion model trained as ``prodlens demo`` does (fast mode, frozen EfficientNet-Lite0 +
   MiniLM, the bundled sample's 100 train photos, RapidOCR words), val photos explained by a
   10,000-row plain LIME reference, two independent 2000-row plain LIME runs (noise floor),
   the default with two seeds, the orthogonal sampler with early stopping and the explicit
   ``FactorisedSampler()`` (its class defaults: 256 image masks); agreement with the
   reference, encoder passes, seconds and every arm's quality scores.
3. **Do the quality scores work?** Flag rates, agreement of flagged vs unflagged
   explanations, predicted stability vs the actual two-seed overlap, score quantiles and a
   threshold scan, from the per-explanation rows of both parts.

Run from a checkout (``--quick`` is a smoke run: 1 seed, T in {0, 40}, 1 photo, 2000-row
reference)::

    PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 python bench/explanation_quality.py --part known
    PYTHONPATH=$PWD/src HF_HUB_OFFLINE=1 nice -n 10 python bench/explanation_quality.py --part real

``--part real`` (or ``known``) keeps the other part's results from an existing ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _machine import cpu_name, git_state
from explain_speed import spearman, top_overlap
from tqdm.auto import tqdm

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "explanation_quality.json"
RUNS = HERE.parent / "runs" / "bench-quality"  # git-ignored: the trained models
FEATURES = Path("~/.cache/prodlens/features").expanduser()
KERNEL_WIDTH = 0.25
TOP = 10
QUALITY_SCORES = ("faithfulness", "stability", "r2", "local_error")
log = logging.getLogger("bench.explanation_quality")


# -- shared helpers --------------------------------------------------------------------------
def quality_row(q) -> dict | None:
    """The quality scores of one explanation, derived numbers included (``None``: not scored)."""
    if q is None:
        return None
    d = q.to_dict()
    d.pop("thresholds", None)
    d["deletion_gain"], d["insertion_gain"] = q.deletion_gain, q.insertion_gain
    return {k: (round(v, 5) if isinstance(v, float) else [round(x, 5) for x in v] if isinstance(v, list) and v
                and isinstance(v[0], float) else v) for k, v in d.items()}


def topk_fraction(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Overlap of the top-k by |weight| of two weight vectors, as a fraction of k."""
    return top_overlap(a, b, k) / k


def safe_spearman(a: np.ndarray, b: np.ndarray, min_len: int = 3) -> float | None:
    if len(a) < min_len or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return round(spearman(a, b), 4)


def mean_sd(values) -> tuple[float | None, float | None, int]:
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    if not v:
        return None, None, 0
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else 0.0), len(v)


def fmt(m: float | None, s: float | None = None, digits: int = 2) -> str:
    if m is None:
        return "-"
    return f"{m:.{digits}f}" if s is None else f"{m:.{digits}f} ± {s:.{digits}f}"


def run_meta(argv: list[str], args: argparse.Namespace) -> dict:
    import torch

    return {
        "command": shlex.join(["python", "bench/explanation_quality.py", *argv]),
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(HERE),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "nice": os.nice(0), "load_average_start": [round(v, 2) for v in os.getloadavg()], "device": "cpu"},
    }


# -- part 1: known-answer models -------------------------------------------------------------
@dataclass(frozen=True)
class RankDeficientGrid:
    """The factorised design before the rank fix: ``n_text`` distinct text masks drawn as
    complementary pairs and never grown, so T > 32 words get a centred rank <= 33 from 64
    masks. A plain ``GridSampler`` (not a ``FactorisedSampler``), so the explainer uses the
    grid as drawn instead of falling back to joint rows (``FactorisedSampler(max_text=64)`` does
    not reproduce the old design: its rank-deficient grid is replaced by ``n_image + n_text``
    joint rows)."""

    n_image: int = 512
    n_text: int = 64

    def grid(self, n_superpixels: int, n_tokens: int, rng: np.random.Generator):
        from prodlens.explain import FactorGrid, OrthogonalSampler, distinct_masks
        from prodlens.explain.factorised import centred_rank

        parts = {}
        for name, k, width in (("image", self.n_image, n_superpixels), ("text", self.n_text, n_tokens)):
            m = distinct_masks(k, width, OrthogonalSampler(), rng)
            rank = centred_rank(m) if width else 0
            parts[name] = (m, {"requested": k, "drawn": len(m), "width": width, "rank": rank, "full_rank": rank >= width})
        return FactorGrid(parts["image"][0], parts["text"][0], design={n: p[1] for n, p in parts.items()})


def lime_effects(model) -> np.ndarray:
    """The effects a LIME surrogate estimates, in logit units: each feature's main effect plus
    half of every image x word interaction it takes part in (its average over the other
    feature being on with probability 1/2); equal to ``true_effects`` without interactions."""
    eff = model.true_effects.copy()
    S = model.n_superpixels
    for cell, word, e in model.interactions:
        eff[cell] += e / 2
        eff[S + word] += e / 2
    return eff


def expected_distinct(n: int, width: int) -> float:
    """Expected distinct patterns among ``n`` uniform on/off rows of ``width`` features."""
    if width == 0:
        return 1.0
    if width > 60:
        return float(n)
    space = 2.0**width
    return float(space * -math.expm1(n * math.log1p(-1.0 / space)))


def joint_rows_for(budget: int, quality_passes: int, n_superpixels: int, n_tokens: int) -> int:
    """Joint rows whose expected image + text encoder passes (distinct masks of each modality,
    after the explainer's cache) plus the quality check's fill ``budget``."""
    target = budget - quality_passes
    lo, hi = 2, max(4, target)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        cost = expected_distinct(mid, n_superpixels) + expected_distinct(mid, n_tokens)
        lo, hi = (mid, hi) if cost <= target else (lo, mid - 1)
    return lo


def ka_prodlens(model, seed: int, **kw) -> dict:
    from prodlens.explain import MultimodalLime

    model.reset_counts()
    t0 = time.perf_counter()
    res = MultimodalLime(seed=seed, progress=False, **kw).explain(
        model, image=model.image, tokens=model.tokens, segments=model.segments, targets=[1], sample_id="toy")
    sec = time.perf_counter() - t0
    e = res.for_target(1)
    sampled = res.stats.get("n_image_encodes", res.stats["n_model_rows"]) + res.stats.get("n_text_encodes", res.stats["n_model_rows"])
    return {"weights": e.weights, "rows": res.n_samples, "seconds": sec, "image_passes": model.counts["image_encodes"],
            "text_passes": model.counts["text_encodes"], "sampling_passes": int(sampled),
            "sampler": str(e.config.get("sampler", "")).split("(")[0], "design": e.config.get("design", {}),
            "quality": quality_row(e.quality)}


def ka_inputs(model):
    from prodlens.explain import MultimodalInput

    return MultimodalInput(model.image, model.segments, model.tokens, fill="mean")


def ka_lime(model, n_rows: int, seed: int) -> dict:
    """lime's own surrogate (``LimeBase``: its kernel, sklearn ``Ridge(alpha=1)``) on lime_image-style
    rows (``randint(0, 2)``, row 0 all-on) over the joint superpixel + word features."""
    from lime.lime_base import LimeBase
    from sklearn.metrics import pairwise_distances

    plain = model.plain()
    x = ka_inputs(model)
    F = x.n_features
    model.reset_counts()
    t0 = time.perf_counter()
    rs = np.random.RandomState(seed)
    data = rs.randint(0, 2, n_rows * F).reshape(n_rows, F)
    data[0, :] = 1
    batch = x.to_inputs(data.astype(bool))
    labels = plain.predict_proba(batch.images, batch.token_lists)
    distances = pairwise_distances(data, data[:1], metric="cosine").ravel()
    base = LimeBase(lambda d: np.sqrt(np.exp(-(d**2) / KERNEL_WIDTH**2)), random_state=seed)
    _, exp, score, _ = base.explain_instance_with_data(data, labels, distances, 1, F, feature_selection="none")
    sec = time.perf_counter() - t0
    w = np.zeros(F)
    for f, v in exp:
        w[f] = v
    return {"weights": w, "rows": n_rows, "seconds": sec, "image_passes": model.counts["image_encodes"],
            "text_passes": model.counts["text_encodes"], "r2_lime": round(float(score), 5), "quality": None}


def ka_captum(model, n_rows: int, seed: int) -> dict:
    """``captum.attr.Lime`` on a forward function over the F binary interpretable features
    (input all-ones, baseline zeros, one feature-mask group per feature), the same kernel and ridge."""
    import torch
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    from prodlens.explain import ExponentialKernel

    plain = model.plain()
    x = ka_inputs(model)
    F = x.n_features
    kernel = ExponentialKernel(KERNEL_WIDTH)
    gen = torch.Generator().manual_seed(seed)

    def forward(z: torch.Tensor) -> torch.Tensor:
        batch = x.to_inputs(z.detach().cpu().numpy() > 0.5)
        return torch.from_numpy(plain.predict_proba(batch.images, batch.token_lists))

    def similarity(original, perturbed, interpretable, **kw):
        return float(kernel(interpretable.detach().cpu().numpy().reshape(1, -1) > 0.5)[0])

    def perturb(original, **kw):
        return torch.bernoulli(torch.full((1, kw["num_interp_features"]), 0.5), generator=gen)

    lime = Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity, perturb_func=perturb)
    model.reset_counts()
    t0 = time.perf_counter()
    attr = lime.attribute(torch.ones(1, F, dtype=torch.float64), target=1, baselines=torch.zeros(1, F, dtype=torch.float64),
                          feature_mask=torch.arange(F)[None], n_samples=n_rows, perturbations_per_eval=8,
                          return_input_shape=False, show_progress=False)
    sec = time.perf_counter() - t0
    return {"weights": attr.detach().numpy().ravel().astype(np.float64), "rows": n_rows, "seconds": sec,
            "image_passes": model.counts["image_encodes"], "text_passes": model.counts["text_encodes"], "quality": None}


SECOND_SEED = 1000  # the default's second seed (actual two-seed overlap vs its predicted stability)


def known_model(T: int, n_inter: int, mseed: int) -> list[dict]:
    """Every arm on one known-answer model; rows with raw numbers."""
    from prodlens.explain.known_answer import AdditiveFusedModel

    model = AdditiveFusedModel.random(T, n_interactions=n_inter, seed=mseed)
    truth = lime_effects(model)
    S = model.n_superpixels
    out: list[dict] = []

    def add(arm: str, r: dict, seed: int) -> None:
        w = r.pop("weights")
        k = min(TOP, model.n_features)
        r.update(arm=arm, T=T, interactions=n_inter, model_seed=mseed, seed=seed, n_features=model.n_features,
                 encoder_passes=r["image_passes"] + r["text_passes"], seconds=round(r["seconds"], 4),
                 recovery=top_overlap(w, truth, k), recovery_k=k, spearman=safe_spearman(w, truth),
                 spearman_text=safe_spearman(w[S:], truth[S:]), weights=[round(float(v), 6) for v in w])
        out.append(r)

    seed = mseed
    default = ka_prodlens(model, seed)
    budget = default["image_passes"] + default["text_passes"]
    q_passes = budget - default["sampling_passes"]
    add("default", default, seed)
    n_joint = joint_rows_for(budget, q_passes, S, T)
    add("orthogonal + early stop", ka_prodlens(model, seed, sampler="orthogonal", max_samples=n_joint), seed)
    add("plain Bernoulli", ka_prodlens(model, seed, early_stop=False, max_samples=n_joint), seed)
    add("lime LimeBase", ka_lime(model, budget // 2, seed), seed)
    add("captum Lime", ka_captum(model, budget // 2, seed), seed)
    if T > 32:  # the old design differs from the default only past 32 words
        add("old factorised (64 text masks, rank-deficient)", ka_prodlens(model, seed, sampler=RankDeficientGrid()), seed)
    add("default (second seed)", ka_prodlens(model, seed + SECOND_SEED), seed + SECOND_SEED)
    for r in out:
        r["budget"] = budget
    # truth stored once per model, on the first row
    out[0]["truth"] = [round(float(v), 6) for v in truth]
    out[0]["interaction_terms"] = [list(t) for t in model.interactions]
    return out


def run_known(args: argparse.Namespace) -> dict:
    words = (0, 40) if args.quick else tuple(args.words)
    seeds = range(1 if args.quick else args.model_seeds)
    cases = [(T, i, s) for T in words for i in (0, args.interactions) if not (T == 0 and i) for s in seeds]
    rows: list[dict] = []
    t0 = time.perf_counter()
    for T, inter, s in tqdm(cases, desc="known-answer models", unit="model"):
        rows += known_model(T, inter, s)
    return {"settings": {"words": list(words), "interactions": [0, args.interactions], "model_seeds": len(seeds),
                         "grid": "4x4 cells (16 superpixels), 32x32 textured photo, mean fill", "target": "class 1",
                         "truth": "lime_effects(): main effect + half of each interaction (logit units)",
                         "budget": "encoder passes (image + text encodes) of the default, quality check included; "
                                   "joint prodlens arms get rows whose expected passes + the default's quality passes "
                                   "fill it (orthogonal: as the cap of early stopping), lime/captum budget // 2 rows "
                                   "(every row one image + one text encode, no cache)",
                         "skipped": "T=0 has no words, hence no interactions; the old factorised design equals the "
                                    "default for T <= 32 (identical rows) and runs only for T > 32",
                         "second_seed_offset": SECOND_SEED},
            "seconds": round(time.perf_counter() - t0, 1), "rows": rows}


def summarise_known(part: dict) -> list[dict]:
    keys = {}
    for r in part["rows"]:
        keys.setdefault((r["T"], r["interactions"], r["arm"]), []).append(r)
    out = []
    for (T, inter, arm), rs in keys.items():
        s = {"T": T, "interactions": inter, "arm": arm, "n": len(rs)}
        for key in ("recovery", "spearman", "spearman_text", "encoder_passes", "image_passes", "text_passes", "rows", "seconds"):
            m, sd, _ = mean_sd(r.get(key) for r in rs)
            s[key], s[key + "_sd"] = m, sd
        s["flagged"] = sum(1 for r in rs if r["quality"] and r["quality"]["flags"])
        s["scored"] = sum(1 for r in rs if r["quality"])
        out.append(s)
    return out


def markdown_known(summary: list[dict]) -> str:
    lines = ["| T words | interactions | arm | top-10 recovery | Spearman | Spearman (words) | encoder passes (img + txt) | rows | seconds | flagged |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        if s["arm"] == "default (second seed)":
            continue
        flagged = f"{s['flagged']}/{s['scored']}" if s["scored"] else "-"
        lines.append(f"| {s['T']} | {s['interactions']} | {s['arm']} | {fmt(s['recovery'], s['recovery_sd'], 1)} | "
                     f"{fmt(s['spearman'], s['spearman_sd'], 3)} | {fmt(s['spearman_text'], s['spearman_text_sd'], 3)} | "
                     f"{s['encoder_passes']:.0f} ({s['image_passes']:.0f} + {s['text_passes']:.0f}) | {s['rows']:.0f} | "
                     f"{s['seconds']:.2f} | {flagged} |")
    return "\n".join(lines)


# -- part 2: real GroceryStore models ---------------------------------------------------------
class SharedImageFeatures:
    """A fused classifier whose image-encoder outputs are kept (first model: ``replay=False``)
    or looked up by the perturbed image's bytes (second model, ``replay=True``): the image-only
    and concat models share one frozen EfficientNet-Lite0, so the second model's run of an
    arm costs only the images the first did not encode. Counts the encoder passes the
    explainer asks for (``image_passes``, ``text_passes``) and those really computed."""

    def __init__(self, clf, store: dict, replay: bool) -> None:
        self.clf, self.store, self.replay = clf, store, replay
        self.classes, self.preprocess = clf.classes, clf.preprocess
        self.image_passes = self.text_passes = self.image_computed = 0

    def encode_images(self, images) -> np.ndarray:
        images = list(images)
        self.image_passes += len(images)
        keys = [hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=16).digest() for im in images]
        todo = [i for i, k in enumerate(keys) if not (self.replay and k in self.store)]
        if todo:
            for i, f in zip(todo, self.clf.encode_images([images[i] for i in todo])):
                self.store[keys[i]] = f
            self.image_computed += len(todo)
        return np.stack([self.store[k] for k in keys])

    def encode_texts(self, token_lists) -> np.ndarray:
        self.text_passes += len(token_lists)
        return self.clf.encode_texts(token_lists)

    def predict_from_features(self, img, txt) -> np.ndarray:
        return self.clf.predict_from_features(img, txt)

    def predict_proba(self, images, token_lists) -> np.ndarray:
        return self.predict_from_features(self.encode_images(images), self.encode_texts(token_lists))


def real_arms(args: argparse.Namespace) -> dict[str, dict]:
    """Explainer settings per arm, in the interleaved order they run; the first is the reference."""
    from prodlens.explain import FactorisedSampler

    ref, plain = args.reference, args.plain
    return {
        "reference": {"max_samples": ref, "early_stop": False, "quality": False, "seed": 999},
        f"plain-{plain} A": {"max_samples": plain, "early_stop": False, "seed": 1},
        "default seed 1": {"seed": 1},
        "orthogonal + early stop": {"sampler": "orthogonal", "seed": 1},
        f"plain-{plain} B": {"max_samples": plain, "early_stop": False, "seed": 2},
        "default seed 2": {"seed": 2},
        "factorised-256 (FactorisedSampler())": {"sampler": FactorisedSampler(), "seed": 1},
    }


def sample_models(names: tuple[str, ...], runs: Path, **ocr) -> tuple:
    """The bundled sample OCR'd (``run_ocr(**ocr)``) and demo-style fast models ``names``,
    each trained once into ``runs`` and loaded on ONNX Runtime (exported here, outside any
    timing). Returns ``(dataset, models, info, ocr_report, train_config)``; ``info`` per
    model: checkpoint, val top-1 (early stopping watched val), runtime."""
    from prodlens.data.sample import load_sample
    from prodlens.ocr.runner import run_ocr
    from prodlens.train import TrainConfig

    ds, rep = run_ocr(load_sample(), workers=1, progress=False, **ocr)
    log.info("OCR: %s", rep.summary())
    cfg = TrainConfig(mode="fast", views=2, seed=0, feature_cache=str(FEATURES))
    models, info = fast_models(ds.split("train"), ds.split("val"), names, runs, cfg, early_stop_on_val=True)
    for name in names:
        info[name]["checkpoint"] = str(Path(info[name]["checkpoint"]).relative_to(HERE.parent))
    return ds, models, info, rep, cfg


def fast_models(train, val, names: tuple[str, ...], runs: Path, cfg, early_stop_on_val: bool) -> tuple[dict, dict]:
    """Models ``names`` trained once into ``runs/{name}_fast_v2_s0.pt`` with ``cfg`` (early
    stopping on ``val`` or, without ``early_stop_on_val``, on a held-out tail of train), loaded
    on ONNX Runtime. Returns ``(models, info)``; ``info`` per model: checkpoint, val top-1, runtime."""
    from prodlens.models.checkpoint import load_classifier
    from prodlens.train import train_model
    from prodlens.train.metrics import evaluate

    models, info = {}, {}
    for name in names:
        path = runs / f"{name}_fast_v2_s0.pt"
        if not path.is_file():
            t0 = time.perf_counter()
            train_model(train, val if early_stop_on_val else None, model=name, config=cfg, out=path, progress=False)
            log.info("trained %s in %.0f s", name, time.perf_counter() - t0)
        clf = load_classifier(path).use_runtime("auto")
        models[name] = clf
        info[name] = {"checkpoint": str(path), "val_top1": round(evaluate(clf, val, progress=False).top1, 4),
                      "runtime": clf.runtime}
    return models, info


def real_models(args: argparse.Namespace):
    """The OCR'd bundled sample and the two demo-style models (trained once into runs/bench-quality/)."""
    ds, models, info, rep, cfg = sample_models(("concat", "image"), RUNS)
    return ds, models, {"models": info, "ocr": rep.summary(), "train_config": cfg.to_dict()}


def pick_photos(ds, n: int, min_words: int = 3) -> list:
    """Up to ``n`` val photos with at least ``min_words`` OCR words (so that word weights can be
    ranked), round robin over the classes, sorted ids within a class."""
    by: dict[str, list] = {}
    for s in sorted(ds.split("val").samples, key=lambda s: s.id):
        if len(s.tokens) >= min_words:
            by.setdefault(s.label, []).append(s)
    out: list = []
    while len(out) < n and any(by.values()):
        for label in sorted(by):
            if by[label] and len(out) < n:
                out.append(by[label].pop(0))
    return out


def time_passes(models: dict, sample) -> dict:
    """Seconds per image pass (the photo, 16 perturbed copies) and per text pass, measured now."""
    from prodlens.data.images import load_image
    from prodlens.explain import MultimodalInput, MultimodalLime, SlicSegmenter
    from prodlens.explain.lime import resolution_work_size

    clf = models["concat"]
    image = load_image(sample.image_path)
    x = MultimodalInput(image, SlicSegmenter()(image), tuple(sample.tokens),
                        size=resolution_work_size("auto", clf, image.shape))
    rows = np.random.default_rng(0).random((48, x.n_features)) < 0.5
    ims, tls = x.images(rows[:16]), x.token_lists(rows)
    clf.encode_images(list(ims[:8]))  # warm-up
    t0 = time.perf_counter()
    clf.encode_images(list(ims))
    t_img = (time.perf_counter() - t0) / len(ims)
    t0 = time.perf_counter()
    clf.encode_texts(tls)
    t_txt = (time.perf_counter() - t0) / len(tls)
    return {"image_pass_s": round(t_img, 4), "text_pass_s": round(t_txt, 4)}


def photo_cost(passes: dict, args: argparse.Namespace, n_tokens: int) -> float:
    """Expected seconds for one photo (both models; the second replays the image features)."""
    img = args.reference + 2 * args.plain + 2 * 600 + 1200 + 350 + 6 * 60  # reference, plain, default, orth, f-256, curves
    txt = sum(expected_distinct(n, n_tokens) for n in (args.reference, args.plain, args.plain, 1200)) + 4 * 64
    replay = 0.1 * img * passes["image_pass_s"]  # the image model's run: masking, hashing, head (measured ~0.1 pass a row)
    return img * passes["image_pass_s"] + txt * passes["text_pass_s"] + replay


def explain_real(sample, models: dict, args: argparse.Namespace) -> list[dict]:
    """Every arm on one photo for both models, interleaved; agreement with that model's reference."""
    from prodlens.data.images import load_image
    from prodlens.explain import MultimodalLime, SlicSegmenter

    image = load_image(sample.image_path)
    segments = SlicSegmenter(n_segments=100)(image)
    tokens = tuple(sample.tokens)
    S, T = int(segments.max()) + 1, len(tokens)
    rows: list[dict] = []
    weights: dict[tuple[str, str], np.ndarray] = {}
    targets: dict[str, int] = {}
    for arm, cfg in tqdm(list(real_arms(args).items()), desc=f"{sample.id}", unit="arm", leave=False):
        store: dict = {}
        for mi, (mname, clf) in enumerate(models.items()):
            model = SharedImageFeatures(clf, store, replay=mi > 0)
            lime = MultimodalLime(**cfg, batch_size=args.batch_size, progress=False)
            kw = {"targets": [targets[mname]]} if mname in targets else {}
            t0, c0 = time.perf_counter(), time.process_time()
            res = lime.explain(model, image=image, tokens=tokens, segments=segments, sample_id=sample.id, **kw)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            targets.setdefault(mname, res.predicted)  # the reference's predicted class, for every arm
            e = res.for_target(targets[mname])
            weights[(mname, arm)] = e.weights
            rows.append({
                "photo": sample.id, "label": sample.label, "model": mname, "arm": arm, "seed": cfg["seed"],
                "n_superpixels": S, "n_tokens": T, "target": e.target_name, "p_target": round(e.prediction, 4),
                "rows": res.n_samples, "sampler": str(e.config.get("sampler", "")).split("(")[0],
                "design": e.config.get("design", {}), "stopped_early": res.stopped_early,
                "image_passes": model.image_passes, "text_passes": model.text_passes,
                "encoder_passes": model.image_passes + model.text_passes, "image_computed": model.image_computed,
                "seconds": round(sec, 2), "cpu_seconds": round(cpu, 2), "seconds_comparable": mi == 0,
                "text_share": round(e.text_share, 4), "quality": quality_row(e.quality),
                "weights": [round(float(v), 6) for v in e.weights],
            })
            log.info("%s %s %s: %d rows, %d + %d passes, %.1f s", sample.id, mname, arm, res.n_samples,
                     model.image_passes, model.text_passes, sec)
    names = list(real_arms(args))
    for r in rows:
        w, ref = weights[(r["model"], r["arm"])], weights[(r["model"], names[0])]
        r["vs_reference"] = {"top10_overlap": top_overlap(w, ref, TOP), "spearman": safe_spearman(w, ref),
                             "spearman_image": safe_spearman(w[:S], ref[:S]), "spearman_text": safe_spearman(w[S:], ref[S:])}
        r["words_in_top10"] = int(sum(i >= S for i in np.argsort(-np.abs(w), kind="stable")[:TOP]))
    # the seed pairs: actual top-k overlap of two runs of the same method (k as the stability score's)
    for mname in models:
        for a, b in ((names[1], names[4]), (names[2], names[5])):
            ra = next(r for r in rows if r["model"] == mname and r["arm"] == a)
            rb = next(r for r in rows if r["model"] == mname and r["arm"] == b)
            k = ra["quality"]["stability_k"]
            for r, other in ((ra, b), (rb, a)):
                r["pair"] = {"other_arm": other, "k": k, "actual_overlap": topk_fraction(weights[(mname, a)], weights[(mname, b)], k),
                             "top10_overlap": top_overlap(weights[(mname, a)], weights[(mname, b)], TOP),
                             "spearman": safe_spearman(weights[(mname, a)], weights[(mname, b)])}
    return rows


def run_real(args: argparse.Namespace, checkpoint) -> dict:
    t_start = time.perf_counter()
    ds, models, setup = real_models(args)
    probe = pick_photos(ds, 1)[0]
    passes = time_passes(models, probe)
    from prodlens.data.images import load_image

    im = [load_image(probe.image_path)]
    diff = float(np.abs(models["concat"].encode_images(im) - models["image"].encode_images(im)).max())
    if diff > 1e-4:
        raise RuntimeError(f"the two models' image encoders differ (max abs {diff}): they cannot share features")
    candidates = pick_photos(ds, args.photos or args.default_photos)
    costs = [photo_cost(passes, args, len(c.tokens)) for c in candidates]
    budget = args.budget_minutes * 60 - (time.perf_counter() - t_start)
    fits = max(1, int(np.searchsorted(np.cumsum(costs), budget, side="right")))
    reason = (f"estimated {', '.join(f'{c:.0f}' for c in costs)} s per photo (both models; the image model replays "
              f"the concat model's image features) from {passes['image_pass_s'] * 1000:.1f} ms per image pass and "
              f"{passes['text_pass_s'] * 1000:.1f} ms per text pass measured at start (load average "
              f"{os.getloadavg()[0]:.1f}): {fits} photo(s) fit the {args.budget_minutes:.0f} min budget by that estimate; "
              + (f"--photos {args.photos} given (stops only at the {args.cap_minutes:.0f} min cap)" if args.photos else
                 f"up to {len(candidates)} are run, each only while the estimate for it, rescaled by the measured/estimated "
                 f"ratio of the photos done, still ends within the budget"))
    print(f"real part: up to {len(candidates)} photo(s) x 2 models. {reason}", flush=True)
    photos = candidates
    limit = (args.cap_minutes if args.photos else args.budget_minutes) * 60
    part = {"settings": {"reference_rows": args.reference, "plain_rows": args.plain, "arms": {k: {kk: repr(vv) if kk == "sampler" else vv
                                                                                                   for kk, vv in v.items()} for k, v in real_arms(args).items()},
                         "segments": "SLIC n_segments=100", "batch_size": args.batch_size, "photos_planned": len(photos),
                         "photo_ids_planned": [s.id for s in photos], "photo_choice": reason, "timing_probe": passes,
                         "photo_rule": "val photos with >= 3 OCR words, round robin over the classes, sorted ids",
                         "image_encoder_shared": {"max_abs_diff": diff, "how": "the image model replays the concat model's "
                                                  "image features of identical perturbed images (same frozen backbone); "
                                                  "its seconds are therefore not comparable (seconds_comparable=false)"},
                         "words": "both models are explained with the photo's OCR words (the call a user makes); the "
                                  "image-only model cannot read them, so their true effect there is exactly 0",
                         **setup},
            "rows": [], "photo_seconds": {}, "complete": False, "notes": []}
    ratio = 1.0
    for i, s in enumerate(tqdm(photos, desc="real photos", unit="photo")):
        elapsed = time.perf_counter() - t_start
        if i and elapsed + costs[i] * ratio > limit:
            part["notes"].append(f"real part reduced to {i} of {len(photos)} planned photo(s) per model: {elapsed / 60:.0f} min "
                                 f"elapsed and the next photo ({s.id}, {len(s.tokens)} words) expected to take "
                                 f"{costs[i] * ratio / 60:.0f} min, past the {limit / 60:.0f} min limit")
            print(part["notes"][-1], flush=True)
            break
        t0 = time.perf_counter()
        part["rows"] += explain_real(s, models, args)
        took = time.perf_counter() - t0
        part["photo_seconds"][s.id] = round(took, 1)
        ratio = float(np.mean([part["photo_seconds"][p.id] / costs[j] for j, p in enumerate(photos[: i + 1])]))
        log.info("photo %s done in %.0f s (estimated %.0f s)", s.id, took, costs[i])
        part["seconds"] = round(time.perf_counter() - t_start, 1)
        part["photos_done"] = i + 1
        checkpoint(part)
    part["complete"] = True
    return part


def summarise_real(part: dict) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in part["rows"]:
        groups.setdefault((r["model"], r["arm"]), []).append(r)
    out = []
    for (mname, arm), rs in groups.items():
        s: dict = {"model": mname, "arm": arm, "n": len(rs)}
        for key, get in (("top10", lambda r: r["vs_reference"]["top10_overlap"]), ("spearman", lambda r: r["vs_reference"]["spearman"]),
                         ("spearman_text", lambda r: r["vs_reference"]["spearman_text"]), ("encoder_passes", lambda r: r["encoder_passes"]),
                         ("image_passes", lambda r: r["image_passes"]), ("text_passes", lambda r: r["text_passes"]),
                         ("rows", lambda r: r["rows"]), ("seconds", lambda r: r["seconds"] if r["seconds_comparable"] else None),
                         ("words_in_top10", lambda r: r["words_in_top10"]), ("text_share", lambda r: r["text_share"]),
                         *((q, (lambda q: lambda r: r["quality"][q] if r["quality"] else None)(q)) for q in QUALITY_SCORES),
                         ("pair_top10", lambda r: r["pair"]["top10_overlap"] if "pair" in r else None)):
            s[key], s[key + "_sd"], _ = mean_sd(get(r) for r in rs)
        s["flagged"] = sum(1 for r in rs if r["quality"] and r["quality"]["flags"])
        s["scored"] = sum(1 for r in rs if r["quality"])
        if mname == "image":  # the model reads no text: every word weight, the reference's too, is noise around 0
            s["spearman_text"] = s["spearman_text_sd"] = None
        out.append(s)
    return out


def markdown_real(summary: list[dict]) -> str:
    lines = ["| model | arm | top-10 vs ref | Spearman vs ref | Spearman (words) | encoder passes (img + txt) | rows | seconds | "
             "faithfulness | stability | R^2 | local error | flagged |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        flagged = f"{s['flagged']}/{s['scored']}" if s["scored"] else "-"
        lines.append(f"| {s['model']} | {s['arm']} | {fmt(s['top10'], s['top10_sd'], 1)} | {fmt(s['spearman'], s['spearman_sd'], 3)} | "
                     f"{fmt(s['spearman_text'], None, 3)} | {s['encoder_passes']:.0f} ({s['image_passes']:.0f} + {s['text_passes']:.0f}) | "
                     f"{s['rows']:.0f} | {fmt(s['seconds'], None, 1)} | {fmt(s['faithfulness'], None, 3)} | {fmt(s['stability'], None, 2)} | "
                     f"{fmt(s['r2'], None, 3)} | {fmt(s['local_error'], None, 3)} | {flagged} |")
    pairs = [s for s in summary if s["pair_top10"] is not None]
    if pairs:
        lines += ["", "| model | two runs of | top-10 overlap with each other |", "|---|---|---:|"]
        seen = set()
        for s in pairs:
            key = (s["model"], s["arm"].rsplit(" ", 1)[0])
            if key not in seen:
                seen.add(key)
                floor = " (noise floor)" if key[1].startswith("plain") else ""
                lines.append(f"| {s['model']} | {key[1]}{floor} | {fmt(s['pair_top10'], s['pair_top10_sd'], 1)} |")
    return "\n".join(lines)


# -- part 3: do the quality scores work? ----------------------------------------------------
def explanation_rows(doc: dict) -> list[dict]:
    """Every scored explanation with its agreement: with the reference (real) or the truth (known)."""
    out = []
    for r in (doc.get("known") or {}).get("rows", []):
        if r["quality"]:
            out.append({"source": "known", "arm": r["arm"], "default": r["arm"].startswith("default"), "q": r["quality"],
                        "top10": r["recovery"] / r["recovery_k"] * 10, "spearman": r["spearman"]})
    for r in (doc.get("real") or {}).get("rows", []):
        if r["quality"]:
            out.append({"source": "real", "arm": r["arm"], "default": r["arm"].startswith("default"), "q": r["quality"],
                        "top10": r["vs_reference"]["top10_overlap"], "spearman": r["vs_reference"]["spearman"]})
    return out


def stability_pairs(doc: dict) -> list[dict]:
    """(predicted stability, actual top-k overlap of two seeds) per explanation."""
    out = []
    known = (doc.get("known") or {}).get("rows", [])
    by = {(r["T"], r["interactions"], r["model_seed"], r["arm"]): r for r in known}
    for key, r in by.items():
        if key[3] == "default":
            other = by.get((*key[:3], "default (second seed)"))
            if other:
                k = r["quality"]["stability_k"]
                actual = topk_fraction(np.array(r["weights"]), np.array(other["weights"]), k)
                for x in (r, other):
                    out.append({"source": "known", "method": "default", "predicted": x["quality"]["stability"], "actual": actual})
    for r in (doc.get("real") or {}).get("rows", []):
        if "pair" in r and r["quality"]:
            out.append({"source": "real", "method": "default" if r["arm"].startswith("default") else "plain",
                        "predicted": r["quality"]["stability"], "actual": r["pair"]["actual_overlap"]})
    return out


def analyse(doc: dict) -> dict:
    from prodlens.explain.quality import FLAGS, QualityCheck

    rows = explanation_rows(doc)
    res: dict = {"thresholds": QualityCheck().thresholds, "by_source": {}}
    for source in ("known", "real"):
        rs = [r for r in rows if r["source"] == source]
        if not rs:
            continue
        d: dict = {"n": len(rs), "n_default": sum(r["default"] for r in rs), "flags": {}, "agreement": "top-10 overlap (of 10) "
                   + ("with the true effects" if source == "known" else "with the 10,000-row reference")}
        for flag in (*FLAGS, "any"):
            def has(r, flag=flag):
                return bool(r["q"]["flags"]) if flag == "any" else flag in r["q"]["flags"]
            fl = [r for r in rs if has(r)]
            un = [r for r in rs if not has(r)]
            d["flags"][flag] = {
                "rate_default": round(sum(has(r) for r in rs if r["default"]) / max(1, d["n_default"]), 4),
                "rate_all": round(len(fl) / len(rs), 4), "n_flagged": len(fl),
                "top10_flagged": mean_sd(r["top10"] for r in fl)[0], "top10_unflagged": mean_sd(r["top10"] for r in un)[0],
                "spearman_flagged": mean_sd(r["spearman"] for r in fl)[0], "spearman_unflagged": mean_sd(r["spearman"] for r in un)[0],
            }
        d["quantiles"] = {q: {f"p{p}": round(float(np.percentile([r["q"][q] for r in rs], p)), 4) for p in (0, 5, 10, 25, 50, 75, 90, 100)}
                          for q in QUALITY_SCORES}
        # is the score informative at all? rank correlation of each score with the agreement
        agree = np.array([r["top10"] for r in rs], dtype=float)
        d["score_vs_agreement_spearman"] = {q: safe_spearman(np.array([r["q"][q] * (-1 if q == "local_error" else 1) for r in rs]), agree)
                                            for q in QUALITY_SCORES}
        scan = {}
        for q in QUALITY_SCORES:
            vals = np.array([r["q"][q] for r in rs])
            entries = []
            for p in (5, 10, 25, 50):
                cut = float(np.percentile(vals, 100 - p if q == "local_error" else p))
                bad = vals > cut if q == "local_error" else vals < cut
                entries.append({"percentile": p, "threshold": round(cut, 4), "flagged": int(bad.sum()),
                                "top10_flagged": mean_sd(agree[bad])[0], "top10_rest": mean_sd(agree[~bad])[0]})
            scan[q] = entries
        d["threshold_scan"] = scan
        res["by_source"][source] = d
    pairs = stability_pairs(doc)
    cal = {}
    for source in ("known", "real"):
        for method in ("default", "plain"):
            ps = [p for p in pairs if p["source"] == source and p["method"] == method]
            if len(ps) < 2:
                continue
            pred, act = np.array([p["predicted"] for p in ps]), np.array([p["actual"] for p in ps])
            corr = float(np.corrcoef(pred, act)[0, 1]) if np.ptp(pred) > 0 and np.ptp(act) > 0 else None
            cal[f"{source}/{method}"] = {"n": len(ps), "mean_predicted": round(float(pred.mean()), 4), "mean_actual": round(float(act.mean()), 4),
                                         "mae": round(float(np.abs(pred - act).mean()), 4), "bias": round(float((pred - act).mean()), 4),
                                         "pearson": None if corr is None else round(corr, 4)}
    res["stability_calibration"] = cal
    res["stability_pairs"] = pairs
    return res


def markdown_analysis(a: dict) -> str:
    lines = []
    for source, d in a["by_source"].items():
        lines += [f"\n**{source}** ({d['n']} scored explanations, {d['n_default']} of them the default; agreement = {d['agreement']})\n",
                  "| flag | rate (default) | rate (all arms) | top-10 flagged / unflagged | Spearman flagged / unflagged |",
                  "|---|---:|---:|---:|---:|"]
        for flag, f in d["flags"].items():
            lines.append(f"| {flag} | {f['rate_default']:.0%} | {f['rate_all']:.0%} ({f['n_flagged']}) | "
                         f"{fmt(f['top10_flagged'], None, 1)} / {fmt(f['top10_unflagged'], None, 1)} | "
                         f"{fmt(f['spearman_flagged'], None, 3)} / {fmt(f['spearman_unflagged'], None, 3)} |")
        lines += ["", "| score | p0 | p5 | p10 | p25 | p50 | p75 | p90 | p100 | Spearman with agreement |", "|---|" + "---:|" * 9]
        for q, qs in d["quantiles"].items():
            rho = d["score_vs_agreement_spearman"][q]
            lines.append(f"| {q} | " + " | ".join(f"{v:.3f}" for v in qs.values()) + f" | {fmt(rho, None, 3)} |")
        lines += ["", "| score | cut at (worst p%) | threshold | flagged | top-10 flagged / rest |", "|---|---:|---:|---:|---:|"]
        for q, entries in d["threshold_scan"].items():
            for e in entries:
                lines.append(f"| {q} | {e['percentile']}% | {e['threshold']:.3f} | {e['flagged']} | "
                             f"{fmt(e['top10_flagged'], None, 1)} / {fmt(e['top10_rest'], None, 1)} |")
    if a["stability_calibration"]:
        lines += ["\n**predicted stability vs the actual two-seed top-k overlap**\n",
                  "| source / method | n | mean predicted | mean actual | MAE | bias | Pearson |", "|---|---:|---:|---:|---:|---:|---:|"]
        for key, c in a["stability_calibration"].items():
            lines.append(f"| {key} | {c['n']} | {c['mean_predicted']:.3f} | {c['mean_actual']:.3f} | {c['mae']:.3f} | "
                         f"{c['bias']:+.3f} | {fmt(c['pearson'], None, 3)} |")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("known", "real", "all", "report"), default="all",
                    help="report: print the tables of an existing --out again, run nothing")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, T in {0, 40}, 1 photo, 2000-row reference")
    ap.add_argument("--photos", type=int, default=None, help="val photos per model (default: what fits --budget-minutes, at most 5)")
    ap.add_argument("--default-photos", type=int, default=5)
    ap.add_argument("--budget-minutes", type=float, default=60.0, help="wall-time budget of the real part (sets the photo count)")
    ap.add_argument("--cap-minutes", type=float, default=75.0, help="no further photo is started when it would end past this")
    ap.add_argument("--words", type=int, nargs="+", default=[0, 5, 20, 40, 80])
    ap.add_argument("--interactions", type=int, default=5, help="image x word interaction terms of the second setting")
    ap.add_argument("--model-seeds", type=int, default=5)
    ap.add_argument("--reference", type=int, default=10000, help="rows of the real part's plain LIME reference")
    ap.add_argument("--plain", type=int, default=2000, help="rows of the two plain LIME runs (noise floor)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    if args.quick:
        args.reference, args.plain, args.photos = 2000, 1000, args.photos or 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("prodlens").setLevel(logging.ERROR)  # the old design's rank warnings are expected
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    doc: dict = json.loads(args.out.read_text()) if args.out.is_file() and args.part != "all" else {}
    meta = run_meta(argv, args)

    def write(doc: dict) -> None:
        doc["analysis"] = analyse(doc)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n", encoding="utf-8")
        tmp.replace(args.out)

    doc.update(description=__doc__.split("\n\n")[0], last_run=meta)
    doc.setdefault("notes", [])
    if args.note:
        doc["notes"].append(args.note)
    def finish(name: str, part: dict, summarise, title: str, table) -> None:
        part["run"] = {**meta, "load_average_end": [round(v, 2) for v in os.getloadavg()]}
        part["summary"] = summarise(part)
        doc[name] = part
        write(doc)
        print(f"\n## {title}\n")
        print(table(part["summary"]))

    if args.part == "report":
        for name, summarise, table in (("known", summarise_known, markdown_known), ("real", summarise_real, markdown_real)):
            if name in doc:
                print(f"\n## {name}\n")
                print(table(summarise(doc[name])))
        print("\n## Do the quality scores work?\n")
        print(markdown_analysis(analyse(doc)))
        return 0
    if args.part in ("known", "all"):
        finish("known", run_known(args), summarise_known,
               "Known-answer models (means ± sd over model seeds; equal encoder-pass budgets)", markdown_known)
    if args.part in ("real", "all"):
        def checkpoint(p: dict) -> None:
            doc["real"] = {**p, "run": meta}
            write(doc)

        part = run_real(args, checkpoint)
        doc["notes"] += part["notes"]
        finish("real", part, summarise_real,
               "Real GroceryStore models (means ± sd over photos; agreement with the plain-LIME reference)", markdown_real)
    print("\n## Do the quality scores work?\n")
    print(markdown_analysis(doc["analysis"]))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
