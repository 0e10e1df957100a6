"""Wrap a user's own model as a :class:`~prodlens.models.base.Classifier`.

:func:`as_classifier` accepts

* an object that already has ``predict_proba`` and ``classes`` (returned unchanged);
* any callable ``fn(images, token_lists) -> (n, C)`` probabilities (or logits with
  ``outputs="logits"``);
* a ``torch.nn.Module`` taking a preprocessed image batch ``(B, 3, S, S)`` (and, with
  ``text_backbone=...``, a text-embedding batch ``(B, D)`` as second argument);
* a path to an ONNX file with the same one- or two-input signature (run with
  onnxruntime).

Outputs are checked (shape, finite) and turned into probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prodlens._validation import check_int
from prodlens.data.types import OcrToken
from prodlens.errors import BadInputError
from prodlens.models.base import Classifier
from prodlens.models.preprocess import PreprocessConfig, images_to_tensor
from prodlens.models.text_backbones import TextBackbone, tokens_to_text

OUTPUTS = ("probs", "logits")


def _to_probs(out: Any, n: int, n_classes: int, outputs: str, where: str) -> np.ndarray:
    a = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    a = a.astype(np.float64)
    if a.shape != (n, n_classes):
        raise BadInputError(where, f"model returned shape {a.shape}, expected ({n}, {n_classes})",
                            "return one row per image and one column per class, in the order of `classes`")
    if not np.isfinite(a).all():
        raise BadInputError(where, "model returned NaN or infinite values", "check the model's inputs and preprocessing")
    if outputs == "logits":
        a = a - a.max(1, keepdims=True)
        a = np.exp(a)
    elif (a < -1e-6).any():
        raise BadInputError(where, "model returned negative probabilities", "pass outputs='logits' if it returns raw scores")
    a = np.clip(a, 0, None)
    s = a.sum(1, keepdims=True)
    if (s <= 0).any():
        raise BadInputError(where, "a row of probabilities sums to 0", "return probabilities or pass outputs='logits'")
    return a / s


class _Base:
    def __init__(self, classes: Sequence[str], outputs: str, batch_size: int) -> None:
        if outputs not in OUTPUTS:
            raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}")
        check_int("batch_size", batch_size, 1)
        self.classes = list(classes)
        self.outputs = outputs
        self.batch_size = batch_size

    def _run(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> Any:  # pragma: no cover
        raise NotImplementedError

    def predict_proba(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> np.ndarray:
        if len(images) != len(token_lists):
            raise ValueError(f"got {len(images)} images but {len(token_lists)} token lists")
        out = []
        for i in range(0, len(images), self.batch_size):
            im, tl = images[i : i + self.batch_size], token_lists[i : i + self.batch_size]
            out.append(_to_probs(self._run(im, tl), len(im), len(self.classes), self.outputs, repr(self)))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)))


class CallableClassifier(_Base):
    """A plain function ``fn(images, token_lists) -> (n, C)`` as a Classifier.

    >>> clf = CallableClassifier(lambda ims, tls: [[0.2, 0.8]] * len(ims), ["a", "b"])
    >>> clf.predict_proba([np.zeros((4, 4, 3), np.uint8)], [[]]).tolist()
    [[0.2, 0.8]]
    """

    def __init__(self, fn: Callable[..., Any], classes: Sequence[str], *, outputs: str = "probs", batch_size: int = 32) -> None:
        super().__init__(classes, outputs, batch_size)
        self.fn = fn

    def _run(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> Any:
        return self.fn(list(images), [list(t) for t in token_lists])

    def __repr__(self) -> str:
        return f"CallableClassifier({getattr(self.fn, '__name__', type(self.fn).__name__)})"


class _ImageTextInputs(_Base):
    def __init__(self, classes: Sequence[str], preprocess: PreprocessConfig, text_backbone: TextBackbone | str | None,
                 outputs: str, batch_size: int) -> None:
        super().__init__(classes, outputs, batch_size)
        self.preprocess = preprocess
        if isinstance(text_backbone, str):
            from prodlens.models.registry import create_model

            text_backbone = create_model(text_backbone, kind="text")
        self.text_backbone = text_backbone.eval() if text_backbone is not None else None

    def _inputs(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> list[torch.Tensor]:
        xs = [images_to_tensor(images, self.preprocess)]
        if self.text_backbone is not None:
            with torch.inference_mode():
                xs.append(self.text_backbone.forward_features([tokens_to_text(t) for t in token_lists]).float().cpu())
        return xs


class TorchClassifier(_ImageTextInputs):
    """A ``torch.nn.Module`` as a Classifier (run in eval mode, without gradients).

    The module gets ``images_to_tensor(images, preprocess)`` and, if ``text_backbone``
    is given, the text embeddings as a second argument. ``runtime="onnxruntime"``
    (or ``"auto"``: on the CPU when installed) runs an image-only module on ONNX
    Runtime instead, exported once and checked against PyTorch
    (:mod:`prodlens.models.runtime`): same outputs, about half the CPU time.
    ``None`` (default) or ``"torch"`` runs PyTorch. The runtime is chosen here (or with
    :meth:`use_runtime`), never by an explainer.

    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> clf = TorchClassifier(net, ["a", "b"], preprocess=PreprocessConfig(8), outputs="logits")
    >>> clf.predict_proba([np.zeros((9, 9, 3), np.uint8)], [[]]).shape
    (1, 2)
    """

    def __init__(self, module: nn.Module, classes: Sequence[str], *, preprocess: PreprocessConfig | None = None,
                 text_backbone: TextBackbone | str | None = None, outputs: str = "logits", batch_size: int = 16,
                 device: str | torch.device = "cpu", runtime: str | None = None) -> None:
        super().__init__(classes, preprocess or PreprocessConfig(), text_backbone, outputs, batch_size)
        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self.runner: Any = None
        if runtime is not None:
            self.use_runtime(runtime)

    def use_runtime(self, runtime: str = "auto") -> TorchClassifier:
        """Run the module with ``"torch"``, ``"onnxruntime"`` or ``"auto"``; returns ``self``.

        ``"auto"`` keeps PyTorch when the export or its check fails, or when the module
        also reads text; ``"onnxruntime"`` raises then.
        """
        from prodlens.models.runtime import image_runner_for, resolve_runtime

        chosen = resolve_runtime(runtime, self.device)
        self.runner = None
        if chosen == "onnxruntime" and self.text_backbone is not None:
            if runtime == "onnxruntime":
                raise ValueError("runtime='onnxruntime' supports image-only modules (one input); "
                                 "for a module with a text input use runtime='torch' or export it and pass the .onnx path")
            return self
        self.runner = image_runner_for(self.module, self.preprocess.input_size, runtime, self.device)
        return self

    @property
    def input_size(self) -> int:
        """The side photos are resized to (``preprocess.input_size``)."""
        return self.preprocess.input_size

    @property
    def runtime(self) -> str:
        """``"onnxruntime"`` when the module runs on ONNX Runtime, else ``"torch"``."""
        return "torch" if self.runner is None else "onnxruntime"

    def _run(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> Any:
        xs = self._inputs(images, token_lists)
        if self.runner is not None:
            return self.runner(xs[0])
        with torch.inference_mode():
            return self.module(*[x.to(self.device) for x in xs])

    def __repr__(self) -> str:
        return f"TorchClassifier({type(self.module).__name__})"


class OnnxClassifier(_ImageTextInputs):
    """An ONNX model run with onnxruntime (CPU unless ``providers`` says otherwise).

    Its first input is the preprocessed float32 image batch ``(B, 3, S, S)``; a second
    input, if present, receives the embeddings of ``text_backbone`` (required then).
    """

    def __init__(self, path: str | Path, classes: Sequence[str], *, preprocess: PreprocessConfig | None = None,
                 text_backbone: TextBackbone | str | None = None, outputs: str = "logits", batch_size: int = 16,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise BadInputError(self.path, "ONNX file not found")
        try:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 0
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=list(providers))
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise BadInputError(self.path, f"onnxruntime cannot load it ({e})", "export a valid ONNX model") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        if len(self.input_names) not in (1, 2):
            raise BadInputError(self.path, f"model has {len(self.input_names)} inputs", "expected (images) or (images, text_embeddings)")
        if len(self.input_names) == 2 and text_backbone is None:
            raise BadInputError(self.path, "model has a second (text) input but no text_backbone was given",
                                "pass text_backbone='minilm' (or the backbone the model was trained with)")
        super().__init__(classes, preprocess or PreprocessConfig(), text_backbone if len(self.input_names) == 2 else None,
                         outputs, batch_size)

    def _run(self, images: Sequence[np.ndarray], token_lists: Sequence[Sequence[OcrToken]]) -> Any:
        xs = self._inputs(images, token_lists)
        feeds = {name: x.numpy().astype(np.float32) for name, x in zip(self.input_names, xs)}
        return self.session.run(None, feeds)[0]

    def __repr__(self) -> str:
        return f"OnnxClassifier({self.path.name})"


def as_classifier(
    model: Any,
    classes: Sequence[str] | None = None,
    *,
    outputs: str | None = None,
    preprocess: PreprocessConfig | None = None,
    text_backbone: TextBackbone | str | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    runtime: str | None = None,
) -> Classifier:
    """Wrap ``model`` (Classifier, callable, ``nn.Module`` or ONNX path) as a Classifier.

    ``outputs`` defaults to ``"probs"`` for callables and ``"logits"`` for modules and
    ONNX files. ``runtime`` applies to ``nn.Module`` models (see :class:`TorchClassifier`).

    >>> clf = as_classifier(lambda ims, tls: np.ones((len(ims), 3)), ["a", "b", "c"])
    >>> clf.predict_proba([np.zeros((2, 2, 3), np.uint8)], [[]]).round(3).tolist()
    [[0.333, 0.333, 0.333]]
    """
    if isinstance(model, Classifier) and hasattr(model, "classes") and not isinstance(model, nn.Module | str | Path):
        return model
    if hasattr(model, "predict_proba") and hasattr(model, "classes"):
        return model  # e.g. ProductClassifier (an nn.Module that already is a Classifier)
    if classes is None:
        raise ValueError("classes (the class names, in output column order) are required to wrap this model")
    if isinstance(model, str | Path):
        if Path(model).suffix.lower() != ".onnx":
            raise BadInputError(model, "only .onnx files can be wrapped by path",
                                "for a prodlens checkpoint use prodlens.models.load_classifier")
        return OnnxClassifier(model, classes, preprocess=preprocess, text_backbone=text_backbone,
                              outputs=outputs or "logits", batch_size=batch_size)
    if isinstance(model, nn.Module):
        return TorchClassifier(model, classes, preprocess=preprocess, text_backbone=text_backbone,
                               outputs=outputs or "logits", batch_size=batch_size, device=device, runtime=runtime)
    if callable(model):
        return CallableClassifier(model, classes, outputs=outputs or "probs", batch_size=batch_size)
    raise TypeError(f"cannot wrap {type(model).__name__} as a Classifier: pass a callable, an nn.Module or an .onnx path")
