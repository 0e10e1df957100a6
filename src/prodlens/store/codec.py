"""Lossless encodings of what the store keeps in TEXT and BLOB columns.

* arrays (segment maps, weights, probabilities): a small self-describing blob that
  restores the exact dtype, shape and values; integer label maps are narrowed to the
  smallest unsigned type that holds them and zlib-compressed (a 348x348 SLIC map is a
  few kB instead of 1 MB);
* float maps (saliency): quantised to 16 bits over their range, row-delta coded and
  zlib-compressed (:func:`encode_map`; lossy, far below what a colour map shows);
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
_MAP_MAGIC = b"PLM1"


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
    return _pack(_MAGIC, {"dtype": arr.dtype.str, "stored": stored.dtype.str, "shape": list(arr.shape),
                          "z": int(compress)}, payload)


def _pack(magic: bytes, header: dict, payload: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return magic + struct.pack("<I", len(head)) + head + payload


def _unpack(blob: bytes | memoryview, magic: bytes, what: str) -> tuple[dict, bytes]:
    blob = bytes(blob)
    if blob[:4] != magic:
        raise ValueError(f"not {what} written by prodlens.store (bad magic bytes)")
    (n,) = struct.unpack("<I", blob[4:8])
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def decode_array(blob: bytes | memoryview) -> np.ndarray:
    """Inverse of :func:`encode_array` (returns a writable array)."""
    header, payload = _unpack(blob, _MAGIC, "an array blob")
    if header["z"]:
        payload = zlib.decompress(payload)
    stored = np.frombuffer(payload, dtype=np.dtype(header["stored"])).reshape(header["shape"])
    return stored.astype(np.dtype(header["dtype"]), copy=True)


#: Levels of a quantised float map (:func:`encode_map`).
MAP_LEVELS = 65535


def encode_map(values: np.ndarray) -> bytes:
    """A 2-D float map (a saliency map) quantised to 16 bits over its range, row-delta
    coded and zlib-compressed: a 348x348 RISE map takes about 130 kB instead of 480 kB.

    Lossy by design: :func:`decode_map` gives ``float32`` values within about
    ``(max - min) / 131070`` of the originals, far below what a colour map shows.

    >>> m = np.linspace(-1, 2, 12, dtype=np.float64).reshape(3, 4)
    >>> back = decode_map(encode_map(m))
    >>> back.dtype, back.shape, bool(np.abs(back - m).max() <= 3 / 131070 + 1e-6)
    (dtype('float32'), (3, 4), True)
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"encode_map needs a 2-D map, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("encode_map needs finite values; the map has NaN or infinite entries")
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    step = (hi - lo) / MAP_LEVELS if hi > lo else 1.0
    q = np.rint((v - lo) / step).astype(np.int64)
    delta = np.diff(q, axis=1, prepend=0).astype(np.uint16)  # wraps mod 2**16; undone by cumsum
    return _pack(_MAP_MAGIC, {"shape": list(v.shape), "lo": lo, "step": step}, zlib.compress(delta.tobytes(), 6))


def decode_map(blob: bytes | memoryview) -> np.ndarray:
    """Inverse of :func:`encode_map` (``float32``)."""
    header, payload = _unpack(blob, _MAP_MAGIC, "a map blob")
    delta = np.frombuffer(zlib.decompress(payload), dtype=np.uint16).reshape(header["shape"])
    q = np.cumsum(delta, axis=1, dtype=np.uint16)  # exact modulo 2**16, and every level fits
    return (header["lo"] + q.astype(np.float64) * header["step"]).astype(np.float32)


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
