"""`prodlens db ...`: thin commands over the store; domain errors exit with code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prodlens.cli import main
from prodlens.data.types import OcrToken, ProductSample
from prodlens.explain.explanation import Explanation
from prodlens.store import Prediction, Store


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "results.sqlite"
    with Store.open(path) as s:
        run = s.add_run("concat-effnet", model="concat", dataset="work/grocery", classes=["A", "B"], config={"lr": 0.001})
        s.add_samples([ProductSample("s1", Path("s1.jpg"), "A", "test"), ProductSample("s2", Path("s2.jpg"), "B", "test")])
        s.put_predictions(run, [Prediction("s1", "A", [("A", 0.9)]), Prediction("s2", "A", [("A", 0.6)])])
        s.put_explanation(run, Explanation("s1", 0, "A", np.array([0.4, -0.2, 0.3]), 0.0, 0.8, 0.9,
                                           np.array([[0, 1]]), (OcrToken("OATLY", (0, 0, 4, 2)),), 2))
        s.add_run("7")  # a run whose name is all digits
    return path


def test_init_creates_a_store(tmp_path, capsys):
    assert main(["db", "init", str(tmp_path / "new.sqlite")]) == 0
    assert "schema version 4" in capsys.readouterr().out
    assert (tmp_path / "new.sqlite").is_file()


def test_runs_lists_runs_with_accuracy(db, capsys):
    assert main(["db", "runs", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "name", "model", "dataset", "predictions", "accuracy", "explanations", "created"]
    assert out[2].split()[:7] == ["1", "concat-effnet", "concat", "work/grocery", "2", "0.500", "1"]
    assert main(["db", "runs", str(db), "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["concat-effnet", "7"]


def test_inspect_by_name_or_id(db, capsys):
    assert main(["db", "inspect", str(db), "concat-effnet"]) == 0
    out = capsys.readouterr().out
    assert "run 1: concat-effnet" in out and "predictions      2 (accuracy 0.500)" in out
    assert main(["db", "inspect", str(db), "1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["explanations"] == 1 and d["classes"] == ["A", "B"] and d["config"] == {"lr": 0.001}
    assert main(["db", "inspect", str(db), "7", "--json"]) == 0  # the name wins over the id
    assert json.loads(capsys.readouterr().out)["name"] == "7"


def test_export_json_and_csv(db, tmp_path, capsys):
    assert main(["db", "export", str(db), "concat-effnet", str(tmp_path / "out.json")]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["summary"]["accuracy"] == 0.5
    assert main(["db", "export", str(db), "concat-effnet", str(tmp_path / "csv"), "--format", "csv"]) == 0
    assert (tmp_path / "csv" / "features.csv").read_text().count("\n") == 4
    assert "wrote" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_code_2(db, tmp_path, capsys):
    assert main(["db", "runs", str(tmp_path / "missing.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prodlens db: error: no results store at") and "prodlens db init" in err
    assert not (tmp_path / "missing.sqlite").exists()
    assert main(["db", "inspect", str(db), "concat-efnet"]) == 2
    assert "did you mean 'concat-effnet'" in capsys.readouterr().err


def test_every_db_command_help_ends_with_an_example(capsys):
    for cmd in ("init", "runs", "inspect", "export"):
        with pytest.raises(SystemExit):
            main(["db", cmd, "--help"])
        assert "Example:\n  prodlens db " + cmd in capsys.readouterr().out


def test_every_help_page_renders(capsys):
    """`prodlens --help` and each command's --help print (a literal '%' in a help text once broke them)."""
    import argparse

    from prodlens.cli import build_parser, main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "COMMAND" in capsys.readouterr().out
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        assert "Example:" in parser.format_help(), name
