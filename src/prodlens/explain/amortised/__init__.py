"""The amortised explainer: LIME weights in one network pass, fitted once per classifier.

>>> from prodlens.explain.amortised import AmortisedExplainer, amortised_path
>>> amortised_path("runs/concat.pt").name
'concat.amortised.pt'
"""

from prodlens.explain.amortised.explainer import (
    AmortisedExplainer,
    ClassifierMismatchError,
    amortised_path,
    classifier_fingerprint,
    fingerprint_mismatch,
    probe_input,
)
from prodlens.explain.amortised.features import BackboneFeatures, Featurizer, PhotoFeatures, SimpleFeatures, make_featurizer
from prodlens.explain.amortised.verify import VerifyReport, choose_verified, verify

__all__ = [
    "AmortisedExplainer",
    "BackboneFeatures",
    "ClassifierMismatchError",
    "Featurizer",
    "PhotoFeatures",
    "SimpleFeatures",
    "VerifyReport",
    "amortised_path",
    "choose_verified",
    "classifier_fingerprint",
    "fingerprint_mismatch",
    "make_featurizer",
    "probe_input",
    "verify",
]
