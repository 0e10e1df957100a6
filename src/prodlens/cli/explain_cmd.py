"""`prodlens explain`: a local multimodal-LIME explanation of one sample, as PNGs + JSON
(``--amortised``: from a fitted amortised explainer, one model call)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from prodlens._validation import did_you_mean
from prodlens._names import safe_filename
from prodlens.cli._common import add_parser
from prodlens.explain.interpretable import FILLS
from prodlens.errors import ProdlensError

log = logging.getLogger(__name__)


def _load_classifier(path: str, runtime: str = "auto") -> Any:
    """A trained classifier from a checkpoint (``prodlens.models.checkpoint.load_classifier``)."""
    try:
        from prodlens.models.checkpoint import load_classifier
    except ImportError as e:  # pragma: no cover - depends on the models package state
        raise ProdlensError(f"cannot load checkpoints in this installation ({e})") from None
    return load_classifier(path, runtime=runtime)


def run_explain(
    checkpoint: str,
    dataset_dir: str,
    sample_id: str,
    out: str | Path,
    classes: list[str] | None = None,
    max_samples: int = 2000,
    seed: int = 0,
    fixed: bool = False,
    batch_size: int = 8,
    n_segments: int = 100,
    fill: str = "mean",
    runtime: str = "auto",
    quality: bool = True,
    amortised: str | Path | None = None,
    fit: bool = False,
    fit_masks: int = 64,
    refine: int = 0,
) -> dict[str, Any]:
    """Explain ``sample_id`` of the dataset with the checkpoint; write PNGs and JSON to ``out``.

    Returns ``{"json": path, "pngs": {class: {kind: path}}, "result": SampleExplanations}``.
    With ``amortised`` (a path, ``"auto"``: next to the checkpoint) the amortised explainer
    saved there explains it (``fit``: fit it first on the dataset's train split with
    ``fit_masks`` masks a photo, and save it there; ``refine``: that many real masks correct its
    weights); ``max_samples``, ``fixed`` and ``quality``
    are LIME's and do not apply.

    >>> run_explain("runs/concat.pt", "work/grocery", "Oatly-Oat-Milk_003", "out/")  # doctest: +SKIP
    """
    from prodlens._atomic import atomic_write
    from prodlens.data.images import load_image
    from prodlens.data.manifest import read_dataset
    from prodlens.explain import MultimodalLime
    from prodlens.explain.interpretable import shrink_photo
    from prodlens.viz import save_pngs

    ds = read_dataset(dataset_dir)
    by_id = ds.by_id()
    if sample_id not in by_id:
        hint = did_you_mean(sample_id, by_id)
        raise ProdlensError(f"no sample {sample_id!r} in {dataset_dir}{hint} ({len(by_id)} samples; see `prodlens info`)")
    sample = by_id[sample_id]
    if sample.ocr_tokens is None:
        log.warning("%s has no OCR tokens yet (run `prodlens ocr`); explaining the image only", sample_id)
    clf = _load_classifier(checkpoint, runtime)
    true_label = sample.label if sample.label in set(clf.classes) else None
    if sample.label is not None and true_label is None:
        log.warning("label %r of %s is not a class of the model; explaining the predicted class only", sample.label, sample_id)
    image = load_image(sample.image_path)
    explainer: Any
    if amortised is not None:
        explainer = _amortised(clf, checkpoint, ds, amortised, fit=fit, fit_masks=fit_masks, n_segments=n_segments,
                               fill=fill, batch_size=batch_size, seed=seed)
        explainer.refine = refine
    else:
        explainer = MultimodalLime(
            max_samples=max_samples, n_segments=n_segments, fill=fill, early_stop=not fixed,
            batch_size=batch_size, seed=seed, progress=None, quality=quality,
        )
    try:
        result = explainer.explain(clf, sample, image=image, targets=classes or (), true_label=true_label)
    except ValueError as e:
        raise ProdlensError(str(e)) from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shown, _ = shrink_photo(image, (), explainer.max_pixels)  # PNGs at the size it was explained at
    pngs = {}
    for e in result.explanations:
        pngs[e.target_name] = {k: str(p) for k, p in save_pngs(shown, e, out).items()}
    safe = safe_filename(sample_id)
    json_path = out / f"{safe}.json"
    with atomic_write(json_path, "w") as f:
        json.dump(result.to_dict(), f)
    return {"json": json_path, "pngs": pngs, "result": result}


def _amortised(clf: Any, checkpoint: str, ds: Any, path: str | Path, *, fit: bool, fit_masks: int, n_segments: int,
               fill: str, batch_size: int, seed: int) -> Any:
    """The amortised explainer at ``path`` (``"auto"``: next to the checkpoint), fitted first with ``fit``."""
    from prodlens.explain.amortised import AmortisedExplainer, amortised_path

    path = amortised_path(checkpoint) if str(path) == "auto" else Path(path)
    if not fit:
        return AmortisedExplainer.load(path, clf)
    train = ds.split("train").samples
    if len(train) < 2:
        raise ProdlensError(f"--fit needs the dataset's train split (at least 2 photos), it has {len(train)}")
    am = AmortisedExplainer(n_masks=fit_masks, n_segments=n_segments, fill=fill, batch_size=batch_size, seed=seed,
                            cache_dir=path.parent / (path.name + ".cache"))
    am.fit(clf, train).save(path, checkpoint=checkpoint)
    r = am.fit_report_
    print(f"fitted the amortised explainer on {r['photos']} train photos: {r['model_rows']} model rows, "
          f"held-out R^2 {r['held_out_r2']}, {r['mask_seconds'] + r['train_seconds']:.0f}s; saved {path}")
    return am


def _explain(args: argparse.Namespace) -> int:
    from prodlens.errors import UnknownClassError

    try:
        info = run_explain(
            args.checkpoint, args.dataset, args.sample, args.out, classes=args.classes, max_samples=args.max_samples,
            seed=args.seed, fixed=args.fixed, batch_size=args.batch_size, n_segments=args.segments, fill=args.fill,
            runtime=args.runtime, quality=not args.no_quality, amortised=args.amortised, fit=args.fit, refine=args.refine,
            fit_masks=args.fit_masks,
        )
    except UnknownClassError as e:
        raise ProdlensError(f"--class: {e}") from None
    res = info["result"]
    names = [e.target_name for e in res.explanations]
    print(f"{res.sample_id}: predicted {names[0]} (p={res.probabilities[res.predicted]:.3f})"
          + (" - MISCLASSIFIED" if res.misclassified else ""))
    for e in res.explanations:
        top = ", ".join(e.feature_name(i) for i in e.top_features(5, positive_only=True))
        print(f"  {e.target_name} [{e.config['role']}]: R^2 {e.score:.3f}, image {e.image_share:.0%} / "
              f"text {e.text_share:.0%}; top: {top or '-'}")
        if e.quality is not None:
            q = e.quality
            verdict = "ok" if q.trusted else "FLAGGED: " + ", ".join(q.flags)
            print(f"    quality: faithfulness {q.faithfulness:+.3f} (deletion AUC {q.deletion_auc:.3f} vs random "
                  f"{q.random_deletion_auc:.3f}, insertion {q.insertion_auc:.3f} vs {q.random_insertion_auc:.3f}), "
                  f"stability {q.stability:.2f}, local error {q.local_error:.3f} - {verdict}")
    if args.amortised is not None:
        n_calls = res.stats.get('n_model_calls', 1)
        print(f"  amortised: {n_calls} model call{'s' if n_calls != 1 else ''}, {res.seconds:.1f}s "
              "(R^2 is the fit's, on its held-out photos)")
    else:
        print(f"  {res.n_samples} perturbations{' (stopped early)' if res.stopped_early else ''}, {res.seconds:.1f}s")
    print(f"wrote {info['json']} and {sum(len(v) for v in info['pngs'].values())} PNGs to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_parser(
        sub, "explain",
        "Explain one sample with multimodal LIME (superpixels + OCR words); write PNGs and a JSON.",
        "prodlens explain runs/concat.pt work/grocery --sample Arla-Lactose-Medium-Fat-Milk_001 --out out/expl",
    )
    p.add_argument("checkpoint", help="trained classifier checkpoint (from `prodlens train`)")
    p.add_argument("dataset", metavar="DATASET_DIR", help="dataset folder with manifest.jsonl")
    p.add_argument("--sample", required=True, help="sample id to explain (see the manifest)")
    p.add_argument("--class", dest="classes", action="append", metavar="NAME",
                   help="also explain this class (repeatable); the predicted and, if misclassified, true class always are")
    p.add_argument("--max-samples", "--samples", dest="max_samples", type=int, default=2000,
                   help="most perturbations (default 2000)")
    p.add_argument("--fixed", action="store_true", help="use exactly --max-samples perturbations (no early stopping)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--segments", type=int, default=100, help="SLIC superpixels to aim for (default 100)")
    p.add_argument("--fill", choices=FILLS, default="mean", help="what replaces an off superpixel")
    p.add_argument("--runtime", choices=["auto", "torch", "onnxruntime"], default="auto",
                   help="image network runtime: auto = ONNX Runtime on the CPU (same outputs, ~1.8x cheaper), else PyTorch")
    p.add_argument("--out", required=True, help="folder for the PNGs and the JSON")
    p.add_argument("--no-quality", action="store_true",
                   help="skip the quality scores (deletion/insertion vs random, stability, fit; ~28 model rows)")
    p.add_argument("--amortised", nargs="?", const="auto", metavar="PATH",
                   help="explain with the amortised explainer saved at PATH (default: CHECKPOINT's NAME.amortised.pt): "
                        "one model call instead of LIME's thousands")
    p.add_argument("--fit", action="store_true",
                   help="with --amortised: fit it first on the dataset's train split and save it to PATH")
    p.add_argument("--fit-masks", type=int, default=64, help="with --fit: random masks per train photo (default 64)")
    p.add_argument("--refine", type=int, default=0, metavar="N",
                   help="with --amortised: correct its weights with N real masks (N + 1 model calls; default 0)")
    p.set_defaults(func=_explain)
