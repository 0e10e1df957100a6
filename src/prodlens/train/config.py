"""Training configuration with per-mode defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from prodlens._validation import check_int
from prodlens.errors import ConfigError
from prodlens.train.augment import AugmentConfig

MODES = ("fast", "finetune")

#: Defaults that differ by mode. ``finetune`` follows the paper (Adam, lr 2e-5,
#: weight decay 1e-4, batch 16); ``fast`` trains only heads on cached features, where a
#: higher learning rate is appropriate.
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "fast": {"lr": 1e-3, "epochs": 100, "patience": 15, "batch_size": 64},
    "finetune": {"lr": 2e-5, "epochs": 30, "patience": 5, "batch_size": 16},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. ``None`` fields take the mode's default.

    >>> TrainConfig().resolved().lr
    0.001
    >>> TrainConfig(mode="finetune").resolved().lr
    2e-05
    """

    mode: str = "fast"
    lr: float | None = None
    weight_decay: float = 1e-4
    batch_size: int | None = None
    epochs: int | None = None
    patience: int | None = None
    views: int = 8
    aug: AugmentConfig = field(default_factory=AugmentConfig)
    label_smoothing: float = 0.0
    val_fraction: float = 0.1
    #: without a validation set: hold out the "tail" (last ids) or a "random" ``val_fraction``
    #: of each class for early stopping, or "none": train on everything for exactly ``epochs``
    #: epochs and keep the last weights (fast mode; e.g. an epoch count chosen on folds)
    holdout: str = "tail"
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    feature_cache: str | None = None
    #: fast mode: also train the image backbone's last ``train_blocks`` blocks (0: head only),
    #: on cached feature maps of the frozen trunk, at ``lr * tail_lr_scale``.
    train_blocks: int = 0
    tail_lr_scale: float = 0.3
    #: fast mode learning-rate schedule: "constant" or "cosine" (warm-up, then cosine decay over ``epochs``)
    schedule: str = "constant"
    #: start the image backbone from this checkpoint's trained one (two-stage training)
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        check_int("views", self.views, 1, why="view 0 is the plain image", error=ConfigError)
        if self.holdout not in ("tail", "random", "none"):
            raise ConfigError(f"holdout must be 'tail', 'random' or 'none', got {self.holdout!r}")
        if self.holdout == "none" and self.mode != "fast":
            raise ConfigError("holdout='none' applies to mode='fast' (mode='finetune' needs a validation set)")
        check_int("train_blocks", self.train_blocks, 0, error=ConfigError)
        if self.train_blocks and self.mode != "fast":
            raise ConfigError("train_blocks applies to mode='fast' (mode='finetune' trains the whole backbone)")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.tail_lr_scale <= 0:
            raise ConfigError(f"tail_lr_scale must be > 0, got {self.tail_lr_scale}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for name in ("lr", "batch_size", "epochs"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"{name} must be > 0, got {v}")

    @property
    def changes_backbones(self) -> bool:
        """Whether the trained model's backbone weights differ from the shipped ones
        (so its checkpoint must carry them)."""
        return self.mode == "finetune" or self.train_blocks > 0 or bool(self.init_from)

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` replaced by the mode's default."""
        d = MODE_DEFAULTS[self.mode]
        return replace(self, **{k: (getattr(self, k) if getattr(self, k) is not None else v) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["aug"] = asdict(self.aug)
        return d
