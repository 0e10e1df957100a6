"""The explorer's views and callbacks, without a browser, over a SYNTHETIC fixture store
(real photos and SLIC segments from tests/data/app, made-up weights)."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from prodlens.app.fixtures import FIXTURE_MODEL, FIXTURE_QUALITY, build_fixture_store
from prodlens.app.images import fit_explanation, read_photo, render_overlay, resize_labels
from prodlens.app.views import DISPLAY_SIDE, THUMB_SIDE, Explorer
from prodlens.store import RunNotFoundError, Store

PHOTOS = Path(__file__).parents[1] / "data" / "app"
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
    items = ex.gallery("baseline", "Arla-Standard-Milk").items
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

    # why the runner-up did not match: the difference of the two stored explanations of one query
    best, second = [c.gallery_id for c in alpro.candidates][:2]
    assert ex.runner_up("baseline", "Alpro-Fresh-Soy-Milk_0000", best) == second
    n = ex.why_not("baseline", "Alpro-Fresh-Soy-Milk_0000", best)
    e1 = ex.store.get_match_explanation("baseline", "Alpro-Fresh-Soy-Milk_0000", best)
    e2 = ex.store.get_match_explanation("baseline", "Alpro-Fresh-Soy-Milk_0000", second)
    assert n.runner_up_id == second and f"Runner-up {second}" in n.summary and f"{e1.similarity - e2.similarity:.3f} closer" in n.summary
    assert n.query.image is not None and n.runner_up.image is not None and "match saliency − runner-up saliency" in n.query.caption
    words = {w.word for w in e1.words} | {w.word for w in e2.words}
    assert {r[0] for r in n.words} == words and [r[4] for r in n.words] == sorted((r[4] for r in n.words), reverse=True)
    assert all(r[1] in ("both", "match only", "runner-up only") for r in n.words)
    none = ex.why_not("baseline", "Arla-Standard-Milk_0001", "Arla-Standard-Milk_0002")  # only one explained match
    assert none.runner_up_id is None and "No runner-up" in none.summary and none.words == []


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


# ---------------------------------------------------------------- explanation quality
def _sample_id(caption: str) -> str:
    return re.search(r"[A-Za-z-]+_\d{4}", caption).group()


def _true_class_quality(ex, run, class_name):
    """sample id -> quality of its explanation for its true class (what the gallery shows)."""
    return {e.sample_id: e.quality for e in ex.store.get_explanations(run, class_name=class_name, label=class_name)}


def _mixed_class(ex):
    """A (run, class) whose gallery holds both a flagged and a trusted explanation."""
    for run in ex.run_names():
        for c in ex.classes(run):
            flags = {q.trusted for q in _true_class_quality(ex, run, c).values()}
            if flags == {True, False}:
                return run, c
    pytest.fail("the fixture store has no class with both a flagged and a trusted explanation: "
                "adjust prodlens.app.fixture_model.ToyClassifier")


def test_fixture_explanations_are_lime_with_quality_scores(ex):
    from prodlens.app.fixtures import FIXTURE_LIME_NOTE

    for run in ex.run_names():
        expls = ex.store.get_explanations(run)
        assert expls and all(e.quality is not None for e in expls)
        assert all(e.config["fixture"] == FIXTURE_LIME_NOTE and "sampler" in e.config for e in expls)
    flagged = [e.flagged for run in ex.run_names() for e in ex.store.get_explanations(run)]
    assert any(flagged) and not all(flagged)
    summaries = ex.store.quality_summaries("baseline")
    assert [(s.sample_id, s.target, s.quality) for s in summaries] == [
        (e.sample_id, e.target, e.quality) for e in ex.store.get_explanations("baseline")]
    assert [s.target_name for s in ex.store.quality_summaries("baseline", class_name="Oatly-Oat-Milk")] == ["Oatly-Oat-Milk"] * 3


def test_single_view_shows_each_explanations_quality(ex):

    run, flagged = next((r, e) for r in ex.run_names() for e in ex.store.get_explanations(r) if e.flagged)
    v = ex.single(run, flagged.sample_id)
    k = [p.caption.split(" · ")[0].split(": ")[-1] for p in v.panels].index(flagged.target_name)
    note = v.quality[k].caption
    assert note.startswith("**⚠ flagged: do not trust this explanation**")
    for f in flagged.quality.flags:  # the reason names the score, its value and the stored threshold
        assert f in note and f in v.panels[k].caption
    thresholds = FIXTURE_QUALITY.thresholds
    if "off_target" in flagged.quality.flags:
        assert f"off_target (local error {flagged.quality.local_error:.2f} > {thresholds['max_local_error']:.2f})" in note
    assert f"faithfulness **{flagged.quality.faithfulness:.3f}**" in note and "stability" in note and "R²" in note
    curves = v.quality[k].image
    assert curves.dtype == np.uint8 and curves.shape[2] == 3 and (curves != 255).any()
    trusted = next(e for e in ex.store.get_explanations(run) if e.flagged is False)
    tv = ex.single(run, trusted.sample_id)
    assert len(tv.quality) == len(tv.panels)
    assert any(q.caption.startswith("**Quality: no flag raised**") for q in tv.quality)
    assert "quality ok" in " ".join(p.caption for p in tv.panels)


def test_gallery_sorts_and_filters_by_quality(ex):
    run, c = _mixed_class(ex)
    quality = _true_class_quality(ex, run, c)
    ids = lambda view: [_sample_id(p.caption) for p in view.items]  # noqa: E731

    everything = ex.gallery(run, c)
    assert sorted(ids(everything)) == sorted(quality) and ids(everything) == sorted(ids(everything))
    for p in everything.items:
        q = quality[_sample_id(p.caption)]
        assert p.caption.startswith("⚠ flagged: " + ", ".join(q.flags) if q.flags else "quality ok")
    n_flag = sum(not q.trusted for q in quality.values())
    assert f"{n_flag} of {len(quality)} scored ones flagged" in everything.summary

    for order, key, best in [("stability, best first", "stability", True), ("stability, worst first", "stability", False),
                             ("faithfulness, best first", "faithfulness", True),
                             ("faithfulness, worst first", "faithfulness", False)]:
        got = ids(ex.gallery(run, c, order=order))
        values = [getattr(quality[i], key) for i in got]
        assert values == sorted(values, reverse=best), order
        assert all(f"{key} {getattr(quality[i], key):.2f}" in p.caption
                   for i, p in zip(got, ex.gallery(run, c, order=order).items, strict=True))

    flagged = ex.gallery(run, c, show="flagged only")
    assert set(ids(flagged)) == {i for i, q in quality.items() if not q.trusted} and "Showing" in flagged.summary
    trusted = ex.gallery(run, c, show="trusted only", order="faithfulness, worst first")
    assert set(ids(trusted)) == {i for i, q in quality.items() if q.trusted}
    assert all("quality ok" in p.caption for p in trusted.items)
    with pytest.raises(ValueError, match="order must be one of .*'sample id'.*got 'best'"):
        ex.gallery(run, c, order="best")
    with pytest.raises(ValueError, match="show must be one of"):
        ex.gallery(run, c, show="some")


def test_quality_view_histograms_thresholds_and_flagged_share(ex):
    from prodlens.app.quality_views import SCORES

    run, c = _mixed_class(ex)
    qs = [e.quality for e in ex.store.get_explanations(run)]
    cls_qs = [e.quality for e in ex.store.get_explanations(run, class_name=c)]
    v = ex.quality_view(run, c)
    assert [h.score for h in v.histograms] == ["faithfulness", "stability", "r2", "local_error"]
    thresholds = FIXTURE_QUALITY.thresholds
    for h, score in zip(v.histograms, SCORES, strict=True):
        assert h.threshold == thresholds[score.threshold_key] and h.edges[0] <= h.threshold <= h.edges[-1]
        run_v = np.clip([score.value(q) for q in qs], h.edges[0], h.edges[-1])
        cls_v = np.clip([score.value(q) for q in cls_qs], h.edges[0], h.edges[-1])
        assert h.run_counts == np.histogram(run_v, h.edges)[0].tolist() and sum(h.run_counts) == len(qs)
        assert h.class_counts == np.histogram(cls_v, h.edges)[0].tolist() and sum(h.class_counts) == len(cls_qs)
        assert h.n_flagged_run == sum(score.flag in q.flags for q in qs)
        assert h.n_flagged_class == sum(score.flag in q.flags for q in cls_qs)
        assert h.picture.shape[2] == 3 and (h.picture != 255).any()
    n_flag = sum(not q.trusted for q in qs)
    assert v.summary.startswith(f"**{n_flag} of {len(qs)} ({n_flag / len(qs):.0%})** explanations of the run are flagged")
    n_cls = sum(not q.trusted for q in cls_qs)
    assert f"For **{c}**: {n_cls} of {len(cls_qs)}" in v.summary
    assert [r[1] for r in v.rows] == ["unfaithful", "unstable", "poor_fit", "off_target"]
    assert v.rows[1][2] == f"< {thresholds['min_stability']:.2f}"


def test_global_view_counts_the_flagged_supporting_explanations(ex):
    run, c = _mixed_class(ex)
    qs = [e.quality for e in ex.store.get_explanations(run, class_name=c)]
    n_flag = sum(not q.trusted for q in qs)
    g = ex.global_view(run, c)
    assert f"**{n_flag} of {len(qs)}** supporting explanations (the run's explanations for {c}) are flagged" in g.summary
    assert n_flag > 0


def test_views_without_quality_scores_say_what_fills_them():
    from prodlens.app.fixtures import fill_synthetic_run, synthetic_samples

    store = Store.open(":memory:")
    samples = synthetic_samples([(PHOTOS / "Oatly-Oat-Milk_001.jpg", "Oatly-Oat-Milk"),
                                 (PHOTOS / "Arla-Standard-Milk_001.jpg", "Arla-Standard-Milk")])
    fill_synthetic_run(store, samples, ["Arla-Standard-Milk", "Oatly-Oat-Milk"], run_name="old", error_rate=0.0)
    store.add_run("empty")
    ex = Explorer(store)
    how = "stored without quality scores; re-run the explain stage, `prodlens run CONFIG`"
    v = ex.quality_view("old", "Oatly-Oat-Milk")
    assert v.histograms == [] and how in v.summary and "none scored" in v.summary
    single = ex.single("old", samples[0].id)
    assert how in single.quality[0].caption and single.quality[0].image is None
    assert "no quality score" in single.panels[0].caption
    gallery = ex.gallery("old", "Oatly-Oat-Milk", order="stability, best first")
    assert len(gallery.items) == 1 and "no quality score" in gallery.items[0].caption and how in gallery.summary
    assert ex.gallery("old", "Oatly-Oat-Milk", show="flagged only").items == []
    assert how in ex.global_view("old", "Oatly-Oat-Milk").summary
    assert ex.quality_view("empty").summary.startswith("No explanations in this run")
    assert ex.flagged_note("empty", "Oatly-Oat-Milk") == ""


def test_quality_curves_draw_both_orders():
    from prodlens.explain.quality import ExplanationQuality
    from prodlens.viz import quality_curves, score_histogram
    from prodlens.viz.quality import EXPLANATION_COLOUR, RANDOM_COLOUR, THRESHOLD_COLOUR

    q = ExplanationQuality((0.0, 0.5, 1.0), (0.9, 0.2, 0.1), (0.1, 0.8, 0.9), (0.9, 0.5, 0.1), (0.1, 0.5, 0.9),
                           0.9, 10, 0.7, 0.02)
    img = quality_curves(q)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert EXPLANATION_COLOUR in colours and RANDOM_COLOUR in colours
    hist = score_histogram([0.1, 0.2, 0.8], [0.8], np.linspace(0, 1, 11), threshold=0.5)
    assert THRESHOLD_COLOUR in {tuple(c) for c in hist.reshape(-1, 3)}


# ---------------------------------------------------------------- Gradio callbacks and server
gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'prodlens[app]')")


def test_callbacks_give_complete_outputs_and_survive_bad_input(ex):
    from prodlens.app.ui import Callbacks

    cb = Callbacks(ex)
    run_upd, run_b_upd, note = cb.on_load()
    first = ex.richest_run()  # the run with the most explanations, see the next test
    assert run_upd["value"] == first and {first, run_b_upd["value"]} == {"variant", "baseline"} and note == ""
    cls_upd, info, del_df, _ = cb.on_run("baseline")
    assert cls_upd["value"] == ex.richest_class("baseline") and "accuracy" in info and len(del_df) == 33
    out = cb.on_class("baseline", "Arla-Standard-Milk")
    assert out[0]["value"] == WRONG and "misclassified" in out[1]
    assert out[4]["value"] is not None and out[5]["value"] is not None  # two explanation panels
    gallery, _ = cb.on_gallery("baseline", "Arla-Standard-Milk")
    assert len(gallery) == 2
    assert len(out) == 1 + 7 + 4 and out[8]["value"] and out[9]["value"] is not None  # quality note + curves
    assert out[8]["visible"] and out[9]["visible"]
    right = cb.on_class("baseline", "Oatly-Oat-Milk")  # a correct one: no second panel, hidden rather than empty
    assert right[5]["value"] is None and right[5]["visible"] is False and right[11]["visible"] is False
    ordered, note = cb.on_gallery("baseline", "Arla-Standard-Milk", "stability, worst first", "trusted only")
    assert "trusted only" in note and all("quality ok" in caption for _, caption in ordered)
    assert cb.on_gallery("baseline", "Arla-Standard-Milk", "nonsense", None)[0]  # unknown choices fall back
    qv = cb.on_quality("baseline", "Arla-Standard-Milk")
    assert len(qv) == 1 + 4 + 1 and "flagged" in qv[0] and all(u["value"] is not None and u["visible"] for u in qv[1:5]) and len(qv[5]) == 4
    g = cb.on_global("baseline", "Arla-Standard-Milk")
    assert len(g) == 1 + 2 * 5 + 1 and g[2]["value"] is not None and g[2]["visible"]
    n_img = len(ex.global_view("baseline", "Arla-Standard-Milk").image_features)
    assert all(u["visible"] is False for u in g[1 + 2 * n_img:-1])  # unused slots are hidden, not empty frames
    run_hist, cls_hist, _ = cb.on_histogram("baseline", "Arla-Standard-Milk")
    assert run_hist["explanations"].sum() == 7 and cls_hist["explanations"].sum() == 2
    cmp = cb.on_compare_choices("baseline", "variant", "Oatly-Oat-Milk")
    assert cmp[0]["value"] == "Oatly-Oat-Milk_0004" and cmp[2]["value"] is not None
    m = cb.on_match_class("baseline", "Oatly-Oat-Milk")
    assert len(m) == 2 + 4 + 8 and m[0]["value"] == "Oatly-Oat-Milk_0004" and "top-1" in m[1]
    assert m[3]["value"] is not None and len(m[4]) == 3 and m[5]["value"] == "Oatly-Oat-Milk_0005"
    assert "not explained" in m[6] and m[7]["value"] is not None  # plain photos for a pair without explanation
    why = cb.on_why("baseline", "Arla-Standard-Milk_0001", "Arla-Standard-Milk_0002")
    assert why[1]["value"] is not None and list(why[3].columns)[:2] == ["rank", "word"] and len(why[3]) == 3
    assert len(why) == 8 and "No runner-up" in why[4] and why[5]["visible"] is False
    alpro = cb.on_match_query("baseline", "Alpro-Fresh-Soy-Milk_0000")
    assert "Runner-up" in alpro[-4] and alpro[-3]["value"] is not None and alpro[-2]["value"] is not None and len(alpro[-1]) >= 1
    other = cb.on_match_class("variant", "Oatly-Oat-Milk")  # no matching results: the store's matching run is shown
    assert other[0]["value"] == "Oatly-Oat-Milk_0004" and "Run **variant** holds no matching results; showing **baseline**" in other[1]

    class Evt:
        index = 0

    assert cb.pick_match("baseline", "Arla-Standard-Milk_0001", Evt())["value"] == "Arla-Standard-Milk_0002"
    for bad in [cb.on_match_class("nope", "x"), cb.on_match_query("baseline", "missing-id"),
                cb.on_why("baseline", "missing-id", "x"), cb.on_match_query(None, None)]:
        assert isinstance(bad, tuple)
    for bad in [cb.on_class("nope", "x"), cb.on_class(None, None), cb.on_sample("baseline", "missing-id"),
                cb.on_global("baseline", "Nope"), cb.on_compare("baseline", None, "x", None),
                cb.on_quality("nope", None), cb.on_gallery(None, None, None, None)]:
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
            cb.on_quality(run, c)
            for order in ("stability, best first", "faithfulness, worst first"):
                cb.on_gallery(run, c, order, "flagged only")
            cb.on_match_class(run, c)
            for q in ex.match_choices(run, c):
                cb.on_match_query(run, q.query_id)
                for m in ex.match_list(run, q.query_id).candidates:
                    cb.on_why(run, q.query_id, m.gallery_id)
    assert ex.match_choices("baseline", "Oatly-Oat-Milk")  # the matching views were visited


def test_explorer_opens_on_the_richest_run_and_class(ex, store_path, tmp_path):
    runs = ex.run_names()
    counts = {r: ex.store.summary(r).n_explanations for r in runs}
    assert ex.richest_run() == max(runs, key=lambda r: (counts[r], ex.store.summary(r).n_global_features, runs.index(r)))
    run = ex.richest_run()
    labels = {p.sample_id: p.label for p in ex.store.get_predictions(run)}
    per_class: dict[str, int] = {}
    for sid in {s.sample_id for s in ex.store.explanation_summaries(run)}:
        per_class[labels[sid]] = per_class.get(labels[sid], 0) + 1  # explained photos of each class
    assert per_class[ex.richest_class(run)] == max(per_class.values())
    # a newer, empty run does not steal the first screen
    with Store.open(store_path) as s:
        s.add_run("zz-empty-newest", model="none", classes=["a"], if_exists="replace")
        try:
            assert Explorer(s).richest_run() == run and Explorer(s).richest_class("zz-empty-newest") == "a"
        finally:
            s.delete_run("zz-empty-newest")


def test_quality_tab_shows_an_amortised_runs_agreement_with_lime(ex):
    from prodlens.app.ui import Callbacks
    from prodlens.explain.amortised import VerifyReport

    photos = [{"sample_id": "a", "chosen": "lowest-confidence", "top10_overlap": 7, "spearman": 0.61, "sign_top10": 0.9},
              {"sample_id": "b", "chosen": "random", "top10_overlap": 9, "spearman": 0.83, "sign_top10": 1.0}]
    store = Store.open(":memory:")
    store.add_run("amortised", config={"amortised_verify": VerifyReport(0.1, photos).to_dict()})
    store.add_run("plain")
    mine = Explorer(store)
    v = mine.quality_view("amortised")
    assert v.verify.startswith("**Amortised explanations checked against LIME** on 2 photos (10% of the run")
    assert "top-10 overlap **8.0 of 10**, Spearman **0.72**" in v.verify and "worst a (Spearman 0.61)" in v.verify
    assert mine.quality_view("plain").verify == "" and ex.quality_view("baseline").verify == ""
    note = Callbacks(mine).on_quality("amortised", None)[0]
    assert "No explanations in this run" in note and "checked against LIME" in note
