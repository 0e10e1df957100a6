"""Global explanations per class and the deletion test.

From many local multimodal-LIME explanations of one model:

* :class:`GlobalExplainer` -- top positive superpixels embedded by the trained image
  model and clustered per class with HDBSCAN; top positive OCR words normalised and
  grouped by spelling; both ranked by NormLIME;
* :func:`image_embedder` -- which image model embeds the superpixels (warns when it
  is pretrained only);
* :func:`deletion_test` / :func:`deletion_table` -- accuracy when the top global
  features (or as many random ones) are deleted; :func:`crossfit_deletion_test` does
  it without a second explained split (each fold tested against features built on
  the others).

>>> from prodlens.aggregate import GlobalExplainer, WordGrouper
>>> [g.text for g in WordGrouper().fit(["LAKTOSFRI", "LAKTOSFR1", "LAKTOSFRI", "EKOLOGISK"]).groups_]
['LAKTOSFRI', 'EKOLOGISK']
"""

from prodlens.aggregate.clustering import cluster_embeddings, l2_normalize, medoid
from prodlens.aggregate.crops import NEUTRAL_FILL, superpixel_crop
from prodlens.aggregate.deletion import (
    DeletionRow,
    DeletionTable,
    deletion_table,
    deletion_test,
    SampleOutcome,
    check_splits,
    crossfit_deletion_test,
    format_deletion_table,
)
from prodlens.aggregate.embedders import ImageEmbedder, image_embedder
from prodlens.aggregate.controls import random_region, random_words
from prodlens.aggregate.membership import ImageMatcher, WordMatcher
from prodlens.aggregate.paired import Interval, paired_bootstrap
from prodlens.aggregate.global_explainer import GlobalExplainer, global_explanations
from prodlens.aggregate.io import load_explanations, read_deletion_table, read_global, write_json
from prodlens.aggregate.normlime import NormLimeScore, normalize_weights, normlime
from prodlens.aggregate.results import ClassGlobalExplanation, FeatureOccurrence, GlobalExplanations, GlobalFeature
from prodlens.aggregate.text import WordGroup, WordGrouper, normalize_word

__all__ = [
    "NEUTRAL_FILL",
    "ClassGlobalExplanation",
    "DeletionRow",
    "DeletionTable",
    "FeatureOccurrence",
    "GlobalExplainer",
    "GlobalExplanations",
    "GlobalFeature",
    "ImageEmbedder",
    "ImageMatcher",
    "Interval",
    "NormLimeScore",
    "SampleOutcome",
    "WordGroup",
    "WordGrouper",
    "WordMatcher",
    "check_splits",
    "cluster_embeddings",
    "crossfit_deletion_test",
    "deletion_table",
    "deletion_test",
    "format_deletion_table",
    "global_explanations",
    "image_embedder",
    "l2_normalize",
    "load_explanations",
    "medoid",
    "normalize_weights",
    "normalize_word",
    "normlime",
    "paired_bootstrap",
    "random_region",
    "random_words",
    "read_deletion_table",
    "read_global",
    "superpixel_crop",
    "write_json",
]
