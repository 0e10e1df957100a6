"""Run an image network with ONNX Runtime on the CPU: the same function, cheaper passes.

Explaining one photo costs hundreds to thousands of forward passes of the image
network, and on a CPU almost all of an explanation's time is spent there. PyTorch's
eager CPU path runs EfficientNet-Lite's batch norms, ReLU6 and TF "same" padding as
separate kernels; ONNX Runtime folds them into the convolutions and fuses the rest.
That takes less time per image than PyTorch's eager path on a CPU (an earlier
measurement gave 1.8x for ``tf_efficientnet_lite0`` at 256 px; no current bench result
backs a number, since ``bench/explain_speed.py`` now runs every arm on ONNX Runtime),
with outputs equal to PyTorch's within float rounding (``tests/models/test_runtime.py`` checks
1e-5 on features and logits).

:func:`onnx_image_runner` exports a ``(B, 3, S, S) -> (B, D)`` module once (cached on
disk by a digest of its weights, input size and torch version), checks the exported
network against the module on a probe batch, and returns a callable
:class:`OnnxImageRunner`. :func:`resolve_runtime` turns ``"auto"`` into
``"onnxruntime"`` on the CPU when ``onnx`` and ``onnxruntime`` import, else
``"torch"``; GPUs keep PyTorch.

>>> resolve_runtime("torch", "cpu")
'torch'
>>> resolve_runtime("auto", "cuda:0")
'torch'
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prodlens.errors import ProdlensError

log = logging.getLogger(__name__)

#: Accepted values of every ``runtime=`` parameter.
RUNTIMES = ("auto", "torch", "onnxruntime")

#: Largest absolute difference between exported and eager outputs that is accepted.
DEFAULT_ATOL = 1e-3

CACHE_ENV = "PRODLENS_CACHE"


class RuntimeUnavailableError(ProdlensError, RuntimeError):
    """The requested runtime cannot run this network here (missing package, export or check failed)."""


def default_onnx_cache() -> Path:
    """``$PRODLENS_CACHE/onnx`` when the variable is set, else ``~/.cache/prodlens/onnx``."""
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "prodlens") / "onnx"


def onnxruntime_available() -> bool:
    """Whether both ``onnx`` (needed to export) and ``onnxruntime`` are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def resolve_runtime(runtime: str, device: str | torch.device = "cpu") -> str:
    """``"torch"`` or ``"onnxruntime"`` for a requested ``runtime`` on ``device``.

    ``"auto"`` picks ONNX Runtime on the CPU when it is installed and PyTorch
    everywhere else. Asking for ``"onnxruntime"`` on a GPU device is an error (the
    explainer keeps GPU batches in torch).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    on_cpu = torch.device(device).type == "cpu"
    if runtime == "auto":
        return "onnxruntime" if on_cpu and onnxruntime_available() else "torch"
    if runtime == "onnxruntime":
        if not on_cpu:
            raise ValueError(f"runtime='onnxruntime' runs on the CPU only; the model is on {device}: use 'torch' or 'auto'")
        if not onnxruntime_available():
            raise RuntimeUnavailableError("runtime='onnxruntime' needs the packages onnx and onnxruntime: pip install onnx onnxruntime")
    return runtime


def module_digest(module: nn.Module, input_size: int) -> str:
    """A short digest of a module's class, weights, input size and the torch version."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}|{input_size}|{torch.__version__}".encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _export(module: nn.Module, input_size: int) -> bytes:
    x = torch.zeros(2, 3, input_size, input_size)
    buf = io.BytesIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (x,), buf, input_names=["images"], output_names=["features"],
            dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False,
        )
    return buf.getvalue()


def image_runner_for(
    module: nn.Module, input_size: int, runtime: str, device: str | torch.device = "cpu", *, strict: bool = False,
) -> OnnxImageRunner | None:
    """The ONNX Runtime stand-in for ``module`` that ``runtime`` asks for on ``device``,
    or ``None`` where PyTorch runs it.

    ``"auto"`` keeps PyTorch when the export or its check fails, with a warning;
    ``"onnxruntime"`` (or ``strict=True``) raises :class:`RuntimeUnavailableError` then.

    >>> image_runner_for(nn.Identity(), 8, "torch") is None
    True
    """
    if resolve_runtime(runtime, device) != "onnxruntime":
        return None
    try:
        return onnx_image_runner(module.eval(), input_size)
    except RuntimeUnavailableError as e:
        if strict or runtime == "onnxruntime":
            raise
        log.warning("%s", e)
        return None


class OnnxImageRunner:
    """An ONNX Runtime session standing in for an image module: ``runner(x) -> features``.

    ``x`` is the preprocessed float batch ``(B, 3, S, S)`` (numpy or torch); the result
    is a float32 numpy array. Build one with :func:`onnx_image_runner`.
    """

    def __init__(self, model: bytes | str | Path, *, threads: int | None = None, digest: str = "") -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        src = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(src, sess_options=opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.digest = digest

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return self.session.run(None, {self.input_name: np.ascontiguousarray(a, dtype=np.float32)})[0]

    def __repr__(self) -> str:
        return f"OnnxImageRunner({self.digest})"


def onnx_image_runner(
    module: nn.Module,
    input_size: int,
    *,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> OnnxImageRunner:
    """Export ``module`` (``(B, 3, S, S) -> (B, D)``, eval mode) to ONNX and check it.

    The ONNX file is cached under ``cache_dir`` (default :func:`default_onnx_cache`)
    by :func:`module_digest`, so only the first call per set of weights pays the
    export (a few seconds). The exported network is compared with the module on a
    seeded random probe batch; a largest absolute difference above ``atol`` raises
    :class:`RuntimeUnavailableError` (callers fall back to PyTorch).

    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> run = onnx_image_runner(net.eval(), 16, cache_dir=__import__("tempfile").mkdtemp())
    >>> run(np.zeros((3, 3, 16, 16), np.float32)).shape
    (3, 4)
    """
    if not onnxruntime_available():
        raise RuntimeUnavailableError("ONNX Runtime needs the packages onnx and onnxruntime: pip install onnx onnxruntime")
    from prodlens._atomic import atomic_write

    if module.training:
        raise ValueError("the module is in training mode; call module.eval() before exporting it")
    module = module.cpu()
    digest = module_digest(module, input_size)
    path = Path(cache_dir) if cache_dir is not None else default_onnx_cache()
    path = path / f"{digest}.onnx"
    if not path.is_file():
        try:
            data = _export(module, input_size)
        except Exception as e:  # noqa: BLE001 - the exporter raises many types
            raise RuntimeUnavailableError(f"cannot export {type(module).__name__} to ONNX ({type(e).__name__}: {e})") from None
        with atomic_write(path, "wb") as f:
            f.write(data)
        log.info("exported %s to %s", type(module).__name__, path)
    try:
        runner = OnnxImageRunner(path, threads=threads, digest=digest)
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types
        with contextlib.suppress(OSError):
            path.unlink()  # a damaged cache entry is rebuilt next time
        raise RuntimeUnavailableError(f"onnxruntime cannot load {path} ({e}); it was removed, try again") from None
    probe = torch.from_numpy(np.random.default_rng(seed).standard_normal((2, 3, input_size, input_size)).astype(np.float32))
    with torch.inference_mode():
        want = module(probe).float().numpy()
    got = runner(probe)
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not diff <= atol:
        raise RuntimeUnavailableError(
            f"ONNX export of {type(module).__name__} differs from PyTorch by {diff:.3g} (> atol {atol}); keeping PyTorch"
        )
    log.debug("%r matches PyTorch within %.2g", runner, diff)
    return runner
