"""Read local explanations from JSON files; write and read global results.

Explanation files may hold, one per file (``*.json``) or one per line (``*.jsonl``):

* an :meth:`Explanation.to_dict <prodlens.explain.explanation.Explanation.to_dict>` dict
  (``sample_id``, ``target_name``, ``weights``, ``segments``, ...), or
* a :meth:`SampleExplanations.to_dict <prodlens.explain.result.SampleExplanations.to_dict>`
  dict (``explanations`` list, ``segments`` once at the top, ``predicted``, ``true``), or
* a JSON list of either.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from prodlens._atomic import atomic_write
from prodlens._validation import check_choice
from prodlens.aggregate.deletion import DeletionTable
from prodlens.aggregate.results import GlobalExplanations
from prodlens.errors import BadInputError
from prodlens.explain.explanation import Explanation

log = logging.getLogger(__name__)

WHICH = ("true", "predicted", "all")


def _records(path: Path) -> Iterator[tuple[str, object]]:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield f"{path}:{n}", json.loads(line)
                    except json.JSONDecodeError as e:
                        raise BadInputError(f"{path}:{n}", f"not valid JSON ({e.msg})", "fix or delete the line") from None
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BadInputError(path, f"not valid JSON ({e.msg})", "re-write the explanation file") from None
    for i, d in enumerate(data if isinstance(data, list) else [data]):
        yield f"{path}[{i}]" if isinstance(data, list) else str(path), d


def _from_record(d: object, where: str, which: str) -> list[Explanation]:
    if not isinstance(d, dict):
        raise BadInputError(where, f"expected a JSON object, got {type(d).__name__}", "see prodlens.aggregate.io")
    try:
        if "explanations" in d:  # SampleExplanations
            seg = np.asarray(d["segments"], dtype=np.int32) if "segments" in d else None
            out = [Explanation.from_dict(e, segments=seg if "segments" not in e else None) for e in d["explanations"]]
            if which == "all":
                return out
            want = d.get("true") if which == "true" else d.get("predicted")
            if want is None:
                log.debug("%s: no %s class recorded; skipped", where, which)
                return []
            return [e for e in out if e.target == int(want)]
        return [Explanation.from_dict(d)]
    except (KeyError, TypeError, ValueError) as e:
        raise BadInputError(
            where, f"not an explanation ({type(e).__name__}: {e})",
            "expected Explanation.to_dict() or SampleExplanations.to_dict() output with segments",
        ) from None


def load_explanations(path: str | Path, which: str = "true") -> list[Explanation]:
    """All explanations in a ``.json`` / ``.jsonl`` file or a folder of them (sorted by name).

    From per-sample files (``SampleExplanations``) ``which`` picks the explanation of the
    ``"true"`` class (default: a class's global explanation is built from its own
    samples), the ``"predicted"`` class, or ``"all"``. Plain ``Explanation`` dicts are
    always kept.

    >>> import tempfile, pathlib
    >>> from prodlens.data.types import OcrToken
    >>> e = Explanation("s", 0, "a", np.array([0.5, 0.1]), 0.0, 0.9, 0.9, np.zeros((2, 2), int),
    ...                 (OcrToken("X", (0, 0, 1, 1)),), 1)
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.json"
    >>> _ = p.write_text(json.dumps(e.to_dict()))
    >>> [x.sample_id for x in load_explanations(p.parent)]
    ['s']
    """
    check_choice("which", which, WHICH)
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".json", ".jsonl") and p.is_file())
        if not files:
            raise BadInputError(path, "no .json or .jsonl explanation files in this folder", "run prodlens explain first")
    elif path.is_file():
        files = [path]
    else:
        raise BadInputError(path, "not found", "pass a folder of explanation JSON files or one .json/.jsonl file")
    out: list[Explanation] = []
    for f in files:
        for where, rec in _records(f):
            out.extend(_from_record(rec, where, which))
    log.info("read %d explanations from %d files under %s", len(out), len(files), path)
    return out


def write_json(result: GlobalExplanations | DeletionTable | object, path: str | Path) -> Path:
    """Write anything with ``to_dict()`` as indented UTF-8 JSON, atomically."""
    path = Path(path)
    with atomic_write(path) as f:
        json.dump(result.to_dict(), f, indent=1, ensure_ascii=False)  # type: ignore[attr-defined]
    return path


def _read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "not found", "check the path")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BadInputError(path, f"not valid JSON ({e.msg})", "re-create it") from None


def read_global(path: str | Path) -> GlobalExplanations:
    """Global explanations written by :func:`write_json` (``prodlens global -o``)."""
    d = _read(path)
    if "classes" not in d:
        raise BadInputError(path, "not a global-explanation file (no 'classes')", "create it with prodlens global")
    return GlobalExplanations.from_dict(d)


def read_deletion_table(path: str | Path) -> DeletionTable:
    """A deletion table written by :func:`write_json` (``prodlens deletion -o``)."""
    d = _read(path)
    if "rows" not in d:
        raise BadInputError(path, "not a deletion table (no 'rows')", "create it with prodlens deletion")
    return DeletionTable.from_dict(d)
