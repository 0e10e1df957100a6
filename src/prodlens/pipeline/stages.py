"""The pipeline's stages. Each reads what earlier stages wrote, skips work it finds done
and returns a :class:`~prodlens.pipeline.report.StageReport`.

Resumability rests on two things only:

* every result file is written atomically (:func:`prodlens._atomic.atomic_write`), under a
  folder named by the stage's key (a hash of its settings and of the keys of the stages
  it reads), so a file that exists is complete and belongs to these settings;
* every store write is an upsert keyed by (run, sample, target, settings hash), so
  writing a result again replaces the same row instead of adding one.

So a job killed at any moment, started again, recomputes only what was in flight.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from prodlens._atomic import atomic_write
from prodlens._names import safe_filename
from prodlens.data.manifest import Dataset
from prodlens.data.types import ProductSample
from prodlens.errors import BadInputError, Skip
from prodlens.explain.explanation import Explanation
from prodlens.pipeline.config import PipelineConfig, stage_key
from prodlens.pipeline.executors import Executor, WorkerSpec
from prodlens.pipeline.report import StageReport

log = logging.getLogger(__name__)


@dataclass
class Context:
    """State handed from stage to stage within one run (keys, paths, the dataset)."""

    config: PipelineConfig
    executor: Executor
    progress: bool = True
    dataset: Dataset | None = None
    keys: dict[str, str] = field(default_factory=dict)
    checkpoint: Path | None = None
    adapted: Path | None = None  #: the two-stage image model (``[train] adapt_blocks``)
    explained: dict[str, Path] = field(default_factory=dict)  #: sample id -> result file
    global_path: Path | None = None
    deletion_path: Path | None = None
    #: what the run's record in the store carries besides its config (the amortised verify report)
    run_extra: dict[str, Any] = field(default_factory=dict)
    _store: Any = None

    @property
    def out(self) -> Path:
        return self.config.out_dir

    def store(self) -> Any:
        """The results store, opened once, with this run registered (reused on resume)."""
        if self._store is None:
            from prodlens.store import Store

            self._store = Store.open(self.config.store_target)
        return self._store

    def run_ref(self) -> Any:
        cfg = self.config
        assert self.dataset is not None and self.checkpoint is not None
        return self.store().add_run(
            cfg.name, model=cfg.train.model, checkpoint=self.checkpoint, dataset=self.out / "dataset" / "manifest.jsonl",
            classes=self.dataset.classes.names, config={**cfg.to_dict(), "stage_keys": dict(self.keys), **self.run_extra},
            if_exists="reuse",
        )

    def classifier(self) -> Any:
        from prodlens.pipeline.executors import load_model

        return load_model(str(self.checkpoint), self.config.explain.device)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


# --------------------------------------------------------------------------- helpers


def pick_samples(samples: Iterable[ProductSample], n: int) -> list[ProductSample]:
    """Up to ``n`` samples spread over classes (round robin in manifest order); all when ``n`` is 0.

    >>> from pathlib import Path
    >>> ss = [ProductSample(f"{c}{i}", Path("x.jpg"), c) for c in "ab" for i in range(3)]
    >>> [s.id for s in pick_samples(ss, 3)]
    ['a0', 'b0', 'a1']
    """
    samples = list(samples)
    if not n:
        return samples
    by_class: dict[str, list[ProductSample]] = {}
    for s in samples:
        by_class.setdefault(str(s.label), []).append(s)
    queues = [by_class[k] for k in sorted(by_class)]
    picked: list[ProductSample] = []
    depth = 0
    while len(picked) < n and any(len(q) > depth for q in queues):
        picked += [q[depth] for q in queues if len(q) > depth][: n - len(picked)]
        depth += 1
    return picked


def item_file(folder: Path, sample_id: str) -> Path:
    """The result file of one sample: a readable, collision-free name.

    >>> item_file(Path("e"), "val/Oatly_001").name
    'val_Oatly_001-8814293d.json'
    """
    safe = safe_filename(sample_id)
    return folder / f"{safe}-{hashlib.sha1(sample_id.encode()).hexdigest()[:8]}.json"


def _file_key(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def _clear_partial(folder: Path) -> None:
    """Remove temporary files a killed run left behind (never complete ones)."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _read_result(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise BadInputError(path, f"unreadable result file ({e})", "delete it; the next run recomputes it") from None


def _explanations(record: dict, where: str) -> list[Explanation]:
    from prodlens.aggregate.io import _from_record

    return _from_record(record, where, "all")


def _own_class(record: dict, where: str) -> Explanation | None:
    """The explanation of the sample's true class, else of its predicted class."""
    exps = _explanations(record, where)
    want = record.get("true")
    want = record.get("predicted") if want is None else want
    return next((e for e in exps if e.target == want), exps[0] if exps else None)


def _timed(name: str, key: str = ""):  # noqa: ANN202 - tiny helper
    start = time.perf_counter()
    return lambda **kw: StageReport(name, seconds=time.perf_counter() - start, **{"key": key, **kw})


# --------------------------------------------------------------------------- stages


def _load_dataset(cfg: PipelineConfig) -> Dataset:
    from dataclasses import replace

    from prodlens.data.manifest import read_dataset
    from prodlens.data.sample import load_sample

    ds = load_sample() if cfg.data.dataset == "sample" else read_dataset(cfg.data.dataset)
    if cfg.data.classes:
        try:
            ds = ds.with_classes(cfg.data.classes)
        except Exception as e:  # noqa: BLE001 - the class list names the problem
            raise BadInputError(cfg.source, f"[data] classes: {e}", "use names from classes.json") from None
    if cfg.data.max_per_class:
        kept, seen = [], {}
        for s in ds.samples:
            k = (s.label, s.split)
            seen[k] = seen.get(k, 0) + 1
            if seen[k] <= cfg.data.max_per_class:
                kept.append(s)
        ds = replace(ds, samples=kept)
    return ds


def stage_ocr(ctx: Context) -> StageReport:
    """Read the dataset, OCR it (cached by image hash) and write ``out/dataset``."""
    from dataclasses import replace

    from prodlens.data.manifest import write_dataset

    cfg = ctx.config
    report = _timed("ocr")
    ds = _load_dataset(cfg)
    done = skipped = 0
    failed: tuple[tuple[str, str], ...] = ()
    scripts: dict = {}
    if cfg.ocr.engine == "rapidocr":
        from prodlens.ocr.rapid import RapidOcrEngine
        from prodlens.ocr.runner import run_ocr

        ds, rep = run_ocr(ds, RapidOcrEngine(), cache_dir=cfg.cache_path / "ocr", workers=cfg.ocr.workers,
                          min_score=cfg.ocr.min_score, script_filter=cfg.ocr.scripts or None, progress=ctx.progress)
        scripts = rep.scripts.to_dict() if rep.scripts else {}
        done, skipped, failed = rep.computed, rep.from_cache, rep.skipped
        bad = {p for p, _ in rep.skipped}
        ds = replace(ds, samples=[s for s in ds.samples if str(s.image_path) not in bad])
    else:
        skipped = len(ds)
    manifest = write_dataset(ds, ctx.out / "dataset")
    ctx.dataset = ds
    ctx.keys["dataset"] = _file_key(manifest)
    return report(done=done, skipped=skipped, failed=tuple(failed), key=ctx.keys["dataset"],
                  outputs={"dataset": str(manifest), "samples": len(ds), **({"script_filter": scripts} if scripts else {})})


def stage_train(ctx: Context) -> StageReport:
    """Train the model (or take ``train.checkpoint``); skipped when its checkpoint exists.

    With ``adapt_blocks`` it trains an image-only model with the backbone's last blocks
    first, then ``model`` on that adapted backbone (two-stage). Early stopping watches a
    fold of train (``select = "train-fold"``), so val is evaluated once, at the end.
    """
    cfg, t = ctx.config, ctx.config.train
    assert ctx.dataset is not None
    if t.checkpoint:
        path = Path(t.checkpoint)
        if not path.is_file():
            raise BadInputError(path, "[train] checkpoint not found", "train one with `prodlens train` or remove the setting")
        ctx.checkpoint, ctx.keys["train"] = path, _file_key(path)
        return _timed("train", ctx.keys["train"])(skipped=1, outputs={"checkpoint": str(path), "given": True})
    key = stage_key(t, ctx.keys["dataset"], cfg.seed)
    report = _timed("train", key)
    path = ctx.out / "models" / f"{t.model}-{key}.pt"
    adapted = ctx.out / "models" / f"image-adapted-{key}.pt" if t.adapt_blocks else None
    ctx.checkpoint, ctx.adapted, ctx.keys["train"] = path, adapted, key
    metrics_file = path.with_suffix(".metrics.json")
    if path.is_file() and (adapted is None or adapted.is_file()) and metrics_file.is_file():
        return report(skipped=1, outputs={"checkpoint": str(path), **json.loads(metrics_file.read_text())})
    from prodlens.data.images import openable
    from prodlens.train import TrainConfig, train_model

    bad: list[Skip] = []  # an unreadable training photo is reported, not fatal
    train, val = (openable(ctx.dataset.split(sp), bad) for sp in ("train", "val"))
    if not len(train):
        raise BadInputError(cfg.source, "no training photos (split 'train' is empty)", "check [data]")
    watch = val if t.select == "val" and len(val) else None  # None: the trainer holds out a fold of train
    common = {"seed": cfg.seed, "feature_cache": str(cfg.cache_path / "features")}
    outputs: dict[str, Any] = {"select": t.select}
    if adapted is not None:
        ac = TrainConfig(mode="fast", views=t.views, train_blocks=t.adapt_blocks, epochs=t.adapt_epochs,
                         schedule="cosine", label_smoothing=0.1, batch_size=32, **common)
        res = train_model(train, watch, model="image", image_backbone=t.image_backbone, backbone_cfg=dict(t.backbone),
                          config=ac, out=adapted, progress=ctx.progress)
        outputs.update({"adapted_checkpoint": str(adapted), **_val_metrics("image_val", res.classifier, val)})
    tc = TrainConfig(mode=t.mode, views=t.views, epochs=t.epochs, patience=t.patience, lr=t.lr, batch_size=t.batch_size,
                     init_from=str(adapted) if adapted is not None else None, **common)
    res = train_model(train, watch, model=t.model, image_backbone=t.image_backbone,
                      text_backbone=t.text_backbone, head_cfg=dict(t.head), backbone_cfg=dict(t.backbone),
                      config=tc, out=path, progress=ctx.progress)
    outputs.update(_val_metrics("val", res.classifier, val))
    with atomic_write(metrics_file) as f:
        json.dump(outputs, f)
    return report(done=1, failed=tuple(bad), outputs={"checkpoint": str(path), **outputs})


def _val_metrics(prefix: str, classifier: Any, val: Dataset) -> dict[str, Any]:
    """Top-1 on val, evaluated once, with its 95% Wilson interval (nothing when val is empty)."""
    if not len(val):
        return {}
    from prodlens.train.metrics import evaluate

    rep = evaluate(classifier, val, progress=False)
    low, high = rep.top1_interval()
    return {f"{prefix}_top1": rep.top1, f"{prefix}_top1_ci95": [low, high], f"{prefix}_n": rep.n}


#: Crash-safety tests set this to N: the run kills itself (SIGKILL, no clean-up) right after the
#: N-th explanation file is written and before it reaches the store, the worst moment, at a
#: known point instead of a timing window (``tests/pipeline/test_pipeline.py``).
KILL_AFTER_ENV = "PRODLENS_KILL_AFTER_EXPLANATIONS"


def _kill_point(n_written: int) -> None:
    limit = os.environ.get(KILL_AFTER_ENV)
    if limit and n_written >= int(limit):
        log.warning("%s=%s: killing this process now", KILL_AFTER_ENV, limit)
        os.kill(os.getpid(), signal.SIGKILL)


def _store_explanations(ctx: Context, run: Any, path: Path, known: set[tuple[str, int, str]] | None) -> bool:
    """Put one result file's explanations in the store unless all are there; True if written."""
    from prodlens.store.codec import config_key

    exps = _explanations(_read_result(path), str(path))
    if known is not None and all((e.sample_id, e.target, config_key(e.config, e.seed, e.n_samples)) in known for e in exps):
        return False
    ctx.store().put_explanations(run, exps)
    return True


def stage_explain(ctx: Context) -> StageReport:
    """Explain every selected photo; each result goes to its own file, then to the store."""
    cfg, e = ctx.config, ctx.config.explain
    assert ctx.dataset is not None and ctx.checkpoint is not None
    # LIME runs keep the keys they had before the amortised settings existed (resume finds them)
    settings = {k: v for k, v in vars(e).items() if k != "device" and (e.method != "lime" or k not in AMORTISED_KEYS)}
    key = stage_key(settings, ctx.keys["train"], cfg.seed)
    ctx.keys["explain"] = key
    report = _timed("explain", key)
    folder = ctx.out / "explanations" / key
    folder.mkdir(parents=True, exist_ok=True)
    _clear_partial(folder)
    try:
        pool = ctx.dataset.split(e.split).samples
    except ValueError as err:
        raise BadInputError(cfg.source, f"[explain] split: {err}", "use train, val or test") from None
    if e.classes:
        unknown = sorted(set(e.classes) - set(ctx.dataset.classes.names))
        if unknown:
            raise BadInputError(cfg.source, f"[explain] classes: unknown class {unknown[0]!r}",
                                "use names from the dataset's classes.json")
        pool = [s for s in pool if s.label in set(e.classes)]
    chosen = pick_samples(pool, e.limit)

    store = ctx.store()
    store.add_samples(ctx.dataset.samples)
    run = ctx.run_ref()
    known = store.explanation_keys(run)
    todo: list[ProductSample] = []
    skipped = 0
    for s in chosen:
        path = item_file(folder, s.id)
        if path.is_file():
            _store_explanations(ctx, run, path, known)  # a kill may have come between file and store
            ctx.explained[s.id] = path
            skipped += 1
        else:
            todo.append(s)
    log.info("explain: %d photos, %d already done, %d to do", len(chosen), skipped, len(todo))

    amortised, fit_facts = _fit_amortised(ctx, fit=bool(todo)) if e.method == "amortised" else (None, {})
    spec = WorkerSpec(str(ctx.checkpoint), e.explainer(cfg.seed), targets=e.targets, device=e.device,
                      threads=cfg.executor.threads, extra_config={"pipeline_key": key},
                      amortised=str(amortised) if amortised else "", refine=e.refine)
    failed: list[tuple[str, str]] = []
    done = 0
    bar = tqdm(total=len(chosen), initial=skipped, desc="explain", unit="photo", disable=not ctx.progress)
    try:
        if todo:
            for out in ctx.executor.map(spec, todo):
                if out.ok:
                    path = item_file(folder, out.sample_id)
                    with atomic_write(path) as f:
                        json.dump(out.result.to_dict(), f)  # type: ignore[union-attr]
                    _kill_point(done + 1)
                    _store_explanations(ctx, run, path, None)
                    ctx.explained[out.sample_id] = path
                    done += 1
                else:
                    log.warning("explain %s failed: %s", out.sample_id, out.error)
                    failed.append((out.sample_id, str(out.error)))
                bar.update()
                bar.set_postfix(done=done, failed=len(failed))
    finally:
        bar.close()
    outputs: dict[str, Any] = {"folder": str(folder), **_explain_facts(ctx, e.max_samples)}
    if e.method == "amortised":
        outputs["amortised"] = {**fit_facts, "refine": e.refine}
        if e.verify > 0:
            outputs["verify"] = _verify_amortised(ctx, folder, amortised)
    return report(done=done, skipped=skipped, failed=tuple(failed), outputs=outputs)


#: The [explain] settings that only the amortised method reads.
AMORTISED_KEYS = ("method", "verify", "fit_masks", "fit_photos", "amortised_features", "refine")


def _fit_amortised(ctx: Context, fit: bool = True) -> tuple[Path | None, dict[str, Any]]:
    """The amortised explainer of the run's checkpoint, fitted on the train split once and saved
    next to the checkpoint under a key of its settings (a later run with the same settings loads it)."""
    from prodlens.data.images import openable
    from prodlens.explain import AmortisedExplainer

    cfg, e = ctx.config, ctx.config.explain
    assert ctx.dataset is not None and ctx.checkpoint is not None
    am = e.amortised(cfg.seed, cache_dir=cfg.cache_path / "amortised")
    # every setting of the fit, defaults included: a changed default (network size, epochs) refits
    fkey = stage_key({**am.fit_params(), "fit_photos": e.fit_photos}, ctx.keys["train"], ctx.keys["dataset"])
    path = ctx.checkpoint.with_name(f"{ctx.checkpoint.stem}.amortised-{fkey}.pt")
    if path.is_file():
        return path, {"explainer": str(path), "fitted_now": False, **AmortisedExplainer.load(path).fit_report_}
    if not fit:
        return None, {}
    bad: list[Skip] = []
    train = pick_samples(openable(ctx.dataset.split("train"), bad).samples, e.fit_photos)
    if len(train) < 2:
        raise BadInputError(cfg.source, f"[explain] method = 'amortised' needs >= 2 train photos to fit on, found {len(train)}",
                            "check [data], or use method = 'lime'")
    clf = ctx.classifier()  # loaded on ONNX Runtime where it can (the fit's model calls, as LIME's)
    log.info("explain: fitting the amortised explainer on %d train photos x %d masks", len(train), e.fit_masks)
    am.fit(clf, train).save(path, checkpoint=ctx.checkpoint)
    return path, {"explainer": str(path), "fitted_now": True, **am.fit_report_}


def _verify_amortised(ctx: Context, folder: Path, amortised: Path | None) -> dict[str, Any]:
    """``verify`` of the explained photos explained again by LIME; the agreement (written to
    ``verify.json`` in the stage's folder, kept with the run in the store) and its summary."""
    from prodlens.explain import AmortisedExplainer
    from prodlens.explain.amortised import VerifyReport, verify

    cfg, e = ctx.config, ctx.config.explain
    assert ctx.dataset is not None
    path = folder / "verify.json"
    ids = sorted(ctx.explained)
    if path.is_file():
        doc = _read_result(path)
        if doc.get("explained") == ids:
            rep = VerifyReport.from_dict(doc)
            ctx.run_extra["amortised_verify"] = rep.to_dict()
            ctx.run_ref()
            return rep.summary()
    predicted = {}
    for sid in ids:
        record = _read_result(ctx.explained[sid])
        own = next((x for x in _explanations(record, sid) if x.target == record.get("predicted")), None)
        if own is not None:
            predicted[sid] = own
    by_id = ctx.dataset.by_id()
    clf = ctx.classifier()
    lime = e.explainer(cfg.seed)
    max_pixels = AmortisedExplainer.load(amortised).max_pixels if amortised else None
    rep = verify(clf, [by_id[s] for s in predicted if s in by_id], predicted, e.verify, lime, max_pixels=max_pixels,
                 seed=cfg.seed, progress=ctx.progress)
    with atomic_write(path) as f:
        json.dump({**rep.to_dict(), "explained": ids}, f)
    ctx.run_extra["amortised_verify"] = rep.to_dict()
    ctx.run_ref()  # the store's record of the run carries it (the app's Quality tab shows it)
    return rep.summary()


def _explain_facts(ctx: Context, max_masks: int) -> dict[str, Any]:
    """What the explained photos add up to (for the summary): counts, cost, quality flags."""
    records = [_read_result(ctx.explained[sid]) for sid in sorted(ctx.explained)]
    if not records:
        return {"photos": 0}
    assert ctx.dataset is not None
    by_id = ctx.dataset.by_id()
    exps = [x for r in records for x in r.get("explanations", [])]
    passes = [r.get("stats", {}).get("n_image_encodes", 0) + r.get("stats", {}).get("n_text_encodes", 0) for r in records]
    flagged = [x for x in exps if (x.get("quality") or {}).get("flags")]
    return {
        "photos": len(records), "explanations": len(exps),
        "misclassified": sum(bool(r.get("misclassified")) for r in records),
        "seconds_per_photo": float(np.mean([r.get("seconds", 0.0) for r in records])),
        "surrogate_rows": float(np.mean([r.get("n_samples", 0) for r in records])),
        "encoder_passes": float(np.mean(passes)), "max_image_masks": max_masks,
        "scored": sum(x.get("quality") is not None for x in exps), "flagged": len(flagged),
        "flags": sorted({f for x in flagged for f in x["quality"]["flags"]}),
        "classes": sorted({str(by_id[r["sample_id"]].label) for r in records if r["sample_id"] in by_id}),
    }


def _own_class_explanations(ctx: Context) -> list[Explanation]:
    out = []
    for sid in sorted(ctx.explained):
        path = ctx.explained[sid]
        exp = _own_class(_read_result(path), str(path))
        if exp is not None:
            out.append(exp)
    return out


def _one_file_stage(ctx: Context, name: str, section: object, *upstream: object) -> tuple[Any, Path]:
    """Key a stage that writes one file: (report maker, ``out/{name}/{key}.json``)."""
    settings = {k: v for k, v in vars(section).items() if k != "enabled"}
    key = stage_key(settings, *upstream)
    ctx.keys[name] = key
    return _timed(name, key), ctx.out / name / f"{key}.json"


def embedder(ctx: Context) -> Any:
    """The :class:`~prodlens.aggregate.ImageEmbedder` of ``[global] embedding`` (see
    :class:`~prodlens.pipeline.config.GlobalConfig`); warns when it is pretrained only."""
    from prodlens.aggregate import image_embedder
    from prodlens.pipeline.executors import load_model

    choice = ctx.config.global_.embedding
    if choice == "adapted" and ctx.adapted is None:
        raise BadInputError(ctx.config.source, "[global] embedding = 'adapted' but no adapted image model is trained",
                            "set [train] adapt_blocks = 1, or embedding = 'auto'")
    if choice in ("adapted", "auto") and ctx.adapted is not None:
        path = ctx.adapted
    elif choice in ("model", "auto"):
        path = ctx.checkpoint
    else:
        path = Path(choice)
        if not path.is_file():
            raise BadInputError(path, "[global] embedding checkpoint not found", "train one or use 'auto'")
    assert path is not None
    return image_embedder(load_model(str(path), ctx.config.explain.device), name=str(path))


def _global_explainer(ctx: Context, embed: Any) -> Any:
    from prodlens.aggregate import GlobalExplainer

    g = ctx.config.global_
    return GlobalExplainer(
        embed if "image" in g.modalities else None, modalities=tuple(g.modalities), top_k_local=g.top_k_local,
        max_features=g.max_features, min_support=g.min_support, min_cluster_size=g.min_cluster_size,
        crop_size=embed.crop_size if embed is not None else 224, progress=ctx.progress,
    )


def stage_global(ctx: Context) -> StageReport:
    """Per-class global explanations from every sample's own-class explanation."""
    from dataclasses import replace

    from prodlens.aggregate import write_json

    g = ctx.config.global_
    report, path = _one_file_stage(ctx, "global", g, ctx.keys["explain"], sorted(ctx.explained))
    ctx.global_path = path
    if path.is_file():
        return report(skipped=1, outputs=_global_facts(path))
    exps = _own_class_explanations(ctx)
    if not exps:
        raise BadInputError(ctx.out / "explanations", "no explanations to aggregate", "see the explain stage's failures")
    assert ctx.dataset is not None
    embed = embedder(ctx) if "image" in g.modalities else None
    explainer = _global_explainer(ctx, embed).fit(exps, ctx.dataset.by_id())
    result = explainer.global_
    if embed is not None:
        result = replace(result, config={**result.config, "embedding": embed.describe()})
    write_json(result, path)
    return report(done=1, failed=explainer.skipped_, outputs=_global_facts(path))


def _global_facts(path: Path) -> dict[str, Any]:
    from prodlens.aggregate import read_global

    g = read_global(path)
    emb = g.config.get("embedding")
    return {"global": str(path), "classes": len(g), "image_clusters": sum(len(c.image) for c in g),
            "word_groups": sum(len(c.text) for c in g), **({"embedding": emb} if emb else {})}


def stage_deletion(ctx: Context) -> StageReport:
    """The deletion test per modality against the global explanations: each photo against
    features built without it (``holdout = "crossfit"``), or in-sample (``"none"``)."""
    from prodlens.aggregate import DeletionTable, crossfit_deletion_test, deletion_test, read_global, write_json

    d, cfg = ctx.config.deletion, ctx.config
    report, path = _one_file_stage(ctx, "deletion", d, ctx.keys["global"], cfg.seed)
    ctx.deletion_path = path
    if path.is_file():
        return report(skipped=1, outputs=_deletion_facts(path))
    assert ctx.global_path is not None and ctx.dataset is not None
    exps = [x for sid in sorted(ctx.explained) for x in _explanations(_read_result(ctx.explained[sid]), sid)]
    by_id = ctx.dataset.by_id()
    clf = ctx.classifier()
    common = {"model": cfg.train.model, "top_k": d.top_k, "fill": d.fill, "n_repeats": d.repeats, "seed": cfg.seed,
              "radius_scale": d.radius_scale, "progress": ctx.progress}
    if d.holdout == "crossfit":
        embed = embedder(ctx).memoised() if "image" in ctx.config.global_.modalities else None
        own_ids = {(e.sample_id, e.target) for e in _own_class_explanations(ctx)}

        def fit_global(fold: list[Explanation]) -> Any:  # as the global stage: each photo's own-class explanation
            mine = [e for e in fold if (e.sample_id, e.target) in own_ids]
            return _global_explainer(ctx, embed).fit(mine, by_id).global_

        rows = tuple(
            crossfit_deletion_test(clf, fit_global, exps, by_id, modality=m, folds=d.folds,
                                   embed_fn=embed, **common)
            for m in d.modalities
        )
    else:
        glob = read_global(ctx.global_path)
        embed = embedder(ctx) if "image" in ctx.config.global_.modalities else None
        rows = tuple(
            deletion_test(clf, glob, exps, by_id, modality=m, in_sample=d.in_sample, embed_fn=embed,
                          **common)
            for m in d.modalities
        )
    write_json(DeletionTable(rows), path)
    return report(done=len(rows), failed=tuple(sorted({x for r in rows for x in r.skipped})),
                  outputs=_deletion_facts(path))


def _deletion_facts(path: Path) -> dict[str, Any]:
    from prodlens.aggregate import read_deletion_table

    rows = read_deletion_table(path).rows
    return {"deletion": str(path), "rows": [
        {"modality": r.modality, "samples": r.samples, "top_drop": r.top_drop.estimate if r.top_drop else None,
         "random_drop": r.random_drop.estimate if r.random_drop else None,
         "holdout": r.config.get("holdout") or ("in-sample" if r.config.get("in_sample") else "held out")}
        for r in rows]}


def stage_store(ctx: Context) -> StageReport:
    """Predictions, global features and deletion results into the store (idempotent upserts);
    the explanations are already there (the explain stage wrote each as it finished)."""
    from prodlens.aggregate import read_deletion_table, read_global
    from prodlens.store import DeletionResult, GlobalFeatureRecord, Prediction, top_k

    report = _timed("store")
    assert ctx.dataset is not None
    store, run = ctx.store(), ctx.run_ref()
    names = ctx.dataset.classes.names
    preds = []
    for sid in sorted(ctx.explained):
        p = np.asarray(_read_result(ctx.explained[sid])["probabilities"], dtype=float)
        preds.append(Prediction(sid, names[int(np.argmax(p))], top_k(p, names), probabilities=tuple(p.tolist())))
    written = store.put_predictions(run, preds)
    if ctx.global_path is not None and ctx.global_path.is_file():
        glob = read_global(ctx.global_path)
        written += store.put_global_features(run, [
            GlobalFeatureRecord(f.class_name, f.modality, f.rank, f.importance, f.payload(), method="normlime")
            for c in glob for f in (*c.image, *c.text)
        ])
    if ctx.deletion_path is not None and ctx.deletion_path.is_file():
        for row in read_deletion_table(ctx.deletion_path).rows:
            store.put_deletion_result(run, DeletionResult(**row.as_steps()))
            written += 1
    summary = store.summary(run)
    return report(done=written, outputs={"store": store.where, "explanations": summary.n_explanations,
                                         "predictions": summary.n_predictions})


def stage_match(ctx: Context) -> StageReport:
    """Product matching: every ``queries`` photo against the ``gallery`` (zero-shot
    embedding on the cached backbone features), stored as the run ``{name}-match``;
    with ``explain``, why the correctly matched query with the most OCR words matches."""
    from prodlens.match import evaluate_matching, explain_dataset_match, zero_shot
    from prodlens.store import save_match_explanation, save_retrieval

    m, cfg = ctx.config.match, ctx.config
    assert ctx.dataset is not None
    key = stage_key(m, ctx.keys["dataset"], cfg.seed)
    report = _timed("match", key)
    ds, cache = ctx.dataset, cfg.cache_path / "features"
    emb = zero_shot(m.kind, m.text_weight)
    res = evaluate_matching(ds, emb, queries=m.queries, gallery=m.gallery, ks=(1, 5), cache_dir=cache,
                            progress=ctx.progress)
    store = ctx.store()
    run = store.add_run(f"{cfg.name}-match", model=f"zero_shot/{m.kind}", dataset=ctx.out / "dataset" / "manifest.jsonl",
                        classes=ds.classes.names, config={k: v for k, v in res.config.items() if k != "gallery_ids"},
                        if_exists="replace")
    save_retrieval(store, run, res, ds)
    outputs: dict[str, Any] = {"run": run.name, "queries": res.n_queries, "gallery": res.n_gallery,
                               "top1": res.top1, "top5": res.top5}
    if m.explain and res.n_queries:
        gallery, by_id = res.config["gallery_ids"], ds.by_id()
        correct = [(q, gallery[int(n[0])]) for q, n in zip(res.query_ids, res.neighbors)
                   if by_id[gallery[int(n[0])]].label == by_id[q].label]
        query, match = max(correct or [(res.query_ids[0], gallery[int(res.neighbors[0][0])])],
                           key=lambda qm: (len(by_id[qm[0]].tokens), qm[0]))
        why = explain_dataset_match(ds, query, match_id=match, embedding=emb, kind=m.kind, cache_dir=cache,
                                    progress=False, n_masks=32, deletion_steps=4, n_random=1, batch_size=32,
                                    seed=cfg.seed)
        save_match_explanation(store, run, why.explanation, why.query, why.match)
        outputs["explained"] = why.explanation.summary()
    return report(done=res.n_queries, outputs=outputs)


def stage_sanity(ctx: Context) -> StageReport:
    """The model-randomisation test on a few explained photos, stored as ``sanity-{name}``
    (skipped when its result file exists: the store got it first)."""
    from prodlens.explain import model_randomisation_test
    from prodlens.store import save_sanity_report

    sc, cfg = ctx.config.sanity, ctx.config
    assert ctx.dataset is not None and ctx.checkpoint is not None
    report, path = _one_file_stage(ctx, "sanity", sc, ctx.keys["explain"], cfg.seed)
    run_name = f"sanity-{cfg.name}"
    if path.is_file():
        verdicts = {x["randomised"]: x["verdict"] for x in _read_result(path).get("summaries", [])}
        return report(skipped=1, outputs={"sanity": str(path), "run": run_name, "verdicts": verdicts})
    by_id = ctx.dataset.by_id()
    chosen = pick_samples([by_id[sid] for sid in sorted(ctx.explained) if sid in by_id], sc.limit)
    if not chosen:
        raise BadInputError(ctx.out / "explanations", "no explained photo to check", "see the explain stage's failures")
    e = ctx.config.explain
    lime = e.explainer(cfg.seed).with_params(max_samples=sc.max_samples, quality=False)
    clf = ctx.classifier()
    result = model_randomisation_test(clf, chosen, explainer=lime, randomise=list(sc.randomise), seed=cfg.seed,
                                      progress=ctx.progress)
    save_sanity_report(ctx.store(), run_name, result, chosen, checkpoint=str(ctx.checkpoint),
                       dataset=str(ctx.out / "dataset" / "manifest.jsonl"), model=cfg.train.model, classes=clf.classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        json.dump(result.to_dict(), f)
    return report(done=len(result.sample_ids), failed=tuple(result.skipped),
                  outputs={"sanity": str(path), "run": run_name, "verdicts": dict(result.verdicts)})


#: Stage functions in order; the runner calls them with one :class:`Context`.
STAGE_FUNCTIONS: Sequence[tuple[str, Any]] = (
    ("ocr", stage_ocr), ("train", stage_train), ("explain", stage_explain),
    ("global", stage_global), ("deletion", stage_deletion), ("store", stage_store), ("match", stage_match),
    ("sanity", stage_sanity),
)
