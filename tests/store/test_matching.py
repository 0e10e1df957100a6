"""Matching results in the store (retrieval queries, match explanations) on SQLite in
memory, a SQLite file and, when ``PRODLENS_TEST_PG_URL`` is set, PostgreSQL (the
``store`` fixture of ``conftest.py``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from prodlens.data.types import OcrToken, ProductSample
from prodlens.match import MatchExplainer, MatchExplanation, evaluate_retrieval
from prodlens.store import (
    MatchQuery,
    SampleNotFoundError,
    Store,
    export_run,
    save_match_explanation,
    save_retrieval,
)
from prodlens.store.codec import decode_map, encode_map

LABELS = {"q1": "Oatly-Oat-Milk", "q2": "Arla-Milk", "g1": "Arla-Milk", "g2": "Oatly-Oat-Milk", "g3": "Oatly-Oat-Milk"}
TOKENS = (OcrToken("OATLY", (1 / 3, 2.25, 20.125, 9.0), 0.987654321), OcrToken("MJÖLK", (2.0, 14.0, 26.0, 22.0), 0.5))


def _samples() -> list[ProductSample]:
    return [ProductSample(i, Path(f"images/{i}.jpg"), lab, "val" if i[0] == "q" else "train", TOKENS)
            for i, lab in LABELS.items()]


class ToyEmbedder:
    """Similarity from the top-left quarter of the photo and the word OATLY: known answers."""

    kind = "toy"

    def embed(self, images, token_lists):
        return np.array([[im[:16, :16].mean() / 255, float(any(t.text == "OATLY" for t in ts)), 0.3]
                         for im, ts in zip(images, token_lists, strict=True)])


def _explanation(query="q1", match="g2", match_saliency=True, seed=0) -> MatchExplanation:
    img = np.zeros((32, 32, 3), np.uint8)
    img[:16, :16] = 255
    ex = MatchExplainer(n_masks=40, grid=4, fill="black", resolution=None, match_saliency=match_saliency,
                        deletion_grid=4, deletion_steps=4, insertion=True, seed=seed, progress=False)
    return ex.explain(ToyEmbedder(), query_image=img, query_tokens=TOKENS, match_image=img, match_tokens=TOKENS,
                      query_id=query, match_id=match)


def _assert_same(a: MatchExplanation, b: MatchExplanation) -> None:
    for f in dataclasses.fields(MatchExplanation):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if f.name in ("saliency", "match_saliency"):
            assert (va is None) == (vb is None), f.name
            if va is not None:
                assert vb.shape == va.shape and vb.dtype == np.float32, f.name
                np.testing.assert_allclose(vb, va, atol=(va.max() - va.min()) / 131070 + 1e-6, err_msg=f.name)
        elif f.name in ("deletion", "word_deletion"):
            assert (va is None) == (vb is None), f.name
            if va is not None:
                assert va.to_dict() == vb.to_dict(), f.name
        elif f.name == "curves":
            assert {k: c.to_dict() for k, c in va.items()} == {k: c.to_dict() for k, c in vb.items()}, f.name
        else:
            assert va == vb, f.name


# ---------------------------------------------------------------- retrieval queries
def test_match_queries_round_trip_idempotently(store):
    store.add_samples(_samples())
    run = store.add_run("match", model="zero_shot/fused")
    cfg = {"kind": "fused", "gallery": "train", "text_weight": 0.2}
    queries = [MatchQuery("q1", ("g1", "g2"), (0.9, 1 / 3), config=cfg), MatchQuery("q2", ("g1", "g3"), (0.8, 0.7), config=cfg)]
    assert store.put_match_queries(run, queries) == 2
    store.put_match_queries(run, queries)  # the same key again: replaced, not added
    assert store.summary(run).n_match_queries == 2
    got = store.get_match_queries(run)
    assert [q.query_id for q in got] == ["q1", "q2"]
    q1 = got[0]
    assert q1.gallery_ids == ("g1", "g2") and q1.scores == (0.9, 1 / 3)  # floats exact
    assert q1.gallery_labels == ("Arla-Milk", "Oatly-Oat-Milk") and q1.label == "Oatly-Oat-Milk"
    assert (q1.correct, q1.hit_rank, q1.correct_at(2)) == (False, 2, True)
    assert got[1].correct is True and got[1].config == cfg
    assert [q.query_id for q in store.get_match_queries(run, label="Arla-Milk")] == ["q2"]

    # other settings add a row; reads give the latest per query unless asked for all
    store.put_match_queries(run, [MatchQuery("q1", ("g3",), (0.95,), config={**cfg, "kind": "image"})])
    assert store.get_match_queries(run, query_id="q1")[0].gallery_ids == ("g3",)
    assert len(store.get_match_queries(run, query_id="q1", latest_only=False)) == 2

    with pytest.raises(SampleNotFoundError, match=r"sample\(s\) 'nope' not in the store"):
        store.put_match_queries(run, [MatchQuery("q1", ("nope",), (0.5,))])
    with pytest.raises(ValueError, match="2 gallery ids but 1 scores"):
        MatchQuery("q1", ("g1", "g2"), (0.5,))
    store.add_run("match", if_exists="replace")  # starting over deletes the run's matching rows
    assert store.get_match_queries("match") == []


# ---------------------------------------------------------------- match explanations
def test_match_explanations_round_trip(store):
    store.add_samples(_samples())
    run = store.add_run("match")
    e = _explanation()
    assert e.words and e.deletion is not None and e.word_deletion is not None and e.match_saliency is not None
    assert e.curves  # insertion and the match photo's curves travel too (migration 4)
    assert store.put_match_explanations(run, [e, _explanation("q1", "g3", match_saliency=False)]) == 2
    store.put_match_explanations(run, [e])  # idempotent
    s = store.summary(run)
    assert s.n_match_explanations == 2
    back = store.get_match_explanation(run, "q1", "g2")
    _assert_same(e, back)
    oatly = next(w for w in back.words if w.word == "oatly")
    assert oatly.match.query_tokens[0].box == (1 / 3, 2.25, 20.125, 9.0)  # exact, unlike to_dict()
    assert back.deletion.auc == e.deletion.auc
    assert store.get_match_explanation(run, "q1", "g3").match_saliency is None
    assert store.get_match_explanation(run, "q2", "g2") is None
    assert store.match_explanation_pairs(run) == [("q1", "g2"), ("q1", "g3")]

    store.put_match_explanations(run, [_explanation(seed=1)])  # other settings: a second row, latest wins
    assert len(store.get_match_explanations(run, query_id="q1", match_id="g2", latest_only=False)) == 2
    assert store.get_match_explanation(run, "q1", "g2").seed == 1
    with pytest.raises(SampleNotFoundError):
        store.put_match_explanations(run, [_explanation("q1", "unknown")])


def test_saliency_maps_are_stored_compressed():
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.normal(size=(8, 8)), np.ones((44, 44))).astype(np.float32)  # a 352x352 blocky map
    blob = encode_map(smooth)
    assert len(blob) < smooth.nbytes / 20
    back = decode_map(blob)
    assert np.abs(back - smooth).max() <= np.ptp(smooth) / 131070 + 1e-6
    assert decode_map(encode_map(np.full((3, 4), 2.5))).tolist() == [[2.5] * 4] * 3
    with pytest.raises(ValueError, match="finite values"):
        encode_map(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="needs a 2-D map"):
        encode_map(np.zeros(4))


# ---------------------------------------------------------------- writing pipeline results
def test_save_retrieval_and_explanation_create_the_run_and_samples(tmp_path):
    samples = _samples()
    gallery = [s for s in samples if s.id.startswith("g")]
    queries = [s for s in samples if s.id.startswith("q")]
    g_emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 0.9]])
    q_emb = np.array([[0.2, 0.8], [0.9, 0.1]])
    res = evaluate_retrieval(q_emb, [s.label for s in queries], g_emb, [s.label for s in gallery], ks=(1, 2),
                             query_ids=[s.id for s in queries], keep_neighbors=True,
                             config={"method": "zero_shot", "kind": "image", "gallery_ids": [s.id for s in gallery]})
    with Store.open(tmp_path / "r.sqlite") as store:
        assert save_retrieval(store, "match-image", res, samples) == 2
        assert save_retrieval(store, "match-image", res, samples) == 2  # again: nothing added
        run = store.get_run("match-image")
        assert run.model == "zero_shot/image" and run.classes == ("Arla-Milk", "Oatly-Oat-Milk")
        got = store.get_match_queries(run)
        assert [q.correct for q in got] == [True, True] and got[0].gallery_ids == ("g3", "g2")
        assert "gallery_ids" not in got[0].config
        summary = store.get_match_results(run, kind="retrieval")
        assert len(summary) == 1 and summary[0].payload["accuracy"] == {"1": 1.0, "2": 1.0}

        by_id = {s.id: s for s in samples}
        e = _explanation()
        assert save_match_explanation(store, "match-image", e, by_id["q1"], by_id["g2"]) == 1
        assert store.summary(run).n_match_explanations == 1
        with pytest.raises(ValueError, match="the explanation is of 'q1' -> 'g2', but the samples given are 'q1' -> 'g3'"):
            save_match_explanation(store, run, e, by_id["q1"], by_id["g3"])
        with pytest.raises(ValueError, match="keep_neighbors=True"):
            save_retrieval(store, run, dataclasses.replace(res, neighbors=None), samples)

        data = json.loads(export_run(store, run, tmp_path / "out.json")[0].read_text())
        assert len(data["match_queries"]) == 2 and data["match_queries"][0]["hit_rank"] == 1
        assert data["match_explanations"][0]["words"] and "saliency" not in data["match_explanations"][0]  # no maps
        csv = export_run(store, run, tmp_path / "csv", "csv")[-1]
        assert csv.name == "match_queries.csv" and csv.read_text().count("\n") == 1 + 4
