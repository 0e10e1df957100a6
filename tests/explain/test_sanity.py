"""The model-randomisation sanity check: randomised copies, the test itself, the store,
the command line and the explorer's Sanity check tab."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from prodlens.cli import main
from prodlens.data.manifest import Dataset, write_dataset
from prodlens.data.types import ClassList, OcrToken, ProductSample
from prodlens.errors import ConfigError
from prodlens.explain import MultimodalLime
from prodlens.explain.sanity import SanityReport, SanityResult, model_randomisation_test, spearman
from prodlens.models import as_classifier, build_classifier, create_model, randomised_copy
from prodlens.models.classifier import ProductClassifier
from prodlens.models.image_backbones import ImageBackbone
from prodlens.models.preprocess import PreprocessConfig
from prodlens.models.runtime import module_digest
from prodlens.store import RunExistsError, get_sanity_results, load_sanity_report, save_sanity_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = 4  # the toy backbone pools the photo into GRID x GRID cells, the explainer cuts the same grid


class CellMeans(ImageBackbone):
    """A hand-built "backbone" without weights: the mean brightness of each grid cell."""

    name = "cell_means"
    weights_id = "none"

    def __init__(self) -> None:
        super().__init__()
        self.out_dim = GRID * GRID
        self.preprocess = PreprocessConfig(32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")
        self.pool = nn.AdaptiveAvgPool2d(GRID)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x.mean(1, keepdim=True)).flatten(1)


#: the trained head: class "milk" rises with every cell, most with cell 0, then cell 1, ...
TRAINED = np.linspace(3.0, 0.2, GRID * GRID)


def toy_classifier() -> ProductClassifier:
    head = create_model("image", kind="head", num_classes=2, image_dim=GRID * GRID)
    with torch.no_grad():
        head.classifier[-1].weight.copy_(torch.tensor(np.stack([np.zeros_like(TRAINED), TRAINED]), dtype=torch.float32))
        head.classifier[-1].bias.copy_(torch.tensor([0.0, -9.0]))  # about half the cells on: p("milk") near 0.5
    return ProductClassifier(head, ["other", "milk"], CellMeans(), head_name="image", spec={"head": "image"})


def grid_lime(**kw) -> MultimodalLime:
    return MultimodalLime(max_samples=400, segmenter="grid", segmenter_params={"rows": GRID, "cols": GRID}, fill="black",
                          early_stop=False, quality=False, **kw)


@pytest.fixture
def photos(tmp_path) -> list[ProductSample]:
    """Two plain grey photos (every cell alike: only the head decides what matters) and a broken file."""
    paths = []
    for i, grey in enumerate((200, 160)):
        p = tmp_path / f"grey{i}.png"
        Image.fromarray(np.full((32, 32, 3), grey, np.uint8)).save(p)
        paths.append(p)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    return [ProductSample(f"grey{i}", p, "milk", "val") for i, p in enumerate(paths)] + [
        ProductSample("broken", bad, "milk", "val")]


# ---------------------------------------------------------------- randomised copies
def test_randomised_head_changes_the_copy_not_the_original():
    clf = toy_classifier()
    before = {k: v.clone() for k, v in clf.state_dict().items()}
    rng_state = torch.get_rng_state()
    rnd = randomised_copy(clf, "head", seed=3)
    assert torch.equal(torch.get_rng_state(), rng_state), "the global torch random state is left alone"
    for k, v in clf.state_dict().items():
        assert torch.equal(v, before[k]), f"the original's {k} changed"
    assert not torch.equal(rnd.head.classifier[-1].weight, clf.head.classifier[-1].weight)
    assert rnd.image_backbone is clf.image_backbone and rnd.classes == clf.classes
    again = randomised_copy(clf, "head", seed=3)
    assert torch.equal(again.head.classifier[-1].weight, rnd.head.classifier[-1].weight), "same seed, same weights"
    assert not torch.equal(randomised_copy(clf, "head", seed=4).head.classifier[-1].weight, rnd.head.classifier[-1].weight)


def test_randomised_head_keeps_the_fitted_standardisation():
    clf = toy_classifier()
    clf.head.fit_feature_stats(torch.randn(20, GRID * GRID) * 3 + 1, None)
    rnd = randomised_copy(clf, "head")
    assert torch.equal(rnd.head.img_norm.mean, clf.head.img_norm.mean)
    assert torch.equal(rnd.head.img_norm.std, clf.head.img_norm.std)


def test_randomised_blocks_get_their_own_weights_id_and_onnx_export(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODLENS_CACHE", str(tmp_path))
    clf = build_classifier("image", ["a", "b"], backbone_cfg={"pretrained": False, "input_size": 32})
    bb = clf.image_backbone
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    rnd = randomised_copy(clf, "head+blocks2", seed=0)
    r_bb = rnd.image_backbone
    assert r_bb is not bb and r_bb.cache_key != bb.cache_key and bb.weights_id == "random"
    for k, v in bb.state_dict().items():
        assert torch.equal(v, before[k]), f"the original backbone's {k} changed"
    blocks, r_blocks = bb.blocks(), r_bb.blocks()
    same = [all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters())) for a, b in zip(blocks, r_blocks)]
    assert same == [True] * (len(blocks) - 2) + [False, False], "only the last two blocks are re-initialised"
    assert not torch.equal(r_bb.net.conv_head.weight, bb.net.conv_head.weight), "and the convolution above them"
    assert module_digest(r_bb, 32) != module_digest(bb, 32)
    # on ONNX Runtime the copy runs its own export, never the trained network's session
    clf.use_runtime("onnxruntime")
    rnd = randomised_copy(clf, "head+blocks1")
    assert rnd.runtime == "onnxruntime" and rnd._image_runner is not clf._image_runner
    img = [np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)]
    onnx_feats = rnd.encode_images(img)
    np.testing.assert_allclose(onnx_feats, rnd.use_runtime("torch").encode_images(img), atol=1e-4)
    assert np.abs(onnx_feats - clf.encode_images(img)).max() > 1e-3
    head_only = randomised_copy(clf, "head")
    assert head_only._image_runner is clf._image_runner, "an unchanged backbone keeps its session"


@pytest.mark.parametrize(("name", "message"), [
    ("heads", r"randomise must be 'head' or 'head\+blocks<N>' .* got 'heads'; did you mean 'head'\?"),
    ("head+blocks0", r"got 'head\+blocks0'"),
    ("blocks1", r"randomise must be 'head' or"),
])
def test_unknown_randomisation_names_are_refused(name, message):
    with pytest.raises(ConfigError, match=message):
        randomised_copy(toy_classifier(), name)


def test_models_without_that_kind_of_head_or_blocks_are_refused():
    wrapped = as_classifier(lambda ims, tls: np.ones((len(ims), 2)), ["a", "b"])
    with pytest.raises(ConfigError, match="needs a prodlens ProductClassifier .* got CallableClassifier"):
        randomised_copy(wrapped, "head")
    with pytest.raises(ConfigError, match=r"image backbone cell_means cannot be cut into blocks; use randomise='head'"):
        randomised_copy(toy_classifier(), "head+blocks1")
    clf = build_classifier("image", ["a", "b"], backbone_cfg={"pretrained": False, "input_size": 32})
    with pytest.raises(ConfigError, match=r"has 16 blocks; N in 'head\+blocks<N>' must be in 1..16, got 17"):
        randomised_copy(clf, "head+blocks17")


# ---------------------------------------------------------------- the test itself
def test_spearman_handles_ties_and_constant_vectors():
    assert spearman(np.array([1.0, 1.0, 2.0]), np.array([0.0, 0.0, 5.0])) == pytest.approx(1.0)
    assert spearman(np.ones(4), np.arange(4.0)) == 0.0


def test_randomisation_test_on_a_model_with_known_explanations(photos):
    clf = toy_classifier()
    rep = model_randomisation_test(clf, photos, explainer=grid_lime(seed=9), seed=0, top_k=4, progress=False)
    assert [p for p, _ in rep.skipped] == [str(photos[2].image_path)] and "not a readable image" in rep.skipped[0][1]
    assert rep.sample_ids == ["grey0", "grey1"]
    by = {(r.sample_id, r.randomised): r for r in rep.results}
    assert set(by) == {(s, n) for s in ("grey0", "grey1") for n in ("head", "control (seed 1)")}
    ref = by[("grey0", "head")]
    # the trained explanation knows the head: every cell pushes "milk", cell 0 most, then cell 1, ...
    assert ref.target_name == "milk" and int(np.argmax(ref.weights_trained)) == 0 and (ref.weights_trained[:8] > 0).all()
    assert spearman(ref.weights_trained, TRAINED) > 0.9
    assert by[("grey0", "control (seed 1)")].spearman_abs > 0.8, "two seeds of the same model agree"
    assert not np.allclose(ref.weights_randomised, ref.weights_trained)
    head = rep.summary("head")
    assert head.verdict == "pass" and head.spearman_abs.median < 0.5 and rep.passed
    assert rep.control.verdict == "control" and rep.control.spearman_abs.median > 0.8
    assert rep.config["seed"] == 0 and rep.config["control_seed"] == 1 and rep.config["explainer"]["seed"] == 0
    assert torch.equal(clf.head.classifier[-1].weight[1], torch.tensor(TRAINED, dtype=torch.float32)), \
        "the trained model is never changed"
    again = model_randomisation_test(clf, photos[:1], explainer=grid_lime(), seed=0, top_k=4, progress=False)
    np.testing.assert_array_equal(again.results[1].weights_randomised, by[("grey0", "head")].weights_randomised)


def test_randomisation_test_checks_its_options_before_any_work(photos):
    with pytest.raises(ConfigError, match="randomise must be 'head'"):
        model_randomisation_test(toy_classifier(), photos, randomise=["head", "tail"])
    with pytest.raises(ConfigError, match="top_k must be an int >= 1, got 0"):
        model_randomisation_test(toy_classifier(), photos, top_k=0)
    with pytest.raises(ConfigError, match="at least one randomisation"):
        model_randomisation_test(toy_classifier(), photos, randomise=[])


def _result(name: str, w: np.ndarray, v: np.ndarray, sid: str = "s1") -> SanityResult:
    return SanityResult.compare(w, v, sample_id=sid, target=1, target_name="milk", randomised=name, n_superpixels=3,
                                top_k=2, control=name.startswith("control"))


def test_verdicts_compare_with_the_threshold_and_the_noise_floor():
    w = np.array([0.9, 0.5, 0.2, 0.1, 0.05])
    same, reversed_ = w * 1.1, w[::-1].copy()
    rep = SanityReport.from_results([_result("control (seed 1)", w, same), _result("head", w, reversed_),
                                     _result("head+blocks1", w, same)])
    assert rep.verdicts == {"head": "pass", "head+blocks1": "fail"} and rep.verdict == "fail" and not rep.passed
    assert "barely change" in rep.summary("head+blocks1").reason
    assert "below the noise floor 1.00" in rep.summary("head").reason
    # a noisy explainer: the randomised copy is "different", but no more than two seeds of the trained model
    rep = SanityReport.from_results([_result("control (seed 1)", w, w[[0, 2, 3, 4, 1]]),  # Spearman |w| 0.4
                                     _result("head", w, w[[0, 2, 4, 3, 1]])])  # 0.3: < 0.5, but not 0.2 below 0.4
    assert rep.verdicts == {"head": "fail"} and "raise max_samples" in rep.summary("head").reason
    rows = rep.summary_rows()
    assert [r[0] for r in rows] == ["head", "control (seed 1)"] and rows[-1][-1] == "control"


# ---------------------------------------------------------------- store
def test_store_round_trip(store):
    w = np.array([0.9, -0.5, 0.2, 0.1 / 3, 0.05])
    results = [_result("control (seed 1)", w, w + 0.01, sid) for sid in ("s1", "s2")]
    results += [_result("head", w, w[::-1].copy(), sid) for sid in ("s1", "s2")]
    report = SanityReport.from_results(results, skipped=[("bad.jpg", "cannot be decoded")],
                                       config={"kind": "sanity", "control_seed": 1, "top_k": 2})
    photos = [ProductSample(s, Path(f"{s}.jpg"), "milk", "val") for s in ("s1", "s2", "unused")]
    run = save_sanity_report(store, "sanity", report, photos, checkpoint="concat.pt", model="concat", classes=["milk"])
    assert run.config["kind"] == "sanity" and run.config["verdicts"]["head"]["verdict"] == "pass"
    assert run.checkpoint == "concat.pt" and run.config["skipped"] == [["bad.jpg", "cannot be decoded"]]
    back = load_sanity_report(store, "sanity")
    assert back.verdicts == report.verdicts and back.skipped == report.skipped
    assert back.summaries == report.summaries and back.control == report.control, "the same numbers"
    for a, b in zip(report.results, back.results, strict=True):
        assert (a.sample_id, a.randomised, a.spearman, a.top_k_overlap) == (b.sample_id, b.randomised, b.spearman,
                                                                             b.top_k_overlap)
        np.testing.assert_array_equal(a.weights_trained, b.weights_trained)
        np.testing.assert_array_equal(a.weights_randomised, b.weights_randomised)
    assert [s.id for s in store.get_samples()] == ["s1", "s2"]
    # a re-run on fewer photos leaves no stale rows behind
    save_sanity_report(store, "sanity", SanityReport.from_results(results[::2]), photos)
    assert [(r.sample_id, r.randomised) for r in get_sanity_results(store, "sanity")] == [
        ("s1", "control (seed 1)"), ("s1", "head")]
    other = store.add_run("demo-concat", checkpoint="concat.pt")
    assert load_sanity_report(store, other) is None
    with pytest.raises(RunExistsError, match="'demo-concat' exists .* and is not a sanity check"):
        save_sanity_report(store, "demo-concat", report, photos)
    store.delete_run("sanity")
    assert store.table_counts()["sanity_results"] == 0


# ---------------------------------------------------------------- command line and app, on a real model
@pytest.fixture(scope="module")
def trained(sample_ds, tmp_path_factory):
    """A concat (the demo's fusion head) model fast-trained on 2 classes x 3 photos of the bundled
    sample with synthetic OCR words, and a dataset folder of them plus one broken photo."""
    from prodlens.train import TrainConfig, train_model

    names = ["Oatly-Oat-Milk", "Arla-Standard-Milk"]
    ds = sample_ds.with_classes(names)
    out = []
    for split, k in (("train", 3), ("val", 1)):
        for n in names:
            for s in [s for s in ds.samples if s.label == n and s.split == split][:k]:
                toks = tuple(OcrToken(w.upper(), (12 * i, 0, 12 * i + 10, 6)) for i, w in enumerate(n.split("-")))
                out.append(replace(s, ocr_tokens=toks))
    ds = Dataset(out, ds.classes, ds.root)
    folder = tmp_path_factory.mktemp("sanity")
    cfg = TrainConfig(views=1, epochs=10, batch_size=4, feature_cache=str(folder / "fc"), lr=3e-3)
    res = train_model(ds.split("train"), ds.split("val"), model="concat", backbone_cfg={"input_size": 64}, config=cfg,
                      out=folder / "concat.pt", progress=False)
    bad = folder / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    broken = ProductSample("val/broken", bad, names[0], "val")
    write_dataset(Dataset([*ds.samples, broken], ClassList.from_names(ds.classes.names)), folder / "data")
    return res.checkpoint, folder / "data"


@pytest.mark.slow
def test_cli_on_a_small_trained_model(trained, tmp_path, capsys):
    ckpt, data = trained
    db, out = tmp_path / "results.sqlite", tmp_path / "sanity.json"
    rc = main(["sanity", str(ckpt), str(data), "--limit", "3", "--max-samples", "24", "--segments", "12",
               "--randomise", "head", "--randomise", "head+blocks1", "--runtime", "torch",
               "--db", str(db), "--run", "s", "--json", str(out)])
    text = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rc == (0 if rep["verdict"] == "pass" else 1)
    assert "Spearman |w|" in text and "noise floor |w|" in text and f"verdict: {rep['verdict'].upper()}" in text
    assert "skipped " in text and "broken.jpg" in text, "the broken photo is named, the others still run"
    assert [s["randomised"] for s in rep["summaries"]] == ["head", "head+blocks1"]
    assert rep["control"]["randomised"] == "control (seed 1)" and len(rep["results"]) == 2 * 3
    for line in ("head: ", "head+blocks1: "):
        assert line in text
    from prodlens.app.sanity_views import sanity_view
    from prodlens.store import Store

    with Store.open(db, create=False) as store:
        assert load_sanity_report(store, "s").verdicts == {s["randomised"]: s["verdict"] for s in rep["summaries"]}
        store.add_run("trained", checkpoint=str(ckpt))
        v = sanity_view(store, "trained")  # another run of the same checkpoint shows its check
        assert v.run == "s" and "shares its checkpoint with sanity run **s**" in v.summary
        assert len(v.rows) == 3 and len(v.sample_rows) == 6
    assert main(["sanity", str(ckpt), str(data), "--randomise", "tail"]) == 2
    assert "randomise must be 'head' or 'head+blocks<N>'" in capsys.readouterr().err
    assert main(["sanity", str(ckpt), str(data), "--run", "x"]) == 2
    assert "give --db STORE too" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_with_only_broken_photos_is_bad_input(trained, tmp_path, capsys):
    ckpt, data = trained
    only_bad = tmp_path / "bad"
    from prodlens.data.manifest import read_dataset

    ds = read_dataset(data)
    write_dataset(Dataset([s for s in ds.samples if s.id == "val/broken"], ds.classes), only_bad)
    assert main(["sanity", str(ckpt), str(only_bad), "--runtime", "torch"]) == 2
    assert "no photo could be explained" in capsys.readouterr().err


def test_cli_help_ends_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["sanity", "--help"])
    assert "Example:\n  prodlens sanity" in capsys.readouterr().out


def test_app_tab_says_how_to_fill_it_and_shows_a_check(tmp_path):
    pytest.importorskip("gradio")
    from prodlens.app.ui import Callbacks
    from prodlens.app.views import Explorer
    from prodlens.store import Store

    store = Store.open(tmp_path / "r.sqlite")
    store.add_run("plain", checkpoint="m.pt")
    cb = Callbacks(Explorer(store))
    note, table, per_photo = cb.on_sanity("plain")
    assert "`prodlens sanity m.pt DATASET_DIR --db STORE --run NAME`" in note and len(table) == 0
    w = np.array([0.9, 0.5, 0.2, 0.1])
    rep = SanityReport.from_results([_result("control (seed 1)", w, w), _result("head", w, w[::-1].copy())],
                                    config={"control_seed": 1})
    save_sanity_report(store, "check", rep, [ProductSample("s1", Path("s1.jpg"), "milk", "val")], checkpoint="m.pt")
    note, table, per_photo = cb.on_sanity("check")
    assert "**PASS**" in note and list(table["randomised"]) == ["head", "control (seed 1)"]
    assert list(table["verdict"]) == ["pass", "control"] and len(per_photo) == 2
    assert cb.on_sanity(None)[0] == "" and cb.on_sanity("nope")[0] == ""
