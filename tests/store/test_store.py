"""The results store, against SQLite (in memory and file) and, when
``PRODLENS_TEST_PG_URL`` is set, a real PostgreSQL server (``.ci/postgres.sh`` starts one);
the ``store`` and ``pg_url`` fixtures are in ``conftest.py``."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, text

from prodlens.data.types import OcrToken, ProductSample
from prodlens.explain.explanation import Explanation
from prodlens.store import (
    SCHEMA_VERSION,
    DeletionResult,
    GlobalFeatureRecord,
    MatchResult,
    Prediction,
    RunExistsError,
    RunNotFoundError,
    SampleNotFoundError,
    SchemaVersionError,
    Store,
    StoreNotFoundError,
    export_run,
    schema,
    top_k,
)
from prodlens.store.codec import decode_array, encode_array


def _sample(i: int, label: str = "Oatly-Oat-Milk", tokens=True) -> ProductSample:
    toks = (OcrToken("OATLY", (10.5, 20.25, 80.125, 40.0), 0.987654321),
            OcrToken("iKAFFE", (1 / 3, 2 / 7, 50.0, 60.0), 0.5, ((1 / 3, 2 / 7), (50.0, 2 / 7), (50.0, 60.0), (1 / 3, 60.0))))
    return ProductSample(f"s{i:03d}", Path(f"images/s{i:03d}.jpg"), label, "test", toks if tokens else None)


def _explanation(sample_id="s000", target=0, target_name="Oatly-Oat-Milk", seed=0, config=None, **kw) -> Explanation:
    rng = np.random.default_rng(seed)
    segments = (np.arange(64 * 48).reshape(64, 48) // 300).astype(np.int64)
    n_sp = int(segments.max()) + 1
    tokens = (OcrToken("OATLY", (1.5, 2.25, 30.0, 9.0), 0.91234567), OcrToken("MJÖLK", (0.1, 0.2, 0.3, 0.4)))
    weights = rng.normal(size=n_sp + len(tokens)) / 7
    return Explanation(sample_id, target, target_name, weights, 0.123456789, 0.87654321, 1 / 3, segments, tokens,
                       n_sp, seed, 1000, config if config is not None else {"kernel_width": 0.25, "segmenter": "slic"}, **kw)


def _assert_same(a: Explanation, b: Explanation) -> None:
    for f in dataclasses.fields(Explanation):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, np.ndarray):
            assert vb.dtype == va.dtype and vb.shape == va.shape, f.name
            assert np.array_equal(va, vb), f.name
        else:
            assert va == vb, f.name


# ---------------------------------------------------------------- opening and schema
def test_new_store_is_migrated_and_reopening_applies_nothing(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store.open(path) as s:
        assert s.schema_version == SCHEMA_VERSION == 4
        assert s.journal_mode == "wal"
    with Store.open(path) as s:
        with s.engine.connect() as c:
            rows = c.execute(text("SELECT version, name FROM schema_migrations")).all()
    assert rows == [(1, "initial tables"), (2, "match queries and explanations"),
                    (3, "explanation quality scores and sanity checks"), (4, "match explanation curves")]


def test_open_without_create_refuses_a_missing_store(tmp_path):
    with pytest.raises(StoreNotFoundError, match=r"no results store at .*nope\.sqlite; create one with `prodlens db init"):
        Store.open(tmp_path / "nope.sqlite", create=False)
    assert not (tmp_path / "nope.sqlite").exists()
    with pytest.raises(StoreNotFoundError, match=r"nope2\.sqlite"):  # the URL form, too, leaves no empty file
        Store.open(f"sqlite:///{tmp_path / 'nope2.sqlite'}", create=False)
    assert not (tmp_path / "nope2.sqlite").exists()


def test_store_written_by_a_newer_prodlens_is_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    with Store.open(path) as s, s.engine.begin() as c:
        c.execute(insert(schema.schema_migrations).values(version=99, name="future", applied_at="2099"))
    with pytest.raises(SchemaVersionError, match="schema is version 99 but this prodlens knows up to 4"):
        Store.open(path)


def test_sqlite_url_and_memory_aliases(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'u.sqlite'}") as s:
        assert s.root == tmp_path and s.dialect == "sqlite"
    with Store.open("sqlite://") as s:
        assert s.journal_mode == "memory"


def test_unsupported_url_is_named():
    from prodlens.store import StoreError

    with pytest.raises(StoreError, match="unsupported database URL 'mysql://u:\\*\\*\\*@h/db'"):
        Store.open("mysql://u:pw@h/db")


def test_a_location_is_parsed_once_into_a_typed_value(tmp_path):
    from prodlens.store.backends import BACKENDS, backend_for
    from prodlens.store.location import StoreLocation

    f = StoreLocation.parse(tmp_path / "a.sqlite")
    assert (f.backend, f.file, f.memory, f.root) == ("sqlite", tmp_path / "a.sqlite", False, tmp_path)
    assert StoreLocation.parse(f"sqlite:///{tmp_path / 'a.sqlite'}") == f
    assert all(StoreLocation.parse(m).memory for m in (":memory:", "sqlite://", "sqlite:///:memory:"))
    pg = StoreLocation.parse("postgres://u:pw@h/db")
    assert (pg.backend, pg.file, pg.where) == ("postgresql", None, "postgresql+psycopg://u:***@h/db")
    assert set(BACKENDS) == {"sqlite", "postgresql"} and backend_for(pg) is BACKENDS["postgresql"]
    with Store.open(f) as s:  # a parsed location opens as the string does
        assert s.location == f and s.where == str(tmp_path / "a.sqlite")


def test_store_methods_are_its_table_modules_methods(store):
    run = store.add_run("r", model="concat")
    assert store.runs.get_run("r") == run and store.get_run.__doc__ == store.runs.get_run.__doc__
    assert Store.add_run.__doc__.startswith("Record a run")
    with pytest.raises(ValueError, match="on_conflict must be 'replace' or 'ignore', got 'keep'"):
        store.add_samples([ProductSample("s", Path("s.jpg"), "A", "val")], on_conflict="keep")


def test_postgres_open_without_create_refuses_empty_database(pg_url):
    with pytest.raises(StoreNotFoundError, match="no results store at postgresql"):
        Store.open(pg_url, create=False)


# ---------------------------------------------------------------- runs
def test_runs_add_reuse_replace_and_lookup(store):
    r = store.add_run("concat-effnet", model="concat", checkpoint="ckpt/concat.pt", dataset="data/grocery",
                      classes=["A", "B"], config={"lr": 1e-3, "layers": [1, 2]})
    assert (r.id, r.name, r.model, r.classes) == (1, "concat-effnet", "concat", ("A", "B"))
    assert r.config == {"lr": 1e-3, "layers": [1, 2]}
    assert "numpy" in r.versions and r.created_at is not None
    with pytest.raises(RunExistsError, match="a run named 'concat-effnet' exists .* if_exists='reuse'"):
        store.add_run("concat-effnet")
    store.add_samples([_sample(0)])
    store.put_explanation(r, _explanation())
    assert store.add_run("concat-effnet", model="concat2", if_exists="reuse").id == r.id
    assert store.summary(r).n_explanations == 1
    assert store.add_run("concat-effnet", if_exists="replace").id == r.id
    assert store.summary(r).n_explanations == 0
    assert store.get_run("concat-effnet") == store.get_run(r.id)
    with pytest.raises(RunNotFoundError, match="no run named 'concat-efnet' .*did you mean 'concat-effnet'"):
        store.get_run("concat-efnet")
    with pytest.raises(RunNotFoundError, match="no run with id 42"):
        store.get_run(42)
    store.add_run("second")
    assert [x.name for x in store.list_runs()] == ["concat-effnet", "second"]
    store.delete_run("second")
    assert [x.name for x in store.list_runs()] == ["concat-effnet"]


# ---------------------------------------------------------------- samples
def test_samples_round_trip_exactly_and_upsert(store):
    samples = [_sample(i) for i in range(3)] + [_sample(9, label=None, tokens=False)]
    assert store.add_samples(samples) == 4
    got = store.get_samples()
    assert got == samples  # frozen dataclass equality: tokens, boxes, quads, scores exact
    assert store.get_sample("s009").ocr_tokens is None
    store.add_samples([dataclasses.replace(samples[0], label="B")])
    assert store.get_sample("s000").label == "B"
    assert store.count_samples() == 4
    assert [s.id for s in store.get_samples(label="Oatly-Oat-Milk")] == ["s001", "s002"]
    assert [s.id for s in store.get_samples(["s002", "s009", "zzz"])] == ["s002", "s009"]
    with pytest.raises(SampleNotFoundError, match="no sample 'zzz'"):
        store.get_sample("zzz")
    assert store.image_path(samples[0]) == store.root / "images/s000.jpg"


# ---------------------------------------------------------------- explanations
def test_explanation_round_trips_every_field_exactly(store):
    run = store.add_run("r")
    store.add_samples([_sample(0)])
    e = _explanation()
    extra = {f.name for f in dataclasses.fields(Explanation)} - {f.name for f in dataclasses.fields(e)}
    assert not extra
    store.put_explanation(run, e)
    (back,) = store.get_explanations(run)
    _assert_same(e, back)
    _assert_same(e, store.get_explanation(run, "s000", "Oatly-Oat-Milk"))
    assert store.get_explanation(run, "s000", "other") is None
    seg = store.get_segments(run, "s000")
    assert seg.dtype == np.int64 and np.array_equal(seg, e.segments)


def test_fields_added_to_explanation_later_are_kept(store):
    """Fields without a column (e.g. surrogate_prediction) go to the JSON ``extra`` column."""
    names = {f.name for f in dataclasses.fields(Explanation)}
    run = store.add_run("r")
    store.add_samples([_sample(0)])
    kw = {"surrogate_prediction": 0.3141592653589793} if "surrogate_prediction" in names else {}
    e = _explanation(**kw)
    store.put_explanation(run, e)
    _assert_same(e, store.get_explanations(run)[0])


def test_rewriting_the_same_key_replaces_or_ignores_never_duplicates(store):
    run = store.add_run("r")
    store.add_samples([_sample(0), _sample(1)])
    e = _explanation()
    i1 = store.put_explanation(run, e)
    i2 = store.put_explanation(run, dataclasses.replace(e, intercept=9.0))
    assert i1 == i2
    assert store.summary(run).n_explanations == 1
    assert store.get_explanations(run)[0].intercept == 9.0
    store.put_explanation(run, dataclasses.replace(e, intercept=7.0), on_conflict="ignore")
    assert store.get_explanations(run)[0].intercept == 9.0
    # bulk writes are idempotent too
    batch = [_explanation("s000", seed=1), _explanation("s001", seed=1), _explanation("s001", 1, "B", seed=1)]
    store.put_explanations(run, batch)
    store.put_explanations(run, batch)
    assert store.summary(run).n_explanations == 4
    # other settings (config, seed or n_samples) are another key; reads return the latest
    store.put_explanation(run, _explanation(config={"kernel_width": 0.5}))
    assert store.summary(run).n_explanations == 5
    assert len(store.get_explanations(run, sample_id="s000")) == 1
    assert len(store.get_explanations(run, sample_id="s000", latest_only=False)) == 3
    assert store.get_explanation(run, "s000", "Oatly-Oat-Milk").config == {"kernel_width": 0.5}
    with pytest.raises(ValueError, match="on_conflict must be 'replace' or 'ignore', got 'merge'"):
        store.put_explanation(run, e, on_conflict="merge")


def test_explanation_filters_and_summaries(store):
    run = store.add_run("r")
    store.add_samples([_sample(0, "A"), _sample(1, "A"), _sample(2, "B")])
    store.put_explanations(run, [
        _explanation("s000", 0, "A"), _explanation("s001", 0, "A"), _explanation("s001", 1, "B"), _explanation("s002", 1, "B"),
    ])
    assert [(e.sample_id, e.target_name) for e in store.get_explanations(run, class_name="B")] == [("s001", "B"), ("s002", "B")]
    by_label = store.get_explanations(run, label="A")
    assert [(e.sample_id, e.target_name) for e in by_label] == [("s000", "A"), ("s001", "A"), ("s001", "B")]
    assert [e.target for e in store.get_explanations(run, sample_id="s001", target=1)] == [1]
    sums = store.explanation_summaries(run, class_name="A")
    assert [s.sample_id for s in sums] == ["s000", "s001"]
    e0 = _explanation("s000", 0, "A")
    assert sums[0].image_share == pytest.approx(e0.image_share) and sums[0].n_features == e0.n_features
    assert store.class_names(run) == ["A", "B"]


def test_explanation_of_unknown_sample_or_bad_shape_is_refused(store):
    run = store.add_run("r")
    with pytest.raises(SampleNotFoundError, match=r"sample\(s\) 's000' not in the store; add them first"):
        store.put_explanation(run, _explanation())
    store.add_samples([_sample(0)])
    bad = dataclasses.replace(_explanation(), weights=np.zeros(3))
    with pytest.raises(ValueError, match="weights has shape \\(3,\\) but n_superpixels \\+ len\\(tokens\\)"):
        store.put_explanation(run, bad)
    with pytest.raises(RunNotFoundError):
        store.put_explanation("nope", _explanation())


# ---------------------------------------------------------------- predictions, global, deletion, matching
def test_predictions_fill_in_correct_and_filter(store):
    run = store.add_run("r", classes=["A", "B", "C"])
    store.add_samples([_sample(0, "A"), _sample(1, "A"), _sample(2, "B"), _sample(3, None)])
    probs = [0.7, 0.2, 0.1]
    store.put_predictions(run, [
        Prediction("s000", "A", top_k(probs, ["A", "B", "C"]), probabilities=tuple(probs)),
        Prediction("s001", "B", [("B", 0.6), ("A", 0.4)]),
        Prediction("s002", "B", [("B", 0.9)]),
        Prediction("s003", "C", [("C", 0.5)]),
    ])
    store.put_predictions(run, [Prediction("s002", "B", [("B", 0.95)])])  # replace, no duplicate
    ps = store.get_predictions(run)
    assert [(p.sample_id, p.label, p.predicted, p.correct) for p in ps] == [
        ("s000", "A", "A", True), ("s001", "A", "B", False), ("s002", "B", "B", True), ("s003", None, "C", None)]
    assert ps[0].top_k == [("A", 0.7), ("B", 0.2), ("C", 0.1)] and ps[0].probabilities == (0.7, 0.2, 0.1)
    assert ps[2].confidence == 0.95
    assert [p.sample_id for p in store.get_predictions(run, label="A", wrong_only=True)] == ["s001"]
    assert [p.sample_id for p in store.get_predictions(run, predicted="B")] == ["s001", "s002"]
    assert [p.sample_id for p in store.get_predictions(run, sample_ids=["s003", "s000"])] == ["s000", "s003"]
    summ = store.summary(run)
    assert (summ.n_predictions, summ.n_correct, summ.accuracy) == (4, 2, 0.5)


def test_global_features_replace_per_class_and_modality(store):
    run = store.add_run("r")
    img = [GlobalFeatureRecord("A", "image", k, 1.0 / (k + 1), {
        "representative": {"sample_id": "s000", "superpixel": k}, "members": [{"sample_id": "s000", "superpixel": k}]})
        for k in range(3)]
    txt = [GlobalFeatureRecord("A", "text", 0, 0.9, {"text": "OATLY", "variants": {"OATLY": 3, "0ATLY": 1}, "count": 4})]
    other = [GlobalFeatureRecord("B", "image", 0, 0.5, {}), GlobalFeatureRecord("A", "image", 0, 0.3, {}, method="normlime")]
    store.put_global_features(run, img + txt + other)
    store.put_global_features(run, img[:2])  # a re-run found fewer clusters for A/image/cluster
    got = store.get_global_features(run, class_name="A")
    assert [(g.modality, g.method, g.rank) for g in got] == [("image", "cluster", 0), ("image", "cluster", 1),
                                                             ("image", "normlime", 0), ("text", "cluster", 0)]
    assert got[-1].payload["variants"] == {"OATLY": 3, "0ATLY": 1}
    assert len(store.get_global_features(run, modality="image", method="cluster")) == 3
    with pytest.raises(ValueError, match="modality must be one of"):
        GlobalFeatureRecord("A", "audio", 0, 1.0)


def test_deletion_and_match_results(store):
    run = store.add_run("r")
    d = DeletionResult("concat", "image", [0, 1, 2, 3], [0.9, 0.8, 0.6, 0.4], ["s000", "s001"], {"order": "normlime"})
    store.put_deletion_result(run, d)
    store.put_deletion_result(run, dataclasses.replace(d, accuracies=[0.9, 0.7, 0.5, 0.3]))
    store.put_deletion_result(run, dataclasses.replace(d, modality="text"))
    got = store.get_deletion_results(run)
    assert [(x.modality, x.accuracies[-1]) for x in got] == [("image", 0.3), ("text", 0.4)]
    assert got[0].sample_ids == ["s000", "s001"] and got[0].config == {"order": "normlime"}
    with pytest.raises(ValueError, match="4 steps but 2 accuracies"):
        store.put_deletion_result(run, dataclasses.replace(d, accuracies=[1, 2]))
    store.put_match_results(run, [MatchResult("retrieval", "s000", {"neighbours": ["s001"]})] * 2)
    store.put_match_results(run, [MatchResult("retrieval", "s000", {"neighbours": ["s002"]})])
    assert store.get_match_results(run) == [MatchResult("retrieval", "s000", {"neighbours": ["s002"]})]
    assert store.summary(run).n_match_results == 1


# ---------------------------------------------------------------- export
def test_export_json_and_csv(store, tmp_path):
    run = store.add_run("r", classes=["A", "B"])
    store.add_samples([_sample(0, "A")])
    store.put_predictions(run, [Prediction("s000", "A", [("A", 0.8), ("B", 0.2)])])
    e = _explanation("s000", 0, "A")
    store.put_explanation(run, e)
    store.put_global_features(run, [GlobalFeatureRecord("A", "text", 0, 0.9, {"text": "OATLY"})])
    store.put_deletion_result(run, DeletionResult("concat", "image", [0, 1], [0.9, 0.5]))
    (jpath,) = export_run(store, "r", tmp_path / "out.json", "json")
    data = json.loads(jpath.read_text())
    assert data["summary"]["explanations"] == 1 and data["run"]["classes"] == ["A", "B"]
    assert data["explanations"][0]["weights"] == e.weights.tolist()
    assert data["explanations"][0]["tokens"][0]["box"] == [1.5, 2.25, 30.0, 9.0]
    assert "segments" not in data["explanations"][0]
    files = export_run(store, run, tmp_path / "csv", "csv")
    assert [f.name for f in files] == ["predictions.csv", "explanations.csv", "features.csv",
                                       "global_features.csv", "deletion_results.csv", "match_queries.csv"]
    lines = (tmp_path / "csv" / "features.csv").read_text().splitlines()
    assert len(lines) == 1 + e.n_features and lines[-1].startswith("s000,A,")
    assert "MJÖLK" in lines[-1]


# ---------------------------------------------------------------- codec and concurrency
@pytest.mark.parametrize("arr", [
    np.arange(20, dtype=np.int64).reshape(4, 5),
    np.array([[-3, 70000]], dtype=np.int32),
    np.random.default_rng(0).normal(size=7),
    np.zeros((0, 3), dtype=np.int16),
    np.array([True, False]),
])
def test_array_blobs_restore_dtype_shape_and_values(arr):
    back = decode_array(encode_array(arr))
    assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)


def test_segment_maps_are_stored_compactly():
    seg = (np.arange(348 * 348).reshape(348, 348) // 1500).astype(np.int64)
    assert len(encode_array(seg)) < seg.nbytes / 50


def test_wal_lets_a_reader_read_while_a_writer_holds_a_transaction(tmp_path):
    path = tmp_path / "r.sqlite"
    writer = Store.open(path)
    run = writer.add_run("r")
    writer.add_samples([_sample(0), _sample(1)])
    writer.put_explanation(run, _explanation("s000"))
    reader = Store.open(path, create=False)
    started, release = threading.Event(), threading.Event()

    def write() -> None:
        with writer.engine.begin() as conn:
            conn.execute(text("UPDATE samples SET split='val' WHERE id='s001'"))
            started.set()
            release.wait(10)

    t = threading.Thread(target=write)
    t.start()
    try:
        assert started.wait(10)
        assert [e.sample_id for e in reader.get_explanations("r")] == ["s000"]  # not blocked
        assert reader.get_sample("s001").split == "test"  # uncommitted write not visible
    finally:
        release.set()
        t.join()
    assert reader.get_sample("s001").split == "val"
    reader.close()
    writer.close()
