"""Exact and approximate nearest-neighbour indexes behind one interface."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from prodlens.errors import UnknownNameError
from prodlens.match.errors import MissingDependencyError
from prodlens.match.index import ExactIndex, FaissIndex, l2_normalize, make_index


def _data(n=300, q=40, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(q, d)).astype(np.float32)


def test_exact_search_matches_brute_force():
    g, q = _data()
    res = ExactIndex().add(g).search(q, 7)
    sims = l2_normalize(q) @ l2_normalize(g).T
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :7]
    assert np.array_equal(res.ids, expected)
    assert np.allclose(res.scores, np.take_along_axis(sims, expected, 1), atol=1e-6)
    assert np.all(np.diff(res.scores, axis=1) <= 1e-7)


def test_chunking_and_incremental_add_do_not_change_results():
    g, q = _data()
    a = ExactIndex().add(g).search(q, 5)
    idx = ExactIndex(chunk_size=3)
    idx.add(g[:100]).add(g[100:])
    b = idx.search(q, 5)
    assert np.array_equal(a.ids, b.ids) and len(idx) == 300


def test_custom_ids_and_ties_broken_by_insertion_order():
    idx = ExactIndex().add(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), ids=[7, 3, 9])
    res = idx.search(np.array([[1.0, 0.0]]), 3)
    assert res.ids.tolist() == [[7, 3, 9]]


def test_inner_product_metric_keeps_norms():
    idx = ExactIndex(metric="ip").add(np.array([[1.0, 0.0], [3.0, 0.0]]))
    res = idx.search(np.array([[1.0, 0.0]]), 2)
    assert res.ids.tolist() == [[1, 0]] and res.scores.tolist() == [[3.0, 1.0]]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda i: i.search(np.ones((1, 2)), 0), "k must be an int >= 1"),
        (lambda i: i.search(np.ones((1, 2)), 4), "k=4 is larger than the 3 vectors"),
        (lambda i: i.search(np.ones((1, 5)), 1), "dimension 5, the index holds vectors of dimension 2"),
        (lambda i: i.search(np.array([[np.nan, 1.0]]), 1), "NaN or infinite"),
        (lambda i: i.add(np.ones((2, 2)), ids=[1]), "ids has 1 entries for 2 vectors"),
    ],
)
def test_bad_calls_name_the_parameter(call, match):
    idx = ExactIndex().add(np.eye(3)[:, :2])
    with pytest.raises(ValueError, match=match):
        call(idx)


def test_empty_index_and_bad_construction():
    with pytest.raises(ValueError, match="the index is empty"):
        ExactIndex().search(np.ones((1, 2)), 1)
    with pytest.raises(ValueError, match="metric must be one of"):
        ExactIndex(metric="l2")
    with pytest.raises(UnknownNameError, match="did you mean 'hnsw'"):
        make_index("hsnw")


@pytest.mark.parametrize("name, params", [("flat", {}), ("hnsw", {"ef_search": 400}), ("ivf", {"nlist": 8, "nprobe": 8})])
def test_approximate_index_agrees_with_exact_on_small_data(name, params):
    pytest.importorskip("faiss")
    g, q = _data()
    exact = make_index("exact").add(g, ids=np.arange(1000, 1300)).search(q, 5)
    approx = make_index(name, **params).add(g, ids=np.arange(1000, 1300)).search(q, 5)
    assert np.array_equal(exact.ids, approx.ids)
    assert np.allclose(exact.scores, approx.scores, atol=1e-5)


def test_product_quantised_index_is_small_and_mostly_right():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    g = rng.normal(size=(2000, 32)).astype(np.float32)
    q = g[:50] + 0.05 * rng.normal(size=(50, 32)).astype(np.float32)
    pq = make_index("ivfpq", nlist=8, nprobe=8, pq_m=8).add(g)
    exact = make_index("exact").add(g)
    assert (pq.search(q, 1).ids[:, 0] == np.arange(50)).mean() >= 0.8  # 8 bytes per vector instead of 128
    assert pq.nbytes < exact.nbytes / 3 and exact.nbytes == g.nbytes + 2000 * 8  # codebooks included
    with pytest.raises(ValueError, match="pq_m=5 must divide the vector size 32"):
        make_index("ivfpq", nlist=8, pq_m=5).add(g)


def test_faiss_errors():
    pytest.importorskip("faiss")
    with pytest.raises(ValueError, match="nlist"):
        FaissIndex("ivf", nlist=50).add(np.eye(4))
    with pytest.raises(ValueError, match="method must be one of"):
        FaissIndex("lsh")
    with pytest.raises(ValueError, match="M must be an int >= 1"):
        FaissIndex("hnsw", M=0)


def test_missing_faiss_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "faiss":
            raise ImportError("no faiss")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependencyError, match=r"pip install faiss-cpu==1\.15\.1"):
        make_index("hnsw")
