"""One registry for every model part: image backbones, text backbones and heads.

Each entry is a factory function registered with :func:`register_model` under a
unique name and a ``kind`` (``"image"``, ``"text"`` or ``"head"``).
:func:`create_model` builds one by name; unknown names fail with close matches.

>>> "efficientnet_lite0" in list_models("image")
True
>>> create_model("efficientnet_lite9")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
prodlens.errors.UnknownNameError: unknown model 'efficientnet_lite9'; did you mean 'efficientnet_lite2', ...? (known: ...)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from prodlens._validation import did_you_mean
from prodlens.errors import UnknownNameError

KINDS = ("image", "text", "head")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ModelEntry:
    """A registered factory: its name, kind, the function and a one-line summary."""

    name: str
    kind: str
    factory: Callable[..., Any]
    summary: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(kind: str, name: str | None = None) -> Callable[[F], F]:
    """Decorator registering a factory under ``name`` (default: the function name).

    >>> @register_model("head", name="_doc_demo_head")
    ... def _demo(num_classes: int, image_dim: int = 0, text_dim: int = 0):
    ...     '''A demo head.'''
    >>> get_entry("_doc_demo_head").summary
    'A demo head.'
    >>> _ = _REGISTRY.pop("_doc_demo_head")
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def deco(fn: F) -> F:
        key = name or fn.__name__
        if key in _REGISTRY and not _same_function(_REGISTRY[key].factory, fn):
            raise ValueError(f"model name {key!r} is already registered (kind {_REGISTRY[key].kind!r})")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelEntry(key, kind, fn, doc[0] if doc else "")
        return fn

    return deco


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # a module imported twice (e.g. by a doctest runner) re-registers the same function
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return a is b or (
        code_a is not None and code_b is not None and a.__qualname__ == b.__qualname__
        and code_a.co_filename == code_b.co_filename
    )


def _ensure_builtin() -> None:
    # Importing the modules runs their @register_model decorators.
    from prodlens.models import heads, image_backbones, text_backbones  # noqa: F401


def get_entry(name: str, kind: str | None = None) -> ModelEntry:
    """The registry entry for ``name``; raises :class:`UnknownNameError` with suggestions.

    >>> get_entry("minilm").kind
    'text'
    """
    _ensure_builtin()
    entry = _REGISTRY.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        pool = list_models(kind)
        hint = did_you_mean(name, pool, cutoff=0.5)
        what = f"{kind} model" if kind else "model"
        raise UnknownNameError(f"unknown {what} {name!r}{hint} (known: {', '.join(pool)})")
    return entry


def create_model(name: str, *, kind: str | None = None, **cfg: Any) -> Any:
    """Build the registered model ``name`` with keyword configuration ``cfg``.

    ``kind`` optionally asserts which kind of part is expected.

    >>> head = create_model("concat", num_classes=3, image_dim=8, text_dim=4)
    >>> head.modalities
    ('image', 'text')
    """
    return get_entry(name, kind).factory(**cfg)


def list_models(kind: str | None = None, pattern: str = "*") -> list[str]:
    """Sorted names of registered models, optionally of one ``kind`` and matching a glob.

    >>> list_models("head")
    ['concat', 'embracenet', 'image', 'score_fusion', 'text']
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} or None, got {kind!r}")
    _ensure_builtin()
    return sorted(
        n for n, e in _REGISTRY.items()
        if (kind is None or e.kind == kind) and fnmatch.fnmatch(n, pattern) and not n.startswith("_")
    )
