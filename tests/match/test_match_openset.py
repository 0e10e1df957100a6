"""Open-set evaluation helpers: class folds, k-shot galleries, class ranks."""

from __future__ import annotations

import numpy as np
import pytest

from prodlens.match.openset import class_scores, k_shots, rank_of_truth, unseen_class_folds


def test_class_folds_partition_the_classes_and_spread_look_alike_groups():
    classes = [f"milk{i}" for i in range(6)] + [f"juice{i}" for i in range(5)] + ["apple", "kiwi", "leek"]
    groups = {c: c.rstrip("0123456789") for c in classes if c[-1].isdigit()}
    folds = unseen_class_folds(classes, groups, n_folds=3, seed=0)
    flat = [c for f in folds for c in f]
    assert sorted(flat) == sorted(classes) and len(flat) == len(set(flat))
    for g in ("milk", "juice"):
        per_fold = [sum(c.startswith(g) for c in f) for f in folds]
        assert max(per_fold) - min(per_fold) <= 1  # every fold holds new variants of the group
    assert folds == unseen_class_folds(classes, groups, n_folds=3, seed=0)  # deterministic
    assert folds != unseen_class_folds(classes, groups, n_folds=3, seed=1)
    with pytest.raises(ValueError, match="n_folds must be in 2..14"):
        unseen_class_folds(classes, groups, n_folds=20)


def test_k_shots_spread_over_each_class_and_take_all_of_small_ones():
    ids = [f"{c}_{i:02d}" for c in "ab" for i in range(10)] + ["c_00"]
    labels = [i[0] for i in ids]
    pick = k_shots(ids, labels, 3)
    assert [ids[i] for i in pick] == ["a_00", "a_04", "a_09", "b_00", "b_04", "b_09", "c_00"]
    with pytest.raises(ValueError, match="k must be >= 1"):
        k_shots(ids, labels, 0)


def test_class_scores_take_the_best_item_and_rank_counts_ties_against_the_truth():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    g = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.8, 0.6]])
    s, names = class_scores(q, g, ["a", "b", "b", "c"])
    assert names == ["a", "b", "c"] and s[0].tolist() == pytest.approx([1.0, 0.8, 0.8])
    ranks = rank_of_truth(s, names, ["a", "a", "c"])
    assert ranks.tolist() == [1, 3, 2]  # query 3 ties b and c at 0.96: a tie is not a hit
    with pytest.raises(ValueError, match="missing from the gallery"):
        rank_of_truth(s, names, ["z", "a", "a"])
