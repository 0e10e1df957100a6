"""Randomised copies of a trained classifier, for the model-randomisation sanity check.

Adebayo et al. (2018, "Sanity checks for saliency maps") compare a model's explanations
with those of the same model whose learned weights were re-initialised: an explanation
that does not change is not explaining what the model learned.
:func:`randomised_copy` builds such a model from a prodlens
:class:`~prodlens.models.classifier.ProductClassifier`, never touching the original:

* ``"head"``: the fusion / classification head is rebuilt with a fresh, seeded
  initialisation (the state it had before training). Its fitted input
  standardisation (``FeatureNorm`` buffers) and EmbraceNet's selection buffers are
  kept: they are preprocessing, not learned weights. The backbones are shared with
  the original (they are not changed).
* ``"head+blocks<N>"``: the head as above, and the image backbone's top, from its last
  ``N`` blocks up (the tail of :meth:`~prodlens.models.image_backbones.ImageBackbone.split`:
  those blocks, the final convolution and its norm), re-initialised with PyTorch's
  default initialisation (``reset_parameters``; batch norms get fresh running
  statistics). The copy's backbone gets its own ``weights_id``
  (:meth:`~prodlens.models.image_backbones.ImageBackbone.mark_trained`, a digest of the
  new weights), so the feature cache never hands it the trained backbone's features, and
  it starts without an ONNX Runtime session: the runtime exports it afresh, cached under
  the digest of *its* weights (:func:`~prodlens.models.runtime.module_digest`).

>>> from prodlens.models import build_classifier
>>> clf = build_classifier("image", ["a", "b"], backbone_cfg={"pretrained": False, "input_size": 32})
>>> rnd = randomised_copy(clf, "head", seed=1)
>>> rnd is not clf, rnd.image_backbone is clf.image_backbone
(True, True)
>>> bool((rnd.head.classifier[-1].weight != clf.head.classifier[-1].weight).any())
True
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
from torch import nn

from prodlens._validation import did_you_mean
from prodlens.errors import ConfigError
from prodlens.models.classifier import ProductClassifier
from prodlens.models.heads import Head
from prodlens.models.registry import create_model

#: The accepted forms of ``randomise``; ``N`` counts image-backbone blocks from the top.
RANDOMISATIONS = ("head", "head+blocks<N>")

_PATTERN = re.compile(r"head(?:\+blocks(\d+))?")


@dataclass(frozen=True)
class Randomisation:
    """A parsed ``randomise`` name: the head always, and the top ``blocks`` image blocks.

    >>> parse_randomisation("head+blocks2")
    Randomisation(blocks=2)
    >>> parse_randomisation("head").name
    'head'
    """

    blocks: int = 0

    @property
    def name(self) -> str:
        return "head" if not self.blocks else f"head+blocks{self.blocks}"


def parse_randomisation(name: str) -> Randomisation:
    """Parse ``"head"`` or ``"head+blocks<N>"`` (``N >= 1``); anything else is a :class:`ConfigError`.

    >>> parse_randomisation("heads")
    Traceback (most recent call last):
    ...
    prodlens.errors.ConfigError: randomise must be 'head' or 'head+blocks<N>' (N >= 1: re-initialise the head and the last N image-backbone blocks), got 'heads'; did you mean 'head'?
    """
    m = _PATTERN.fullmatch(str(name).strip()) if isinstance(name, str) else None
    blocks = int(m.group(1)) if m and m.group(1) is not None else 0
    if m is None or (m.group(1) is not None and blocks < 1):
        hint = did_you_mean(str(name), ["head", "head+blocks1", "head+blocks2"], n=1)
        raise ConfigError(f"randomise must be 'head' or 'head+blocks<N>' (N >= 1: re-initialise the head and the "
                          f"last N image-backbone blocks), got {name!r}{hint}")
    return Randomisation(blocks)


def _fresh_head(head: Head, head_name: str) -> Head:
    """A newly initialised head of the same kind and shape, keeping ``head``'s buffers."""
    fresh: Head = create_model(head_name, kind="head", **head.config)
    buffers = {k: v for k, v in head.state_dict().items() if k not in dict(head.named_parameters())}
    fresh.load_state_dict({**fresh.state_dict(), **buffers})
    return fresh


def _reset_parameters(module: nn.Module) -> None:
    """Re-initialise every submodule that knows how (``reset_parameters``: convolutions,
    linear layers, norms with their running statistics)."""
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()


def _check_blocks(clf: ProductClassifier, blocks: int, name: str) -> None:
    bb = clf.image_backbone
    if bb is None:
        raise ConfigError(f"randomise={name!r} re-initialises image-backbone blocks, but this {clf.head_name!r} model "
                          "reads no image; use randomise='head'")
    try:
        n = len(bb.blocks())
    except ConfigError:
        raise ConfigError(f"randomise={name!r}: the image backbone {bb.name} cannot be cut into blocks; "
                          "use randomise='head'") from None
    if not 1 <= blocks <= n:
        raise ConfigError(f"randomise={name!r}: the image backbone {bb.name} has {n} blocks; "
                          f"N in 'head+blocks<N>' must be in 1..{n}, got {blocks}")


def randomised_copy(classifier: object, randomise: str = "head", *, seed: int = 0) -> ProductClassifier:
    """A copy of ``classifier`` with its head (and, with ``"head+blocks<N>"``, its last
    ``N`` image-backbone blocks) re-initialised from ``seed``; the original is unchanged.

    ``classifier`` must be a prodlens :class:`ProductClassifier` (a model wrapped with
    ``as_classifier`` has no head prodlens knows how to re-initialise). The global torch
    random state is left as it was. Same ``seed``, same weights.

    >>> from prodlens.models import build_classifier
    >>> clf = build_classifier("image", ["a", "b"], backbone_cfg={"pretrained": False, "input_size": 32})
    >>> rnd = randomised_copy(clf, "head+blocks1")
    >>> rnd.image_backbone is clf.image_backbone, rnd.image_backbone.cache_key != clf.image_backbone.cache_key
    (False, True)
    >>> randomised_copy(lambda ims, tls: None)
    Traceback (most recent call last):
    ...
    prodlens.errors.ConfigError: randomise='head' needs a prodlens ProductClassifier (from load_classifier or build_classifier), got function; a model wrapped with as_classifier has no head to re-initialise
    """
    spec = parse_randomisation(randomise)
    if not isinstance(classifier, ProductClassifier):
        raise ConfigError(f"randomise={randomise!r} needs a prodlens ProductClassifier (from load_classifier or "
                          f"build_classifier), got {type(classifier).__name__}; a model wrapped with as_classifier "
                          "has no head to re-initialise")
    clf = classifier
    if spec.blocks:
        _check_blocks(clf, spec.blocks, randomise)
    with torch.random.fork_rng(devices=[]):  # initialised on the CPU: the same weights whatever the device
        torch.manual_seed(int(seed))
        head = _fresh_head(clf.head, clf.head_name)
        image = clf.image_backbone
        if spec.blocks and image is not None:
            image = copy.deepcopy(image).cpu()
            _, tail = image.split(spec.blocks)  # shares the copy's parameters
            _reset_parameters(tail)
            image.mark_trained()  # a weights_id of its own: feature caches must not confuse it with the trained one
    out = ProductClassifier(head, clf.classes, image, clf.text_backbone, head_name=clf.head_name, spec=clf.spec,
                            batch_size=clf.batch_size, device=clf.device)
    out.metrics, out.train_config = {}, dict(clf.train_config)
    if image is clf.image_backbone:
        # the very same backbone: its ONNX Runtime session (if any) computes the same features
        out._image_runner = clf._image_runner
    elif clf.runtime == "onnxruntime":
        out.use_runtime("auto")  # the source's runtime, exported afresh (cached by the digest of the new weights)
    return out
