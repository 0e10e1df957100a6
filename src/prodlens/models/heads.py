"""Classification heads on top of per-modality features (paper sec. 4.3).

Every head takes ``(image_features, text_features)`` (either may be ``None`` when the
head does not use that modality) and returns class logits. Five heads:

* ``image`` / ``text``: unimodal classifiers (a linear layer, or an MLP with ``hidden``).
* ``score_fusion``: each modality gets its own linear classifier; their class scores
  (log-probabilities) are concatenated and a one-layer network maps them to the
  fused logits. Trained jointly, with the unimodal losses as auxiliary terms.
* ``concat``: concatenated (standardised) embeddings -> MLP.
* ``embracenet``: EmbraceNet (Choi & Lee 2019, reference ``idearibosome/embracenet``):
  docking layers map each modality to ``embrace_size`` dims; each output dimension is
  taken from one modality drawn from a multinomial over the available modalities;
  in training a modality is dropped for a random subset of samples (modality
  dropout). See :class:`EmbraceNetHead` for the deterministic inference modes.

Each head standardises its inputs with statistics fitted on the training features
(:meth:`Head.fit_feature_stats`), stored as buffers so they travel in the checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prodlens.models.registry import register_model

MODALITIES = ("image", "text")


class FeatureNorm(nn.Module):
    """Per-dimension standardisation ``(x - mean) / std`` with fitted buffers.

    >>> n = FeatureNorm(2); n.fit(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    >>> n(torch.tensor([[1.0, 2.0]])).tolist()
    [[0.0, 0.0]]
    >>> round(float(n.std[0]), 3)
    1.005
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Fit mean and std; a dimension's variance is floored at 1% of the mean variance,
        so near-constant training dimensions cannot blow up unseen inputs."""
        x = x.float()
        self.mean.copy_(x.mean(0))
        if len(x) < 2:
            self.std.fill_(1.0)
            return
        var = x.var(0, unbiased=False)
        self.std.copy_(torch.sqrt(var + 0.01 * var.mean() + 1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _mlp(in_dim: int, out_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Dropout(dropout)]
    if hidden > 0:
        layers += [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
        in_dim = hidden
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class Head(nn.Module):
    """Base class of all heads.

    ``config`` holds the constructor arguments (so a checkpoint can rebuild the head);
    ``modalities`` names the inputs the head reads.
    """

    name: str = "head"
    modalities: tuple[str, ...] = MODALITIES

    def __init__(self, num_classes: int, image_dim: int = 0, text_dim: int = 0, **cfg: Any) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for m, d in (("image", image_dim), ("text", text_dim)):
            if m in self.modalities and d < 1:
                raise ValueError(f"head {self.name!r} reads {m} features: {m}_dim must be >= 1, got {d}")
        self.num_classes = num_classes
        self.image_dim = image_dim if "image" in self.modalities else 0
        self.text_dim = text_dim if "text" in self.modalities else 0
        self.config = {"num_classes": num_classes, "image_dim": self.image_dim, "text_dim": self.text_dim, **cfg}
        self.img_norm = FeatureNorm(self.image_dim)
        self.txt_norm = FeatureNorm(self.text_dim)

    def fit_feature_stats(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> None:
        """Fit the input standardisation on training features."""
        if "image" in self.modalities and img is not None:
            self.img_norm.fit(img)
        if "text" in self.modalities and txt is not None:
            self.txt_norm.fit(txt)

    def _inputs(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        i = t = None
        if "image" in self.modalities:
            if img is None:
                raise ValueError(f"head {self.name!r} needs image features, got None")
            i = self.img_norm(img.float())
        if "text" in self.modalities:
            if txt is None:
                raise ValueError(f"head {self.name!r} needs text features, got None")
            t = self.txt_norm(txt.float())
        return i, t

    def forward(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def training_logits(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> list[torch.Tensor]:
        """Logits to put a loss on while training: the main output first, auxiliary ones after."""
        return [self(img, txt)]


class UnimodalHead(Head):
    """A linear classifier (``hidden=0``) or one-hidden-layer MLP on one modality."""

    def __init__(self, modality: str, num_classes: int, image_dim: int = 0, text_dim: int = 0,
                 hidden: int = 0, dropout: float = 0.2) -> None:
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        self.name = modality
        self.modalities = (modality,)
        super().__init__(num_classes, image_dim, text_dim, hidden=hidden, dropout=dropout)
        dim = self.image_dim if modality == "image" else self.text_dim
        self.classifier = _mlp(dim, num_classes, hidden, dropout)

    def forward(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> torch.Tensor:
        i, t = self._inputs(img, txt)
        return self.classifier(i if self.modalities[0] == "image" else t)


class ScoreFusionHead(Head):
    """Late fusion: per-modality class scores -> one linear layer -> fused logits.

    The fusion layer starts as the sum of the two log-probability vectors (a product of
    experts), so training starts from a sensible fused prediction.
    """

    name = "score_fusion"

    def __init__(self, num_classes: int, image_dim: int = 0, text_dim: int = 0,
                 dropout: float = 0.2, aux_weight: float = 1.0) -> None:
        super().__init__(num_classes, image_dim, text_dim, dropout=dropout, aux_weight=aux_weight)
        self.aux_weight = aux_weight
        self.image_classifier = _mlp(self.image_dim, num_classes, 0, dropout)
        self.text_classifier = _mlp(self.text_dim, num_classes, 0, dropout)
        self.fusion = nn.Linear(2 * num_classes, num_classes)
        with torch.no_grad():
            eye = torch.eye(num_classes)
            self.fusion.weight.copy_(torch.cat([eye, eye], dim=1))
            self.fusion.bias.zero_()

    def _all(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> list[torch.Tensor]:
        i, t = self._inputs(img, txt)
        li, lt = self.image_classifier(i), self.text_classifier(t)
        scores = torch.cat([F.log_softmax(li, dim=1), F.log_softmax(lt, dim=1)], dim=1)
        return [self.fusion(scores), li, lt]

    def forward(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> torch.Tensor:
        return self._all(img, txt)[0]

    def training_logits(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> list[torch.Tensor]:
        return self._all(img, txt)


class ConcatHead(Head):
    """Early fusion: concatenated standardised embeddings -> MLP (``hidden=0``: linear)."""

    name = "concat"

    def __init__(self, num_classes: int, image_dim: int = 0, text_dim: int = 0,
                 hidden: int = 512, dropout: float = 0.3) -> None:
        super().__init__(num_classes, image_dim, text_dim, hidden=hidden, dropout=dropout)
        self.classifier = _mlp(self.image_dim + self.text_dim, num_classes, hidden, dropout)

    def forward(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> torch.Tensor:
        i, t = self._inputs(img, txt)
        return self.classifier(torch.cat([i, t], dim=1))  # type: ignore[list-item]


INFERENCE_MODES = ("expectation", "fixed", "sample")


class EmbraceNetHead(Head):
    """EmbraceNet fusion with a deterministic inference mode.

    Training (``module.train()``) follows the reference: ``d_k = relu(W_k x_k)`` per
    modality; for every sample and every one of the ``embrace_size`` dimensions a
    modality is drawn from ``p`` (``selection_probs`` restricted to the available
    modalities and renormalised) and that modality's value is kept. With probability
    ``modality_dropout`` a sample loses one modality (drawn uniformly) for that step.

    The reference is stochastic at inference too. Here ``inference`` picks:

    * ``"expectation"`` (default): ``e = sum_k p_k d_k``, the expected embraced vector.
      With the default linear classifier (``hidden=0``) the logits equal the expected
      logits over the random selection, exactly.
    * ``"fixed"``: one selection mask drawn once from ``seed`` and used for every sample.
    * ``"sample"``: the reference behaviour (random on every call; not deterministic).
    """

    name = "embracenet"

    def __init__(self, num_classes: int, image_dim: int = 0, text_dim: int = 0, embrace_size: int = 256,
                 hidden: int = 0, dropout: float = 0.2, modality_dropout: float = 0.2,
                 selection_probs: tuple[float, float] = (0.5, 0.5), inference: str = "expectation",
                 seed: int = 0) -> None:
        if inference not in INFERENCE_MODES:
            raise ValueError(f"inference must be one of {INFERENCE_MODES}, got {inference!r}")
        if len(selection_probs) != 2 or min(selection_probs) < 0 or sum(selection_probs) <= 0:
            raise ValueError(f"selection_probs must be two non-negative weights (image, text), got {selection_probs!r}")
        if not 0 <= modality_dropout < 1:
            raise ValueError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        super().__init__(num_classes, image_dim, text_dim, embrace_size=embrace_size, hidden=hidden, dropout=dropout,
                         modality_dropout=modality_dropout, selection_probs=list(selection_probs), inference=inference,
                         seed=seed)
        self.embrace_size = embrace_size
        self.modality_dropout = modality_dropout
        self.inference = inference
        self.docking = nn.ModuleList([nn.Linear(self.image_dim, embrace_size), nn.Linear(self.text_dim, embrace_size)])
        self.dropout = nn.Dropout(dropout)
        self.classifier = _mlp(embrace_size, num_classes, hidden, dropout)
        p = torch.tensor(selection_probs, dtype=torch.float32)
        self.register_buffer("selection_probs", p / p.sum())
        g = torch.Generator().manual_seed(seed)
        fixed = torch.multinomial(self.selection_probs, embrace_size, replacement=True, generator=g)
        self.register_buffer("fixed_selection", F.one_hot(fixed, 2).float())  # (c, M)

    def dock(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> torch.Tensor:
        """Docked features stacked as ``(B, embrace_size, 2)`` (image, text)."""
        i, t = self._inputs(img, txt)
        return torch.stack([F.relu(self.docking[0](self.dropout(i))), F.relu(self.docking[1](self.dropout(t)))], dim=-1)

    def embrace(self, docked: torch.Tensor, availability: torch.Tensor | None = None, mode: str | None = None) -> torch.Tensor:
        """Combine ``(B, c, M)`` docked features into ``(B, c)``; ``availability`` is ``(B, M)`` of 0/1."""
        mode = mode or ("sample" if self.training else self.inference)
        b, c, m = docked.shape
        p = self.selection_probs.expand(b, m)
        if availability is not None:
            p = p * availability
        p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
        if mode == "expectation":
            return (docked * p[:, None, :]).sum(-1)
        if mode == "fixed":
            return (docked * self.fixed_selection[None]).sum(-1)
        idx = torch.multinomial(p, c, replacement=True)  # (B, c)
        return (docked * F.one_hot(idx, m).to(docked.dtype)).sum(-1)

    def _modality_dropout(self, b: int, device: torch.device) -> torch.Tensor:
        avail = torch.ones(b, 2, device=device)
        if self.modality_dropout > 0:
            drop = torch.rand(b, device=device) < self.modality_dropout
            which = torch.randint(0, 2, (b,), device=device)
            avail[drop, which[drop]] = 0.0
        return avail

    def forward(self, img: torch.Tensor | None, txt: torch.Tensor | None) -> torch.Tensor:
        docked = self.dock(img, txt)
        avail = self._modality_dropout(docked.shape[0], docked.device) if self.training else None
        return self.classifier(self.embrace(docked, avail))


@register_model("head")
def image(num_classes: int, image_dim: int, text_dim: int = 0, hidden: int = 0, dropout: float = 0.2) -> UnimodalHead:
    """Image-only classifier: standardised image features -> linear layer (or MLP)."""
    return UnimodalHead("image", num_classes, image_dim, text_dim, hidden=hidden, dropout=dropout)


@register_model("head")
def text(num_classes: int, text_dim: int, image_dim: int = 0, hidden: int = 0, dropout: float = 0.2) -> UnimodalHead:
    """Text-only classifier: standardised OCR-text embedding -> linear layer (or MLP)."""
    return UnimodalHead("text", num_classes, image_dim, text_dim, hidden=hidden, dropout=dropout)


@register_model("head")
def score_fusion(num_classes: int, image_dim: int, text_dim: int, **cfg: Any) -> ScoreFusionHead:
    """Score Fusion: per-modality class scores -> one-layer network."""
    return ScoreFusionHead(num_classes, image_dim, text_dim, **cfg)


@register_model("head")
def concat(num_classes: int, image_dim: int, text_dim: int, **cfg: Any) -> ConcatHead:
    """Feature Concatenation: concatenated embeddings -> MLP."""
    return ConcatHead(num_classes, image_dim, text_dim, **cfg)


@register_model("head")
def embracenet(num_classes: int, image_dim: int, text_dim: int, **cfg: Any) -> EmbraceNetHead:
    """EmbraceNet: docking + per-dimension multinomial modality selection + modality dropout."""
    return EmbraceNetHead(num_classes, image_dim, text_dim, **cfg)
