"""The learned part of a match embedding: a projection of frozen features and its training loop.

* :func:`build_projection`: standardise -> dropout -> linear (or an MLP with ``hidden``),
  output on the unit sphere;
* :func:`supcon_loss`: the supervised contrastive loss (Khosla et al. 2020);
* :func:`train_projection`: Adam on cached features with normalised softmax + additive
  cosine margin (NormFace / CosFace proxies) or SupCon.

Only torch lives here; :class:`~prodlens.match.embedding.MatchEmbedding` is the
scikit-learn-style estimator that calls it.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def build_projection(in_dim: int, out_dim: int, hidden: int, dropout: float):
    import torch
    from torch import nn

    from prodlens.models.heads import FeatureNorm

    class Projection(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = FeatureNorm(in_dim)
            layers: list[nn.Module] = [nn.Dropout(dropout)]
            d = in_dim
            if hidden > 0:
                layers += [nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)]
                d = hidden
            layers.append(nn.Linear(d, out_dim))
            self.net = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(self.net(self.norm(x)), dim=1)

    return Projection()


def supcon_loss(z, y, temperature: float):
    import torch

    sim = z @ z.T / temperature
    n = len(y)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, -1e9)
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0
    mean_log_pos = (log_prob * pos).sum(1)[has] / n_pos[has]
    return -mean_log_pos.mean()


def train_projection(X: Any, Y: Any, D: int, *, n_classes: int, method: str, out_dim: int, hidden: int, dropout: float,
                     scale: float, margin: float, temperature: float, epochs: int, batch_size: int, lr: float,
                     weight_decay: float, seed: int, name: str, progress: bool = False) -> tuple[Any, list[float]]:
    """Train one projection of ``D``-dim rows ``X`` (labels ``Y`` in ``0..n_classes-1``);
    returns it in eval mode with the per-epoch mean loss."""
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        proj = build_projection(D, out_dim, hidden, dropout)
        proj.norm.fit(X)
        params = list(proj.parameters())
        proxies = None
        if method == "normsoftmax":
            proxies = nn.Parameter(torch.randn(n_classes, out_dim) * 0.1)
            params.append(proxies)
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(seed)
        history: list[float] = []
        proj.train()
        for _ in tqdm(range(epochs), desc=f"fit {name} {method}", unit="epoch", disable=not progress, leave=False):
            perm = torch.randperm(len(X), generator=gen)
            total = 0.0
            for s in range(0, len(X), batch_size):
                idx = perm[s : s + batch_size]
                z = proj(X[idx])
                if proxies is not None:
                    cos = z @ nn.functional.normalize(proxies, dim=1).T
                    onehot = nn.functional.one_hot(Y[idx], n_classes).float()
                    loss = nn.functional.cross_entropy(scale * (cos - margin * onehot), Y[idx])
                else:
                    loss = supcon_loss(z, Y[idx], temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history.append(total / len(X))
        proj.eval()
    log.info("fitted %s projection (%s, %d training rows): loss %.4f -> %.4f", name, method, len(X), history[0], history[-1])
    return proj, history
