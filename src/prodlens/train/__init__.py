"""Training, feature caching and evaluation of recognition models.

>>> from prodlens.train import TrainConfig
>>> TrainConfig(mode="fast").resolved().lr
0.001
"""

from prodlens.train.augment import AugmentConfig
from prodlens.train.config import TrainConfig
from prodlens.train.features import FeatureCache, image_features, text_features
from prodlens.train.heads_fit import EpochLog, FeatureSet, fit_head
from prodlens.train.metrics import EvalReport, evaluate, evaluate_probs, report_markdown, write_report
from prodlens.train.trainer import Trainer, TrainResult, grouped_folds, stratified_holdout, train_model

__all__ = [
    "AugmentConfig", "EpochLog", "EvalReport", "FeatureCache", "FeatureSet", "TrainConfig", "TrainResult", "Trainer",
    "evaluate", "evaluate_probs", "fit_head", "grouped_folds", "image_features", "report_markdown", "stratified_holdout",
    "text_features", "train_model", "write_report",
]
