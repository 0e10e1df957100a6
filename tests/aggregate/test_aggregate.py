"""Global explanations: crops, HDBSCAN clusters, word groups, NormLIME, results I/O, CLI."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from prodlens.aggregate import (
    GlobalExplainer,
    GlobalExplanations,
    WordGrouper,
    cluster_embeddings,
    load_explanations,
    normalize_weights,
    normalize_word,
    normlime,
    read_global,
    superpixel_crop,
    write_json,
)
from prodlens.data.types import OcrToken
from prodlens.errors import BadInputError
from prodlens.explain.explanation import Explanation

CELL = 8
GRID = 4  # 4 x 4 superpixels of 8 x 8 pixels


def grid_segments() -> np.ndarray:
    r = np.arange(GRID * CELL) // CELL
    return (r[:, None] * GRID + r[None, :]).astype(np.int32)


def paint(cells: dict[int, tuple[int, int, int]], background: int = 128) -> np.ndarray:
    img = np.full((GRID * CELL, GRID * CELL, 3), background, np.uint8)
    seg = grid_segments()
    for cell, rgb in cells.items():
        img[seg == cell] = rgb
    return img


def mean_colour(crops: list[np.ndarray]) -> np.ndarray:
    """A hand-made embed_fn: the crop's mean colour."""
    return np.stack([c.reshape(-1, 3).mean(0) / 255.0 for c in crops])


_COLOURS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1), (0, 0, 0), (1, 1, 1)]
# red, green, blue near one another; yellow, cyan, magenta (the odd ones) on the far side
_E = np.eye(16)
_CENTRES = np.array([(10 if k < 3 else -10) * _E[0] + 3 * _E[1 + k] for k in range(len(_COLOURS))])


def planted_embed(crops: list[np.ndarray]) -> np.ndarray:
    """An embed_fn with planted structure: each saturated colour has a centre in 16-D; a
    crop lands near its colour's centre with isotropic noise seeded by its pixels."""
    out = []
    for c in crops:
        m = c.reshape(-1, 3).mean(0)
        centre = _CENTRES[_COLOURS.index(tuple(int(v > 128) for v in m))]
        noise = np.random.default_rng(int(m.sum() * 1000)).normal(0, 0.15, 16)
        out.append(centre + noise)
    return np.stack(out)


def weights(top: dict[int, float], n_sp: int = GRID * GRID, text: list[float] | None = None) -> np.ndarray:
    w = np.full(n_sp, -0.01)
    for i, v in top.items():
        w[i] = v
    return np.concatenate([w, np.asarray(text or [], float)])


def planted(n: int = 12, n_noise: int = 2, seed: int = 0):
    """Class "c": each photo's top-3 superpixels are red, green and blue (jittered) at
    random cells; in ``n_noise`` photos the third is an odd colour instead of blue."""
    rng = np.random.default_rng(seed)
    odd = [(230, 230, 20), (20, 230, 230), (230, 20, 230)]
    ex, images = [], {}
    for i in range(n):
        cells = rng.choice(GRID * GRID, 3, replace=False).tolist()
        cols = [(250 - i, 10, 10), (10, 250 - i, 10), (10, 10, 250 - i)]  # unique per photo
        if i < n_noise:
            cols[2] = odd[i]
        sid = f"c_{i:02d}"
        images[sid] = paint(dict(zip(cells, cols)))
        w = weights(dict(zip(cells, [0.5, 0.3, 0.2])))
        ex.append(Explanation(sid, 0, "c", w, 0.0, 0.9, 0.9, grid_segments(), (), GRID * GRID))
    return ex, images


# -- crops -------------------------------------------------------------------------------
def test_masked_crop_hides_neighbours_and_box_keeps_them():
    seg = np.zeros((10, 10), np.int32)
    seg[2:6, 2:4] = 1
    seg[2:4, 4:6] = 1  # an L-shaped superpixel
    img = np.full((10, 10, 3), 50, np.uint8)
    img[seg == 1] = (255, 0, 0)
    masked = superpixel_crop(img, seg, 1, size=None)
    box = superpixel_crop(img, seg, 1, mode="box", size=None)
    assert masked.shape == box.shape == (4, 4, 3)
    assert masked[3, 3].tolist() == [124, 116, 104]  # outside the L: neutral
    assert box[3, 3].tolist() == [50, 50, 50]
    assert masked[0, 0].tolist() == [255, 0, 0]
    assert superpixel_crop(img, seg, 1, size=32).shape == (32, 32, 3)


def test_crop_segments_at_other_resolution_are_resized():
    img = paint({5: (255, 0, 0)})
    small = grid_segments()[::2, ::2]
    crop = superpixel_crop(img, small, 5, size=None)
    assert crop.shape == (8, 8, 3) and (crop == [255, 0, 0]).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mode": "round"}, "mode must be one of 'masked', 'box'; got 'round'"),
     ({"fill": "grey"}, "fill must be an \\(R, G, B\\) tuple"),
     ({"size": 0}, "size must be an int >= 1, got 0")],
)
def test_crop_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        superpixel_crop(paint({}), grid_segments(), 0, **kwargs)


def test_crop_of_absent_superpixel():
    with pytest.raises(ValueError, match="superpixel 99 does not occur"):
        superpixel_crop(paint({}), grid_segments(), 99)


# -- clustering ----------------------------------------------------------------------------
def test_hdbscan_recovers_planted_clusters_and_leaves_noise_out():
    rng = np.random.default_rng(1)
    centres = np.eye(8)[:3] * 10
    X = np.vstack([c + rng.normal(0, 0.1, (6, 8)) for c in centres] + [rng.normal(0, 1, (2, 8)) + 30 * np.eye(8)[5:7]])
    labels = cluster_embeddings(X, min_cluster_size=3)
    assert labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [-1, -1]


def test_too_few_points_are_all_noise():
    assert cluster_embeddings(np.zeros((2, 3)), min_cluster_size=3).tolist() == [-1, -1]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"min_cluster_size": 1}, "min_cluster_size must be an int >= 2, got 1"),
     ({"cluster_selection_method": "best"}, "cluster_selection_method must be one of 'eom', 'leaf'"),
     ({"metric": "bogus"}, "metric 'bogus' is not usable by sklearn.cluster.HDBSCAN")],
)
def test_cluster_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cluster_embeddings(np.random.default_rng(0).normal(size=(10, 2)), **kwargs)


def test_global_image_clusters_from_planted_embed_fn():
    ex, images = planted()
    ge = GlobalExplainer(planted_embed, modalities=("image",), crop_size=None, progress=False, batch_size=5)
    g = ge.fit(ex, images=images).global_
    c = g["c"]
    assert [f.support for f in c.image] == [12, 12, 10]
    colours = [np.argmax(mean_colour([images[f.representative.sample_id][grid_segments() == f.representative.index]
                                      .reshape(8, 8, 3)])[0]) for f in c.image]
    assert colours == [0, 1, 2]  # red (w 0.5) > green (0.3) > blue (0.2)
    assert len(c.noise) == 2 and {o.sample_id for o in c.noise} == {"c_00", "c_01"}
    assert all(o.sample_id not in {"c_00", "c_01"} for o in c.image[2].occurrences)
    assert ge.image_labels_["c"].tolist().count(-1) == 2
    total = 0.5 + 0.3 + 0.2 + 13 * 0.01
    assert c.image[0].importance == pytest.approx(0.5**2 / total)
    assert [f.rank for f in c.image] == [0, 1, 2]


def test_global_image_is_order_independent():
    ex, images = planted()
    a = GlobalExplainer(planted_embed, modalities=("image",), crop_size=None, progress=False).fit(ex, images=images).global_
    shuffled = ex[:]
    random.Random(3).shuffle(shuffled)
    b = GlobalExplainer(planted_embed, modalities=("image",), crop_size=None, progress=False).fit(shuffled, images=images).global_
    assert a.to_dict() == b.to_dict()


def test_image_crops_reach_embed_fn_at_model_size():
    ex, images = planted(n=4, n_noise=0)
    seen = []

    def embed(crops):
        seen.extend(c.shape for c in crops)
        return mean_colour(crops)

    GlobalExplainer(embed, modalities=("image",), crop_size=24, progress=False).fit(ex, images=images)
    assert seen == [(24, 24, 3)] * 12


# -- text ------------------------------------------------------------------------------------
def test_normalize_word():
    assert normalize_word("LAKTOSFRl") == "LAKTOSFRL"
    assert normalize_word("«Laktosfri»!") == "LAKTOSFRI"
    assert normalize_word("ＯＡＴＬＹ") == "OATLY"  # NFKC full-width
    assert normalize_word("ﬁlmjölk", "casefold") == "filmjölk"  # NFKC ligature
    assert normalize_word("%") is None and normalize_word("a") is None and normalize_word("1L") == "1L"


def test_word_groups_ocr_misspellings():
    words = ["LAKTOSFRI", "LAKTOSFR1", "LAKTOSFRL", "LAKTOSFRI", "EKOLOGISK", "LAKTOSFRI", "EKOLOGISK"]
    g = WordGrouper(0.75).fit(words)
    assert [(x.text, x.count) for x in g.groups_] == [("LAKTOSFRI", 5), ("EKOLOGISK", 2)]
    assert g.groups_[0].variants == {"LAKTOSFRI": 3, "LAKTOSFR1": 1, "LAKTOSFRL": 1}
    assert g.labels_.tolist() == [0, 0, 0, 0, 1, 0, 1]


def test_word_groups_are_order_independent():
    words = ["MJOLK", "MJÖLK", "MJOLK", "OATLY", "OATIY", "OAT", "DRYCK", "DRYCK"]
    ref = [(x.text, x.variants) for x in WordGrouper().fit(words).groups_]
    for seed in range(5):
        w = words[:]
        random.Random(seed).shuffle(w)
        assert [(x.text, x.variants) for x in WordGrouper().fit(w).groups_] == ref


@pytest.mark.parametrize("linkage", ["leader", "single"])
def test_threshold_is_a_parameter(linkage):
    words = ["MILK", "MILKS"]  # Levenshtein ratio 0.8, Indel 0.889
    assert len(WordGrouper(0.75, linkage=linkage).fit(words).groups_) == 1
    assert len(WordGrouper(0.85, linkage=linkage).fit(words).groups_) == 2
    assert len(WordGrouper(0.85, scorer="indel", linkage=linkage).fit(words).groups_) == 1


def test_single_linkage_chains_leader_does_not():
    words = ["ABCDEFGH", "ABCDEFXY", "ABCDWZXY"]  # 1~2 (0.75), 2~3 (0.75), 1~3 (0.5)
    assert len(WordGrouper(0.75, linkage="single").fit(words).groups_) == 1
    assert len(WordGrouper(0.75, linkage="leader").fit(words).groups_) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [({"threshold": 75}, "threshold must be a number in \\[0, 1\\]; got 75"),
     ({"scorer": "jaro"}, "scorer must be one of 'levenshtein', 'indel'; got 'jaro'"),
     ({"linkage": "complete"}, "linkage must be one of 'leader', 'single'")],
)
def test_word_grouper_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WordGrouper(**kwargs).fit(["A"])


def text_explanations():
    spellings = ["LAKTOSFRI", "LAKTOSFR1", "LAKTOSFRl", "LAKTOSFRI", "Laktosfri,"]
    ex = []
    for i, sp in enumerate(spellings):
        toks = (OcrToken(sp, (0, 0, 9, 9)), OcrToken("EKOLOGISK", (0, 10, 9, 19)),
                OcrToken("-", (0, 20, 9, 29)), OcrToken("MJÖLK", (0, 30, 9, 39)))
        w = np.array([0.05, 0.4, 0.2, 0.9, -0.1])  # 1 superpixel, then 4 tokens; '-' is dropped
        ex.append(Explanation(f"m_{i}", 1, "milk", w, 0.0, 0.9, 0.9, np.zeros((4, 4), np.int32), toks, 1))
    return ex


def test_global_text_groups_with_counts_and_samples():
    g = GlobalExplainer(modalities=("text",), progress=False).fit(text_explanations()).global_
    top = g["milk"].text
    assert [f.text for f in top] == ["LAKTOSFRI", "EKOLOGISK"]  # MJÖLK has a negative weight
    lak = top[0]
    assert lak.variants == {"LAKTOSFRI": 3, "LAKTOSFR1": 1, "LAKTOSFRL": 1}
    assert lak.count == 5 and lak.support == 5
    assert lak.sample_ids == tuple(f"m_{i}" for i in range(5))
    assert lak.representative.text == "LAKTOSFRI"
    assert [o.index for o in lak.occurrences] == [0] * 5  # token index in each explanation
    payload = lak.payload()
    assert payload["text"] == "LAKTOSFRI" and payload["variants"]["LAKTOSFR1"] == 1


# -- NormLIME ----------------------------------------------------------------------------------
def test_normalize_weights_formula():
    w = np.array([0.6, -0.3, 0.1])
    assert normalize_weights(w).tolist() == pytest.approx([0.36, 0.09, 0.01])
    assert normalize_weights(np.zeros(3)).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="method must be one of 'normlime', 'l1', 'abs'; got 'l2'"):
        normalize_weights(w, "l2")


def test_normlime_on_hand_computed_weights():
    # two explanations of class "k"; 2 superpixels + 2 tokens each
    toks = (OcrToken("OATLY", (0, 0, 1, 1)), OcrToken("MILK", (0, 0, 1, 1)))
    w1 = np.array([0.1, -0.1, 0.6, 0.2])  # sum|w| = 1.0
    w2 = np.array([0.0, 0.2, 0.3, -0.5])  # sum|w| = 1.0; MILK negative -> not a top feature
    seg = np.zeros((2, 2), np.int32)
    seg[:, 1] = 1
    ex = [Explanation("a", 0, "k", w1, 0, 1, 1, seg, toks, 2), Explanation("b", 0, "k", w2, 0, 1, 1, seg, toks, 2)]
    g = GlobalExplainer(modalities=("text",), min_support=1, progress=False).fit(ex).global_["k"]
    got = {f.text: f.importance for f in g.text}
    oatly = (0.6**2 / 1.0 + 0.3**2 / 1.0) / 2
    milk = 0.2**2 / 1.0  # only in explanation "a": mean over the explanations containing it
    assert got == pytest.approx({"OATLY": oatly, "MILK": milk})
    assert normlime([("a", "x", 0.36), ("b", "x", 0.09)])["x"].importance == pytest.approx(oatly)


def test_normalize_over_modality():
    ex = [text_explanations()[i] for i in (0, 3)]  # both spell LAKTOSFRI
    g_all = GlobalExplainer(modalities=("text",), progress=False).fit(ex).global_["milk"].text[0]
    g_mod = GlobalExplainer(modalities=("text",), normalize_over="modality", progress=False).fit(ex).global_["milk"].text[0]
    assert g_all.text == "LAKTOSFRI"
    assert g_all.importance == pytest.approx(0.4**2 / 1.65)  # '-' (0.9) is dropped but counts in sum|w|
    assert g_mod.importance == pytest.approx(0.4**2 / 1.6)


# -- explainer parameters ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [({"modalities": ("image",)}, "embed_fn is required for image global explanations"),
     ({"modalities": ("audio",)}, "modalities must be one of 'image', 'text'; got 'audio'"),
     ({"modalities": ("text",), "top_k_local": 0}, "top_k_local must be an int >= 1, got 0"),
     ({"modalities": ("text",), "word_threshold": 75}, "word_threshold must be a number in \\[0, 1\\]; got 75.*0.75"),
     ({"modalities": ("text",), "normalization": "softmax"}, "normalization must be one of 'normlime', 'l1', 'abs'"),
     ({"modalities": ("text",), "normalize_over": "class"}, "normalize_over must be one of 'all', 'modality'"),
     ({"embed_fn": mean_colour, "crop": "circle"}, "crop must be one of 'masked', 'box'; got 'circle'"),
     ({"embed_fn": mean_colour, "min_cluster_size": 1}, "min_cluster_size must be an int >= 2, got 1")],
)
def test_explainer_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GlobalExplainer(**kwargs).fit(text_explanations())


def test_init_only_stores_params():
    ge = GlobalExplainer(word_threshold=5)  # not validated until fit
    assert ge.word_threshold == 5 and not hasattr(ge, "global_")


def test_missing_image_names_the_sample():
    ex, _ = planted(n=3, n_noise=0)
    with pytest.raises(ValueError, match="no image for sample 'c_00'"):
        GlobalExplainer(mean_colour, modalities=("image",), progress=False).fit(ex)


def test_bad_embed_fn_shape():
    ex, images = planted(n=3, n_noise=0)
    with pytest.raises(ValueError, match="embed_fn must return an \\(n, d\\) array"):
        GlobalExplainer(lambda crops: np.zeros(len(crops)), modalities=("image",), progress=False).fit(ex, images=images)


# -- I/O and CLI -------------------------------------------------------------------------------
def test_global_json_round_trip(tmp_path):
    ex, images = planted(n=6, n_noise=0)
    images.update({e.sample_id: np.zeros((4, 4, 3), np.uint8) for e in text_explanations()})
    g = GlobalExplainer(planted_embed, crop_size=None, progress=False).fit(ex + text_explanations(), images=images).global_
    path = write_json(g, tmp_path / "g.json")
    back = read_global(path)
    assert back == g and back.to_dict() == json.loads(path.read_text())
    assert GlobalExplanations.from_dict(g.to_dict()).top("c", "image", 2) == g.top("c", "image", 2)


def test_load_explanations_formats(tmp_path):
    ex = text_explanations()
    (tmp_path / "one.json").write_text(json.dumps(ex[0].to_dict()))
    (tmp_path / "many.jsonl").write_text("\n".join(json.dumps(e.to_dict()) for e in ex[1:3]))
    other = Explanation(ex[3].sample_id, 0, "juice", ex[3].weights, 0, 1, 0.1, ex[3].segments, ex[3].tokens, 1)
    sample = {"sample_id": ex[3].sample_id, "predicted": 0, "true": 1, "segments": ex[3].segments.tolist(),
              "explanations": [other.to_dict(include_segments=False), ex[3].to_dict(include_segments=False)]}
    (tmp_path / "sample.json").write_text(json.dumps(sample))
    got = load_explanations(tmp_path)
    assert sorted((e.sample_id, e.target_name) for e in got) == [("m_0", "milk"), ("m_1", "milk"), ("m_2", "milk"), ("m_3", "milk")]
    assert {e.target_name for e in load_explanations(tmp_path / "sample.json", which="predicted")} == {"juice"}
    assert len(load_explanations(tmp_path / "sample.json", which="all")) == 2
    with pytest.raises(BadInputError, match="not found"):
        load_explanations(tmp_path / "nope")
    with pytest.raises(ValueError, match="which must be one of 'true', 'predicted', 'all'"):
        load_explanations(tmp_path, which="best")


def test_cli_global_text(tmp_path, capsys):
    from prodlens.cli import main

    folder = tmp_path / "ex"
    folder.mkdir()
    for e in text_explanations():
        (folder / f"{e.sample_id}.json").write_text(json.dumps(e.to_dict()))
    out = tmp_path / "g.json"
    assert main(["global", str(folder), "--modality", "text", "-o", str(out), "--no-progress"]) == 0
    g = read_global(out)
    assert g.top("milk", "text", 1)[0].text == "LAKTOSFRI"
    assert "milk [text]: LAKTOSFRI" in capsys.readouterr().out
    assert main(["global", str(folder), "--modality", "image", "-o", str(out)]) == 2
    assert "pass --model CHECKPOINT" in capsys.readouterr().err
