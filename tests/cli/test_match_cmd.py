"""`prodlens match`, `match-fit` and `match-explain` on a tiny slice of the bundled sample."""

from __future__ import annotations

import json

import pytest

from prodlens.cli import main
from prodlens.data.manifest import Dataset, write_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, sample_ds):
    """Two classes, three train and one val photo each, written as a dataset folder."""
    keep = ["Oatly-Oat-Milk", "Arla-Standard-Milk"]
    ds = sample_ds.with_classes(keep)
    samples = []
    for c in keep:
        samples += [s for s in ds.samples if s.label == c and s.split == "train"][:3]
        samples += [s for s in ds.samples if s.label == c and s.split == "val"][:1]
    folder = tmp_path_factory.mktemp("tiny")
    write_dataset(Dataset(samples, ds.classes, ds.root), folder)
    return folder, tmp_path_factory.mktemp("features")


@pytest.mark.slow
def test_fit_match_and_explain_from_the_command_line(tiny, tmp_path, capsys):
    folder, cache = tiny
    common = ["--kind", "image", "--feature-cache", str(cache), "--no-progress"]
    emb = tmp_path / "emb.pt"
    assert main(["match-fit", str(folder), "--out", str(emb), "--epochs", "3", "--out-dim", "8", *common]) == 0
    db = tmp_path / "results.sqlite"
    assert main(["match", str(folder), "--embedding", str(emb), "-k", "2", "--json", str(tmp_path / "r.json"),
                 "--db", str(db), "--run", "m", *common]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "top-2" in out and "stored 2 queries' matches in run 'm'" in out
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["n_queries"] == 2 and res["n_gallery"] == 6 and res["config"]["method"] == "normsoftmax"
    png = tmp_path / "why.png"
    assert main(["match-explain", str(folder), "val/Oatly-Oat-Milk_001", "--n-masks", "8", "--no-deletion",
                 "--out", str(png), "--json", str(tmp_path / "e.json"), "--no-maps", "--db", str(db), "--run", "m",
                 *common]) == 0
    assert png.stat().st_size > 0
    e = json.loads((tmp_path / "e.json").read_text())
    assert e["query_id"] == "val/Oatly-Oat-Milk_001" and "saliency" not in e
    from prodlens.store import Store

    with Store.open(db, create=False) as store:  # what the app reads
        queries = store.get_match_queries("m")
        assert [q.query_id for q in queries] == ["val/Arla-Standard-Milk_001", "val/Oatly-Oat-Milk_001"]
        assert all(len(q.gallery_ids) == 2 and q.correct is not None for q in queries)
        stored = store.get_match_explanations("m")
        assert [(x.query_id, x.match_id) for x in stored] == [(e["query_id"], e["match_id"])]
        assert stored[0].saliency is not None and stored[0].similarity == pytest.approx(e["similarity"])


def test_unknown_ids_exit_with_a_friendly_message(tiny, capsys):
    folder, cache = tiny
    code = main(["match-explain", str(folder), "val/Oatly-Oat-Milk_01", "--feature-cache", str(cache), "--no-progress"])
    assert code == 2
    assert "did you mean 'val/Oatly-Oat-Milk_001'" in capsys.readouterr().err
