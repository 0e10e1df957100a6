"""Product matching (embedding retrieval) and explanations of why two products match.

* embeddings: :class:`MatchEmbedding` (zero-shot backbone features, or a projection
  learned with normalised softmax / supervised contrastive loss on cached features),
  :class:`BackboneEmbedder` (photos + OCR tokens -> embeddings), :func:`fuse`;
* search: :func:`make_index` (exact numpy search, or faiss ``hnsw``/``ivf``/``flat``);
* evaluation: :func:`evaluate_retrieval`, :func:`evaluate_matching` (top-k overall and
  per class), :func:`cross_validate` on training folds;
* explanation: :class:`MatchExplainer` (RISE or LIME saliency for the similarity,
  shared OCR words as attributes, deletion-curve faithfulness) -> :class:`MatchExplanation`,
  drawn by :func:`render_match`.

>>> import numpy as np
>>> from prodlens.match import make_index
>>> make_index("exact").add(np.eye(3)).search(np.eye(3)[:1], k=1).ids.tolist()
[[0]]
"""

from prodlens.match.attributes import WordAttribution, word_attributions, word_deletion_curve
from prodlens.match.base import KINDS, Embedder, combine, fuse
from prodlens.match.deletion import DeletionCurve, deletion_curve, image_deletion_curve, trapezoid_auc
from prodlens.match.embedding import BackboneEmbedder, MatchEmbedding, load_backbones
from prodlens.match.errors import MatchError, MissingDependencyError
from prodlens.match.explainer import MatchExplainer, explain_match
from prodlens.match.explanation import MatchExplanation
from prodlens.match.index import ExactIndex, FaissIndex, Index, SearchResult, l2_normalize, make_index
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
    "WordMatch",
    "best_setting",
    "catalogue_samples",
    "class_folds",
    "combine",
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
    "l2_normalize",
    "load_backbones",
    "make_index",
    "make_saliency",
    "nearest_matches",
    "normalize_word",
    "overlay_saliency",
    "product_features",
    "render_match",
    "shared_words",
    "topk_accuracy",
    "trapezoid_auc",
    "word_attributions",
    "word_deletion_curve",
    "word_similarity",
    "zero_shot",
]
