"""The batch pipeline (`prodlens run`): config validation, resuming after kill -9, executors.

The end-to-end tests share one tiny job over the bundled sample: 3 classes, 3 train /
1 val / 2 test photos each, synthetic OCR words (so no OCR engine runs), a 64-pixel
image input and hashed character n-grams for text (no language model to load), 16 superpixels and at most 48 perturbations per photo. One extra test photo
is corrupt, to show that bad input is reported and never stops the others.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from prodlens.data.manifest import Dataset, write_dataset
from prodlens.data.types import OcrToken
from prodlens.pipeline import PipelineConfigError, PipelineConfig, item_file, load_config, run_pipeline
from prodlens.pipeline.stages import KILL_AFTER_ENV
from prodlens.store import Store

CLASSES = ["God-Morgon-Apple-Juice", "Oatly-Oat-Milk", "Arla-Standard-Milk"]
N_TEST = 2 * len(CLASSES)  # good test photos; the corrupt one fails


# -- config ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"explain": {"sampels": 10}}, r"\[explain\] has no setting 'sampels'; did you mean 'max_samples'\?"),
        ({"trian": {}}, r"the config has no setting 'trian'; did you mean 'train'\?"),
        ({"explain": {"max_samples": "many"}}, r"\[explain\] max_samples must be an int; got 'many' \(str\)"),
        ({"train": {"lr": "fast"}}, r"\[train\] lr must be a float or left out; got 'fast'"),
        ({"explain": {"max_samples": 1}}, r"\[explain\] max_samples must be an int >= 2 .*, got 1"),
        ({"explain": {"samples": 300}}, r"\[explain\] has no setting 'samples'; did you mean 'max_samples'\?"),
        ({"executor": {"kind": "spark"}}, r"\[executor\] kind must be 'local' or 'ray'; got 'spark'"),
        ({"executor": {"ray_address": "auto"}}, r"ray_address must be empty unless kind = 'ray'"),
        ({"global": {"modalities": ["audio"]}}, r"\[global\] modalities must be a non-empty list"),
        ({"global": {"enabled": False}}, r"deletion.enabled must be false when global.enabled is false"),
        ({"name": "a b"}, r"name must be a non-empty run name"),
        ({"data": []}, r"\[data\] must be a table of settings"),
    ],
)
def test_config_errors_name_the_setting(raw, match):
    with pytest.raises(PipelineConfigError, match=match):
        PipelineConfig.from_dict(raw, source="run.toml")


def test_load_config_toml_json_and_relative_paths(tmp_path):
    (tmp_path / "a.toml").write_text('name = "a"\nout = "o"\n[executor]\nworkers = 2\nnum_gpus = 1\n')
    (tmp_path / "b.json").write_text(json.dumps({"name": "b", "store": "postgresql://u@h/db"}))
    a, b = load_config(tmp_path / "a.toml"), load_config(tmp_path / "b.json")
    assert a.out_dir == tmp_path / "o" and a.store_target == str(tmp_path / "o" / "prodlens.sqlite")
    assert a.executor.workers == 2 and a.executor.num_gpus == 1.0
    assert b.store_target == "postgresql://u@h/db" and b.cache_path == tmp_path / "work/pipeline/cache"
    (tmp_path / "bad.toml").write_text("name = ")
    with pytest.raises(PipelineConfigError, match=r"bad.toml: not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(PipelineConfigError, match=r"missing.toml: config file not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(PipelineConfigError, match=r"workers must be an int >= 1; got 0"):
        a.with_overrides(workers=0)


def test_example_config_documents_the_defaults():
    example = load_config(Path(__file__).parents[2] / "docs" / "pipeline.example.toml").to_dict()
    defaults = PipelineConfig().to_dict()
    assert {k for k in defaults if defaults[k] != example[k]} == {"name", "out"}


def test_cli_bad_config_exits_2_naming_the_setting(tmp_path, capsys):
    from prodlens.cli import main

    (tmp_path / "run.toml").write_text("[explain]\nsampels = 3\n")
    assert main(["run", str(tmp_path / "run.toml")]) == 2
    assert "run.toml: [explain] has no setting 'sampels'; did you mean 'max_samples'?" in capsys.readouterr().err
    (tmp_path / "ok.toml").write_text("")
    assert main(["run", str(tmp_path / "ok.toml"), "--executor", "local", "--ray-address", "auto"]) == 2
    assert "ray_address must be empty unless kind = 'ray'" in capsys.readouterr().err


# -- the tiny job --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def job(sample_ds, tmp_path_factory):
    """The tiny dataset folder, a shared cache folder, and the uninterrupted reference run."""
    root = tmp_path_factory.mktemp("pipeline")
    ds = sample_ds.with_classes(CLASSES)
    samples = []
    for n in CLASSES:
        mine = [s for s in ds.samples if s.label == n]
        words = tuple(OcrToken(w.upper(), (12 * i, 0, 12 * i + 10, 6)) for i, w in enumerate(n.split("-")))
        tr = [s for s in mine if s.split == "train"][:3]
        va = [s for s in mine if s.split == "val"]
        samples += [replace(s, ocr_tokens=words) for s in tr]
        samples += [replace(va[0], ocr_tokens=words)]
        samples += [replace(s, split="test", ocr_tokens=words[:2]) for s in va[1:3]]
    bad = root / "corrupt.jpg"
    bad.write_bytes(b"not a jpeg")
    samples.append(replace(samples[-1], id="test/corrupt", image_path=bad))
    write_dataset(Dataset(samples, ds.classes, ds.root), root / "data")
    ref = _config(root, "ref")
    summary = run_pipeline(ref, progress=False)
    return root, ref, summary


def _config(root: Path, name: str, checkpoint: str = "", limit: int = 0, **executor) -> PipelineConfig:
    return PipelineConfig.from_dict({
        "name": "tiny", "out": name, "cache_dir": "cache",
        "data": {"dataset": "data"}, "ocr": {"engine": "none"},
        "train": {"backbone": {"input_size": 64}, "text_backbone": "char_ngrams", "views": 1, "epochs": 15, "checkpoint": checkpoint},
        "explain": {"split": "test", "max_samples": 48, "segments": 16, "limit": limit},
        "global": {"min_support": 1}, "deletion": {"modalities": ["text"]},
        "executor": {"threads": 1, **executor},
    }, base=root)


def _write_json(cfg: PipelineConfig, path: Path) -> Path:
    path.write_text(json.dumps(cfg.to_dict()))
    return path


def _results(out: Path) -> dict[str, dict]:
    files = sorted((out / "explanations").glob("*/*.json"))
    return {json.loads(f.read_text())["sample_id"]: json.loads(f.read_text()) for f in files}


def _assert_same(a: dict[str, dict], b: dict[str, dict]) -> None:
    assert sorted(a) == sorted(b)
    for sid in a:
        ea, eb = a[sid]["explanations"], b[sid]["explanations"]
        assert [e["target_name"] for e in ea] == [e["target_name"] for e in eb], sid
        assert a[sid]["segments"] == b[sid]["segments"], sid
        for x, y in zip(ea, eb):
            assert x["n_samples"] == y["n_samples"], sid
            np.testing.assert_array_equal(x["weights"], y["weights"], err_msg=sid)


def _store_rows(out: Path) -> list[tuple[str, int]]:
    with Store.open(out / "prodlens.sqlite", create=False) as s:
        return [(e.sample_id, e.target) for e in s.get_explanations("tiny", latest_only=False)]


def test_reference_run_reports_every_stage_and_the_bad_photo(job):
    root, ref, summary = job
    assert [r.stage for r in summary.stages] == ["ocr", "train", "explain", "global", "deletion", "store", "match",
                                                 "sanity"]
    assert summary.stage("match").status == summary.stage("sanity").status == "disabled"
    ex = summary.stage("explain")
    assert (ex.done, ex.skipped) == (N_TEST, 0)
    assert [i for i, _ in ex.failed] == ["test/corrupt"] and "BadInputError" in ex.failed[0][1]
    assert not summary.ok and all(r.status == "ok" for r in summary.stages[:-2])
    deletion = json.loads(Path(summary.stage("deletion").outputs["deletion"]).read_text())["rows"][0]["config"]
    assert deletion["holdout"] == "2-fold cross-fit" and deletion["in_sample"] is False  # no photo tests its own features
    assert json.loads((ref.out_dir / "summary.json").read_text())["stages"][2]["failed"][0]["item"] == "test/corrupt"
    rows = _store_rows(ref.out_dir)
    assert len(rows) == len(set(rows)) == sum(len(r["explanations"]) for r in _results(ref.out_dir).values())
    with Store.open(ref.out_dir / "prodlens.sqlite") as s:
        info = s.summary("tiny")
    assert info.n_predictions == N_TEST and info.n_global_features > 0 and info.n_deletion_results == 1

    again = run_pipeline(ref, progress=False)  # a finished job: nothing is redone
    assert [(r.done, r.skipped) for r in again.stages[1:5]] == [(0, 1), (0, N_TEST), (0, 1), (0, 1)]
    assert _store_rows(ref.out_dir) == rows


def _checkpoint(summary) -> str:
    return summary.stage("train").outputs["checkpoint"]


@pytest.mark.slow
def test_kill_9_then_restart_loses_and_duplicates_nothing(job):
    """Killed mid-explain, then resumed: every explanation equals the uninterrupted
    run's and each is stored exactly once."""
    root, ref, ref_summary = job
    cfg = _config(root, "killed", checkpoint=_checkpoint(ref_summary))  # training is not what is tested here
    config = _write_json(cfg, root / "killed.json")
    cmd = [sys.executable, "-c", "import sys; from prodlens.cli import main; sys.exit(main())",
           "run", str(config), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    # the run kills itself after its 2nd explanation file, before that one reaches the store:
    # a known point, so the test cannot race a loaded machine
    killed = subprocess.run(cmd, env={**env, KILL_AFTER_ENV: "2"}, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    folder_glob = "explanations/*/*.json"
    n_before = len(list(cfg.out_dir.glob(folder_glob)))
    assert n_before == 2 < N_TEST, n_before
    assert len(_store_rows(cfg.out_dir)) < sum(len(r["explanations"]) for r in _results(cfg.out_dir).values())

    res = subprocess.run(cmd, env={k: v for k, v in env.items() if k != KILL_AFTER_ENV}, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 1, res.stderr[-2000:]  # 1: the corrupt photo failed again, the rest is done
    summary = json.loads((cfg.out_dir / "summary.json").read_text())
    explain = summary["stages"][2]
    assert explain["done"] + explain["skipped"] == N_TEST and explain["skipped"] >= n_before
    assert [f["item"] for f in explain["failed"]] == ["test/corrupt"]
    assert not list(cfg.out_dir.glob("explanations/*/.*.tmp"))

    expected = _results(ref.out_dir)
    got = _results(cfg.out_dir)
    _assert_same(expected, got)
    rows = _store_rows(cfg.out_dir)
    assert len(rows) == len(set(rows)) == sum(len(r["explanations"]) for r in expected.values())
    assert sorted(rows) == sorted(_store_rows(ref.out_dir))


def _explain_only(root: Path, name: str, ref_summary, limit: int, **executor) -> PipelineConfig:
    """The first ``limit`` test photos explained with the reference run's model; no global stages."""
    cfg = _config(root, name, checkpoint=_checkpoint(ref_summary), limit=limit, **executor)
    return replace(cfg, global_=replace(cfg.global_, enabled=False), deletion=replace(cfg.deletion, enabled=False))


@pytest.mark.slow
def test_process_pool_matches_serial(job):
    root, ref, ref_summary = job
    cfg = _explain_only(root, "pool", ref_summary, limit=2, workers=2)
    summary = run_pipeline(cfg, progress=False)
    assert (summary.stage("explain").done, summary.stage("store").status) == (2, "ok")
    got = _results(cfg.out_dir)
    _assert_same({k: v for k, v in _results(ref.out_dir).items() if k in got}, got)


@pytest.mark.slow
def test_ray_executor_matches_local(job):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'prodlens[ray]')")
    root, ref, ref_summary = job
    cfg = _explain_only(root, "ray", ref_summary, limit=4, kind="ray", workers=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # workers inherit PYTHONPATH
    try:
        summary = run_pipeline(cfg, progress=False)
    finally:
        ray.shutdown()
    ex = summary.stage("explain")
    assert (ex.done, ex.failed) == (4, ())
    got = _results(cfg.out_dir)
    _assert_same({k: v for k, v in _results(ref.out_dir).items() if k in got}, got)


def test_item_files_are_named_by_sample_and_key(job):
    root, ref, summary = job
    folder = Path(summary.stage("explain").outputs["folder"])
    assert folder.parent == ref.out_dir / "explanations" and folder.name == summary.stage("explain").key
    assert item_file(folder, "test/corrupt") not in set(folder.glob("*.json"))
    assert len(list(folder.glob("*.json"))) == N_TEST


def test_two_stage_run_embeds_with_the_adapted_model_and_matches(job, caplog):
    """[train] adapt_blocks trains an image model first; the global step embeds with it
    (recorded, no pretrained-only warning); [explain] classes narrows the photos;
    the deletion test is cross-fitted; [match] stores a matching run."""
    root, ref, _ = job
    raw = ref.to_dict()
    raw.update(name="twostage", out=str(root / "twostage"))
    raw["train"].update(adapt_blocks=1, adapt_epochs=2)
    raw["explain"].update(classes=["Oatly-Oat-Milk", "Arla-Standard-Milk"])
    raw["deletion"].update(modalities=["image", "text"], radius_scale=1.5)
    raw["match"].update(enabled=True, queries="test", gallery="train")
    raw["sanity"].update(enabled=True, limit=1, max_samples=24)
    cfg = PipelineConfig.from_dict(raw)
    with caplog.at_level("WARNING", logger="prodlens.aggregate.embedders"):
        summary = run_pipeline(cfg, progress=False)
    assert all(r.status == "ok" for r in summary.stages), summary.text()
    train = summary.stage("train").outputs
    assert Path(train["adapted_checkpoint"]).is_file() and 0 <= train["image_val_top1"] <= 1
    low, high = train["val_top1_ci95"]
    assert low <= train["val_top1"] <= high
    assert summary.stage("explain").outputs["classes"] == ["Arla-Standard-Milk", "Oatly-Oat-Milk"]
    emb = summary.stage("global").outputs["embedding"]
    assert emb == {"model": train["adapted_checkpoint"], "trained": True, "crop_size": 64}
    assert "pretrained-only" not in caplog.text
    rows = json.loads(Path(summary.stage("deletion").outputs["deletion"]).read_text())["rows"]
    assert [r["modality"] for r in rows] == ["image", "text"]
    assert all(r["config"]["holdout"] == "2-fold cross-fit" and r["config"]["radius_scale"] == 1.5 for r in rows)
    match = summary.stage("match").outputs
    assert match["run"] == "twostage-match" and match["queries"] == N_TEST  # the corrupt photo is skipped, not fatal
    sanity = summary.stage("sanity")
    assert sanity.done == 1 and set(sanity.outputs["verdicts"]) == {"head"}
    with Store.open(cfg.store_target, create=False) as s:
        assert s.summary("twostage-match").n_match_queries == N_TEST
        assert "sanity-twostage" in {r.name for r in s.list_runs()}
    again = run_pipeline(cfg, progress=False)  # resumed: nothing is redone
    assert [again.stage(n).skipped for n in ("train", "global", "deletion", "sanity")] == [1, 1, 1, 1]


def test_one_stage_global_warns_that_the_embedding_is_pretrained_only(job, caplog):
    root, ref, _ = job
    raw = ref.to_dict()
    raw.update(name="pretrained", out=str(root / "pretrained"))
    raw["global"].update(modalities=["image", "text"])
    raw["train"].update(checkpoint=_checkpoint(job[2]))
    with caplog.at_level("WARNING", logger="prodlens.aggregate.embedders"):
        summary = run_pipeline(PipelineConfig.from_dict(raw), progress=False)
    assert summary.stage("global").outputs["embedding"]["trained"] is False
    assert "pretrained-only image backbone" in caplog.text


def test_amortised_run_explains_every_photo_verifies_a_share_and_resumes(job):
    """[explain] method = "amortised": fitted on the train split once (saved next to the
    checkpoint), every test photo explained with one model call, the global step and the
    deletion test take its explanations unchanged, and verify re-explains a share with LIME."""
    root, ref, summary = job
    raw = ref.to_dict()
    raw.update(name="amortised", out=str(root / "amortised"))
    raw["train"].update(checkpoint=_checkpoint(summary))
    raw["explain"].update(method="amortised", verify=0.5, fit_masks=8, amortised_features="simple")
    cfg = PipelineConfig.from_dict(raw)
    got = run_pipeline(cfg, progress=False)
    assert all(r.status == "ok" for r in got.stages[:6] if r.stage != "explain"), got.text()
    ex = got.stage("explain")
    assert ex.done == N_TEST and [i for i, _ in ex.failed] == ["test/corrupt"]
    am = ex.outputs["amortised"]
    assert am["fitted_now"] and am["photos"] == 3 * len(CLASSES) and am["model_rows"] == 8 * 3 * len(CLASSES)
    assert Path(am["explainer"]).parent == Path(_checkpoint(summary)).parent
    assert ex.outputs["encoder_passes"] <= 2 and ex.outputs["surrogate_rows"] == 1  # one model call a photo
    v = ex.outputs["verify"]
    assert v["photos"] == N_TEST // 2 and -1 <= v["spearman"] <= 1 and 0 <= v["top10_overlap"] <= 10
    from prodlens.pipeline import highlights

    assert any(line.startswith("verified with LIME: 3 photos") for line in highlights(got))
    with Store.open(cfg.store_target, create=False) as s:
        assert s.get_run("amortised").config["amortised_verify"]["summary"] == v
        assert all(e.config["explainer"] == "amortised" for e in s.get_explanations("amortised"))
    again = run_pipeline(cfg, progress=False)  # resumed: nothing is refitted, re-explained or re-verified
    assert again.stage("explain").skipped == N_TEST and again.stage("explain").outputs["amortised"]["fitted_now"] is False
    assert again.stage("explain").outputs["verify"] == v
    # refine is an explaining setting, not a fitting one: the saved fit serves, 4 real masks a photo correct it
    raw["explain"].update(refine=4, verify=0.0)
    raw.update(name="amortised-refine", out=str(root / "amortised-refine"))
    refined_run = run_pipeline(PipelineConfig.from_dict(raw), progress=False)
    refined = refined_run.stage("explain")
    assert refined.done == N_TEST and refined.outputs["amortised"]["fitted_now"] is False
    assert refined.outputs["surrogate_rows"] == 5 and refined.outputs["amortised"]["refine"] == 4
    assert any("refined with 4 real masks a photo" in line for line in highlights(refined_run))


def test_demo_is_a_preset_of_the_pipeline():
    from prodlens.demo import demo_config
    from prodlens.pipeline import presets

    cfg = load_config("demo")
    assert presets()["demo"].is_file() and cfg.name == "demo" and cfg.out == "work/demo"
    assert cfg.train.adapt_blocks == 1 and cfg.global_.embedding == "auto" and cfg.match.enabled
    assert len(cfg.explain.classes) == 3 and cfg.deletion.holdout == "crossfit"
    assert demo_config("x", workers=2).ocr.workers == 2
    with pytest.raises(PipelineConfigError, match="or a preset name"):
        load_config("no-such-preset")


@pytest.mark.parametrize("section, setting, message", [
    ("train", {"adapt_blocks": -1}, "adapt_blocks must be an int >= 0"),
    ("train", {"select": "test"}, "select must be 'train-fold' or 'val'"),
    ("deletion", {"holdout": "split"}, "holdout must be 'crossfit' or 'none'"),
    ("match", {"gallery": "shelf"}, "gallery must be 'train', 'val' or 'test' or 'iconic'"),
    ("global", {"embedding": ""}, "embedding must be 'auto', 'model', 'adapted' or a checkpoint path"),
    ("explain", {"method": "shap"}, "method must be 'lime' or 'amortised'"),
    ("explain", {"verify": 1.5}, r"verify must be a share in \[0, 1\]"),
    ("explain", {"amortised_features": "pixels"}, "amortised_features must be 'backbone' or 'simple'"),
])
def test_new_settings_are_checked(section, setting, message):
    with pytest.raises(PipelineConfigError, match=message):
        PipelineConfig.from_dict({section: setting})


def test_the_configured_explainer_travels_pickled_with_one_name_per_meaning():
    import pickle

    e = PipelineConfig.from_dict({"explain": {"max_samples": 64, "segments": 12}}).explain
    lime = pickle.loads(pickle.dumps(e.explainer(3)))  # what a process or Ray worker receives
    assert lime.get_params() == e.explainer(3).get_params()
    assert (lime.max_samples, lime.n_segments, lime.seed) == (64, 12, 3)
    assert repr(lime).startswith("MultimodalLime(max_samples=64, n_segments=12")
    with pytest.raises(TypeError, match="no setting 'n_segmnts'; did you mean 'n_segments'"):
        lime.with_params(n_segmnts=10)
