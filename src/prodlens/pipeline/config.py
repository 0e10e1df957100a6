"""The pipeline's configuration: one TOML or JSON file, one frozen dataclass per stage.

A config names what to run; everything has a default, so the smallest config is
empty (the bundled sample, a Feature Concatenation model, every val photo explained).
Unknown keys and wrong types fail at load time, naming the file, the key, what was
given and what is allowed (close spellings suggested), before any work starts.

>>> cfg = PipelineConfig.from_dict({"name": "demo", "explain": {"max_samples": 100}})
>>> cfg.explain.max_samples, cfg.train.model, cfg.executor.kind
(100, 'concat', 'local')
>>> PipelineConfig.from_dict({"explain": {"sampels": 100}})
Traceback (most recent call last):
...
prodlens.pipeline.config.PipelineConfigError: <dict>: [explain] has no setting 'sampels'; did you mean 'max_samples'? \
Allowed: split, classes, limit, max_samples, early_stop, segments, fill, batch_size, targets, resolution, device, quality, \
method, verify, fit_masks, fit_photos, amortised_features, refine
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodlens._validation import did_you_mean
from prodlens.data.types import SPLITS
from prodlens.errors import ConfigError
from prodlens.explain.interpretable import FILLS

if typing.TYPE_CHECKING:  # pragma: no cover
    from prodlens.explain.amortised import AmortisedExplainer
    from prodlens.explain.lime import MultimodalLime

#: Stage names, in the order they run.
STAGES = ("ocr", "train", "explain", "global", "deletion", "store", "match", "sanity")


#: What early stopping may watch (``[train] select``).
SELECT = ("train-fold", "val")
#: The named ``[global] embedding`` choices (anything else is a checkpoint path).
EMBEDDINGS = ("auto", "model", "adapted")
#: How the deletion test keeps its tested photos out of the global features (``[deletion] holdout``).
HOLDOUTS = ("crossfit", "none")


class PipelineConfigError(ConfigError):
    """A pipeline config file is missing, unreadable or has a bad setting; the message names
    the file (or ``<dict>``), the section and the setting. (A :class:`~prodlens.errors.ConfigError`:
    an option out of range anywhere else.)"""


def _fail(section: str, message: str) -> typing.NoReturn:
    where = f"[{section}] " if section else ""
    raise ValueError(f"{where}{message}")


def _either(names: typing.Sequence[str]) -> str:
    """``'a', 'b' or 'c'`` (a rule's wording from its vocabulary).

    >>> _either(("mean", "black", "blur"))
    "'mean', 'black' or 'blur'"
    """
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _check(section: str, ok: bool, name: str, rule: str, value: Any) -> None:
    if not ok:
        _fail(section, f"{name} must be {rule}; got {value!r}")


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DataConfig:
    """Which photos: ``dataset`` is ``"sample"`` (the bundled GroceryStore subset) or a
    dataset folder with ``manifest.jsonl``; ``classes`` keeps a subset (empty: all);
    ``max_per_class`` caps photos per class and split (0: all)."""

    dataset: str = "sample"
    classes: list[str] = field(default_factory=list)
    max_per_class: int = 0

    def __post_init__(self) -> None:
        _check("data", self.max_per_class >= 0, "max_per_class", "an int >= 0 (0 keeps every photo)", self.max_per_class)


@dataclass(frozen=True)
class OcrConfig:
    """OCR: ``engine`` ``"rapidocr"`` (offline, cached by image hash) or ``"none"`` (keep
    the tokens the manifest already has, e.g. from an imported Vision JSON). ``scripts``
    drops tokens in other scripts (:mod:`prodlens.ocr.scripts` preset, e.g. ``"sv"``,
    ``"latin"``, ``"all"``); empty: the dataset's ``language``, else keep all."""

    engine: str = "rapidocr"
    min_score: float = 0.5
    workers: int = 1
    scripts: str = ""

    def __post_init__(self) -> None:
        if self.scripts:
            from prodlens.ocr.scripts import ScriptFilter

            try:
                ScriptFilter.from_preset(self.scripts)
            except ValueError as e:
                _fail("ocr", f"scripts: {e}")
        _check("ocr", self.engine in ("rapidocr", "none"), "engine", "'rapidocr' or 'none'", self.engine)
        _check("ocr", 0.0 <= self.min_score <= 1.0, "min_score", "between 0 and 1", self.min_score)
        _check("ocr", self.workers >= 1, "workers", "an int >= 1", self.workers)


@dataclass(frozen=True)
class TrainSection:
    """Training (see :class:`~prodlens.train.TrainConfig`); ``checkpoint`` uses an
    existing checkpoint instead of training. ``backbone`` and ``head`` are passed to the
    model factories (e.g. ``backbone = {input_size = 128}``).

    ``adapt_blocks`` > 0: two-stage training. First an image-only model is trained with
    the image backbone's last ``adapt_blocks`` blocks (``adapt_epochs`` epochs, cosine
    schedule); then ``model`` is trained on that adapted backbone. The adapted image
    model is also what the global step embeds superpixels with (``[global] embedding``).
    ``select``: what early stopping watches, ``"train-fold"`` (the last 10% of each
    train class; val stays untouched until the one evaluation at the end) or ``"val"``
    (the paper's protocol; the reported val accuracy is then optimistic)."""

    model: str = "concat"
    image_backbone: str = "efficientnet_lite0"
    text_backbone: str = "minilm"
    backbone: dict = field(default_factory=dict)
    head: dict = field(default_factory=dict)
    mode: str = "fast"
    views: int = 2
    epochs: int | None = None
    patience: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    checkpoint: str = ""
    adapt_blocks: int = 0
    adapt_epochs: int = 8
    select: str = "train-fold"

    def __post_init__(self) -> None:
        _check("train", self.mode in ("fast", "finetune"), "mode", "'fast' or 'finetune'", self.mode)
        _check("train", self.adapt_blocks >= 0, "adapt_blocks", "an int >= 0 (0: one-stage training)", self.adapt_blocks)
        _check("train", self.adapt_epochs >= 1, "adapt_epochs", "an int >= 1", self.adapt_epochs)
        _check("train", self.select in SELECT, "select", _either(SELECT), self.select)
        _check("train", not (self.adapt_blocks and self.model == "text"), "adapt_blocks",
               "0 for a text-only model (it has no image backbone to adapt)", self.adapt_blocks)
        _check("train", self.views >= 1, "views", "an int >= 1 (view 0 is the plain photo)", self.views)
        for name in ("epochs", "patience", "batch_size"):
            v = getattr(self, name)
            _check("train", v is None or v >= 1, name, "an int >= 1 or left out (the mode's default)", v)
        _check("train", self.lr is None or self.lr > 0, "lr", "a number > 0 or left out", self.lr)


#: How the explain stage explains: multimodal LIME per photo, or the amortised explainer.
METHODS = ("lime", "amortised")


@dataclass(frozen=True)
class ExplainConfig:
    """Multimodal LIME over every photo of ``split`` (``classes``: only photos of these
    classes; ``limit`` > 0: the first that many, spread over classes). ``targets``:
    ``"auto"`` explains the predicted class and the true class when they differ;
    ``"all"`` every class.

    ``method = "amortised"``: an :class:`~prodlens.explain.AmortisedExplainer` is fitted on
    the train split (``fit_photos`` of them, 0 = all, ``fit_masks`` random masks each, the
    explainer's frozen ``amortised_features``), saved next to the checkpoint, and explains
    every photo with one model call (``refine`` > 0: plus that many real masks per photo, which
    correct the network's weights; not part of the fit); ``verify`` (a share in [0, 1]) of them, the least
    confident half and a random half, are explained again by LIME (``samples`` etc.) and the
    agreement goes into the run summary and the store."""

    split: str = "val"
    classes: list[str] = field(default_factory=list)
    limit: int = 0
    #: most perturbations per photo (the explainer's ``max_samples``; early stopping may use fewer)
    max_samples: int = 300
    early_stop: bool = True
    segments: int = 100
    fill: str = "mean"
    batch_size: int = 8
    targets: str = "auto"
    resolution: str = "auto"
    device: str = "cpu"
    #: score every explanation (faithfulness, stability, fit; prodlens.explain.quality)
    quality: bool = True
    method: str = "lime"
    verify: float = 0.0
    fit_masks: int = 64
    fit_photos: int = 0
    amortised_features: str = "backbone"
    refine: int = 0

    def __post_init__(self) -> None:
        from prodlens.explain.amortised.features import FEATURIZERS

        _check("explain", self.method in METHODS, "method", _either(METHODS), self.method)
        _check("explain", 0 <= self.verify <= 1, "verify", "a share in [0, 1] (of the photos re-explained with LIME)", self.verify)
        _check("explain", self.fit_masks >= 2, "fit_masks", "an int >= 2", self.fit_masks)
        _check("explain", self.fit_photos >= 0, "fit_photos", "an int >= 0 (0 fits on every train photo)", self.fit_photos)
        _check("explain", self.amortised_features in FEATURIZERS, "amortised_features", _either(tuple(FEATURIZERS)),
               self.amortised_features)
        _check("explain", self.refine >= 0, "refine", "an int >= 0 (real masks per photo; 0: none)", self.refine)
        _check("explain", self.limit >= 0, "limit", "an int >= 0 (0 explains every photo of the split)", self.limit)
        _check("explain", self.segments >= 2, "segments", "an int >= 2", self.segments)
        _check("explain", self.fill in FILLS, "fill", _either(FILLS), self.fill)
        _check("explain", self.targets in ("auto", "all"), "targets", "'auto' or 'all'", self.targets)
        _check("explain", self.resolution in ("auto", "model", "full"), "resolution", "'auto', 'model' or 'full'", self.resolution)
        try:  # the explainer's own checks (max_samples, batch_size, ...), worded once there
            self.explainer(0).validate()
        except ValueError as e:
            _fail("explain", str(e))

    def amortised(self, seed: int, cache_dir: str | Path | None = None) -> AmortisedExplainer:
        """The configured, unfitted :class:`~prodlens.explain.AmortisedExplainer` (same
        segmentation and fill as LIME's; ``cache_dir`` keeps its evaluated masks).

        >>> ExplainConfig(fit_masks=32, refine=8).amortised(0).get_params()["n_masks"]
        32
        """
        from prodlens.explain.amortised import AmortisedExplainer

        return AmortisedExplainer(
            n_masks=self.fit_masks, features=self.amortised_features, n_segments=self.segments, fill=self.fill,
            batch_size=self.batch_size, seed=seed, resolution=None if self.resolution == "full" else self.resolution,
            refine=self.refine, cache_dir=cache_dir, progress=False,
        )

    def explainer(self, seed: int) -> MultimodalLime:
        """The configured explainer (it only stores these settings: it is what travels to
        the workers, pickled).

        >>> ExplainConfig(max_samples=50).explainer(0).max_samples
        50
        """
        from prodlens.explain.lime import MultimodalLime

        return MultimodalLime(
            max_samples=self.max_samples, n_segments=self.segments, fill=self.fill,
            early_stop=self.early_stop, batch_size=self.batch_size, seed=seed,
            resolution=None if self.resolution == "full" else self.resolution, progress=False,
            quality=bool(self.quality),
        )


@dataclass(frozen=True)
class GlobalConfig:
    """Per-class global explanations (:class:`~prodlens.aggregate.GlobalExplainer`).

    ``embedding``: the image model that embeds superpixel crops for clustering:
    ``"auto"`` (the adapted image model of ``[train] adapt_blocks`` when there is one,
    else the run's model), ``"model"`` (the run's model), ``"adapted"`` (the adapted
    image model; an error without ``adapt_blocks``) or a checkpoint path. A
    pretrained-only backbone is used with a warning (the paper found it clusters
    poorly); the global result records which model embedded."""

    enabled: bool = True
    embedding: str = "auto"
    modalities: list[str] = field(default_factory=lambda: ["image", "text"])
    top_k_local: int = 3
    max_features: int = 10
    min_support: int = 1
    min_cluster_size: int = 2

    def __post_init__(self) -> None:
        _check_modalities("global", self.modalities)
        for name in ("top_k_local", "max_features", "min_support"):
            _check("global", getattr(self, name) >= 1, name, "an int >= 1", getattr(self, name))
        _check("global", self.min_cluster_size >= 2, "min_cluster_size", "an int >= 2 (HDBSCAN)", self.min_cluster_size)
        _check("global", bool(self.embedding), "embedding", "'auto', 'model', 'adapted' or a checkpoint path",
               self.embedding)


@dataclass(frozen=True)
class DeletionConfig:
    """The deletion test (:func:`~prodlens.aggregate.deletion_test`); needs the global stage.

    ``holdout``: ``"crossfit"`` (default) deals the explained photos into ``folds``
    folds and tests each against global features built on the others
    (:func:`~prodlens.aggregate.crossfit_deletion_test`), so no photo tests a selection
    it took part in; ``"none"`` tests the global features of the whole run on the photos
    they were built on, and ``in_sample`` says what then happens (``"warn"``,
    ``"error"`` or ``"allow"``). The result states which. ``radius_scale``: a held-out
    photo's superpixel belongs to an image cluster within this many cluster radii
    (:class:`~prodlens.aggregate.ImageMatcher`)."""

    enabled: bool = True
    holdout: str = "crossfit"
    folds: int = 2
    radius_scale: float = 1.0
    modalities: list[str] = field(default_factory=lambda: ["image", "text"])
    top_k: int = 3
    fill: str = "black"
    repeats: int = 1
    in_sample: str = "warn"

    def __post_init__(self) -> None:
        _check_modalities("deletion", self.modalities)
        _check("deletion", self.top_k >= 1, "top_k", "an int >= 1", self.top_k)
        _check("deletion", self.fill in FILLS, "fill", _either(FILLS), self.fill)
        _check("deletion", self.repeats >= 1, "repeats", "an int >= 1", self.repeats)
        _check("deletion", self.holdout in HOLDOUTS, "holdout", _either(HOLDOUTS), self.holdout)
        _check("deletion", self.folds >= 2, "folds", "an int >= 2", self.folds)
        _check("deletion", self.radius_scale > 0, "radius_scale", "a number > 0", self.radius_scale)
        _check("deletion", self.in_sample in ("warn", "error", "allow"), "in_sample", "'warn', 'error' or 'allow'",
               self.in_sample)


@dataclass(frozen=True)
class MatchConfig:
    """Product matching (:func:`~prodlens.match.evaluate_matching`): every ``queries``
    photo against the ``gallery`` photos with the zero-shot embedding of ``kind``
    (``"fused"``, ``"image"`` or ``"text"``; ``text_weight`` for fused), stored as the
    run ``{name}-match``. ``explain``: also explain why the correctly matched query with
    the most OCR words matches (RISE saliency, shared words; the slowest part of this stage)."""

    enabled: bool = False
    kind: str = "fused"
    text_weight: float = 0.2
    queries: str = "val"
    gallery: str = "train"
    explain: bool = False

    def __post_init__(self) -> None:
        _check("match", self.kind in ("fused", "image", "text"), "kind", "'fused', 'image' or 'text'", self.kind)
        _check("match", 0.0 <= self.text_weight <= 1.0, "text_weight", "between 0 and 1", self.text_weight)
        for name in ("queries", "gallery"):
            v = getattr(self, name)
            _check("match", v in SPLITS or (name == "gallery" and v == "iconic"), name,
                   _either(SPLITS) + (" or 'iconic'" if name == "gallery" else ""), v)


@dataclass(frozen=True)
class SanityConfig:
    """The model-randomisation test (:func:`~prodlens.explain.model_randomisation_test`)
    on ``limit`` of the explained photos (spread over classes): each explained with the
    trained model, again under another seed (the noise floor) and with each ``randomise``
    copy (``"head"``, ``"head+blocks<N>"``), at most ``max_samples`` perturbations each
    (the other explainer settings are ``[explain]``'s);
    stored as the run ``sanity-{name}``, which the explorer's Sanity tab shows."""

    enabled: bool = False
    limit: int = 3
    randomise: list[str] = field(default_factory=lambda: ["head"])
    max_samples: int = 300

    def __post_init__(self) -> None:
        _check("sanity", self.limit >= 1, "limit", "an int >= 1", self.limit)
        try:  # the explainer's own check, worded once there
            from prodlens.explain.lime import MultimodalLime

            MultimodalLime(max_samples=self.max_samples).validate()
        except ValueError as e:
            _fail("sanity", str(e))
        _check("sanity", bool(self.randomise), "randomise", "a non-empty list such as ['head']", self.randomise)


@dataclass(frozen=True)
class ExecutorConfig:
    """Where the explain stage runs: ``kind`` ``"local"`` (``workers`` processes; 1 runs
    in this process) or ``"ray"`` (``workers`` actors on the cluster at ``ray_address``,
    or a local Ray instance when empty, each asking for ``num_gpus``). ``threads``: torch
    threads per worker (0: the machine's cores divided among the workers)."""

    kind: str = "local"
    workers: int = 1
    threads: int = 0
    ray_address: str = ""
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        _check("executor", self.kind in ("local", "ray"), "kind", "'local' or 'ray'", self.kind)
        _check("executor", self.workers >= 1, "workers", "an int >= 1", self.workers)
        _check("executor", self.threads >= 0, "threads", "an int >= 0 (0: cores / workers)", self.threads)
        _check("executor", self.num_gpus >= 0, "num_gpus", "a number >= 0", self.num_gpus)
        _check("executor", self.kind == "ray" or not self.ray_address, "ray_address",
               "empty unless kind = 'ray'", self.ray_address)


def _check_modalities(section: str, mods: list[str]) -> None:
    ok = bool(mods) and all(m in ("image", "text") for m in mods) and len(set(mods)) == len(mods)
    _check(section, ok, "modalities", "a non-empty list of 'image' and/or 'text'", mods)


_SECTIONS: dict[str, type] = {
    "data": DataConfig, "ocr": OcrConfig, "train": TrainSection, "explain": ExplainConfig,
    "global": GlobalConfig, "deletion": DeletionConfig, "match": MatchConfig, "sanity": SanityConfig,
    "executor": ExecutorConfig,
}
_TOP = ("name", "out", "store", "cache_dir", "seed")


# --------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one ``prodlens run`` does. ``out`` holds every result file; ``store`` is
    a SQLite path or PostgreSQL URL (default ``{out}/prodlens.sqlite``); ``cache_dir``
    holds the OCR and feature caches (default ``{out}/cache``); ``seed`` is the one seed
    of every stage. Relative paths in a config file are relative to that file.

    >>> PipelineConfig(out="runs/x").store_target
    'runs/x/prodlens.sqlite'
    """

    name: str = "pipeline"
    out: str = "work/pipeline"
    store: str = ""
    cache_dir: str = ""
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    ocr: OcrConfig = field(default_factory=OcrConfig)
    train: TrainSection = field(default_factory=TrainSection)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    global_: GlobalConfig = field(default_factory=GlobalConfig)
    deletion: DeletionConfig = field(default_factory=DeletionConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    source: str = field(default="<dict>", compare=False)

    def __post_init__(self) -> None:
        _check("", bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name), "name",
               "a non-empty run name of letters, digits, '-', '_' or '.'", self.name)
        _check("", bool(self.out), "out", "an output folder", self.out)
        _check("", self.deletion.enabled <= self.global_.enabled, "deletion.enabled",
               "false when global.enabled is false (the test deletes global features)", self.deletion.enabled)

    # -- derived paths ----------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        return Path(self.out)

    @property
    def store_target(self) -> str:
        return self.store or str(self.out_dir / "prodlens.sqlite")

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else self.out_dir / "cache"

    # -- building ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: dict, *, source: str = "<dict>", base: Path | None = None) -> PipelineConfig:
        """Build and validate a config from a parsed TOML/JSON mapping.

        ``base`` is the folder relative paths (``out``, ``store``, ``cache_dir``,
        ``data.dataset``, ``train.checkpoint``) are resolved against. Raises
        :class:`PipelineConfigError` naming ``source``.
        """
        try:
            if not isinstance(raw, dict):
                _fail("", f"the config must be a table of settings, got {type(raw).__name__}")
            allowed = (*_TOP, *_SECTIONS)
            _unknown("", raw, allowed)
            top = {k: _typed("", cls, k, raw[k]) for k in _TOP if k in raw}
            sections = {}
            for name, section_cls in _SECTIONS.items():
                body = raw.get(name, {})
                if not isinstance(body, dict):
                    _fail("", f"[{name}] must be a table of settings, got {body!r}")
                _unknown(name, body, [f.name for f in dataclasses.fields(section_cls)])
                sections["global_" if name == "global" else name] = section_cls(
                    **{k: _typed(name, section_cls, k, v) for k, v in body.items()}
                )
            cfg = cls(**top, **sections, source=source)
        except ValueError as e:
            raise PipelineConfigError(f"{source}: {e}") from None
        return cfg.resolved(base) if base is not None else cfg

    def resolved(self, base: Path) -> PipelineConfig:
        """A copy with relative paths made relative to ``base`` (a config file's folder)."""

        def rel(p: str) -> str:
            return p if not p or "://" in p or Path(p).is_absolute() else str(base / p)

        data = self.data if self.data.dataset == "sample" else dataclasses.replace(self.data, dataset=rel(self.data.dataset))
        return dataclasses.replace(
            self, out=rel(self.out), store=rel(self.store), cache_dir=rel(self.cache_dir), data=data,
            train=dataclasses.replace(self.train, checkpoint=rel(self.train.checkpoint)),
            global_=dataclasses.replace(self.global_, embedding=self.global_.embedding if self.global_.embedding in
                                        EMBEDDINGS else rel(self.global_.embedding)),
        )

    def with_overrides(self, **executor: Any) -> PipelineConfig:
        """A copy with executor settings replaced (``None`` values are ignored), as the
        CLI's ``--executor``/``--workers``/``--ray-address`` do.

        >>> PipelineConfig().with_overrides(kind="ray", workers=None).executor.kind
        'ray'
        """
        given = {k: v for k, v in executor.items() if v is not None}
        try:
            return dataclasses.replace(self, executor=dataclasses.replace(self.executor, **given))
        except ValueError as e:
            raise PipelineConfigError(f"{self.source}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (sections under their config-file names).

        >>> PipelineConfig().to_dict()["global"]["min_support"]
        1
        """
        d = dataclasses.asdict(self)
        d.pop("source")
        d["global"] = d.pop("global_")
        return d


def _unknown(section: str, body: dict, allowed: typing.Sequence[str]) -> None:
    for key in body:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed, n=1)
            where = f"[{section}]" if section else "the config"
            raise ValueError(f"{where} has no setting {key!r}{hint} Allowed: {', '.join(allowed)}")


def _typed(section: str, cls: type, name: str, value: Any) -> Any:
    """``value`` checked against the annotation of ``cls.name`` (ints are accepted as floats)."""
    hint = typing.get_type_hints(cls)[name]
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for t in options:
        origin = typing.get_origin(t) or t
        if t is type(None) and value is None:
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if origin in (str, bool, dict) and type(value) is origin:
            return value
    names = " or ".join(
        "list of strings" if typing.get_origin(t) is list else "left out" if t is type(None) else t.__name__
        for t in options
    )
    article = "an" if names[0] in "aeiou" else "a"
    _fail(section, f"{name} must be {article} {names}; got {value!r} ({type(value).__name__})")


def presets() -> dict[str, Path]:
    """The configs shipped with prodlens (``prodlens run NAME`` runs one), by name.

    >>> sorted(presets())
    ['demo']
    """
    folder = Path(__file__).with_name("presets")
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def load_config(path: str | Path) -> PipelineConfig:
    """Read a ``.toml`` or ``.json`` pipeline config; relative paths are relative to it.

    ``path`` may also name a shipped preset (:func:`presets`, e.g. ``"demo"``); its
    relative paths are relative to the current folder.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "run.toml"
    >>> _ = p.write_text('name = "tiny"\\n[explain]\\nmax_samples = 64\\n')
    >>> cfg = load_config(p)
    >>> cfg.name, cfg.explain.max_samples, cfg.out_dir == p.parent / "work/pipeline"
    ('tiny', 64, True)
    >>> load_config("demo").out
    'work/demo'
    """
    path = Path(path)
    base: Path | None = None
    if not path.is_file() and str(path) in presets():
        path, base = presets()[str(path)], Path(".")
    if not path.is_file():
        raise PipelineConfigError(f"{path}: config file not found; pass a .toml or .json file (see docs/pipeline.md) "
                          f"or a preset name ({', '.join(presets())})")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
        elif path.suffix == ".toml":
            raw = tomllib.loads(text)
        else:
            raise PipelineConfigError(f"{path}: unknown config format {path.suffix!r}; name it .toml or .json")
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise PipelineConfigError(f"{path}: not valid {path.suffix[1:].upper()} ({e}); fix the file") from None
    return PipelineConfig.from_dict(raw, source=str(path), base=base if base is not None else path.resolve().parent)


def _jsonable(x: Any) -> Any:
    return dataclasses.asdict(x) if dataclasses.is_dataclass(x) and not isinstance(x, type) else str(x)


def stage_key(*parts: Any) -> str:
    """A short stable hash of JSON-able ``parts``: the identity of a stage's work.

    A stage's key covers its own settings and the keys of the stages it reads, so a
    changed upstream setting gives new keys downstream (and new work) while finished
    work under the old keys is kept.

    >>> stage_key({"a": 1}, "x") == stage_key({"a": 1}, "x") != stage_key({"a": 2}, "x")
    True
    """
    text = json.dumps(parts, sort_keys=True, default=_jsonable, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]
