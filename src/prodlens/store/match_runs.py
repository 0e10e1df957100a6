"""Write the results of :mod:`prodlens.match` into a store (behind ``prodlens match --db``
and ``prodlens match-explain --db``).

* :func:`save_retrieval`: a :class:`~prodlens.match.retrieval.RetrievalResult` with
  its neighbours -> one :class:`~prodlens.store.records.MatchQuery` row per query, plus
  the overall and per-class top-k accuracy as a ``MatchResult("retrieval", ...)``;
* :func:`save_match_explanation`: an explained match -> a ``match_explanations`` row.

Both add the products they refer to as samples (those already in the store are kept
as they are) and create the run when it does not exist yet.

>>> import numpy as np
>>> from pathlib import Path
>>> from prodlens.data.types import ProductSample
>>> from prodlens.match import evaluate_retrieval
>>> from prodlens.store import Store
>>> samples = [ProductSample(f"s{i}", Path(f"s{i}.jpg"), lab, "val") for i, lab in enumerate("aab")]
>>> res = evaluate_retrieval(np.eye(3)[:1], ["a"], np.eye(3), ["a", "a", "b"], ks=(1, 2),
...                          query_ids=["s0"], keep_neighbors=True, config={"gallery_ids": ["s0", "s1", "s2"]})
>>> store = Store.open(":memory:")
>>> save_retrieval(store, "match", res, samples)
1
>>> store.get_match_queries("match")[0].gallery_ids
('s0', 's1')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from prodlens.data.manifest import Dataset
from prodlens.data.types import ProductSample
from prodlens.match.explanation import MatchExplanation
from prodlens.match.pipeline import catalogue_samples
from prodlens.match.retrieval import RetrievalResult
from prodlens.store import codec
from prodlens.store.core import Store
from prodlens.store.database import RunRef
from prodlens.store.exceptions import RunNotFoundError, SampleNotFoundError
from prodlens.store.records import MatchQuery, MatchResult, Run

log = logging.getLogger(__name__)

#: ``MatchResult.kind`` of a retrieval run's summary (accuracy overall and per class).
RETRIEVAL_KIND = "retrieval"


def dataset_samples(dataset: Dataset, ids: Iterable[str]) -> list[ProductSample]:
    """The samples of ``dataset`` with ``ids``, catalogue images (``iconic/<class>``) included.

    >>> from prodlens.data.sample import load_sample
    >>> [s.label for s in dataset_samples(load_sample(), ["iconic/Oatly-Oat-Milk", "val/Oatly-Oat-Milk_001"])]
    ['Oatly-Oat-Milk', 'Oatly-Oat-Milk']
    """
    wanted = list(dict.fromkeys(ids))
    by_id = {s.id: s for s in dataset.samples}
    if any(i.startswith("iconic/") and i not in by_id for i in wanted):
        by_id.update((s.id, s) for s in catalogue_samples(dataset.classes))
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise SampleNotFoundError(
            f"{len(missing)} matched product(s) are not in the dataset ({', '.join(map(repr, missing[:3]))}); "
            "store the results with the dataset they were computed on"
        )
    return [by_id[i] for i in wanted]


def _run(store: Store, run: RunRef, model: str, classes: Sequence[str], config: dict) -> Run:
    """``run`` as it is when it exists; a new run with this metadata when a name is new."""
    try:
        return store.get_run(run)
    except RunNotFoundError:
        if not isinstance(run, str):
            raise
        return store.add_run(run, model=model, classes=classes, config=config)


def retrieval_queries(result: RetrievalResult, gallery_ids: Sequence[str] | None = None) -> list[MatchQuery]:
    """One :class:`MatchQuery` per query of ``result`` (which must keep its neighbours).

    ``gallery_ids`` name the gallery items the neighbour indices point to; by default
    ``result.config["gallery_ids"]`` (what :func:`~prodlens.match.evaluate_matching` records).

    >>> import numpy as np
    >>> r = RetrievalResult({1: 1.0}, 1, 2, query_ids=("q",), neighbors=np.array([[1, 0]]),
    ...                     scores=np.array([[0.9, 0.1]]), config={"kind": "image"})
    >>> retrieval_queries(r, ["g0", "g1"])[0].gallery_ids
    ('g1', 'g0')
    """
    if result.neighbors is None or result.scores is None:
        raise ValueError("the retrieval result has no neighbours; evaluate with keep_neighbors=True to store it")
    gallery = list(gallery_ids if gallery_ids is not None else result.config.get("gallery_ids", ()))
    if not gallery:
        raise ValueError("give gallery_ids: the result's config has no 'gallery_ids' to name its neighbours")
    if len(result.query_ids) != len(result.neighbors):
        raise ValueError(f"the result has {len(result.neighbors)} neighbour lists but {len(result.query_ids)} query ids; "
                         "evaluate with query_ids=... to store it")
    config = {k: v for k, v in result.config.items() if k != "gallery_ids"}
    out = []
    for qid, nbrs, scores in zip(result.query_ids, result.neighbors, result.scores, strict=True):
        keep = [(gallery[int(j)], float(s)) for j, s in zip(nbrs, scores, strict=True) if int(j) >= 0]
        out.append(MatchQuery(qid, tuple(g for g, _ in keep), tuple(s for _, s in keep), config=config))
    return out


def save_retrieval(
    store: Store,
    run: RunRef,
    result: RetrievalResult,
    samples: Dataset | Sequence[ProductSample],
    *,
    gallery_ids: Sequence[str] | None = None,
) -> int:
    """Store each query's neighbours and the run's top-k accuracy; returns the queries stored.

    ``samples`` (a dataset, or the query and gallery samples) provide the products
    the result refers to. A new run name creates the run (model ``<method>/<kind>``).
    """
    queries = retrieval_queries(result, gallery_ids)
    ids = [q.query_id for q in queries] + [g for q in queries for g in q.gallery_ids]
    if isinstance(samples, Dataset):
        found = dataset_samples(samples, ids)
        classes = samples.classes.names
    else:
        by_id = {s.id: s for s in samples}
        found = [by_id[i] for i in dict.fromkeys(ids) if i in by_id]
        classes = sorted({s.label for s in found if s.label})
    cfg = result.config
    r = _run(store, run, f"{cfg.get('method', 'match')}/{cfg.get('kind', '?')}", classes,
             {k: v for k, v in cfg.items() if k != "gallery_ids"})
    store.add_samples(found, on_conflict="ignore")
    n = store.put_match_queries(r, queries)
    key = codec.config_key(queries[0].config if queries else {}, 0, 0)
    store.put_match_results(r, [MatchResult(RETRIEVAL_KIND, key, result.to_dict())])
    log.info("stored %d retrieval queries in run %s of %s", n, r.name, store.where)
    return n


def save_match_explanation(
    store: Store,
    run: RunRef,
    explanation: MatchExplanation,
    query: ProductSample,
    match: ProductSample,
    *,
    classes: Sequence[str] = (),
) -> int:
    """Store why ``query`` matches ``match``; returns 1.

    A new run name creates the run (model ``match/<kind>``, with ``classes``).
    """
    if (query.id, match.id) != (explanation.query_id, explanation.match_id):
        raise ValueError(f"the explanation is of {explanation.query_id!r} -> {explanation.match_id!r}, "
                         f"but the samples given are {query.id!r} -> {match.id!r}")
    r = _run(store, run, f"match/{explanation.kind}", classes or sorted({s.label for s in (query, match) if s.label}),
             {"kind": explanation.kind, "method": explanation.method})
    store.add_samples([query, match], on_conflict="ignore")
    return store.put_match_explanations(r, [explanation])
