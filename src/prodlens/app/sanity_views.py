"""The Sanity check tab: a stored model-randomisation test (``prodlens sanity --db``), as plain records.

The chosen run is shown when it is a sanity-check run; for any other run, the newest
sanity check of the same checkpoint; otherwise the view says which command fills it.
Read from the store alone, like every other view.

>>> from prodlens.store import Store
>>> store = Store.open(":memory:")
>>> _ = store.add_run("demo-concat", checkpoint="work/demo/models/concat.pt")
>>> print(sanity_view(store, "demo-concat").summary)
No sanity check for run **demo-concat** yet: fill one with `prodlens sanity work/demo/models/concat.pt DATASET_DIR --db STORE --run NAME`.
"""

from __future__ import annotations

from dataclasses import dataclass

from prodlens.explain.sanity import SUMMARY_HEADERS, SanityReport
from prodlens.store import Run, Store, is_sanity_run, load_sanity_report, sanity_runs

#: Columns of :attr:`SanityView.sample_rows` (:data:`SUMMARY_HEADERS` for :attr:`SanityView.rows`).
SAMPLE_HEADERS = ["photo", "explained class", "randomised", "Spearman", "Spearman |w|", "top-k overlap"]

__all__ = ["SAMPLE_HEADERS", "SUMMARY_HEADERS", "SanityView", "sanity_view"]


@dataclass(frozen=True)
class SanityView:
    """What the tab shows: a Markdown summary (verdicts, or how to fill the tab) and two tables."""

    summary: str
    rows: list[list]  #: one per randomisation, then the noise-floor control, under SUMMARY_HEADERS
    sample_rows: list[list]  #: one per photo and randomisation, under SAMPLE_HEADERS
    run: str | None = None  #: the sanity run shown


def _shown_run(store: Store, run: Run) -> Run | None:
    if is_sanity_run(run):
        return run
    same = sanity_runs(store, run.checkpoint) if run.checkpoint else []
    return same[-1] if same else None


def _summary(shown: Run, report: SanityReport, asked: str) -> str:
    ck = f" of `{shown.checkpoint}`" if shown.checkpoint else ""
    lines = [f"**Sanity check {shown.name}**{ck}: **{report.verdict.upper()}** on {len(report.sample_ids)} photo(s) "
             f"(model-randomisation test; noise floor = the trained model explained with seed "
             f"{report.config.get('control_seed', '?')})."]
    if shown.name != asked:
        lines[0] = f"Run **{asked}** shares its checkpoint with sanity run **{shown.name}**. " + lines[0]
    lines += [f"- **{s.randomised}**: {s.verdict} — {s.reason}" for s in report.summaries]
    lines += [f"- skipped `{path}`: {why}" for path, why in report.skipped]
    return "\n".join(lines)


def sanity_view(store: Store, run: str) -> SanityView:
    """The Sanity check tab for the chosen ``run`` (raises ``RunNotFoundError`` for an unknown one)."""
    r = store.get_run(run)
    shown = _shown_run(store, r)
    report = load_sanity_report(store, shown.id) if shown is not None else None
    if shown is None or report is None:
        ck = r.checkpoint or "CHECKPOINT"
        others = [x.name for x in sanity_runs(store)]
        more = f" Sanity runs in this store: {', '.join(others)}." if others else ""
        return SanityView(f"No sanity check for run **{run}** yet: fill one with "
                          f"`prodlens sanity {ck} DATASET_DIR --db STORE --run NAME`.{more}", [], [])
    samples = [[x.sample_id, x.target_name, x.randomised, round(x.spearman, 3), round(x.spearman_abs, 3),
                round(x.top_k_overlap, 3)] for x in report.results]
    return SanityView(_summary(shown, report, run), report.summary_rows(), samples, shown.name)
