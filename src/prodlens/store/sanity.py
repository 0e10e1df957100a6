"""Model-randomisation sanity checks (``prodlens sanity``) in the store.

A sanity check is stored as a run of its own: :func:`save_sanity_report` records the
run (``config["kind"] == "sanity"``, with the checkpoint, the settings and the verdicts)
and one ``sanity_results`` row per photo and randomisation, the noise-floor control
included (``randomised = "control (seed N)"``). The row's columns hold the three
metrics; its JSON ``payload`` the rest of the
:class:`~prodlens.explain.sanity.SanityResult` (both weight vectors, exact floats).
:func:`load_sanity_report` rebuilds the :class:`~prodlens.explain.sanity.SanityReport`,
summaries and verdicts recomputed from the rows (the same numbers: the bootstrap is seeded).

>>> import numpy as np
>>> from pathlib import Path
>>> from prodlens.data.types import ProductSample
>>> from prodlens.explain.sanity import SanityReport, SanityResult
>>> from prodlens.store import Store
>>> w = np.array([0.5, 0.2, 0.1, 0.0])
>>> rs = [SanityResult.compare(w, v, sample_id="s1", target=0, target_name="milk", randomised=n, n_superpixels=4,
...                            top_k=2, control=n.startswith("control"))
...       for n, v in [("control (seed 1)", w + 0.01), ("head", w[::-1])]]
>>> store = Store.open(":memory:")
>>> run = save_sanity_report(store, "sanity", SanityReport.from_results(rs),
...                          [ProductSample("s1", Path("s1.jpg"), "milk", "val")], checkpoint="concat.pt")
>>> load_sanity_report(store, "sanity").verdicts, run.config["verdict"]
({'head': 'pass'}, 'pass')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy import delete, select

from prodlens.data.types import ProductSample
from prodlens.explain.sanity import SanityReport, SanityResult
from prodlens.store import codec, schema
from prodlens.store.backends import OnConflict
from prodlens.store.core import Store
from prodlens.store.database import RunRef
from prodlens.store.exceptions import RunExistsError
from prodlens.store.records import Run

#: ``Run.config["kind"]`` of a sanity-check run.
SANITY_KIND = "sanity"

_KEY = ("run_id", "sample_id", "randomised")
_COLUMNS = ("sample_id", "target_name", "randomised", "spearman", "spearman_abs", "top_k_overlap")


def is_sanity_run(run: Run) -> bool:
    """Whether ``run`` was written by :func:`save_sanity_report`.

    >>> is_sanity_run(Run(1, "r", config={"kind": "sanity"})), is_sanity_run(Run(2, "demo-concat"))
    (True, False)
    """
    return run.config.get("kind") == SANITY_KIND


def _row(rid: int, r: SanityResult) -> dict:
    d = r.to_dict()
    return {"run_id": rid, **{c: d.pop(c) for c in _COLUMNS}, "payload": codec.dumps(d)}


def put_sanity_results(store: Store, run: RunRef, results: Iterable[SanityResult], *, replace_run: bool = False,
                       on_conflict: OnConflict = "replace") -> int:
    """Store sanity results (keyed by run, photo and randomisation); returns how many.

    With ``replace_run`` the run's earlier sanity rows are deleted first (in the same
    transaction), so a re-run on fewer photos leaves none behind.
    """
    rid = store.run_id(run)
    rows = [_row(rid, r) for r in results]
    t = schema.sanity_results
    with store.engine.begin() as conn:
        store.db.check_samples(conn, (r["sample_id"] for r in rows))
        if replace_run:
            conn.execute(delete(t).where(t.c.run_id == rid))
        store.db.upsert(conn, t, rows, _KEY, on_conflict)
    return len(rows)


def get_sanity_results(store: Store, run: RunRef, *, randomised: str | None = None) -> list[SanityResult]:
    """The sanity results of ``run`` in the order they were written (optionally one randomisation)."""
    rid = store.run_id(run)
    t = schema.sanity_results
    where = [t.c.run_id == rid] + ([t.c.randomised == randomised] if randomised is not None else [])
    with store.engine.connect() as conn:
        rows = conn.execute(select(t).where(*where).order_by(t.c.id)).all()
    return [SanityResult.from_dict({**codec.loads(r.payload, {}), **{c: getattr(r, c) for c in _COLUMNS}})
            for r in rows]


def save_sanity_report(
    store: Store,
    run: str,
    report: SanityReport,
    samples: Sequence[ProductSample],
    *,
    checkpoint: str | Path | None = None,
    dataset: str | Path | None = None,
    model: str | None = None,
    classes: Sequence[str] = (),
) -> Run:
    """Store ``report`` as the run named ``run`` (replacing an earlier sanity check of that
    name; any other run of that name raises :class:`~prodlens.store.RunExistsError`); returns it.

    ``samples`` must include the photos compared (they are added to the store's samples
    when missing). The run's config holds the report's settings, the verdicts with their
    reasons and the skipped files.
    """
    if run in {r.name for r in store.list_runs() if not is_sanity_run(r)}:
        raise RunExistsError(f"a run named {run!r} exists in {store.where} and is not a sanity check; "
                             "pick another run name for the sanity check")
    config = {
        **report.config, "kind": SANITY_KIND, "verdict": report.verdict,
        "verdicts": {s.randomised: {"verdict": s.verdict, "reason": s.reason} for s in report.summaries},
        "skipped": [list(s) for s in report.skipped], "seconds": report.seconds,
    }
    r = store.add_run(run, model=model, checkpoint=checkpoint, dataset=dataset, classes=classes, config=config,
                      if_exists="replace")
    wanted = set(report.sample_ids)
    store.add_samples([s for s in samples if s.id in wanted], on_conflict="ignore")
    put_sanity_results(store, r, report.results, replace_run=True)
    return r


def load_sanity_report(store: Store, run: RunRef) -> SanityReport | None:
    """The sanity report stored for ``run``, or ``None`` when it holds no sanity results."""
    results = get_sanity_results(store, run)
    if not results:
        return None
    cfg = store.get_run(run).config
    return SanityReport.from_results(
        results, randomise=cfg.get("randomise"), seed=int(cfg.get("seed", 0)),
        **{k: float(cfg[k]) for k in ("threshold", "margin") if k in cfg},
        skipped=cfg.get("skipped", ()), config=cfg, seconds=float(cfg.get("seconds", 0.0)),
    )


def sanity_runs(store: Store, checkpoint: str | None = None) -> list[Run]:
    """The sanity-check runs of the store, oldest first; only those of ``checkpoint`` if given
    (the same file: ``./runs/a.pt`` and ``runs/a.pt`` are one checkpoint).

    >>> sanity_runs(Store.open(":memory:"))
    []
    """
    def same(path: str | None) -> bool:
        return checkpoint is None or (path is not None and Path(path).resolve() == Path(checkpoint).resolve())

    return [r for r in store.list_runs() if is_sanity_run(r) and same(r.checkpoint)]
