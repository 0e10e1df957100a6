"""Frozen-backbone features, cached on disk.

The fast training mode encodes every training image in several augmented *views*
once, and trains only the head on the cached vectors. The cache layout is
``{root}/{backbone.cache_key}/{view_key}/{sha[:2]}/{sha}.npy`` for images (``sha`` is the
SHA-256 of the image file) and ``{root}/{text_backbone.cache_key}/text/{sha[:2]}/{sha}.npy``
for texts (``sha`` of the UTF-8 string), so a key names exactly the function that
produced the vector: backbone + weights + preprocessing + augmentation + view.
Feature maps of a backbone's frozen trunk (``image_features(..., trunk_blocks=k)``,
for training the last ``k`` blocks) live under ``{backbone.cache_key}-trunk{k}``.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from prodlens._atomic import atomic_write
from prodlens.data.images import load_image
from prodlens.data.types import ProductSample
from prodlens.models.image_backbones import ConcatImageBackbone, ImageBackbone
from prodlens.models.preprocess import images_to_tensor
from prodlens.models.text_backbones import TextBackbone, tokens_to_text
from prodlens.ocr.cache import file_sha256
from prodlens.train.augment import AugmentConfig, augment_image, drop_tokens, hflip_image, view_rng

log = logging.getLogger(__name__)

#: View index of the un-augmented image; positive indices are random augmentations.
PLAIN = 0
#: View index of the left-right mirrored image (test-time augmentation).
HFLIP = -1


class FeatureCache:
    """A folder of ``.npy`` feature vectors keyed by (backbone key, view key, content hash).

    >>> import tempfile
    >>> c = FeatureCache(tempfile.mkdtemp())
    >>> c.put("bb", "plain", "ab" * 32, np.ones(3, np.float32))
    >>> c.get("bb", "plain", "ab" * 32).tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, backbone_key: str, view_key: str, sha: str) -> Path:
        return self.root / backbone_key / view_key / sha[:2] / f"{sha}.npy"

    def get(self, backbone_key: str, view_key: str, sha: str) -> np.ndarray | None:
        p = self.path(backbone_key, view_key, sha)
        if not p.is_file():
            return None
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None  # damaged entry: recompute

    def put(self, backbone_key: str, view_key: str, sha: str, vec: np.ndarray, dtype: type = np.float32) -> None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(vec, dtype), allow_pickle=False)
        with atomic_write(self.path(backbone_key, view_key, sha), "wb") as f:
            f.write(buf.getvalue())


def view_key(view: int, aug: AugmentConfig, seed: int) -> str:
    """Cache name of an image view: ``plain``, ``hflip`` or ``{aug.key()}-s{seed}-v{view}``.

    >>> view_key(0, AugmentConfig(), 0), view_key(-1, AugmentConfig(), 0)
    ('plain', 'hflip')
    """
    if view == PLAIN:
        return "plain"
    if view == HFLIP:
        return "hflip"
    return f"{aug.key()}-s{seed}-v{view}"


_SHA: dict[tuple[str, float, int], str] = {}


def image_sha(path: Path) -> str:
    """SHA-256 of an image file, memoised on (path, mtime, size) for this process."""
    st = path.stat()
    k = (str(path), st.st_mtime, st.st_size)
    if k not in _SHA:
        _SHA[k] = file_sha256(path)
    return _SHA[k]


def make_view(img: np.ndarray, view: int, sha: str, aug: AugmentConfig, seed: int) -> np.ndarray:
    """The image as seen in ``view`` (deterministic)."""
    if view == PLAIN:
        return img
    if view == HFLIP:
        return hflip_image(img)
    return augment_image(img, aug, view_rng(seed, sha, view))


def _feature_fn(module: torch.nn.Module, input_size: int, device: torch.device, runtime: str):
    """``x -> output`` with ONNX Runtime where ``runtime`` resolves to it, else PyTorch."""
    from prodlens.models.runtime import image_runner_for

    runner = image_runner_for(module, input_size, runtime, device)
    if runner is not None:
        return runner

    def torch_fn(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return module(x.to(device)).float().cpu().numpy()

    return torch_fn


def _encode_views(
    module: torch.nn.Module, name: str, key: str, shape: tuple[int, ...], backbone: ImageBackbone,
    samples: Sequence[ProductSample], views: Sequence[int], shas: list[str], cache: FeatureCache | None,
    aug: AugmentConfig, seed: int, batch_size: int, progress: bool, runtime: str, dtype: type = np.float32,
) -> np.ndarray:
    """``module``'s output ``shape`` for every (sample, view), read from / written to ``cache``."""
    out = np.zeros((len(samples), len(views), *shape), dtype)
    todo: list[tuple[int, int]] = []
    # view-major order: an interrupted run leaves whole views cached, usable on their own
    for j, v in enumerate(views):
        vk = view_key(v, aug, seed)
        for i, sha in enumerate(shas):
            hit = cache.get(key, vk, sha) if cache is not None else None
            if hit is not None and hit.shape == shape:
                out[i, j] = hit
            else:
                todo.append((i, j))
    if not todo:
        return out
    log.info("%s: encoding %d image views (%d cached)", name, len(todo), out.shape[0] * out.shape[1] - len(todo))
    device = next(backbone.parameters()).device
    module.eval()
    run = _feature_fn(module, backbone.preprocess.input_size, device, runtime)
    batch: list[tuple[int, int, np.ndarray]] = []
    loaded: tuple[int, np.ndarray] | None = None

    def flush() -> None:
        f = run(images_to_tensor([b[2] for b in batch], backbone.preprocess))
        for (i, j, _), vec in zip(batch, f):
            out[i, j] = vec
            if cache is not None:
                cache.put(key, view_key(views[j], aug, seed), shas[i], vec, dtype=dtype)
        batch.clear()

    for i, j in tqdm(todo, desc=f"features {name}", disable=not progress, unit="view"):
        if loaded is None or loaded[0] != i:
            loaded = (i, load_image(samples[i].image_path))
        batch.append((i, j, make_view(loaded[1], views[j], shas[i], aug, seed)))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return out


def _part_encoder(part: ImageBackbone, trunk_blocks: int) -> tuple[torch.nn.Module, str, str, tuple[int, ...], type]:
    """(module, display name, cache key, output shape, dtype) of one backbone, or of its trunk."""
    if not trunk_blocks:
        return part, part.name, part.cache_key, (part.out_dim,), np.float32
    trunk, _ = part.split(trunk_blocks)
    trunk.eval()
    size = part.preprocess.input_size
    with torch.inference_mode():
        probe = trunk(torch.zeros(1, 3, size, size, device=next(part.parameters()).device))
    shape = tuple(int(d) for d in probe.shape[1:])
    return trunk, f"{part.name} trunk", f"{part.cache_key}-trunk{trunk_blocks}", shape, np.float16


def image_features(
    backbone: ImageBackbone,
    samples: Sequence[ProductSample],
    views: Sequence[int] = (PLAIN,),
    *,
    cache: FeatureCache | None = None,
    aug: AugmentConfig | None = None,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = True,
    runtime: str = "auto",
    trunk_blocks: int = 0,
) -> np.ndarray:
    """Features ``(n_samples, n_views, out_dim)`` of each sample's image in each view.

    Cached vectors are reused; missing ones are computed and cached. A concatenated
    backbone caches each part separately. ``runtime`` (``"auto"``, ``"torch"``,
    ``"onnxruntime"``; see :mod:`prodlens.models.runtime`) runs the backbone on ONNX
    Runtime on the CPU by default: the same features within float rounding, in about
    half the time.

    With ``trunk_blocks=k`` the result is instead the feature maps
    ``(n_samples, n_views, C, H, W)`` (float16) of the frozen trunk of
    ``backbone.split(k)``: the inputs on which the fast mode's ``train_blocks=k`` trains
    the tail. They are cached under ``{cache_key}-trunk{k}``; the parts of a
    concatenated backbone are joined along channels, as its trunk does.

    >>> from prodlens.models.image_backbones import build_image_backbone  # doctest: +SKIP
    >>> image_features(build_image_backbone("efficientnet_lite0"), ds.samples, (0, 1, 2)).shape  # doctest: +SKIP
    (2640, 3, 1280)
    """
    aug = aug or AugmentConfig()
    shas = [image_sha(s.image_path) for s in samples]
    parts = list(backbone.parts) if isinstance(backbone, ConcatImageBackbone) else [backbone]
    if trunk_blocks and len(parts) > 1:
        backbone.split(trunk_blocks)  # checks that the parts' maps fit together
    feats = []
    for part in parts:
        module, name, key, shape, dtype = _part_encoder(part, trunk_blocks)
        feats.append(_encode_views(module, name, key, shape, part, samples, views, shas, cache, aug, seed, batch_size,
                                   progress, runtime, dtype))
    return np.concatenate(feats, axis=2) if len(feats) > 1 else feats[0]


def text_view(sample: ProductSample, view: int, aug: AugmentConfig, seed: int) -> str:
    """The text of ``sample`` in ``view``: all tokens for views <= 0, random word dropout otherwise."""
    toks = list(sample.tokens)
    if view > 0 and aug.text_dropout > 0:
        toks = drop_tokens(toks, aug.text_dropout, view_rng(seed + 7919, sample.id, view))
    return tokens_to_text(toks)


def text_features(
    backbone: TextBackbone,
    texts: Sequence[str],
    *,
    cache: FeatureCache | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> np.ndarray:
    """Embeddings ``(n, out_dim)`` of ``texts`` (duplicates encoded once; cached by string hash).

    >>> text_features(create_model("minilm"), ["", "ARLA MILK"]).shape  # doctest: +SKIP
    (2, 384)
    """
    from prodlens.models.text_backbones import ConcatTextBackbone

    if isinstance(backbone, ConcatTextBackbone):
        parts = [text_features(p, texts, cache=cache, batch_size=batch_size, progress=progress) for p in backbone.parts]
        return np.concatenate(parts, axis=1)
    key = backbone.cache_key
    if not backbone.cacheable:
        cache = None
    uniq = sorted(set(texts))
    sha = {t: hashlib.sha256(t.encode("utf-8")).hexdigest() for t in uniq}
    vecs: dict[str, np.ndarray] = {}
    todo = []
    for t in uniq:
        hit = cache.get(key, "text", sha[t]) if cache is not None else None
        if hit is not None and hit.shape == (backbone.out_dim,):
            vecs[t] = hit
        else:
            todo.append(t)
    if todo:
        log.info("%s: encoding %d texts (%d cached)", backbone.name, len(todo), len(uniq) - len(todo))
        backbone.eval()
        for i in tqdm(range(0, len(todo), batch_size), desc=f"features {backbone.name}", disable=not progress):
            chunk = todo[i : i + batch_size]
            with torch.inference_mode():
                f = backbone.forward_features(chunk).float().cpu().numpy()
            for t, v in zip(chunk, f):
                vecs[t] = v
                if cache is not None:
                    cache.put(key, "text", sha[t], v)
    if not texts:
        return np.zeros((0, backbone.out_dim), np.float32)
    return np.stack([vecs[t] for t in texts]).astype(np.float32)
