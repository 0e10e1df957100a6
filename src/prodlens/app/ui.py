"""The Gradio layout of the explorer: thin callbacks around :class:`~prodlens.app.views.Explorer`.

Everything shown is read from the store; no model runs while navigating. Pictures are
handed to Gradio as arrays (it writes them to its own cache), so the server never
serves a file by path: nothing outside Gradio's cache is reachable over HTTP.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no phoning home

import hmac
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import gradio as gr
import pandas as pd

from prodlens.app.match_views import WHY_NOT_HEADERS, WORD_HEADERS
from prodlens.app.quality_views import GALLERY_ORDERS, GALLERY_SHOW, QUALITY_HEADERS, SCORES
from prodlens.app.sanity_views import SAMPLE_HEADERS, SUMMARY_HEADERS, sanity_view
from prodlens.app.views import TOP_IMAGE_FEATURES, Explorer
from prodlens.store import Store, StoreError

log = logging.getLogger(__name__)

TITLE = "prodlens explorer"
#: Label of the second explanation panel when there is none. Components are never
#: hidden and shown again: in Gradio 6 a visibility change re-mounts the page's
#: dropdowns, which fire ``change`` again and loop the events.
_NO_SECOND = "explanation for the predicted class (only for misclassified samples)"
_CSS = """
.pl-small textarea { font-family: ui-monospace, monospace; }
footer { display: none !important; }
"""


def _theme() -> gr.themes.Base:
    # system fonts only: the default theme would fetch a web font from the internet
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "DejaVu Sans", "sans-serif"],
        font_mono=["ui-monospace", "DejaVu Sans Mono", "monospace"],
    )


def _df(rows: list[list], headers: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=headers) if rows else pd.DataFrame(columns=headers)


def _picture(image: Any, label: str | None = None) -> Any:
    """An image output that is hidden while there is nothing to show (no empty frames:
    the view's note says why and what fills it)."""
    return gr.update(value=image, visible=image is not None, **({"label": label} if label is not None else {}))


def _caption(text: str) -> Any:
    return gr.update(value=text, visible=bool(text))


class Callbacks:
    """The functions the UI calls, one per view; each returns what its outputs show.

    They are plain methods so that tests and the latency benchmark can call them
    without a browser.
    """

    def __init__(self, explorer: Explorer) -> None:
        self.ex = explorer

    def _valid(self, run: str | None, class_name: str | None = None) -> bool:
        if not run or run not in self.ex.run_names():
            return False
        return class_name is None or class_name in self.ex.classes(run)

    # -- run level
    def on_load(self) -> tuple:
        runs = self.ex.run_names()
        first = self.ex.richest_run()  # the run with the most to show, not merely the newest
        explained = [r for r in reversed(self.ex.explained_runs()) if r != first]
        other = explained[0] if explained else next((r for r in reversed(runs) if r != first), first)
        note = "" if runs else f"No runs in {self.ex.store.where} yet: run an explain job that writes to this store."
        return gr.update(choices=runs, value=first), gr.update(choices=runs, value=other), note

    def on_run(self, run: str | None) -> tuple:
        if not self._valid(run):
            return gr.update(choices=[], value=None), "", *self.on_deletion(None)
        classes = self.ex.classes(run)  # type: ignore[arg-type]
        return (gr.update(choices=classes, value=self.ex.richest_class(run)),  # type: ignore[arg-type]
                self.ex.run_summary(run),  # type: ignore[arg-type]
                *self.on_deletion(run))

    def on_deletion(self, run: str | None) -> tuple:
        if not self._valid(run):
            return pd.DataFrame(columns=["step", "accuracy", "curve"]), ""
        v = self.ex.deletion(run)  # type: ignore[arg-type]
        return pd.DataFrame(v.points, columns=["step", "accuracy", "curve"]), v.summary

    def on_histogram(self, run: str | None, class_name: str | None) -> tuple:
        cols = ["image share", "explanations"]
        if not self._valid(run):
            return pd.DataFrame(columns=cols), pd.DataFrame(columns=cols), ""
        h = self.ex.share_histogram(run, class_name)  # type: ignore[arg-type]
        return (pd.DataFrame({cols[0]: h.bins, cols[1]: h.run_counts}),
                pd.DataFrame({cols[0]: h.bins, cols[1]: h.class_counts}), h.summary)

    # -- local
    def on_class(self, run: str | None, class_name: str | None) -> tuple:
        """Sample picker for the class, and the single view of its first sample."""
        if not self._valid(run, class_name):
            return (gr.update(choices=[], value=None), *self.on_sample(None, None))
        choices = self.ex.sample_choices(run, class_name)  # type: ignore[arg-type]
        first = choices[0].sample_id if choices else None
        return (gr.update(choices=[(c.caption, c.sample_id) for c in choices], value=first),
                *self.on_sample(run, first))

    def on_sample(self, run: str | None, sample_id: str | None) -> tuple:
        """status, photo, OCR text, panel 1, panel 2, top-k table, word table, then per
        panel its quality note and curves."""
        no_quality = (_caption(""), _picture(None), _caption(""), _picture(None))
        if not sample_id or not self._valid(run):
            return ("Choose a run, a class and a sample.", _picture(None), "", _picture(None, "Explanation"),
                    _picture(None, _NO_SECOND), _df([], ["class", "probability"]), _df([], ["word"]), *no_quality)
        try:
            v = self.ex.single(run, sample_id)  # type: ignore[arg-type]
        except StoreError as e:
            return (f"**{e}**", _picture(None), "", _picture(None), _picture(None, _NO_SECOND),
                    _df([], ["class", "probability"]), _df([], ["word"]), *no_quality)
        p1 = v.panels[0] if v.panels else None
        p2 = v.panels[1] if len(v.panels) > 1 else None
        one = _picture(p1.image if p1 else None, p1.caption if p1 else "not explained")
        two = _picture(p2.image if p2 else None, p2.caption if p2 else _NO_SECOND)
        quality: list[Any] = []
        for k in range(2):
            q = v.quality[k] if k < len(v.quality) else None
            quality += [_caption(q.caption if q else ""), _picture(q.image if q else None)]
        return (v.status, _picture(v.photo), v.ocr_text, one, two, _df(v.top_k, ["class", "probability"]),
                _df(v.words, v.word_headers), *quality)

    def on_gallery(self, run: str | None, class_name: str | None, order: str | None = None,
                   show: str | None = None) -> tuple:
        """gallery items and note, in ``order`` (see ``GALLERY_ORDERS``) keeping ``show``."""
        if not self._valid(run, class_name):
            return [], ""
        order = order if order in GALLERY_ORDERS else "sample id"
        show = show if show in GALLERY_SHOW else "all"
        v = self.ex.gallery(run, class_name, order=order, show=show)  # type: ignore[arg-type]
        return [(p.image, p.caption) for p in v.items], v.summary

    def on_quality(self, run: str | None, class_name: str | None) -> tuple:
        """note, one histogram picture per score, the score table."""
        if not self._valid(run):
            return ("", *[_picture(None)] * len(SCORES), _df([], QUALITY_HEADERS))
        v = self.ex.quality_view(run, class_name)  # type: ignore[arg-type]
        pictures = [h.picture for h in v.histograms] + [None] * (len(SCORES) - len(v.histograms))
        note = f"{v.summary}\n\n{v.verify}" if v.verify else v.summary
        return (note, *map(_picture, pictures), _df(v.rows, QUALITY_HEADERS))

    def on_misclassified(self, run: str | None, class_name: str | None) -> tuple:
        headers = ["sample", "true class", "predicted", "confidence", "kind"]
        if not self._valid(run, class_name):
            return "", _df([], headers), []
        v = self.ex.misclassified(run, class_name)  # type: ignore[arg-type]
        return v.summary, _df(v.rows, headers), [(p.image, p.caption) for p in v.items]

    def pick_from_table(self, table: pd.DataFrame, evt: gr.SelectData) -> tuple:
        """A click on a misclassified row opens that sample in the single view."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        sample_id = str(table.iloc[int(row), 0])
        return gr.update(value=sample_id), gr.Tabs(selected="single")

    # -- global
    def on_global(self, run: str | None, class_name: str | None) -> tuple:
        """summary, then (caption, crops) per image feature slot, then the text table."""
        headers = ["rank", "text", "spelling variants", "count", "importance"]
        slots: list[Any] = []
        if not self._valid(run, class_name):
            for _ in range(TOP_IMAGE_FEATURES):
                slots += [_caption(""), _picture(None)]
            return ("", *slots, _df([], headers))
        v = self.ex.global_view(run, class_name)  # type: ignore[arg-type]
        for k in range(TOP_IMAGE_FEATURES):
            if k < len(v.image_features):
                f = v.image_features[k]
                slots += [_caption(f.caption), _picture(f.picture)]
            else:
                slots += [_caption(""), _picture(None)]
        return (v.summary, *slots, _df(v.text_rows, headers))

    # -- compare
    def on_compare_choices(self, run_a: str | None, run_b: str | None, class_name: str | None) -> tuple:
        if not (self._valid(run_a, class_name) and self._valid(run_b)):
            return (gr.update(choices=[], value=None), *self.on_compare(None, None, None, None))
        ids = self.ex.compare_choices(run_a, run_b, class_name)  # type: ignore[arg-type]
        first = ids[0] if ids else None
        return (gr.update(choices=ids, value=first), *self.on_compare(run_a, run_b, class_name, first))

    def on_compare(self, run_a: str | None, run_b: str | None, class_name: str | None, sample_id: str | None) -> tuple:
        headers = ["rank", "text", "count", "importance"]
        if not (self._valid(run_a, class_name) and self._valid(run_b)):
            blank = ("", _picture(None, "run A"), _df([], headers))
            return (*blank, self.ex.compare_note(run_a), _picture(None, "run B"), _df([], headers))
        v = self.ex.compare(run_a, run_b, class_name, sample_id)  # type: ignore[arg-type]
        out: list[Any] = []
        for side in (v.left, v.right):
            out += [side.summary, _picture(side.panel.image, side.panel.caption), _df(side.text_rows, headers)]
        if v.right.panel.image is None:
            out[3] = f"{v.right.summary}\n\n{self.ex.compare_note(run_a)}"
        return tuple(out)

    # -- matching
    def on_match_class(self, run: str | None, class_name: str | None) -> tuple:
        """Query picker for the class, and the matching view of its first query."""
        if not self._valid(run, class_name):
            return (gr.update(choices=[], value=None), "Choose a run and a class.", *self.on_match_query(None, None))
        shown = self.ex.match_run_for(run)  # type: ignore[arg-type]
        choices = self.ex.match_choices(shown, class_name)  # type: ignore[arg-type]
        first = choices[0].query_id if choices else None
        note = self.ex.match_note(shown, class_name)  # type: ignore[arg-type]
        if shown != run:
            note = f"Run **{run}** holds no matching results; showing **{shown}**, the matching run of this store.\n\n{note}"
        return (gr.update(choices=[(c.caption, c.query_id) for c in choices], value=first), note,
                *self.on_match_query(run, first))

    def on_match_query(self, run: str | None, query_id: str | None) -> tuple:
        """note, query photo, top matches, match picker, then :meth:`on_why`'s outputs."""
        if not query_id or not self._valid(run):
            return ("", _picture(None, "Query"), gr.update(value=[], visible=False), gr.update(choices=[], value=None),
                    *self.on_why(None, None, None))
        run = self.ex.match_run_for(run)  # type: ignore[arg-type]
        try:
            v = self.ex.match_list(run, query_id)
        except StoreError as e:
            return (f"**{e}**", _picture(None), gr.update(value=[], visible=False), gr.update(choices=[], value=None),
                    *self.on_why(None, None, None))
        picks = gr.update(choices=[(c.caption, c.gallery_id) for c in v.candidates], value=v.default_match)
        items = [(p.image, p.caption) for p in v.matches]
        return (v.status, _picture(v.query.image, v.query.caption), gr.update(value=items, visible=bool(items)),
                picks, *self.on_why(run, query_id, v.default_match))

    def on_why(self, run: str | None, query_id: str | None, match_id: str | None) -> tuple:
        """summary, query overlay, match overlay, shared-word table, then why the runner-up did not
        match: note, query difference map, runner-up overlay, word contrast table."""
        empty_not = ("", _picture(None, "query"), _picture(None, "runner-up"), _df([], WHY_NOT_HEADERS))
        if not (query_id and match_id and self._valid(run)):
            return ("", _picture(None, "query"), _picture(None, "match"), _df([], WORD_HEADERS), *empty_not)
        run = self.ex.match_run_for(run)  # type: ignore[arg-type]
        try:
            w = self.ex.why_match(run, query_id, match_id)
            n = self.ex.why_not(run, query_id, match_id)
        except StoreError as e:
            return (f"**{e}**", _picture(None), _picture(None), _df([], WORD_HEADERS), *empty_not)
        return (w.summary, _picture(w.query.image, w.query.caption), _picture(w.match.image, w.match.caption),
                _df(w.words, WORD_HEADERS), n.summary, _picture(n.query.image, n.query.caption),
                _picture(n.runner_up.image, n.runner_up.caption), _df(n.words, WHY_NOT_HEADERS))

    # -- sanity check
    def on_sanity(self, run: str | None) -> tuple:
        """summary, per-randomisation table, per-photo table."""
        if not self._valid(run):
            return "", _df([], SUMMARY_HEADERS), _df([], SAMPLE_HEADERS)
        v = sanity_view(self.ex.store, run)  # type: ignore[arg-type]
        return v.summary, _df(v.rows, SUMMARY_HEADERS), _df(v.sample_rows, SAMPLE_HEADERS)

    def pick_match(self, run: str | None, query_id: str | None, evt: gr.SelectData) -> Any:
        """A click on a match in the gallery chooses it for the explanation below."""
        if not query_id or not self._valid(run):
            return gr.update()
        cands = self.ex.match_list(self.ex.match_run_for(run), query_id).candidates  # type: ignore[arg-type]
        i = int(evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index)
        return gr.update(value=cands[i].gallery_id) if 0 <= i < len(cands) else gr.update()


def build_app(explorer: Explorer) -> gr.Blocks:
    """The Gradio app over ``explorer`` (not launched; see :func:`launch`)."""
    cb = Callbacks(explorer)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"## {TITLE}\nStore: `{explorer.store.where}` — every view is read from the store; no model runs here.")
        note = gr.Markdown(elem_id="pl-note")
        # initial choices: every run and every class of any run (the server checks
        # values against them); on_run narrows the classes to the chosen run's
        runs = explorer.run_names()
        all_classes = sorted({c for r in runs for c in explorer.classes(r)})
        with gr.Row():
            # value=None: Gradio would preselect the first run, and on_load choosing that same run
            # would then change nothing and fire no change event (no view would be filled)
            run_dd = gr.Dropdown(label="Run", choices=runs, value=None, elem_id="pl-run", scale=1)
            class_dd = gr.Dropdown(label="Class", choices=all_classes, elem_id="pl-class", scale=2)
        run_info = gr.Markdown(elem_id="pl-run-info")
        with gr.Tabs(elem_id="pl-main-tabs"):
            with gr.Tab("Local", id="local", elem_id="pl-tab-local"):
                with gr.Tabs(elem_id="pl-local-tabs") as local_tabs:
                    with gr.Tab("Single sample", id="single", elem_id="pl-tab-single"):
                        sample_dd = gr.Dropdown(label="Sample", choices=[], allow_custom_value=True, elem_id="pl-sample")
                        status = gr.Markdown(elem_id="pl-status")
                        with gr.Row(equal_height=True):
                            photo = gr.Image(label="Photo", format="jpeg", interactive=False, elem_id="pl-photo")
                            expl_1 = gr.Image(label="Explanation", format="jpeg", interactive=False, elem_id="pl-expl-1")
                            expl_2 = gr.Image(label=_NO_SECOND, format="jpeg", interactive=False, elem_id="pl-expl-2")
                        quality_out: list[gr.components.Component] = []
                        with gr.Row(equal_height=True):
                            for k in (1, 2):
                                with gr.Column():
                                    quality_out.append(gr.Markdown(elem_id=f"pl-quality-{k}"))
                                    quality_out.append(gr.Image(show_label=False, format="png", interactive=False,
                                                                height=200, buttons=[], elem_id=f"pl-curves-{k}"))
                        with gr.Row():
                            ocr = gr.Textbox(label="OCR text", interactive=False, lines=3, elem_classes="pl-small",
                                             elem_id="pl-ocr")
                            topk = gr.Dataframe(label="Top-5 probabilities", interactive=False, elem_id="pl-topk")
                        words = gr.Dataframe(label="Word weights", interactive=False, elem_id="pl-words")
                    with gr.Tab("Gallery", id="gallery", elem_id="pl-tab-gallery"):
                        with gr.Row():
                            gallery_order = gr.Dropdown(label="Order", choices=list(GALLERY_ORDERS), value="sample id",
                                                        elem_id="pl-gallery-order")
                            gallery_show = gr.Radio(label="Show", choices=list(GALLERY_SHOW), value="all",
                                                    elem_id="pl-gallery-show")
                        gallery_note = gr.Markdown(elem_id="pl-gallery-note")
                        gallery = gr.Gallery(label="Samples of the class", columns=6, height="auto", format="jpeg",
                                             object_fit="contain", fit_columns=False, elem_id="pl-gallery")
                    with gr.Tab("Misclassified", id="misclassified", elem_id="pl-tab-mis"):
                        mis_note = gr.Markdown(elem_id="pl-mis-note")
                        mis_table = gr.Dataframe(label="Misclassified (click a row to open it)", interactive=False,
                                                 elem_id="pl-mis-table")
                        mis_gallery = gr.Gallery(label="Explanations for the (wrongly) predicted class", columns=6,
                                                 height="auto", format="jpeg", fit_columns=False,
                                                 elem_id="pl-mis-gallery")
            with gr.Tab("Global", id="global", elem_id="pl-tab-global"):
                with gr.Tabs():
                    with gr.Tab("Image features", id="g-image", elem_id="pl-tab-gimage"):
                        global_note = gr.Markdown(elem_id="pl-global-note")
                        slots: list[gr.components.Component] = []
                        for k in range(TOP_IMAGE_FEATURES):
                            slots.append(gr.Markdown(elem_id=f"pl-gfeat-{k}"))
                            slots.append(gr.Image(show_label=False, format="jpeg", interactive=False, height=180,
                                                  buttons=[], elem_id=f"pl-gcrops-{k}"))
                    with gr.Tab("Text features", id="g-text", elem_id="pl-tab-gtext"):
                        text_table = gr.Dataframe(label="Top text features", interactive=False, elem_id="pl-gtext")
                    with gr.Tab("Image / text ratio", id="g-ratio", elem_id="pl-tab-ratio"):
                        hist_note = gr.Markdown(elem_id="pl-hist-note")
                        with gr.Row():
                            hist_run = gr.BarPlot(x="image share", y="explanations", title="All explanations of the run",
                                                  elem_id="pl-hist-run")
                            hist_cls = gr.BarPlot(x="image share", y="explanations", title="Explanations for the class",
                                                  elem_id="pl-hist-class")
                    with gr.Tab("Quality", id="g-quality", elem_id="pl-tab-quality"):
                        quality_note = gr.Markdown(elem_id="pl-quality-note")
                        qhists: list[gr.components.Component] = []
                        for row in range(2):
                            with gr.Row():
                                for col in range(2):
                                    k = 2 * row + col
                                    qhists.append(gr.Image(show_label=False, format="png", interactive=False,
                                                           height=200, buttons=[], elem_id=f"pl-qhist-{k}"))
                        quality_table = gr.Dataframe(label="Scores and flags", interactive=False,
                                                     elem_id="pl-quality-table")
                    with gr.Tab("Deletion test", id="g-deletion", elem_id="pl-tab-deletion"):
                        del_note = gr.Markdown()
                        del_plot = gr.LinePlot(x="step", y="accuracy", color="curve", title="Accuracy vs removed features",
                                               elem_id="pl-deletion")
            with gr.Tab("Matching", id="matching", elem_id="pl-tab-matching"):
                match_note = gr.Markdown(elem_id="pl-match-note")
                with gr.Row():
                    match_query = gr.Dropdown(label="Query", choices=[], allow_custom_value=True, elem_id="pl-match-query")
                    match_pick = gr.Dropdown(label="Match to explain (or click one below)", choices=[],
                                             allow_custom_value=True, elem_id="pl-match-pick")
                match_status = gr.Markdown(elem_id="pl-match-status")
                with gr.Row(equal_height=True):
                    match_photo = gr.Image(label="Query", format="jpeg", interactive=False, scale=1,
                                           elem_id="pl-match-photo")
                    match_gallery = gr.Gallery(label="Best matches in the gallery (✓ same class)", columns=5,
                                               height="auto", format="jpeg", object_fit="contain", fit_columns=False,
                                               scale=2, elem_id="pl-match-gallery")
                why_note = gr.Markdown(elem_id="pl-why-note")
                with gr.Row(equal_height=True):
                    why_query = gr.Image(label="query", format="jpeg", interactive=False, elem_id="pl-why-query")
                    why_match = gr.Image(label="match", format="jpeg", interactive=False, elem_id="pl-why-match")
                why_words = gr.Dataframe(label="Shared OCR words, by similarity drop when removed from both products",
                                         interactive=False, elem_id="pl-why-words")
                whynot_note = gr.Markdown(elem_id="pl-whynot-note")
                with gr.Row(equal_height=True):
                    whynot_query = gr.Image(label="query vs runner-up", format="jpeg", interactive=False, elem_id="pl-whynot-query")
                    whynot_runner = gr.Image(label="runner-up", format="jpeg", interactive=False, elem_id="pl-whynot-runner")
                whynot_words = gr.Dataframe(label="Why not the runner-up: words, effect on each similarity", interactive=False,
                                            elem_id="pl-whynot-words")
            with gr.Tab("Compare runs", id="compare", elem_id="pl-tab-compare"):
                with gr.Row():
                    run_b_dd = gr.Dropdown(label="Compare with run", choices=runs, elem_id="pl-run-b")
                    cmp_sample = gr.Dropdown(label="Sample", choices=[], allow_custom_value=True, elem_id="pl-cmp-sample")
                with gr.Row():
                    with gr.Column():
                        cmp_a_note = gr.Markdown()
                        cmp_a_img = gr.Image(label="run A", format="jpeg", interactive=False, elem_id="pl-cmp-a")
                        cmp_a_text = gr.Dataframe(label="Top text features", interactive=False)
                    with gr.Column():
                        cmp_b_note = gr.Markdown()
                        cmp_b_img = gr.Image(label="run B", format="jpeg", interactive=False, elem_id="pl-cmp-b")
                        cmp_b_text = gr.Dataframe(label="Top text features", interactive=False)

            with gr.Tab("Sanity check", id="sanity", elem_id="pl-tab-sanity"):
                sanity_note = gr.Markdown(elem_id="pl-sanity-note")
                sanity_table = gr.Dataframe(label="Trained vs randomised model: similarity of the explanations",
                                            interactive=False, elem_id="pl-sanity-table")
                sanity_samples = gr.Dataframe(label="Per photo", interactive=False, elem_id="pl-sanity-samples")

        single_out = [status, photo, ocr, expl_1, expl_2, topk, words, *quality_out]
        cmp_out = [cmp_a_note, cmp_a_img, cmp_a_text, cmp_b_note, cmp_b_img, cmp_b_text]
        why_out = [why_note, why_query, why_match, why_words, whynot_note, whynot_query, whynot_runner, whynot_words]
        match_out = [match_status, match_photo, match_gallery, match_pick, *why_out]
        views = [
            (cb.on_class, [run_dd, class_dd], [sample_dd, *single_out]),
            (cb.on_gallery, [run_dd, class_dd, gallery_order, gallery_show], [gallery, gallery_note]),
            (cb.on_misclassified, [run_dd, class_dd], [mis_note, mis_table, mis_gallery]),
            (cb.on_global, [run_dd, class_dd], [global_note, *slots, text_table]),
            (cb.on_histogram, [run_dd, class_dd], [hist_run, hist_cls, hist_note]),
            (cb.on_quality, [run_dd, class_dd], [quality_note, *qhists, quality_table]),
            (cb.on_compare_choices, [run_dd, run_b_dd, class_dd], [cmp_sample, *cmp_out]),
            (cb.on_match_class, [run_dd, class_dd], [match_query, match_note, *match_out]),
            (cb.on_sanity, [run_dd], [sanity_note, sanity_table, sanity_samples]),
        ]

        def chain(dep: Any, views: list = views) -> None:
            # One listener per trigger, views refreshed one after another (the single
            # view first). Several listeners on one dropdown make Gradio 6 re-fire
            # its change event in a loop.
            for fn, inputs, outputs in views:
                dep = dep.then(fn, inputs=inputs, outputs=outputs)

        demo.load(cb.on_load, outputs=[run_dd, run_b_dd, note])
        # programmatic changes of the class (by on_run) must not trigger a second refresh:
        # the run chain refreshes every view itself, so the class listens to user input only
        chain(run_dd.change(cb.on_run, inputs=run_dd, outputs=[class_dd, run_info, del_plot, del_note]))
        chain(class_dd.input(views[0][0], inputs=views[0][1], outputs=views[0][2]), views[1:])
        sample_dd.input(cb.on_sample, inputs=[run_dd, sample_dd], outputs=single_out)
        for control in (gallery_order, gallery_show):
            control.input(cb.on_gallery, inputs=[run_dd, class_dd, gallery_order, gallery_show],
                          outputs=[gallery, gallery_note])
        run_b_dd.input(cb.on_compare_choices, inputs=[run_dd, run_b_dd, class_dd], outputs=[cmp_sample, *cmp_out])
        cmp_sample.input(cb.on_compare, inputs=[run_dd, run_b_dd, class_dd, cmp_sample], outputs=cmp_out)
        match_query.input(cb.on_match_query, inputs=[run_dd, match_query], outputs=match_out)
        match_pick.input(cb.on_why, inputs=[run_dd, match_query, match_pick], outputs=why_out)
        match_gallery.select(cb.pick_match, inputs=[run_dd, match_query], outputs=match_pick).then(
            cb.on_why, inputs=[run_dd, match_query, match_pick], outputs=why_out)
        mis_table.select(cb.pick_from_table, inputs=mis_table, outputs=[sample_dd, local_tabs]).then(
            cb.on_sample, inputs=[run_dd, sample_dd], outputs=single_out)
    return demo


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def password_checker(password: str) -> Callable[[str, str], bool]:
    """Gradio ``auth`` callable: any user name, the given password (constant-time compare).

    >>> check = password_checker("s3cret")
    >>> check("me", "s3cret"), check("me", "nope")
    (True, False)
    """
    expected = password.encode()
    return lambda _user, given: hmac.compare_digest(str(given).encode(), expected)


def launch(
    db: str,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    password: str | None = None,
    block: bool = True,
) -> gr.Blocks:
    """Open the store at ``db`` read-only and serve the explorer on ``host:port``.

    Binds to the loopback address unless told otherwise; never creates a public share
    link. With ``password``, a login page asks for it (any user name).
    """
    store = Store.open(db, create=False)
    if not _is_loopback(host) and not password:
        log.warning("serving on %s without a password: anyone who can reach this address sees the results", host)
    explorer = Explorer(store)
    explorer.warm_up()
    demo = build_app(explorer)
    demo.queue(default_concurrency_limit=4)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        auth=password_checker(password) if password else None,
        auth_message="prodlens explorer: any user name, and the password it was started with" if password else None,
        show_error=True,
        ssr_mode=False,
        prevent_thread_lock=not block,
        quiet=not block,
        allowed_paths=[],
        theme=_theme(),
        css=_CSS,
        mcp_server=False,
        pwa=False,
    )
    return demo
