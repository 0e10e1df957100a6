"""Lossless encodings of what the store keeps in TEXT and BLOB columns.

* arrays (segment maps, weights, probabilities): a small self-describing blob that
  restores the exact dtype, shape and values; integer label maps are narrowed to the
  smallest unsigned type that holds them and zlib-compressed (a 348x348 SLIC map is a
  few kB instead of 1 MB);
* JSON: canonical (sorted keys, compact) so equal configs give equal keys;
* OCR tokens: every float kept as is (``OcrToken.to_dict`` rounds for display).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prodlens.data.types import OcrToken

_MAGIC = b"PLA1"


def _narrow(arr: np.ndarray) -> np.ndarray:
    """The same values in the smallest integer dtype that holds them (ints only)."""
    if arr.dtype.kind not in "iub" or arr.size == 0:
        return arr
    lo, hi = int(arr.min()), int(arr.max())
    for dt in (np.uint8, np.uint16, np.uint32) if lo >= 0 else (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return arr.astype(dt)
    return arr


def encode_array(arr: np.ndarray, *, compress: bool = True) -> bytes:
    """Encode ``arr`` so that :func:`decode_array` gives back the same dtype, shape and values.

    >>> a = np.arange(12, dtype=np.int64).reshape(3, 4)
    >>> b = decode_array(encode_array(a))
    >>> b.dtype, b.shape, bool((a == b).all())
    (dtype('int64'), (3, 4), True)
    """
    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise TypeError(f"encode_array needs a numeric array, got dtype {arr.dtype}")
    stored = np.ascontiguousarray(_narrow(arr))
    payload = stored.tobytes()
    if compress:
        payload = zlib.compress(payload, 6)
    header = json.dumps(
        {"dtype": arr.dtype.str, "stored": stored.dtype.str, "shape": list(arr.shape), "z": int(compress)},
        separators=(",", ":"),
    ).encode()
    return _MAGIC + struct.pack("<I", len(header)) + header + payload


def decode_array(blob: bytes | memoryview) -> np.ndarray:
    """Inverse of :func:`encode_array` (returns a writable array)."""
    blob = bytes(blob)
    if blob[:4] != _MAGIC:
        raise ValueError("not an array blob written by prodlens.store (bad magic bytes)")
    (n,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[8 : 8 + n])
    payload = blob[8 + n :]
    if header["z"]:
        payload = zlib.decompress(payload)
    stored = np.frombuffer(payload, dtype=np.dtype(header["stored"])).reshape(header["shape"])
    return stored.astype(np.dtype(header["dtype"]), copy=True)


def encode_value(value: Any) -> Any:
    """A JSON-able stand-in for ``value``: arrays become ``{"__ndarray__": base64}``.

    >>> decode_value(encode_value(np.array([1.5, 2.0]))).tolist()
    [1.5, 2.0]
    >>> encode_value(0.25)
    0.25
    """
    if isinstance(value, np.ndarray):
        return {"__ndarray__": base64.b64encode(encode_array(value)).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def decode_value(value: Any) -> Any:
    """Inverse of :func:`encode_value`."""
    if isinstance(value, dict) and set(value) == {"__ndarray__"}:
        return decode_array(base64.b64decode(value["__ndarray__"]))
    return value


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"cannot store {type(o).__name__} as JSON; convert it to str, number, list or dict first")


def dumps(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, numpy scalars and paths converted.

    >>> dumps({"b": 1, "a": np.float32(0.5)})
    '{"a":0.5,"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def loads(text: str | None, default: Any = None) -> Any:
    """Parse JSON written by :func:`dumps`; ``None`` gives ``default``."""
    return default if text is None else json.loads(text)


def config_key(config: dict, seed: int, n_samples: int) -> str:
    """Short stable hash of an explanation's settings; part of its unique key.

    >>> config_key({"kernel_width": 0.25}, 0, 1000) == config_key({"kernel_width": 0.25}, 0, 1000)
    True
    """
    text = dumps({"config": config, "seed": int(seed), "n_samples": int(n_samples)})
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def token_to_json(t: OcrToken) -> dict:
    """An OCR token as a JSON-able dict that keeps every float exactly."""
    d: dict = {"text": t.text, "box": list(t.box), "score": t.score}
    if t.quad is not None:
        d["quad"] = [list(p) for p in t.quad]
    return d


def token_from_json(d: dict) -> OcrToken:
    quad = d.get("quad")
    return OcrToken(
        text=d["text"],
        box=tuple(d["box"]),  # type: ignore[arg-type]
        score=d.get("score", 1.0),
        quad=tuple(tuple(p) for p in quad) if quad else None,  # type: ignore[arg-type]
    )


def tokens_dumps(tokens: Iterable[OcrToken] | None) -> str | None:
    """JSON text for a token sequence (``None`` stays ``None``: OCR not run).

    >>> t = (OcrToken("MJÖLK", (1.125, 2, 3, 4), 0.987654321),)
    >>> tokens_loads(tokens_dumps(t)) == t
    True
    """
    return None if tokens is None else dumps([token_to_json(t) for t in tokens])


def tokens_loads(text: str | None) -> tuple[OcrToken, ...] | None:
    return None if text is None else tuple(token_from_json(d) for d in json.loads(text))


def top_k(probabilities: Sequence[float] | np.ndarray, class_names: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable classes as ``(name, probability)``, best first.

    >>> top_k([0.1, 0.7, 0.2], ["a", "b", "c"], k=2)
    [('b', 0.7), ('c', 0.2)]
    """
    p = np.asarray(probabilities, dtype=float)
    if len(p) != len(class_names):
        raise ValueError(f"probabilities has {len(p)} entries but class_names has {len(class_names)}")
    order = np.argsort(-p, kind="stable")[:k]
    return [(class_names[int(i)], float(p[i])) for i in order]
