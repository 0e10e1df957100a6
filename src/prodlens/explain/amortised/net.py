"""The amortised explainer's network and its LIME loss (FastSHAP-style, on cached masks).

:class:`WeightNet` maps a photo's frozen features (one row per superpixel, per word, one
context vector) and a target class to one weight per feature: each feature gets an
embedding ``h_i`` (an MLP of its own vector and the photo's context), each class an
embedding ``u_c`` (a learned class vector conditioned on the model's probability of that
class on the unperturbed photo), and ``w_i(c) = h_i . u_c``. All classes come out of one
pass.

:func:`lime_loss` is LIME's objective with the surrogate's weights given by the network:
for each photo's cached masks ``z_k``, the model's outputs ``y_k`` and the kernel weights
``pi_k``, ``sum_k pi_k (y_k - b - z_k . w)^2 / sum_k pi_k`` with the intercept ``b`` at its
optimum (closed form), summed over classes and averaged over photos.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightNet(nn.Module):
    """Per-feature, per-class LIME weights from frozen features (see the module docstring).

    >>> net = WeightNet(n_classes=3, superpixel_dim=4, word_dim=5, context_dim=2, hidden=8)
    >>> w = net(torch.zeros(2, 6, 4), torch.zeros(2, 3, 5), torch.zeros(2, 2), torch.full((2, 3), 1 / 3))
    >>> tuple(w.shape)
    (2, 9, 3)
    """

    def __init__(self, n_classes: int, superpixel_dim: int, word_dim: int, context_dim: int,
                 hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.hidden = hidden

        def mlp(d_in: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))

        self.superpixel = mlp(superpixel_dim + context_dim)
        self.word = mlp(word_dim + context_dim)
        self.classes = nn.Embedding(n_classes, hidden)
        self.condition = nn.Sequential(nn.Linear(hidden + 2, hidden), nn.GELU(), nn.Linear(hidden, 2 * hidden))
        # start from all-zero weights (the intercept-only surrogate, R^2 0): the fit then only moves
        # away from it where the data says so, instead of first unlearning a random initial explanation
        nn.init.zeros_(self.condition[-1].weight)
        nn.init.zeros_(self.condition[-1].bias)
        # input standardisation, set from the fitting photos (``set_scaling``)
        for name, d in (("sp", superpixel_dim), ("wd", word_dim), ("cx", context_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(d))
            self.register_buffer(f"{name}_std", torch.ones(d))

    def set_scaling(self, superpixels: torch.Tensor, words: torch.Tensor, context: torch.Tensor) -> None:
        """Standardise each input column by the fitting photos' mean and sd."""
        for name, x in (("sp", superpixels), ("wd", words), ("cx", context)):
            if len(x):
                getattr(self, f"{name}_mean").copy_(x.mean(0))
                getattr(self, f"{name}_std").copy_(x.std(0).clamp_min(1e-6) if len(x) > 1 else torch.ones(x.shape[1]))

    def forward(self, superpixels: torch.Tensor, words: torch.Tensor, context: torch.Tensor,
                probs: torch.Tensor) -> torch.Tensor:
        """``superpixels`` ``(B, S, f)``, ``words`` ``(B, T, g)``, ``context`` ``(B, c)``, ``probs`` ``(B, C)``
        (the model's output on each unperturbed photo) -> weights ``(B, S + T, C)``."""
        B, S, _ = superpixels.shape
        T = words.shape[1]
        cx = (context - self.cx_mean) / self.cx_std
        sp = (superpixels - self.sp_mean) / self.sp_std
        h_sp = self.superpixel(torch.cat([sp, cx[:, None].expand(B, S, -1)], -1))
        if T:
            wd = (words - self.wd_mean) / self.wd_std
            h_wd = self.word(torch.cat([wd, cx[:, None].expand(B, T, -1)], -1))
        else:
            h_wd = h_sp.new_zeros((B, 0, self.hidden))
        p = probs.clamp(1e-6, 1 - 1e-6)
        cond = torch.cat([self.classes.weight[None].expand(B, -1, -1), p[..., None], torch.log(p)[..., None]], -1)
        u_sp, u_wd = self.condition(cond).split(self.hidden, -1)  # (B, C, h) each
        scale = self.hidden ** -0.5
        w_sp = torch.einsum("bsh,bch->bsc", h_sp, u_sp) * scale
        w_wd = torch.einsum("bth,bch->btc", h_wd, u_wd) * scale
        return torch.cat([w_sp, w_wd], 1)


def lime_loss(weights: torch.Tensor, masks: torch.Tensor, outputs: torch.Tensor, kernel: torch.Tensor,
              feature_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LIME's kernel-weighted squared error of the surrogate ``b + z . w`` (optimal ``b``).

    ``weights`` ``(B, D, C)``, ``masks`` ``(B, K, D)`` (0/1, padded features 0), ``outputs``
    ``(B, K, C)``, ``kernel`` ``(B, K)`` (padded rows 0), ``feature_mask`` ``(B, D)``. Returns the
    loss per photo ``(B,)`` and the intercept-only loss per photo (the variance it explains
    against: ``1 - loss / baseline`` is the surrogate's weighted R^2).

    >>> w = torch.tensor([[[1.0], [0.5]]]); z = torch.tensor([[[1.0, 0], [0, 1], [1, 1], [0, 0]]])
    >>> y = z @ w[0] + 0.2; pi = torch.ones(1, 4)
    >>> float(lime_loss(w, z, y, pi, torch.ones(1, 2))[0]) < 1e-12
    True
    """
    w = weights * feature_mask[..., None]
    pred = masks @ w  # (B, K, C)
    resid = outputs - pred
    tot = kernel.sum(1, keepdim=True).clamp_min(1e-12)  # (B, 1)
    pi = (kernel / tot)[..., None]  # (B, K, 1)
    b = (pi * resid).sum(1, keepdim=True)
    loss = (pi * (resid - b) ** 2).sum((1, 2))
    centred = outputs - (pi * outputs).sum(1, keepdim=True)
    return loss, (pi * centred ** 2).sum((1, 2))
