"""Explorer web app (Gradio) over a results store: local and global explanations,
misclassifications, image/text importance ratio, and two runs side by side.

The views (:class:`Explorer`) are plain Python; Gradio is imported only by
:func:`build_app` and :func:`launch`, so ``import prodlens.app`` stays light.

>>> from prodlens.store import Store
>>> Explorer(Store.open(":memory:")).run_names()
[]

Start it with ``prodlens app --db runs/results.sqlite`` (see ``docs/app.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prodlens.app.views import Explorer

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr


def build_app(explorer: Explorer) -> gr.Blocks:
    """The Gradio Blocks app over ``explorer`` (imports Gradio)."""
    from prodlens.app.ui import build_app as _build

    return _build(explorer)


def launch(db: str, **kwargs: Any) -> gr.Blocks:
    """Serve the explorer for the store ``db``; see :func:`prodlens.app.ui.launch`."""
    from prodlens.app.ui import launch as _launch

    return _launch(db, **kwargs)


__all__ = ["Explorer", "build_app", "launch"]
