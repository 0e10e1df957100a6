"""SYNTHETIC results for tests, benchmarks and screenshots of the app.

Nothing here comes from a product model. Given real photos, :func:`fill_synthetic_run`
writes a run whose rows look like real ones: superpixels are real SLIC segments of the
photos, OCR tokens are words of the class name at made-up boxes, and predictions,
global features and deletion curves are drawn from a seeded random generator
(deterministic for a given ``seed``). Explanation weights are made up too, or, with
``explainer``, computed by the real multimodal LIME (quality scores included) on a toy
model (:class:`~prodlens.app.fixture_model.ToyClassifier`); :func:`build_fixture_store`
does the latter. Every run it writes has model ``"synthetic-fixture"`` and says so in
its ``notes``.

>>> import tempfile
>>> from pathlib import Path
>>> from PIL import Image
>>> from prodlens.store import Store
>>> p = Path(tempfile.mkdtemp()) / "a.jpg"
>>> Image.new("RGB", (64, 48), (200, 30, 30)).save(p)
>>> store = Store.open(":memory:")
>>> samples = synthetic_samples([(p, "Oatly-Oat-Milk")] * 3)
>>> run = fill_synthetic_run(store, samples, ["Oatly-Oat-Milk", "Arla-Milk"], seed=1)
>>> store.summary(run).n_explanations > 0, run.model
(True, 'synthetic-fixture')
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from prodlens.data.images import load_image
from prodlens.data.types import OcrToken, ProductSample
from prodlens.explain.explanation import Explanation
from prodlens.explain.lime import MultimodalLime
from prodlens.explain.quality import QualityCheck
from prodlens.store import DeletionResult, GlobalFeatureRecord, Prediction, Run, Store, top_k

log = logging.getLogger(__name__)

FIXTURE_MODEL = "synthetic-fixture"
FIXTURE_NOTE = "SYNTHETIC test fixture: real SLIC segments, made-up weights; not a model's explanation"
FIXTURE_LIME_NOTE = ("SYNTHETIC test fixture: real SLIC segments, multimodal LIME on a toy colour-layout + word-hash "
                     "model (prodlens.app.fixture_model); not a product model's explanation")
#: What :func:`build_fixture_store` explains with: LIME's defaults but fewer image masks (fast).
FIXTURE_LIME_SAMPLES = 128
#: The fixture's quality check: the default, with a local-error limit of 0.15 instead of 0.5
#: (the toy classifier fits some photos poorly; the default would flag none of them).
FIXTURE_QUALITY = QualityCheck(max_local_error=0.15)
_LOOKALIKE = str.maketrans({"O": "0", "I": "1", "S": "5", "E": "3"})
_PLAIN = str.maketrans({"0": "O", "1": "I", "5": "S", "3": "E"})


def synthetic_tokens(label: str, size: tuple[int, int], rng: np.random.Generator) -> tuple[OcrToken, ...]:
    """Words of ``label`` (split at ``-``) in upper case, at made-up boxes inside ``size``
    (width, height); now and then misspelt the way OCR does (``O`` read as ``0``)."""
    w, h = size
    words = [x.upper() for x in label.split("-") if x] + ["EKO" if rng.random() < 0.5 else "1L"]
    out = []
    for k, word in enumerate(words):
        if rng.random() < 0.2:
            word = word.translate(_LOOKALIKE)
        bw = min(w * 0.8, max(12.0, w * 0.06 * len(word)))
        bh = max(6.0, h * 0.06)
        x0 = float(rng.uniform(0, max(1.0, w - bw)))
        y0 = float(min(h - bh, h * 0.15 + k * bh * 1.6 + rng.uniform(0, bh)))
        out.append(OcrToken(word, (x0, max(0.0, y0), x0 + bw, max(0.0, y0) + bh), float(rng.uniform(0.6, 1.0))))
    return tuple(out)


def synthetic_samples(
    photos: Sequence[tuple[str | Path, str]], *, split: str = "test", prefix: str = "", seed: int = 0
) -> list[ProductSample]:
    """One sample per ``(photo path, label)`` with synthetic OCR tokens; ids are
    ``{prefix}{label}_{i:04d}``."""
    rng = np.random.default_rng(seed)
    sizes: dict[str, tuple[int, int]] = {}
    out = []
    for i, (path, label) in enumerate(photos):
        key = str(path)
        if key not in sizes:
            with Image.open(path) as im:
                sizes[key] = im.size
        out.append(ProductSample(f"{prefix}{label}_{i:04d}", Path(path), label, split, synthetic_tokens(label, sizes[key], rng)))
    return out


def _file_digest(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


_SLIC_CACHE: dict[tuple[str, int], np.ndarray] = {}


def slic_segments(path: str | Path, n_segments: int = 40) -> np.ndarray:
    """Real SLIC superpixels of the photo (0-based labels); cached by file content, so
    copies of one photo are segmented once."""
    from skimage.segmentation import slic

    key = (_file_digest(Path(path)), n_segments)
    if key not in _SLIC_CACHE:
        seg = slic(load_image(path), n_segments=n_segments, compactness=10, start_label=0)
        _, inverse = np.unique(seg, return_inverse=True)  # labels 0..S-1 without gaps
        if len(_SLIC_CACHE) > 256:
            _SLIC_CACHE.clear()
        _SLIC_CACHE[key] = inverse.reshape(seg.shape).astype(np.int32)
    return _SLIC_CACHE[key]


def synthetic_explanation(
    sample: ProductSample, target: int, target_name: str, segments: np.ndarray, rng: np.random.Generator, prediction: float
) -> Explanation:
    """Deterministic weights: a few strong superpixels near the centre, words of the
    target's name weighted up, the rest small noise."""
    S = int(segments.max()) + 1
    h, w = segments.shape
    ys, xs = np.indices(segments.shape)
    counts = np.bincount(segments.ravel(), minlength=S).clip(1)
    cy = np.bincount(segments.ravel(), ys.ravel(), S) / counts
    cx = np.bincount(segments.ravel(), xs.ravel(), S) / counts
    centrality = 1 - np.hypot((cy - h / 2) / h, (cx - w / 2) / w) * 1.4
    img_w = rng.normal(0, 0.02, S) + 0.08 * np.clip(centrality, 0, None) * rng.uniform(0.3, 1.5, S)
    img_w[rng.choice(S, size=min(3, S), replace=False)] += rng.uniform(0.1, 0.3)
    name_words = {x.upper() for x in target_name.split("-")}
    tokens = sample.tokens
    txt_w = np.array([
        rng.uniform(0.05, 0.35) if t.text.translate(_PLAIN) in name_words else rng.normal(0, 0.03)
        for t in tokens
    ], dtype=np.float64)
    weights = np.concatenate([img_w, txt_w]).astype(np.float64)
    return Explanation(
        sample.id, target, target_name, weights, float(rng.uniform(0, 0.2)), float(rng.uniform(0.4, 0.9)),
        float(prediction), segments, tokens, S, seed=0, n_samples=1000, config={"fixture": FIXTURE_NOTE},
    )


def _lime_explainer(
    store: Store, samples: Sequence[ProductSample], classes: Sequence[str], lime: MultimodalLime
) -> Callable[[ProductSample, np.ndarray, list[str]], list[Explanation]]:
    """``(sample, segments, targets) -> explanations``: ``lime`` run on a toy model of ``samples``."""
    from prodlens.app.fixture_model import ToyClassifier

    photos = {s.id: load_image(store.image_path(s)) for s in samples}
    model = ToyClassifier.fit([photos[s.id] for s in samples], [s.label or classes[0] for s in samples], classes)

    def explain(sample: ProductSample, segments: np.ndarray, targets: list[str]) -> list[Explanation]:
        result = lime.explain(model, sample, image=photos[sample.id], segments=segments, targets=targets)
        by_name = {e.target_name: e for e in result.explanations}
        return [dataclasses.replace(by_name[t], config={**by_name[t].config, "fixture": FIXTURE_LIME_NOTE}) for t in targets]

    return explain


def fill_synthetic_run(
    store: Store,
    samples: Sequence[ProductSample],
    classes: Sequence[str],
    *,
    run_name: str = "synthetic",
    n_explanations: int | None = None,
    error_rate: float = 0.2,
    wrong: Collection[str] = (),
    n_segments: int = 40,
    explainer: MultimodalLime | None = None,
    seed: int = 0,
) -> Run:
    """Write ``samples`` and a complete synthetic run over them; returns the run.

    ``n_explanations`` caps how many samples get explanations (spread over classes;
    misclassified ones get a second explanation for the predicted class); ``None``
    explains every sample. A share ``error_rate`` of samples, and every sample id in
    ``wrong``, is predicted as another class.

    Explanation weights are made up (:func:`synthetic_explanation`, fast, no quality
    scores) unless ``explainer`` is given: then they come from running it, with its
    quality check, on a :class:`~prodlens.app.fixture_model.ToyClassifier` fitted to
    ``samples`` (a toy model, not the run's synthetic predictions).
    """
    rng = np.random.default_rng(seed)
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    store.add_samples(samples)
    run = store.add_run(run_name, model=FIXTURE_MODEL, dataset="synthetic", classes=classes,
                        config={"fixture": True, "seed": seed}, notes=FIXTURE_LIME_NOTE if explainer else FIXTURE_NOTE,
                        if_exists="replace")

    preds = []
    for s in samples:
        p = rng.dirichlet(np.full(len(classes), 0.3))
        is_wrong = (rng.random() < error_rate or s.id in wrong) and len(classes) > 1
        winner = int(rng.choice([i for i in range(len(classes)) if i != index[s.label]])) if is_wrong else index[s.label]
        p[winner] += 2.0
        p /= p.sum()
        preds.append(Prediction(s.id, classes[winner], top_k(p, classes, k=min(5, len(classes))), probabilities=tuple(p)))
    store.put_predictions(run, preds)
    by_id = {p.sample_id: p for p in preds}

    # round-robin over classes so that every class gets explanations
    per_class: dict[str, list[ProductSample]] = {}
    for s in samples:
        per_class.setdefault(s.label or "", []).append(s)
    order = []
    queues = [list(v) for v in per_class.values()]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    budget = len(order) * 2 if n_explanations is None else n_explanations
    explain = _lime_explainer(store, samples, classes, explainer) if explainer is not None else None
    expls: list[Explanation] = []
    for s in order:
        if len(expls) >= budget:
            break
        seg = slic_segments(store.image_path(s), n_segments)
        p = by_id[s.id]
        targets = [s.label] + ([p.predicted] if p.predicted != s.label else [])
        if explain is not None:
            expls.extend(explain(s, seg, targets))
            continue
        for t in targets:
            prob = dict(p.top_k).get(t, 0.01)
            expls.append(synthetic_explanation(s, index[t], t, seg, rng, prob))
    for i in range(0, len(expls), 200):
        store.put_explanations(run, expls[i : i + 200])

    feats: list[GlobalFeatureRecord] = []
    by_target: dict[str, list[Explanation]] = {}
    for e in expls:
        by_target.setdefault(e.target_name, []).append(e)
    for cls, es in by_target.items():
        tops = [(e.sample_id, int(i), float(e.weights[i])) for e in es for i in np.argsort(-e.image_weights)[:5]]
        rng.shuffle(tops)
        clusters = [tops[k::5][:12] for k in range(min(5, len(tops)))]
        clusters.sort(key=lambda ms: -sum(m[2] for m in ms))
        for k, members in enumerate(clusters):
            rep = max(members, key=lambda m: m[2])
            feats.append(GlobalFeatureRecord(cls, "image", k, float(sum(m[2] for m in members) / len(es)), {
                "representative": {"sample_id": rep[0], "superpixel": rep[1]},
                "members": [{"sample_id": m[0], "superpixel": m[1], "weight": m[2]} for m in members],
                "n_samples": len({m[0] for m in members}),
            }))
        words: dict[str, dict[str, int]] = {}
        weights: dict[str, float] = {}
        for e in es:
            for t, w in zip(e.tokens, e.text_weights, strict=True):
                key = t.text.translate(_PLAIN)
                words.setdefault(key, {}).setdefault(t.text, 0)
                words[key][t.text] += 1
                weights[key] = weights.get(key, 0.0) + float(w)
        ranked = sorted(words, key=lambda k: -weights[k])
        for k, key in enumerate(ranked[:8]):
            variants = words[key]
            feats.append(GlobalFeatureRecord(cls, "text", k, weights[key] / len(es), {
                "text": max(variants, key=variants.get), "variants": variants, "count": sum(variants.values()),
            }))
    store.put_global_features(run, feats)

    steps = list(range(0, 11))
    for modality, slope in (("image", 0.06), ("text", 0.04), ("both", 0.08)):
        acc = [round(max(0.05, 0.9 - slope * k + float(rng.normal(0, 0.01))), 4) for k in steps]
        store.put_deletion_result(run, DeletionResult(FIXTURE_MODEL, modality, steps, acc, [s.id for s in samples[:50]]))
    log.info("synthetic run %s: %d samples, %d explanations, %d global features", run_name, len(samples), len(expls), len(feats))
    return run


def build_fixture_store(
    target: str | Path, photo_dir: str | Path, *, copy_images: bool = True, matching: bool = True, seed: int = 0
) -> Store:
    """A small two-run SYNTHETIC store over the photos in ``photo_dir``
    (``<Class-Name>_<nnn>.jpg``), as the app tests and screenshots use.

    Runs ``baseline`` and ``variant``; in ``baseline`` the second photo of the first
    class with two photos is misclassified. Explanations come from
    :class:`~prodlens.explain.MultimodalLime` (``max_samples=FIXTURE_LIME_SAMPLES``, quality
    check ``FIXTURE_QUALITY``) run on a :class:`~prodlens.app.fixture_model.ToyClassifier`. With ``matching`` (default) ``baseline``
    also holds SYNTHETIC matching results (:mod:`prodlens.app.match_fixtures`);
    ``variant`` has none, so it shows the Matching tab's empty state. With ``copy_images`` (file stores only)
    the photos are copied to ``images/`` beside the store and kept as relative paths.
    """
    import shutil

    photos = sorted(Path(photo_dir).glob("*.jpg"))
    if not photos:
        raise FileNotFoundError(f"no *.jpg photos in {photo_dir}")
    store = Store.open(target)
    sources = [(p, p.stem.rsplit("_", 1)[0]) for p in photos]
    relative = copy_images and store.dialect == "sqlite" and str(target) != ":memory:"
    if relative:
        dest = store.root / "images"
        dest.mkdir(parents=True, exist_ok=True)
        for p, _ in sources:
            shutil.copyfile(p, dest / p.name)
        sources = [(dest / p.name, label) for p, label in sources]
    samples = synthetic_samples(sources, seed=seed)
    if relative:
        samples = [dataclasses.replace(s, image_path=Path("images") / s.image_path.name) for s in samples]
    classes = sorted({s.label for s in samples if s.label})
    seen: dict[str, int] = {}
    wrong = []
    for s in samples:
        seen[s.label or ""] = seen.get(s.label or "", 0) + 1
        if seen[s.label or ""] == 2 and not wrong:
            wrong.append(s.id)
    def lime(s: int) -> MultimodalLime:
        # a stricter local-error limit than the default's, so that the toy's poorly fitted
        # explanations are flagged and the app's flag, sort and filter views have both kinds
        return MultimodalLime(max_samples=FIXTURE_LIME_SAMPLES, seed=s, progress=False, quality=FIXTURE_QUALITY)

    baseline = fill_synthetic_run(store, samples, classes, run_name="baseline", error_rate=0.0, wrong=wrong,
                                  explainer=lime(seed), seed=seed)
    if matching:
        from prodlens.app.match_fixtures import fill_synthetic_matching

        fill_synthetic_matching(store, baseline, samples, seed=seed)
    fill_synthetic_run(store, samples, classes, run_name="variant", error_rate=0.0, explainer=lime(seed + 3), seed=seed + 3)
    return store
