"""Run OCR over a whole dataset, with a content-hash cache and optional worker processes.

For each sample: hash the image file, take the raw lines from the
:class:`~prodlens.ocr.cache.OcrCache` or run the engine (and cache the result), then
split lines into word tokens and drop those in scripts that cannot occur on the
product (:mod:`prodlens.ocr.scripts`; after the cache, so the cache stays raw). Unreadable images are skipped and reported, never fatal.
Cache entries are written atomically, so an interrupted run (Ctrl-C) loses at most the
images in flight and simply resumes when started again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Generator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from prodlens._validation import check_int
from prodlens._workers import cpu_count, init_child
from prodlens.data.images import load_image
from prodlens.data.manifest import Dataset
from prodlens.data.types import OcrToken
from prodlens.errors import BadInputError, record_skip, skip_lines
from prodlens.ocr.base import Line, OcrEngine, ThreadLimitable, validate_lines
from prodlens.ocr.cache import OcrCache, file_sha256
from prodlens.ocr.scripts import ScriptFilter, ScriptFilterReport, resolve_filter
from prodlens.ocr.words import lines_to_words

log = logging.getLogger(__name__)

#: Environment variable naming prodlens' cache root; OCR results go in its ``ocr/`` folder.
CACHE_ENV = "PRODLENS_CACHE"

#: Default confidence below which a line is dropped (RapidOCR's own default threshold).
DEFAULT_MIN_SCORE = 0.5


def default_cache_dir() -> Path:
    """``$PRODLENS_CACHE/ocr`` when the variable is set, else ``~/.cache/prodlens/ocr``.

    >>> default_cache_dir().name
    'ocr'
    """
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "prodlens"
    return base / "ocr"


@dataclass(frozen=True)
class OcrReport:
    """What one :func:`run_ocr` call did.

    ``engine_seconds`` sums the engine time of the images computed in this run (not
    those taken from the cache); ``wall_seconds`` is the whole run.

    >>> r = OcrReport("demo", images=3, from_cache=1, computed=1, skipped=(("b.jpg", "corrupt"),),
    ...               words=5, lines=3, no_text=0, engine_seconds=0.4, wall_seconds=0.5)
    >>> r.words_per_image, r.seconds_per_image
    (2.5, 0.4)
    """

    engine: str
    images: int
    from_cache: int
    computed: int
    skipped: tuple[tuple[str, str], ...]
    words: int
    lines: int
    no_text: int
    engine_seconds: float
    wall_seconds: float
    scripts: ScriptFilterReport | None = None  #: tokens the script filter dropped (``None``: not filtered)

    @property
    def read(self) -> int:
        """Images that have tokens after the run (from cache or computed)."""
        return self.from_cache + self.computed

    @property
    def words_per_image(self) -> float:
        return self.words / self.read if self.read else 0.0

    @property
    def lines_per_image(self) -> float:
        return self.lines / self.read if self.read else 0.0

    @property
    def seconds_per_image(self) -> float:
        """Mean engine seconds per computed image (``nan`` when all came from the cache)."""
        return self.engine_seconds / self.computed if self.computed else math.nan

    def summary(self) -> str:
        """A few human-readable lines, e.g. for the CLI.

        >>> print(OcrReport("demo", 2, 2, 0, (), 6, 4, 0, 0.0, 0.1).summary())
        OCR (demo): 2 images, 2 from cache, 0 computed, 0 skipped
          6 words (3.0 per image), 4 lines, 0 images without text; 0.1 s in total
        """
        head = (
            f"OCR ({self.engine}): {self.images} images, {self.from_cache} from cache, "
            f"{self.computed} computed, {len(self.skipped)} skipped"
        )
        body = (
            f"  {self.words} words ({self.words_per_image:.1f} per image), {self.lines} lines, "
            f"{self.no_text} images without text; {self.wall_seconds:.1f} s in total"
        )
        if self.computed:
            body += f", {self.seconds_per_image:.2f} s per computed image"
        out = [head, body]
        if self.scripts is not None:
            out.append(f"  {self.scripts.summary()}")
        return "\n".join(out + skip_lines(self.skipped))


class OcrRun(NamedTuple):
    """The result of :func:`run_ocr`: the dataset with tokens, and the report."""

    dataset: Dataset
    report: OcrReport


# --------------------------------------------------------------------------- workers

_WORKER_ENGINE: OcrEngine | None = None


def _init_worker(engine: OcrEngine, parent: int) -> None:
    global _WORKER_ENGINE
    init_child(parent)
    _WORKER_ENGINE = engine


def _compute(engine: OcrEngine, path: Path) -> tuple[list[Line], float]:
    """Load and OCR one image; raises BadInputError for unreadable files."""
    image = load_image(path)
    start = time.perf_counter()
    lines = validate_lines(engine.read_lines(image), f"{engine.key} on {path}")
    return lines, time.perf_counter() - start


def _worker_compute(path: Path) -> tuple[list[Line], float] | BadInputError:
    assert _WORKER_ENGINE is not None, "worker not initialised"
    try:
        return _compute(_WORKER_ENGINE, path)
    except BadInputError as e:
        return e  # pickled back to the parent and recorded as a skip


def _computed_serial(engine: OcrEngine, jobs: list[tuple[int, Path]]) -> Generator[tuple[int, object], None, None]:
    for idx, path in jobs:
        try:
            yield idx, _compute(engine, path)
        except BadInputError as e:
            yield idx, e


def _computed_parallel(engine: OcrEngine, jobs: list[tuple[int, Path]], workers: int) -> Generator[tuple[int, object], None, None]:
    if isinstance(engine, ThreadLimitable) and getattr(engine, "threads", None) is None:
        per_worker = max(1, cpu_count() // workers)
        engine = engine.with_threads(per_worker)
        log.info("%d workers, %d onnxruntime thread(s) each", workers, per_worker)
    # spawn, not fork: a forked copy of a process that already runs onnxruntime threads can hang
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(engine, os.getpid()))
    try:
        pending = iter(jobs)
        running: dict[Future, int] = {}
        for idx, path in pending:  # keep a bounded queue so Ctrl-C cancels quickly
            running[pool.submit(_worker_compute, path)] = idx
            if len(running) >= 2 * workers:
                break
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                yield running.pop(fut), fut.result()
                nxt = next(pending, None)
                if nxt is not None:
                    running[pool.submit(_worker_compute, nxt[1])] = nxt[0]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- public API


def _check_args(workers: int, min_score: float) -> None:
    check_int("workers", workers, 1)
    if not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"min_score must be between 0 and 1 (engine confidence), got {min_score!r}")


def run_ocr(
    dataset: Dataset,
    engine: OcrEngine | None = None,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    workers: int = 1,
    min_score: float = DEFAULT_MIN_SCORE,
    script_filter: ScriptFilter | str | None = None,
    progress: bool = True,
) -> OcrRun:
    """OCR every sample of ``dataset``; return a new dataset whose samples carry ``ocr_tokens``.

    Args:
        dataset: the samples to read; it is not modified.
        engine: any :class:`~prodlens.ocr.base.OcrEngine`; default
            :class:`~prodlens.ocr.rapid.RapidOcrEngine` ``()``.
        cache_dir: cache root (default :func:`default_cache_dir`); entries go under
            ``{cache_dir}/{engine.key}/``.
        use_cache: ``False`` neither reads nor writes the cache (e.g. for benchmarks).
        workers: processes running the engine; each gets its own engine, with its
            onnxruntime threads capped at ``cores // workers`` when it supports that.
        min_score: lines with a lower engine confidence are dropped (cached lines are
            kept raw, so changing this never needs OCR again).
        script_filter: a :class:`~prodlens.ocr.scripts.ScriptFilter` or preset name
            (``"sv"``, ``"latin"``, ``"all"``, ...) applied to the words after the cache;
            ``None`` uses ``dataset.language``, else keeps everything. ``report.scripts``
            counts what it dropped.
        progress: show a tqdm progress bar.

    Images that cannot be read (missing, corrupt, too large) are skipped: the sample is
    kept unchanged and ``(path, reason)`` goes to ``report.skipped``.

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from prodlens.data.types import ClassList, ProductSample
    >>> from prodlens.ocr.base import FixedOcrEngine
    >>> tmp = pathlib.Path(tempfile.mkdtemp()); Image.new("RGB", (8, 4)).save(tmp / "a.png")
    >>> ds = Dataset([ProductSample("a", tmp / "a.png", "oat")], ClassList.from_names(["oat"]))
    >>> eng = FixedOcrEngine([{"quad": [[0, 0], [8, 0], [8, 4], [0, 4]], "text": "OAT MILK", "score": 0.9}])
    >>> out, report = run_ocr(ds, eng, cache_dir=tmp / "cache", progress=False)
    >>> [t.text for t in out.samples[0].ocr_tokens], report.computed
    (['OAT', 'MILK'], 1)
    >>> run_ocr(ds, eng, cache_dir=tmp / "cache", progress=False).report.from_cache
    1
    """
    _check_args(workers, min_score)
    scripts = resolve_filter(script_filter, dataset)
    if engine is None:
        from prodlens.ocr.rapid import RapidOcrEngine

        engine = RapidOcrEngine()
    cache = OcrCache(Path(cache_dir) if cache_dir is not None else default_cache_dir(), engine.key)
    start = time.perf_counter()
    samples = list(dataset.samples)
    raw: dict[int, list[Line]] = {}
    skipped: list[tuple[str, str]] = []
    jobs: list[tuple[int, Path]] = []
    shas: dict[int, str] = {}
    engine_seconds = 0.0
    if use_cache:
        log.info("OCR cache: %s", cache.root / cache.engine_key)

    bar = tqdm(total=len(samples), desc=f"OCR {engine.key}", unit="img", disable=not progress)
    try:
        for idx, s in enumerate(samples):  # 1) hash + cache lookup, in this process
            if not use_cache:
                jobs.append((idx, s.image_path))
                continue
            try:
                sha = file_sha256(s.image_path)
            except OSError as e:
                problem = f"cannot read the file ({e.strerror or e})"
                log.warning("skipping %s: %s", s.image_path, problem)
                skipped.append((str(s.image_path), problem))
                bar.update()
                continue
            hit = cache.get(sha)
            lines = _cached_lines(hit, cache, sha)
            if lines is not None:
                raw[idx] = lines
                bar.update()
            else:
                shas[idx] = sha
                jobs.append((idx, s.image_path))
        from_cache = len(raw)
        bar.set_postfix(cached=from_cache, todo=len(jobs))

        n_workers = min(workers, len(jobs))  # 2) compute the misses
        results = (
            _computed_parallel(engine, jobs, n_workers) if n_workers > 1 else _computed_serial(engine, jobs)
        )
        with contextlib.closing(results):  # stops the worker pool even if we fail here
            for idx, res in results:
                if isinstance(res, BadInputError):
                    record_skip(skipped, res, str(samples[idx].image_path))
                else:
                    lines, seconds = res  # type: ignore[misc]
                    if use_cache:
                        cache.put(shas[idx], lines, seconds)
                    raw[idx] = lines
                    engine_seconds += seconds
                bar.update()
    finally:
        bar.close()

    words = n_lines = no_text = 0
    filtered = ScriptFilterReport(scripts.preset)
    for idx, lines in sorted(raw.items()):
        kept = [ln for ln in lines if ln["score"] >= min_score]
        tokens, dropped = scripts.apply(lines_to_words(kept))
        filtered = filtered + dropped
        samples[idx] = samples[idx].with_tokens(tokens)
        words += len(tokens)
        n_lines += len(kept)
        no_text += not tokens
    report = OcrReport(
        engine=engine.key,
        images=len(samples),
        from_cache=from_cache,
        computed=len(raw) - from_cache,
        skipped=tuple(skipped),
        words=words,
        lines=n_lines,
        no_text=no_text,
        engine_seconds=engine_seconds,
        wall_seconds=time.perf_counter() - start,
        scripts=filtered,
    )
    log.info("%s", report.summary())
    return OcrRun(replace(dataset, samples=samples), report)


def _cached_lines(hit: dict | None, cache: OcrCache, sha: str) -> list[Line] | None:
    if hit is None:
        return None
    try:
        return validate_lines(hit["lines"], str(cache.path(sha)))
    except (KeyError, TypeError, ValueError) as e:
        log.warning("damaged OCR cache entry %s (%s); reading the image again", cache.path(sha), e)
        return None


def ocr_image(
    path: str | Path,
    engine: OcrEngine | None = None,
    *,
    cache_dir: str | Path | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    script_filter: ScriptFilter | str | None = None,
) -> list[OcrToken]:
    """Word tokens of one image file, through the same cache as :func:`run_ocr`
    (``script_filter``: as there; ``None`` keeps every token).

    Raises :class:`~prodlens.errors.BadInputError` when the image cannot be read.

    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from prodlens.ocr.base import FixedOcrEngine
    >>> tmp = pathlib.Path(tempfile.mkdtemp()); Image.new("RGB", (8, 4)).save(tmp / "a.png")
    >>> eng = FixedOcrEngine([{"quad": [[0, 0], [8, 0], [8, 4], [0, 4]], "text": "OATLY", "score": 0.9}])
    >>> [t.text for t in ocr_image(tmp / "a.png", eng, cache_dir=tmp)]
    ['OATLY']
    """
    _check_args(1, min_score)
    if engine is None:
        from prodlens.ocr.rapid import RapidOcrEngine

        engine = RapidOcrEngine()
    path = Path(path)
    cache = OcrCache(Path(cache_dir) if cache_dir is not None else default_cache_dir(), engine.key)
    try:
        sha = file_sha256(path)
    except OSError as e:
        raise BadInputError(path, f"cannot read the file ({e.strerror or e})", "check the path") from None
    lines = _cached_lines(cache.get(sha), cache, sha)
    if lines is None:
        lines, seconds = _compute(engine, path)
        cache.put(sha, lines, seconds)
    return resolve_filter(script_filter).apply(lines_to_words(lines, min_score=min_score))[0]
