"""A content-addressed cache of raw OCR engine output.

Layout: ``{root}/{engine_key}/{sha[:2]}/{sha}.json`` where ``sha`` is the SHA-256 of
the image file's bytes, so a renamed or moved photo is not read twice and an edited
one is. Each file holds ``{"engine": key, "lines": [{"quad", "text", "score"}],
"seconds": float}``. Raw *lines* are cached (not words), so word splitting can change
without re-running OCR. Writes are atomic; a killed run leaves no partial file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prodlens._atomic import atomic_write


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class OcrCache:
    """Get/put raw OCR results by image content hash.

    >>> import tempfile
    >>> c = OcrCache(tempfile.mkdtemp(), "demo-engine")
    >>> c.put("ab" * 32, [{"quad": [[0, 0], [1, 0], [1, 1], [0, 1]], "text": "HI", "score": 0.9}], 0.1)
    >>> c.get("ab" * 32)["lines"][0]["text"]
    'HI'
    """

    def __init__(self, root: str | Path, engine_key: str) -> None:
        self.root = Path(root)
        self.engine_key = engine_key

    def path(self, sha: str) -> Path:
        return self.root / self.engine_key / sha[:2] / f"{sha}.json"

    def get(self, sha: str) -> dict | None:
        p = self.path(sha)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            return None  # a damaged entry is recomputed

    def put(self, sha: str, lines: list[dict], seconds: float) -> None:
        with atomic_write(self.path(sha)) as f:
            json.dump({"engine": self.engine_key, "lines": lines, "seconds": seconds}, f)
