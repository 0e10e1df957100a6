"""The explorer's views and callbacks, without a browser, over a SYNTHETIC fixture store
(real photos and SLIC segments from tests/data/app, made-up weights)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from prodlens.app.fixtures import FIXTURE_MODEL, build_fixture_store
from prodlens.app.images import fit_explanation, read_photo, render_overlay, resize_labels
from prodlens.app.views import DISPLAY_SIDE, THUMB_SIDE, Explorer
from prodlens.store import RunNotFoundError, Store

PHOTOS = Path(__file__).parent / "data" / "app"
WRONG = "Arla-Standard-Milk_0002"  # misclassified as Oatly-Oat-Milk in run "baseline"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("app") / "results.sqlite"
    build_fixture_store(path, PHOTOS).close()
    return path


@pytest.fixture(scope="module")
def ex(store_path) -> Explorer:
    return Explorer(Store.open(store_path, create=False))


def test_fixture_store_is_labelled_synthetic(ex):
    run = ex.store.get_run("baseline")
    assert run.model == FIXTURE_MODEL and "SYNTHETIC" in run.notes
    assert ex.run_names() == ["baseline", "variant"]
    assert ex.classes("baseline") == ["Alpro-Fresh-Soy-Milk", "Arla-Standard-Milk", "God-Morgon-Orange-Juice", "Oatly-Oat-Milk"]
    assert ex.store.get_samples()[0].image_path == Path("images/Alpro-Fresh-Soy-Milk_001.jpg")  # relative to the store


def test_single_view_of_a_correct_and_a_misclassified_sample(ex):
    choices = ex.sample_choices("baseline", "Arla-Standard-Milk")
    assert [c.sample_id for c in choices] == [WRONG, "Arla-Standard-Milk_0001"]  # misclassified first
    assert choices[0].caption == f"{WRONG} ✗ → Oatly-Oat-Milk"

    ok = ex.single("baseline", "Arla-Standard-Milk_0001")
    assert "correctly classified" in ok.status
    assert len(ok.panels) == 1 and ok.panels[0].image.shape == (348, 348, 3)
    assert ok.photo.shape == (348, 348, 3) and ok.ocr_text.startswith("ARLA")

    bad = ex.single("baseline", WRONG)
    assert "misclassified" in bad.status
    assert [p.caption.split(":")[0] for p in bad.panels] == ["true class", "predicted class"]
    assert all(p.image is not None and p.image.dtype == np.uint8 for p in bad.panels)
    assert not np.array_equal(bad.panels[0].image, bad.panels[1].image)
    assert bad.word_headers == ["word", "weight for Arla-Standard-Milk", "weight for Oatly-Oat-Milk"]
    assert bad.top_k[0][0] == "Oatly-Oat-Milk"


def test_gallery_and_misclassified_views(ex):
    items = ex.gallery("baseline", "Arla-Standard-Milk")
    assert len(items) == 2 and all(max(p.image.shape[:2]) == THUMB_SIDE for p in items)
    mis = ex.misclassified("baseline", "Arla-Standard-Milk")
    assert mis.rows == [[WRONG, "Arla-Standard-Milk", "Oatly-Oat-Milk", pytest.approx(mis.rows[0][3]), "missed"]]
    assert len(mis.items) == 1 and "→ Oatly-Oat-Milk" in mis.items[0].caption
    confused = ex.misclassified("baseline", "Oatly-Oat-Milk")
    assert [r[4] for r in confused.rows] == ["confused"]
    assert ex.misclassified("variant", "Arla-Standard-Milk").rows == []


def test_global_view_histogram_and_deletion(ex):
    g = ex.global_view("baseline", "Arla-Standard-Milk")
    assert len(g.image_features) == 5
    f0 = g.image_features[0]
    assert f0.picture.shape[0] >= 160 and f0.crops[0].caption.startswith("representative")
    assert [f.importance for f in g.image_features] == sorted((f.importance for f in g.image_features), reverse=True)
    texts = [r[1] for r in g.text_rows]
    assert "ARLA" in texts and all(isinstance(r[3], int) for r in g.text_rows)
    h = ex.share_histogram("baseline", "Arla-Standard-Milk")
    assert sum(h.run_counts) == ex.store.summary("baseline").n_explanations == 7
    assert sum(h.class_counts) == 2 and "median" in h.summary
    d = ex.deletion("baseline")
    assert {p["curve"] for p in d.points} == {f"{FIXTURE_MODEL} / image", f"{FIXTURE_MODEL} / text", f"{FIXTURE_MODEL} / both"}
    assert "No global explanation" in ex.global_view("baseline", "Nope").summary


def test_compare_two_runs(ex):
    ids = ex.compare_choices("baseline", "variant", "Oatly-Oat-Milk")
    assert ids == ["Oatly-Oat-Milk_0004", "Oatly-Oat-Milk_0005"]
    v = ex.compare("baseline", "variant", "Oatly-Oat-Milk", ids[0])
    assert v.left.run == "baseline" and v.right.run == "variant"
    assert v.left.panel.image.shape == v.right.panel.image.shape == (348, 348, 3)
    assert not np.array_equal(v.left.panel.image, v.right.panel.image)
    assert "recall" in v.left.summary and v.left.text_rows
    with pytest.raises(RunNotFoundError):
        ex.compare("baseline", "nope", "Oatly-Oat-Milk", ids[0])


def test_matching_views(ex):
    q = ex.store.get_match_queries("baseline")
    assert len(q) == 6 and all("SYNTHETIC" in x.config["fixture"] for x in q)
    assert "top-1" in ex.match_note("baseline", "Arla-Standard-Milk")
    assert ex.match_note("variant", "Arla-Standard-Milk") == (
        "No matching results in run **variant**. Runs with matching results: **baseline**.")
    assert "No query of **Nope**" in ex.match_note("baseline", "Nope")
    choices = ex.match_choices("baseline", "Arla-Standard-Milk")
    assert [c.query_id for c in choices] == ["Arla-Standard-Milk_0001", "Arla-Standard-Milk_0002"]
    assert choices[0].caption == "Arla-Standard-Milk_0001 ✓ best match of its class · 1 explained"
    assert ex.match_choices("variant", "Arla-Standard-Milk") == []

    v = ex.match_list("baseline", "Arla-Standard-Milk_0001")
    assert [c.gallery_id for c in v.candidates][0] == "Arla-Standard-Milk_0002" and v.default_match == "Arla-Standard-Milk_0002"
    assert [c.same_class for c in v.candidates] == [True, False, False] and "is of its class" in v.status
    assert v.query.image.shape == (348, 348, 3)  # the photo at display size (never enlarged)
    assert len(v.matches) == 3 and all(max(p.image.shape[:2]) == THUMB_SIDE for p in v.matches)
    assert v.matches[0].caption.startswith("#1 Arla-Standard-Milk_0002 · 0.") and "✗ Oatly-Oat-Milk" in v.matches[1].caption

    w = ex.why_match("baseline", "Arla-Standard-Milk_0001", "Arla-Standard-Milk_0002")
    assert "similarity" in w.summary and "deletion AUC" in w.summary
    photo = ex.match_list("baseline", "Arla-Standard-Milk_0001").query.image
    assert w.query.image.shape == photo.shape and not np.array_equal(w.query.image, photo)  # saliency drawn
    assert w.match.image is not None and w.match.caption == "match: saliency"
    assert {r[1] for r in w.words} == {"arla", "standard", "milk"}
    drops = [r[5] for r in w.words]
    assert drops == sorted(drops, reverse=True) and [r[0] for r in w.words] == [1, 2, 3]

    alpro = ex.match_list("baseline", "Alpro-Fresh-Soy-Milk_0000")  # its class is not in the gallery
    assert "none of its class in the top 3" in alpro.status and [c.explained for c in alpro.candidates][:2] == [True, True]
    missing = ex.why_match("baseline", "Arla-Standard-Milk_0001", "Oatly-Oat-Milk_0004")
    assert "is not explained in this run" in missing.summary and missing.words == []


def test_matching_empty_store_says_how_to_fill_it():
    ex = Explorer(Store.open(":memory:"))
    ex.store.add_run("r")
    assert ex.match_note("r", None).startswith("No matching results in this store yet: store some with `prodlens match")


def test_missing_photo_shows_a_placeholder(store_path, tmp_path):
    store = Store.open(store_path, create=False, image_root=tmp_path)  # photos are not there
    v = Explorer(store).single("baseline", "Arla-Standard-Milk_0001")
    assert v.photo.shape == (DISPLAY_SIDE, DISPLAY_SIDE, 3) and v.panels[0].image is not None


def test_overlays_are_drawn_at_display_size():
    from prodlens.data.types import OcrToken
    from prodlens.explain.explanation import Explanation

    seg = np.repeat(np.arange(4), 25).reshape(10, 10)
    e = Explanation("s", 0, "a", np.array([1.0, 0, 0, 0, 0.9]), 0, 1, 1, seg, (OcrToken("X", (0, 0, 10, 4)),), 4)
    small = fit_explanation(e, (5, 5))
    assert small.segments.shape == (5, 5) and small.tokens[0].box == (0, 0, 5, 2)
    out = render_overlay(np.full((5, 5, 3), 200, np.uint8), e)
    assert out.shape == (5, 5, 3) and (out != 200).any()
    assert resize_labels(seg, (10, 10)) is seg
    assert read_photo(PHOTOS / "Oatly-Oat-Milk_001.jpg", 100).shape == (100, 100, 3)


# ---------------------------------------------------------------- Gradio callbacks and server
gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'prodlens[app]')")


def test_callbacks_give_complete_outputs_and_survive_bad_input(ex):
    from prodlens.app.ui import Callbacks

    cb = Callbacks(ex)
    run_upd, run_b_upd, note = cb.on_load()
    assert run_upd["value"] == "variant" and run_b_upd["value"] == "baseline" and note == ""
    cls_upd, info, del_df, _ = cb.on_run("baseline")
    assert cls_upd["value"] == "Alpro-Fresh-Soy-Milk" and "accuracy" in info and len(del_df) == 33
    out = cb.on_class("baseline", "Arla-Standard-Milk")
    assert out[0]["value"] == WRONG and "misclassified" in out[1]
    assert out[4]["value"] is not None and out[5]["value"] is not None  # two explanation panels
    gallery, _ = cb.on_gallery("baseline", "Arla-Standard-Milk")
    assert len(gallery) == 2
    g = cb.on_global("baseline", "Arla-Standard-Milk")
    assert len(g) == 1 + 2 * 5 + 1 and g[2] is not None
    run_hist, cls_hist, _ = cb.on_histogram("baseline", "Arla-Standard-Milk")
    assert run_hist["explanations"].sum() == 7 and cls_hist["explanations"].sum() == 2
    cmp = cb.on_compare_choices("baseline", "variant", "Oatly-Oat-Milk")
    assert cmp[0]["value"] == "Oatly-Oat-Milk_0004" and cmp[2]["value"] is not None
    m = cb.on_match_class("baseline", "Oatly-Oat-Milk")
    assert len(m) == 2 + 4 + 4 and m[0]["value"] == "Oatly-Oat-Milk_0004" and "top-1" in m[1]
    assert m[3]["value"] is not None and len(m[4]) == 3 and m[5]["value"] == "Oatly-Oat-Milk_0005"
    assert "not explained" in m[6] and m[7]["value"] is not None  # plain photos for a pair without explanation
    why = cb.on_why("baseline", "Arla-Standard-Milk_0001", "Arla-Standard-Milk_0002")
    assert why[1]["value"] is not None and list(why[3].columns)[:2] == ["rank", "word"] and len(why[3]) == 3
    empty = cb.on_match_class("variant", "Oatly-Oat-Milk")
    assert empty[0]["value"] is None and "No matching results in run **variant**" in empty[1] and empty[4] == []

    class Evt:
        index = 0

    assert cb.pick_match("baseline", "Arla-Standard-Milk_0001", Evt())["value"] == "Arla-Standard-Milk_0002"
    for bad in [cb.on_match_class("nope", "x"), cb.on_match_query("baseline", "missing-id"),
                cb.on_why("baseline", "missing-id", "x"), cb.on_match_query(None, None)]:
        assert isinstance(bad, tuple)
    for bad in [cb.on_class("nope", "x"), cb.on_class(None, None), cb.on_sample("baseline", "missing-id"),
                cb.on_global("baseline", "Nope"), cb.on_compare("baseline", None, "x", None)]:
        assert isinstance(bad, tuple)


def test_password_and_loopback_helpers():
    from prodlens.app.ui import _is_loopback, password_checker

    assert password_checker("pw")("anyone", "pw") and not password_checker("pw")("anyone", "pW")
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("192.168.1.5")


def test_server_binds_loopback_and_asks_for_the_password(store_path):
    from prodlens.app.ui import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(str(store_path), port=port, password="s3cret", block=False)
    try:
        base = f"http://127.0.0.1:{port}"
        assert demo.server_name == "127.0.0.1"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/config", timeout=10)
        assert err.value.code == 401
        import http.cookiejar
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        data = b"username=me&password=wrong"
        with pytest.raises(urllib.error.HTTPError):
            opener.open(f"{base}/login", data=data, timeout=10)
        opener.open(f"{base}/login", data=b"username=me&password=s3cret", timeout=10)
        with opener.open(f"{base}/config", timeout=10) as r:
            assert r.status == 200
        # a file outside Gradio's cache is not served, even when logged in
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(f"{base}/gradio_api/file={store_path}", timeout=10)
        assert err.value.code in (403, 404)
    finally:
        demo.close()


def test_navigation_never_runs_a_model(store_path, monkeypatch):
    """Every view is read from the store: no torch module is called and no ONNX session
    (OCR) is opened while navigating through every sample and class of both runs."""
    torch = pytest.importorskip("torch")
    from prodlens.app.ui import Callbacks, build_app

    def refuse(*a, **k):
        raise AssertionError("a model was run while navigating")

    monkeypatch.setattr(torch.nn.Module, "__call__", refuse)
    try:
        import onnxruntime

        monkeypatch.setattr(onnxruntime.InferenceSession, "__init__", refuse)
    except ImportError:
        pass
    ex = Explorer(Store.open(store_path, create=False))
    build_app(ex)
    cb = Callbacks(ex)
    for run in ex.run_names():
        cb.on_run(run)
        for c in ex.classes(run):
            for choice in ex.sample_choices(run, c):
                cb.on_sample(run, choice.sample_id)
            cb.on_class(run, c), cb.on_gallery(run, c), cb.on_misclassified(run, c)
            cb.on_global(run, c), cb.on_histogram(run, c), cb.on_compare_choices(run, "variant", c)
            cb.on_match_class(run, c)
            for q in ex.match_choices(run, c):
                cb.on_match_query(run, q.query_id)
                for m in ex.match_list(run, q.query_id).candidates:
                    cb.on_why(run, q.query_id, m.gallery_id)
    assert ex.match_choices("baseline", "Oatly-Oat-Milk")  # the matching views were visited
