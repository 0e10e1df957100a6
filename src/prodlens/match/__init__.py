"""Product matching (embedding retrieval) and explanations of why two products match.

* embeddings: :class:`MatchEmbedding` (zero-shot backbone features, or a projection
  learned with normalised softmax / supervised contrastive loss on cached features),
  :class:`BackboneEmbedder` (photos + OCR tokens -> embeddings), :func:`fuse`;
* search: :func:`make_index` (exact numpy search, or faiss ``hnsw``/``ivf``/``flat``);
* evaluation: :func:`evaluate_retrieval`, :func:`evaluate_matching` (top-k overall and
  per class), :func:`cross_validate` on training folds;
* open-set evaluation (products the embedding never saw): :func:`unseen_class_folds`,
  :func:`k_shots`, :func:`class_scores`, :func:`rank_of_truth`;
* explanation: :class:`MatchExplainer` (RISE or LIME saliency on both photos, shared OCR
  words as attributes measured by removing them from both products, deletion and
  insertion curves) -> :class:`MatchExplanation`, drawn by :func:`render_match`;
  :func:`contrast_matches`: why the runner-up did not match.

>>> import numpy as np
>>> from prodlens.match import make_index
>>> make_index("exact").add(np.eye(3)).search(np.eye(3)[:1], k=1).ids.tolist()
[[0]]
"""

from prodlens.match.attributes import WordAttribution, word_attributions, word_deletion_curve
from prodlens.match.base import KINDS, Embedder, combine, fuse, modalities
from prodlens.match.contrast import MatchContrast, WordContrast, contrast_matches
from prodlens.match.deletion import DeletionCurve, deletion_curve, image_deletion_curve, trapezoid_auc
from prodlens.match.backbones import load_backbones
from prodlens.match.embedder import BackboneEmbedder
from prodlens.match.embedding import MatchEmbedding
from prodlens.match.errors import MatchError, MissingDependencyError
from prodlens.match.explainer import MatchExplainer, explain_match
from prodlens.match.explanation import MatchExplanation
from prodlens.match.index import ExactIndex, FaissIndex, Index, SearchResult, l2_normalize, make_index
from prodlens.match.openset import class_scores, k_shots, rank_of_truth, unseen_class_folds
from prodlens.match.pipeline import (
    ExplainedMatch,
    Neighbor,
    ProductFeatures,
    catalogue_samples,
    evaluate_matching,
    explain_dataset_match,
    fit_matching,
    nearest_matches,
    product_features,
    zero_shot,
)
from prodlens.match.render import overlay_saliency, render_match
from prodlens.match.retrieval import ClassRetrieval, RetrievalResult, evaluate_retrieval, hits_at_k, topk_accuracy
from prodlens.match.saliency import LimeSaliency, RiseSaliency, SaliencyMethod, make_saliency
from prodlens.match.selection import CvScore, best_setting, class_folds, cross_validate
from prodlens.match.words import WordMatch, normalize_word, shared_words, word_similarity

__all__ = [
    "KINDS",
    "BackboneEmbedder",
    "ClassRetrieval",
    "CvScore",
    "DeletionCurve",
    "Embedder",
    "ExactIndex",
    "ExplainedMatch",
    "FaissIndex",
    "Index",
    "LimeSaliency",
    "MatchEmbedding",
    "MatchContrast",
    "MatchError",
    "MatchExplainer",
    "MatchExplanation",
    "MissingDependencyError",
    "Neighbor",
    "ProductFeatures",
    "RetrievalResult",
    "RiseSaliency",
    "SaliencyMethod",
    "SearchResult",
    "WordAttribution",
    "WordContrast",
    "WordMatch",
    "best_setting",
    "catalogue_samples",
    "class_scores",
    "class_folds",
    "combine",
    "contrast_matches",
    "cross_validate",
    "deletion_curve",
    "evaluate_matching",
    "evaluate_retrieval",
    "explain_dataset_match",
    "explain_match",
    "fit_matching",
    "fuse",
    "hits_at_k",
    "image_deletion_curve",
    "k_shots",
    "l2_normalize",
    "load_backbones",
    "make_index",
    "make_saliency",
    "modalities",
    "nearest_matches",
    "normalize_word",
    "overlay_saliency",
    "product_features",
    "rank_of_truth",
    "render_match",
    "shared_words",
    "topk_accuracy",
    "trapezoid_auc",
    "unseen_class_folds",
    "word_attributions",
    "word_deletion_curve",
    "word_similarity",
    "zero_shot",
]
