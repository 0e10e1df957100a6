"""Top-k retrieval accuracy: the maths, per-class results, serialisation."""

from __future__ import annotations

import numpy as np
import pytest

from prodlens.match.retrieval import RetrievalResult, evaluate_retrieval, hits_at_k, topk_accuracy


def test_topk_counts_a_query_correct_when_any_of_its_k_neighbours_has_its_class():
    nl = np.array([["b", "a", "a"], ["a", "b", "c"], ["c", "c", "c"], ["c", "b", "a"]])
    ql = ["a", "a", "a", "a"]
    assert topk_accuracy(nl, ql, 1) == 0.25
    assert topk_accuracy(nl, ql, 2) == 0.5
    assert topk_accuracy(nl, ql, 3) == 0.75
    hits = hits_at_k(nl, ql, (1, 3))
    assert hits[1].tolist() == [False, True, False, False]


def test_evaluate_retrieval_on_hand_built_embeddings():
    # gallery: two "a" items along x, one "b" along y; queries lean towards their class
    g = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    gl = ["a", "a", "b"]
    q = np.array([[1.0, 0.05], [0.2, 1.0], [1.0, 0.6]])
    ql = ["a", "b", "b"]
    r = evaluate_retrieval(q, ql, g, gl, ks=(1, 2, 3), keep_neighbors=True, query_ids=["q0", "q1", "q2"])
    assert r.top1 == pytest.approx(2 / 3)
    assert r.top(2) == pytest.approx(2 / 3)  # q2's two nearest are both "a"
    assert r.top(3) == 1.0
    assert r.per_class["b"].accuracy[1] == 0.5 and r.per_class["b"].confused_with == "a"
    assert r.per_class["a"].n_queries == 1 and r.per_class["a"].confused_with is None
    assert r.neighbors[0].tolist() == [0, 1, 2]
    assert r.mean_class_accuracy(1) == pytest.approx(0.75)


def test_one_item_per_class_gallery_is_nearest_prototype_classification():
    rng = np.random.default_rng(0)
    protos = np.eye(4)
    y = rng.integers(0, 4, 50)
    q = protos[y] + 0.1 * rng.normal(size=(50, 4))
    r = evaluate_retrieval(q, y.astype(str), protos, np.arange(4).astype(str), ks=(1, 4))
    assert r.top1 == 1.0 and r.top(4) == 1.0


def test_result_round_trip_with_neighbours():
    g = np.eye(3)
    r = evaluate_retrieval(g, ["a", "b", "c"], g, ["a", "b", "c"], ks=(1, 2), keep_neighbors=True, config={"kind": "image"})
    back = RetrievalResult.from_dict(r.to_dict(include_neighbors=True))
    assert back.accuracy == r.accuracy and back.per_class == r.per_class and back.config == {"kind": "image"}
    assert np.array_equal(back.neighbors, r.neighbors) and np.allclose(back.scores, r.scores)
    with pytest.raises(KeyError, match="top-5 was not computed"):
        r.top5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ks": (1, 9)}, "max\\(ks\\)=9 exceeds the gallery size 3"),
        ({"ks": (0,)}, "ks must be positive"),
    ],
)
def test_bad_parameters(kwargs, match):
    g = np.eye(3)
    with pytest.raises(ValueError, match=match):
        evaluate_retrieval(g, ["a", "b", "c"], g, ["a", "b", "c"], **kwargs)


def test_label_count_mismatch_is_reported():
    with pytest.raises(ValueError, match="gallery_labels has 2 entries for 3 gallery embeddings"):
        evaluate_retrieval(np.eye(3), list("abc"), np.eye(3), ["a", "b"])
