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
    explained: dict[str, Path] = field(default_factory=dict)  #: sample id -> result file
    global_path: Path | None = None
    deletion_path: Path | None = None
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
            classes=self.dataset.classes.names, config={**cfg.to_dict(), "stage_keys": dict(self.keys)},
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
    """Train the model (or take ``train.checkpoint``); skipped when its checkpoint exists."""
    from prodlens.train import TrainConfig, train_model

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
    ctx.checkpoint, ctx.keys["train"] = path, key
    if path.is_file():
        return report(skipped=1, outputs={"checkpoint": str(path)})
    from prodlens.data.images import openable

    bad: list[Skip] = []  # an unreadable training photo is reported, not fatal
    train, val = (openable(ctx.dataset.split(sp), bad) for sp in ("train", "val"))
    if not len(train):
        raise BadInputError(cfg.source, "no training photos (split 'train' is empty)", "check [data]")
    tc = TrainConfig(mode=t.mode, views=t.views, epochs=t.epochs, patience=t.patience, lr=t.lr, batch_size=t.batch_size,
                     seed=cfg.seed, feature_cache=str(cfg.cache_path / "features"))
    res = train_model(train, val if len(val) else None, model=t.model, image_backbone=t.image_backbone,
                      text_backbone=t.text_backbone, head_cfg=dict(t.head), backbone_cfg=dict(t.backbone),
                      config=tc, out=path, progress=ctx.progress)
    return report(done=1, failed=tuple(bad), outputs={"checkpoint": str(path), "val_top1": res.metrics.get("val_top1")})


#: Crash-safety tests set this to N: the run kills itself (SIGKILL, no clean-up) right after the
#: N-th explanation file is written and before it reaches the store, the worst moment, at a
#: known point instead of a timing window (``tests/test_pipeline.py``).
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
    settings = {k: v for k, v in vars(e).items() if k != "device"}
    key = stage_key(settings, ctx.keys["train"], cfg.seed)
    ctx.keys["explain"] = key
    report = _timed("explain", key)
    folder = ctx.out / "explanations" / key
    folder.mkdir(parents=True, exist_ok=True)
    _clear_partial(folder)
    try:
        chosen = pick_samples(ctx.dataset.split(e.split).samples, e.limit)
    except ValueError as err:
        raise BadInputError(cfg.source, f"[explain] split: {err}", "use train, val or test") from None

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

    spec = WorkerSpec(str(ctx.checkpoint), e.lime_params(cfg.seed), targets=e.targets, device=e.device,
                      threads=cfg.executor.threads, extra_config={"pipeline_key": key})
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
    return report(done=done, skipped=skipped, failed=tuple(failed), outputs={"folder": str(folder)})


def _crop_size(classifier: Any) -> int:
    size = getattr(getattr(classifier, "preprocess", None), "input_size", None)
    return int(max(size) if isinstance(size, (tuple, list)) else size) if size else 224


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


def stage_global(ctx: Context) -> StageReport:
    """Per-class global explanations from every sample's own-class explanation."""
    from prodlens.aggregate import GlobalExplainer, write_json

    g = ctx.config.global_
    report, path = _one_file_stage(ctx, "global", g, ctx.keys["explain"], sorted(ctx.explained))
    ctx.global_path = path
    if path.is_file():
        return report(skipped=1, outputs={"global": str(path)})
    exps = _own_class_explanations(ctx)
    if not exps:
        raise BadInputError(ctx.out / "explanations", "no explanations to aggregate", "see the explain stage's failures")
    clf = ctx.classifier()
    assert ctx.dataset is not None
    explainer = GlobalExplainer(
        clf.encode_images, modalities=tuple(g.modalities), top_k_local=g.top_k_local, max_features=g.max_features,
        min_support=g.min_support, min_cluster_size=g.min_cluster_size, crop_size=_crop_size(clf), progress=ctx.progress,
    ).fit(exps, ctx.dataset.by_id())
    write_json(explainer.global_, path)
    return report(done=1, failed=explainer.skipped_, outputs={"global": str(path), "classes": len(explainer.global_)})


def stage_deletion(ctx: Context) -> StageReport:
    """The deletion test per modality against the global explanations."""
    from prodlens.aggregate import DeletionTable, deletion_test, read_global, write_json

    d, cfg = ctx.config.deletion, ctx.config
    report, path = _one_file_stage(ctx, "deletion", d, ctx.keys["global"], cfg.seed)
    ctx.deletion_path = path
    if path.is_file():
        return report(skipped=1, outputs={"deletion": str(path)})
    assert ctx.global_path is not None and ctx.dataset is not None
    glob = read_global(ctx.global_path)
    exps = [x for sid in sorted(ctx.explained) for x in _explanations(_read_result(ctx.explained[sid]), sid)]
    rows = tuple(
        deletion_test(ctx.classifier(), glob, exps, ctx.dataset.by_id(), modality=m, model=cfg.train.model,
                      top_k=d.top_k, fill=d.fill, n_repeats=d.repeats, seed=cfg.seed, in_sample=d.in_sample,
                      progress=ctx.progress)
        for m in d.modalities
    )
    write_json(DeletionTable(rows), path)
    return report(done=len(rows), failed=tuple(sorted({x for r in rows for x in r.skipped})), outputs={"deletion": str(path)})


def stage_store(ctx: Context) -> StageReport:
    """Predictions, global features and deletion results into the store (idempotent upserts);
    the explanations are already there (the explain stage wrote each as it finished)."""
    from prodlens.aggregate import read_deletion_table, read_global
    from prodlens.store import DeletionResult, GlobalFeature, Prediction, top_k

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
            GlobalFeature(f.class_name, f.modality, f.rank, f.importance, f.payload(), method="normlime")
            for c in glob for f in (*c.image, *c.text)
        ])
    if ctx.deletion_path is not None and ctx.deletion_path.is_file():
        for row in read_deletion_table(ctx.deletion_path).rows:
            store.put_deletion_result(run, DeletionResult(**row.as_steps()))
            written += 1
    summary = store.summary(run)
    return report(done=written, outputs={"store": store.where, "explanations": summary.n_explanations,
                                         "predictions": summary.n_predictions})


#: Stage functions in order; the runner calls them with one :class:`Context`.
STAGE_FUNCTIONS: Sequence[tuple[str, Any]] = (
    ("ocr", stage_ocr), ("train", stage_train), ("explain", stage_explain),
    ("global", stage_global), ("deletion", stage_deletion), ("store", stage_store),
)
