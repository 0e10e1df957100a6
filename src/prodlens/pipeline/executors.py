"""Executors for the explain stage: the same worker in this process, in a pool of local
processes, or in Ray actors.

Every executor maps :class:`ExplainWorker` over samples and yields an
:class:`Outcome` per sample as it finishes (in any order). The worker is a pure
function of (checkpoint, settings, sample): each sample is explained with the run's one
seed, so the result does not depend on which worker ran it or in which order, and the
three executors give the same explanations.

>>> ex = make_executor("local", workers=1)
>>> type(ex).__name__
'SerialExecutor'
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from prodlens._workers import cpu_count, init_child
from prodlens.data.types import ProductSample
from prodlens.errors import ProdlensError
from prodlens.explain.result import SampleExplanations

if TYPE_CHECKING:  # pragma: no cover
    from prodlens.explain.lime import MultimodalLime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What explaining one sample gave: a result, or the reason it failed."""

    sample_id: str
    result: SampleExplanations | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result is not None


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs (small and picklable): the checkpoint to load and the
    configured explainer itself (it only stores its settings).

    ``threads`` = 0 leaves torch's thread count alone.
    """

    checkpoint: str
    explainer: MultimodalLime
    targets: str = "auto"
    device: str = "cpu"
    threads: int = 0
    extra_config: dict[str, Any] = field(default_factory=dict)
    #: a saved :class:`~prodlens.explain.AmortisedExplainer` to explain with instead of LIME ("" = LIME)
    amortised: str = ""
    #: with ``amortised``: real masks per photo that correct its weights (``AmortisedExplainer.refine``)
    refine: int = 0


def load_model(checkpoint: str, device: str = "cpu") -> Any:
    """The classifier of ``checkpoint``, loaded once per process while the file is
    unchanged (the serial executor's worker and the later stages of a run share it), its
    image backbone on ONNX Runtime on the CPU (``runtime="auto"``)."""
    try:
        mtime = os.stat(checkpoint).st_mtime_ns
    except OSError:
        mtime = 0  # load_classifier says what is wrong with the path
    return _load_model(checkpoint, device, mtime)


@functools.lru_cache(maxsize=2)
def _load_model(checkpoint: str, device: str, _mtime: int) -> Any:
    from prodlens.models.checkpoint import load_classifier

    return load_classifier(checkpoint, device=device, runtime="auto")


class ExplainWorker:
    """Loads the classifier once, then explains samples one at a time.

    Any exception while explaining one sample becomes a failed :class:`Outcome` with
    the reason, so one bad photo never stops the others.
    """

    def __init__(self, spec: WorkerSpec) -> None:
        if spec.threads:
            import torch

            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.classifier = load_model(spec.checkpoint, spec.device)
        self.classes = list(self.classifier.classes)
        self.lime: Any = spec.explainer
        if spec.amortised:
            from prodlens.explain import AmortisedExplainer

            self.lime = AmortisedExplainer.load(spec.amortised, self.classifier)
            self.lime.refine = spec.refine

    def __call__(self, sample: ProductSample) -> Outcome:
        from dataclasses import replace

        t0 = time.perf_counter()
        try:
            true = sample.label if sample.label in self.classes else None
            targets = self.classes if self.spec.targets == "all" else ()
            res = self.lime.explain(self.classifier, sample, targets=targets, true_label=true)
            if self.spec.extra_config:
                res = replace(res, explanations=tuple(
                    replace(e, config={**e.config, **self.spec.extra_config}) for e in res.explanations
                ))
            return Outcome(sample.id, res, seconds=time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - reported per sample, the run goes on
            log.debug("explaining %s failed", sample.id, exc_info=True)
            return Outcome(sample.id, error=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t0)

    # Ray actors are called through a method
    def explain(self, sample: ProductSample) -> Outcome:
        return self(sample)


class Executor(Protocol):
    """Maps the explain worker over samples; yields outcomes as they finish."""

    def map(self, spec: WorkerSpec, samples: Iterable[ProductSample]) -> Iterator[Outcome]: ...


class SerialExecutor:
    """One worker in this process (the default, and what tests use)."""

    def map(self, spec: WorkerSpec, samples: Iterable[ProductSample]) -> Iterator[Outcome]:
        worker = ExplainWorker(spec)
        for s in samples:
            yield worker(s)


# --------------------------------------------------------------------------- local processes

_WORKER: ExplainWorker | None = None


def _init_process(spec: WorkerSpec, parent: int) -> None:
    global _WORKER
    init_child(parent, interval=0.5)
    _WORKER = ExplainWorker(spec)


def _run_in_process(sample: ProductSample) -> Outcome:
    assert _WORKER is not None, "worker process not initialised"
    return _WORKER(sample)


def _bounded(submit: Callable[[ProductSample], Any], samples: Iterable[ProductSample], limit: int,
             wait_any: Callable[[list], tuple[list, Any]], result: Callable[[Any], Outcome]) -> Iterator[Outcome]:
    """Keep at most ``limit`` samples in flight; yield outcomes as they finish."""
    pending = iter(samples)
    running: dict[Any, str] = {}
    for s in pending:
        running[submit(s)] = s.id
        if len(running) >= limit:
            break
    while running:
        done, _ = wait_any(list(running))
        for handle in done:
            running.pop(handle)
            yield result(handle)
            nxt = next(pending, None)
            if nxt is not None:
                running[submit(nxt)] = nxt.id


class ProcessExecutor:
    """``workers`` local processes (spawned), each with its own classifier and
    ``spec.threads`` torch threads (default: the cores divided among the workers)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, spec: WorkerSpec, samples: Iterable[ProductSample]) -> Iterator[Outcome]:
        if not spec.threads:
            spec = _with_threads(spec, max(1, cpu_count() // self.workers))
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_process, initargs=(spec, os.getpid()))
        try:
            yield from _bounded(
                lambda s: pool.submit(_run_in_process, s), samples, 2 * self.workers,
                lambda fs: wait(fs, return_when=FIRST_COMPLETED), Future.result,
            )
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- Ray


class RayExecutor:
    """``workers`` Ray actors, each asking for ``num_gpus`` GPUs (0 by default) and one CPU.

    Connects to the cluster at ``address`` (``"auto"`` or ``ray://host:10001``) or,
    when it is empty and Ray is not yet initialised, starts a local Ray instance with
    ``workers`` CPUs (shut down again afterwards).
    """

    def __init__(self, workers: int, *, address: str = "", num_gpus: float = 0.0) -> None:
        self.workers = workers
        self.address = address
        self.num_gpus = num_gpus

    def map(self, spec: WorkerSpec, samples: Iterable[ProductSample]) -> Iterator[Outcome]:
        ray = _import_ray()
        started = False
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            started = True
        if not spec.threads:
            spec = _with_threads(spec, 1)
        if self.num_gpus and spec.device == "cpu":
            spec = _with_device(spec, "cuda")
        actor_cls = ray.remote(num_cpus=1, num_gpus=self.num_gpus)(ExplainWorker)
        actors = [actor_cls.remote(spec) for _ in range(self.workers)]
        free = list(actors)
        owner: dict[Any, tuple[Any, str]] = {}

        def submit(s: ProductSample) -> Any:
            actor = free.pop() if free else actors[len(owner) % len(actors)]
            ref = actor.explain.remote(s)
            owner[ref] = (actor, s.id)
            return ref

        def result(ref: Any) -> Outcome:
            actor, sample_id = owner.pop(ref)
            free.append(actor)
            try:
                return ray.get(ref)
            except Exception as e:  # noqa: BLE001 - an actor died (e.g. out of memory)
                return Outcome(sample_id, error=f"Ray: {type(e).__name__}: {e}")

        try:
            yield from _bounded(submit, samples, len(actors),
                                lambda refs: ray.wait(refs, num_returns=1), result)
        finally:
            for a in actors:
                ray.kill(a)
            if started:
                ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ProdlensError(
            "--executor ray needs Ray: pip install 'prodlens[ray]' (or pip install ray), "
            "or use --executor local"
        ) from None
    return ray


def _with_threads(spec: WorkerSpec, threads: int) -> WorkerSpec:
    from dataclasses import replace

    return replace(spec, threads=threads)


def _with_device(spec: WorkerSpec, device: str) -> WorkerSpec:
    from dataclasses import replace

    return replace(spec, device=device)


def make_executor(kind: str, *, workers: int = 1, ray_address: str = "", num_gpus: float = 0.0) -> Executor:
    """The executor for ``kind`` (``"local"`` or ``"ray"``).

    >>> make_executor("local", workers=2).workers
    2
    >>> make_executor("spark")
    Traceback (most recent call last):
    ...
    ValueError: executor must be 'local' or 'ray'; got 'spark'
    """
    if kind == "ray":
        return RayExecutor(workers, address=ray_address, num_gpus=num_gpus)
    if kind == "local":
        return SerialExecutor() if workers == 1 else ProcessExecutor(workers)
    raise ValueError(f"executor must be 'local' or 'ray'; got {kind!r}")
