"""Factorised multimodal sampling: n image masks x m text masks from n + m encoder passes.

Models that fuse *after* per-modality encoders (prodlens' ``score_fusion``, ``concat``
and ``embracenet`` heads) spend almost all their time in the encoders; the fusion head
is a small MLP. :class:`FactorisedSampler` exploits that: it draws ``n`` image masks
(over the superpixels) and ``m`` text masks (over the OCR tokens) and crosses them,
giving ``n * m`` perturbation rows in the usual one-vector feature space. The
explainer's :class:`~prodlens.explain.evaluation.CachedEvaluator` then encodes each
image mask once and each text mask once and runs only the head per row: ``n * m``
surrogate rows for ``n + m`` encoder passes.

Every row is still a Bernoulli(0.5) row in each feature (each modality's masks are
uniform over on/off patterns), the kernel and the ridge surrogate are the usual ones,
so the surrogate estimates the same LIME weights; the design is a full cross, so image
and text effects are exactly balanced against each other.

* Row 0 is the all-on row (image mask 0 and text mask 0 are all-on).
* With ``T`` tokens there are only ``2**T`` distinct text masks: when ``2**T <= n_text``
  all of them are used, once each (exhaustive, exactly uniform); with zero tokens that
  is one (empty) mask and the grid is image-only sampling with ``n`` rows. The same
  cap applies to the image side for a handful of superpixels.
* Each modality's design has full rank: after centring, ``k`` masks in complementary
  pairs (the orthogonal sampler's fold-over) span at most ``k / 2 + 1`` directions, so
  64 text masks cannot identify the weights of more than 32 words. The sampler grows a
  modality's masks (to one whole fold-over block of the orthogonal design, then by
  doubling) until the centred masks have rank ``T`` (resp. ``S``), up to ``max_text``
  (``max_image``) masks; past that the explainer falls back to joint rows. What was
  drawn is in :attr:`FactorGrid.design` and the explanation's ``config``.
* The grid is fixed in size: runs with a factorised sampler do not stop early.

A classifier without ``encode_images`` / ``encode_texts`` / ``predict_from_features``
(e.g. a user's ``predict_proba`` callable) would need ``n * m`` full model calls, which
defeats the purpose: :meth:`FactorisedSampler.check` raises
:class:`FactorisedSamplingError`, or with ``fallback="joint"`` the explainer draws
``n + m`` ordinary joint rows instead (the same number of model calls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from prodlens._validation import check_int
from prodlens.explain.sampling import OrthogonalSampler, Sampler
from prodlens.models.base import FUSED_METHODS, has_feature_path

FALLBACKS = ("error", "joint")

#: Widths up to this many features are enumerated exhaustively when their 2**width patterns fit.
_ENUMERABLE = 20


class FactorisedSamplingError(ValueError):
    """A factorised sampler was asked to explain a model without per-modality encoders."""


@dataclass(frozen=True)
class FactorGrid:
    """``n`` image masks crossed with ``m`` text masks.

    ``image_masks`` is ``(n, S)``, ``text_masks`` ``(m, T)``; row 0 of each is all-on.
    :meth:`rows` lays the cross out image-major: row ``i * m + j`` is image mask ``i``
    with text mask ``j``, so row 0 is the unperturbed input.

    >>> g = FactorGrid(np.array([[1, 1], [1, 0]], bool), np.array([[1], [0]], bool))
    >>> g.n_rows, g.rows().astype(int).tolist()
    (4, [[1, 1, 1], [1, 1, 0], [1, 0, 1], [1, 0, 0]])
    """

    image_masks: np.ndarray
    text_masks: np.ndarray
    #: per modality: masks asked for and drawn, width, centred rank, full rank or not
    design: dict = field(default_factory=dict, compare=False)

    @property
    def full_rank(self) -> bool:
        """Whether both modalities' centred designs have full rank (every weight identified)."""
        return all(part.get("full_rank", True) for part in self.design.values())

    @property
    def n_image(self) -> int:
        return int(self.image_masks.shape[0])

    @property
    def n_text(self) -> int:
        return int(self.text_masks.shape[0])

    @property
    def n_rows(self) -> int:
        return self.n_image * self.n_text

    def rows(self) -> np.ndarray:
        """All ``n * m`` rows, ``(n * m, S + T)`` booleans."""
        n, m = self.n_image, self.n_text
        img = np.repeat(self.image_masks, m, axis=0)
        txt = np.tile(self.text_masks, (n, 1))
        return np.hstack([img, txt]).astype(bool, copy=False)


@runtime_checkable
class GridSampler(Protocol):
    """Draws a :class:`FactorGrid` for ``n_superpixels`` + ``n_tokens`` features."""

    def grid(self, n_superpixels: int, n_tokens: int, rng: np.random.Generator) -> FactorGrid: ...


def all_masks(width: int) -> np.ndarray:
    """Every on/off pattern of ``width`` features, all-on first, ``(2**width, width)``.

    >>> all_masks(2).astype(int).tolist()
    [[1, 1], [1, 0], [0, 1], [0, 0]]
    >>> all_masks(0).shape
    (1, 0)
    """
    if width > _ENUMERABLE:
        raise ValueError(f"width must be <= {_ENUMERABLE} to enumerate all masks, got {width}")
    codes = np.arange(2**width)[::-1]  # 2**width - 1 (all-on) first
    bits = (codes[:, None] >> np.arange(width)[::-1]) & 1
    return bits.astype(bool).reshape(2**width, width)


def distinct_masks(k: int, width: int, sampler: Sampler, rng: np.random.Generator) -> np.ndarray:
    """``min(k, 2**width)`` distinct masks of ``width`` features, the all-on one first.

    When ``2**width <= k`` every pattern is used once; otherwise the all-on mask is
    followed by the first distinct rows ``sampler`` draws (drawing again until there
    are enough).

    >>> rng = np.random.default_rng(0)
    >>> distinct_masks(10, 2, OrthogonalSampler(), rng).shape
    (4, 2)
    >>> m = distinct_masks(5, 8, OrthogonalSampler(), rng)
    >>> m.shape, bool(m[0].all()), len({r.tobytes() for r in m})
    ((5, 8), True, 5)
    """
    if k < 1:
        raise ValueError(f"the number of masks must be >= 1, got {k}")
    if width <= _ENUMERABLE and 2**width <= k:
        return all_masks(width)
    out = [np.ones(width, bool)]
    seen = {out[0].tobytes()}
    while len(out) < k:
        for r in np.asarray(sampler.sample(k - 1, width, rng), dtype=bool):
            key = r.tobytes()
            if key not in seen:
                seen.add(key)
                out.append(r)
                if len(out) == k:
                    break
    return np.stack(out)


def centred_rank(masks: np.ndarray) -> int:
    """Rank of the column-centred on/off design: how many weights the rows can identify.

    A row and its complement are one direction once centred, so complementary pairs
    count once:

    >>> z = OrthogonalSampler().sample(16, 6, np.random.default_rng(0))  # 8 complementary pairs
    >>> centred_rank(z), centred_rank(z[:8])                             # all of them, 4 pairs
    (6, 4)
    """
    m = np.asarray(masks, dtype=np.float64)
    if m.size == 0 or m.shape[0] < 2:
        return 0
    return int(np.linalg.matrix_rank(m - m.mean(0)))


def _fold_over_block(width: int) -> int:
    """Rows in one whole fold-over block of :class:`OrthogonalSampler` for ``width`` features."""
    m = 2
    while m - 1 < width:
        m *= 2
    return 2 * m


def full_rank_masks(k: int, width: int, sampler: Sampler, rng: np.random.Generator,
                    max_k: int | None = None) -> tuple[np.ndarray, dict]:
    """:func:`distinct_masks`, grown until the centred masks have rank ``width``.

    Starts at ``k`` masks; while the rank falls short, tries one whole fold-over block
    (``2m`` rows, the smallest Hadamard order ``m > width``: full rank for the orthogonal
    sampler), then doubles, up to ``max_k`` masks (``None``: no cap). Returns the masks
    and a record ``{"requested", "drawn", "width", "rank", "full_rank"}``.

    >>> rng = np.random.default_rng(0)
    >>> masks, info = full_rank_masks(64, 40, OrthogonalSampler(), rng)
    >>> masks.shape, info["rank"], info["full_rank"]
    ((128, 40), 40, True)
    >>> full_rank_masks(64, 40, OrthogonalSampler(), rng, max_k=64)[1]["full_rank"]
    False
    """
    n = int(k)
    while True:
        masks = distinct_masks(n, width, sampler, rng)
        rank = centred_rank(masks) if width else 0
        full = rank >= width
        if full or len(masks) < n or (max_k is not None and n >= max_k):  # full, or every pattern used, or capped
            break
        block = _fold_over_block(width)
        n = block if n < block else 2 * n
        if max_k is not None:
            n = min(n, int(max_k))
    info = {"requested": int(k), "drawn": int(len(masks)), "width": int(width), "rank": int(rank),
            "full_rank": bool(full)}
    return masks, info


@dataclass(frozen=True)
class FactorisedSampler:
    """Cross ``n_image`` image masks with ``n_text`` text masks (see the module docstring).

    Parameters
    ----------
    n_image:
        Image masks, the all-on one included: the number of image-encoder passes.
    n_text:
        Text masks, the all-on one included, capped at ``2**T`` for ``T`` tokens.
    image_sampler, text_sampler:
        How each modality's masks are drawn (default: orthogonal fold-over blocks,
        every row exactly a Bernoulli(0.5) row); duplicates are redrawn.
    fallback:
        For a classifier without per-modality encoders: ``"error"`` (default) raises
        :class:`FactorisedSamplingError`; ``"joint"`` explains it with ``n_image +
        n_text`` ordinary joint rows (``joint_sampler``), the same number of model calls.
    max_image, max_text:
        Most masks a modality may grow to for a full-rank design (see the module
        docstring); a grid that still falls short is explained with joint rows instead.

    >>> s = FactorisedSampler(n_image=32, n_text=16)
    >>> g = s.grid(n_superpixels=10, n_tokens=3, rng=np.random.default_rng(0))
    >>> g.n_image, g.n_text, g.rows().shape          # 2**3 = 8 text masks at most
    (32, 8, (256, 13))
    >>> s.grid(10, 0, np.random.default_rng(0)).rows().shape  # no OCR words: image-only
    (32, 10)
    >>> FactorisedSampler(n_image=8).grid(10, 0, np.random.default_rng(0)).n_image  # 8 masks: rank < 10, grown
    32
    >>> g = FactorisedSampler(n_image=256, n_text=64).grid(100, 40, np.random.default_rng(0))
    >>> g.n_text, g.design["text"]["rank"], g.full_rank      # 40 words: 128 text masks, rank 40
    (128, 40, True)
    """

    n_image: int = 256
    n_text: int = 64
    image_sampler: Sampler = field(default_factory=OrthogonalSampler)
    text_sampler: Sampler = field(default_factory=OrthogonalSampler)
    fallback: str = "error"
    joint_sampler: Sampler = field(default_factory=OrthogonalSampler)
    max_image: int = 2048
    max_text: int = 1024

    def __post_init__(self) -> None:
        for name in ("n_image", "n_text", "max_image", "max_text"):
            check_int(name, getattr(self, name), 1, why="masks, the all-on one included")
        if self.n_image * self.n_text < 2:
            raise ValueError("n_image * n_text must be >= 2 (the original plus perturbations), got 1 x 1")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.fallback!r}")

    @property
    def encoder_budget(self) -> int:
        """Encoder passes at most: ``n_image + n_text``."""
        return int(self.n_image + self.n_text)

    def grid(self, n_superpixels: int, n_tokens: int, rng: np.random.Generator) -> FactorGrid:
        """Image masks, then text masks, from the one ``rng`` of the run, each grown to a
        full-rank design (:func:`full_rank_masks`); :attr:`FactorGrid.design` records it."""
        img, img_info = full_rank_masks(int(self.n_image), n_superpixels, self.image_sampler, rng, self.max_image)
        txt, txt_info = full_rank_masks(int(self.n_text), n_tokens, self.text_sampler, rng, self.max_text)
        return FactorGrid(img, txt, design={"image": img_info, "text": txt_info})

    def check(self, classifier: object) -> bool:
        """``True`` if ``classifier`` can be explained factorised; ``False`` means use the
        joint fallback; raises :class:`FactorisedSamplingError` with ``fallback="error"``.

        >>> FactorisedSampler(fallback="joint").check(object())
        False
        """
        if has_feature_path(classifier):
            return True
        if self.fallback == "joint":
            return False
        raise FactorisedSamplingError(
            f"FactorisedSampler needs a classifier with per-modality encoders ({', '.join(FUSED_METHODS)}), "
            f"as prodlens' ProductClassifier has; {type(classifier).__name__} lacks "
            f"{', '.join(m for m in FUSED_METHODS if not callable(getattr(classifier, m, None)))}. "
            "Use sampler='orthogonal' (joint sampling), or FactorisedSampler(fallback='joint') to fall back "
            f"to {self.encoder_budget} joint rows automatically"
        )
