"""Recognition models: registry, image and text backbones, fusion heads, checkpoints, adapters.

>>> from prodlens.models import build_classifier, list_models
>>> list_models("head")
['concat', 'embracenet', 'image', 'score_fusion', 'text']
"""

from prodlens.models.adapters import CallableClassifier, OnnxClassifier, TorchClassifier, as_classifier
from prodlens.models.base import Classifier
from prodlens.models.checkpoint import load_classifier, read_checkpoint, save_checkpoint
from prodlens.models.classifier import ProductClassifier, build_classifier
from prodlens.models.ensemble import EnsembleClassifier, load_ensemble
from prodlens.models.errors import CheckpointError, MissingWeightsError
from prodlens.models.preprocess import PreprocessConfig
from prodlens.models.randomise import randomised_copy
from prodlens.models.registry import create_model, list_models, register_model

__all__ = [
    "CallableClassifier", "CheckpointError", "Classifier", "EnsembleClassifier", "MissingWeightsError", "OnnxClassifier",
    "PreprocessConfig", "ProductClassifier", "TorchClassifier", "as_classifier", "build_classifier",
    "create_model", "list_models", "load_classifier", "load_ensemble", "randomised_copy", "read_checkpoint", "register_model",
    "save_checkpoint",
]
