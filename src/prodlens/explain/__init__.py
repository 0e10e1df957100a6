"""Local explanations: multimodal LIME over superpixels and OCR tokens.

>>> from prodlens.explain import MultimodalLime
>>> MultimodalLime(max_samples=500).max_samples
500
"""

from prodlens.explain.agreement import agreement, sign_agreement, spearman, top_overlap
from prodlens.explain.evaluation import CachedEvaluator, ModelOutputError, has_feature_path
from prodlens.explain.explanation import Explanation
from prodlens.explain.factorised import (
    FactorGrid,
    FactorisedSampler,
    FactorisedSamplingError,
    GridSampler,
    all_masks,
    distinct_masks,
)
from prodlens.explain.interpretable import FILLS, ModelInputs, MultimodalInput, fill_image
from prodlens.explain.kernels import ExponentialKernel, Kernel, cosine_distance_to_ones
from prodlens.explain.quality import ExplanationQuality, QualityCheck
from prodlens.explain.lime import MultimodalLime, explain_sample
from prodlens.explain.result import SampleExplanations
from prodlens.explain.amortised import AmortisedExplainer, ClassifierMismatchError, VerifyReport, amortised_path
from prodlens.explain.sampling import BernoulliSampler, OrthogonalSampler, PairedSampler, Sampler
from prodlens.explain.sanity import SanityReport, SanityResult, model_randomisation_test
from prodlens.explain.segmentation import (
    FunctionSegmenter,
    GridSegmenter,
    Segmenter,
    SlicSegmenter,
    make_segmenter,
    relabel_contiguous,
)
from prodlens.explain.stopping import EarlyStopping, top_k_sets
from prodlens.explain.surrogate import RidgeSurrogate, Surrogate, SurrogateFit, weighted_r2

__all__ = [
    "AmortisedExplainer",
    "ClassifierMismatchError",
    "VerifyReport",
    "agreement",
    "amortised_path",
    "sign_agreement",
    "spearman",
    "top_overlap",
    "BernoulliSampler",
    "CachedEvaluator",
    "EarlyStopping",
    "Explanation",
    "ExplanationQuality",
    "ExponentialKernel",
    "FactorGrid",
    "FactorisedSampler",
    "FactorisedSamplingError",
    "FILLS",
    "FunctionSegmenter",
    "GridSampler",
    "GridSegmenter",
    "Kernel",
    "QualityCheck",
    "ModelInputs",
    "MultimodalInput",
    "MultimodalLime",
    "OrthogonalSampler",
    "PairedSampler",
    "RidgeSurrogate",
    "SampleExplanations",
    "SanityReport",
    "SanityResult",
    "Sampler",
    "Segmenter",
    "SlicSegmenter",
    "Surrogate",
    "SurrogateFit",
    "all_masks",
    "cosine_distance_to_ones",
    "distinct_masks",
    "explain_sample",
    "fill_image",
    "has_feature_path",
    "make_segmenter",
    "model_randomisation_test",
    "relabel_contiguous",
    "top_k_sets",
    "weighted_r2",
]
