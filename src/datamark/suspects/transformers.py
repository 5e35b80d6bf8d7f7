"""A Hugging Face ``transformers`` text classifier as a local suspect: a model and its tokenizer, or a pipeline.

Suspects built by others rarely come as datamark checkpoints; this wraps what people deploy:
``AutoModelForSequenceClassification`` plus ``AutoTokenizer``, or ``pipeline("text-classification")``. Before a
query is counted, the batch is checked against the tokenizer (a vocabulary that does not know the text makes
every answer meaningless) and over-long texts are truncated to the model's length with one warning per call.
:class:`HFSuspect` holds what the image classifiers of :mod:`.transformers_image` share with it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .._device import device_of
from ..exceptions import SuspectError
from ..models.text import as_text_list, check_unknown_rate, hf_probe, warn_truncated
from .base import Outputs, validate_output

_VERY_LARGE = 10**6  # tokenizers without a limit report model_max_length = int(1e30)


def _transformers(extra: str) -> Any:
    """The ``transformers`` package, imported on first use, with the install hint of the extra that needs it."""
    try:
        import transformers
    except ImportError as err:
        raise ImportError(f"Hugging Face suspects need the 'transformers' package; pip install \"datamark[{extra}]\"."
                          ) from err
    return transformers


@contextlib.contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """No progress bars while loading (the library stays quiet; the caller's setting is restored)."""
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()


def _is_pipeline(obj: Any) -> bool:
    """A ``transformers`` pipeline (text or image), not a bare model: callable, holding its model and its
    tokenizer or image processor."""
    return not isinstance(obj, torch.nn.Module) and callable(obj) and hasattr(obj, "model") \
        and (hasattr(obj, "tokenizer") or hasattr(obj, "image_processor"))


def _label_index(config: Any) -> dict[str, int]:
    """Label name -> class id. ``id2label`` first: it is what the pipeline used to name each score, and
    ``label2id`` of hub models is often left at the ``LABEL_i`` default when ``id2label`` was customised."""
    index = {str(name): int(i) for name, i in (getattr(config, "label2id", None) or {}).items()}
    index.update({str(name): int(i) for i, name in (getattr(config, "id2label", None) or {}).items()})
    return index


class HFSuspect:
    """What a text and an image ``transformers`` classifier share as suspects: the pipeline-or-model split, the
    class count from ``config.num_labels``, pipeline scores put in label-id order, eval mode and no gradients
    around each query (the caller's mode restored), the query counter and the output check.

    Subclasses set ``task`` (the ``AutoModelFor...`` name in messages) and implement ``_model_probs`` and
    ``_pipeline_inputs``.
    """

    task: str = ""

    def _setup(self, model: Any, outputs: Outputs, batch_size: int) -> Any:
        """Validate the common arguments; returns the bare model (the pipeline's, if given one)."""
        self.pipeline = model if _is_pipeline(model) else None
        if self.pipeline is not None:
            model = self.pipeline.model
        if outputs not in ("probs", "labels"):
            raise SuspectError(f"outputs must be 'probs' or 'labels'; got '{outputs}'.")
        config = getattr(model, "config", None)
        num_labels = int(getattr(config, "num_labels", 0) or 0)
        if num_labels < 2:
            raise SuspectError(f"{type(self).__name__} needs a classifier with >= 2 labels (config.num_labels); got "
                               f"{num_labels} on a {type(model).__name__}. Load it with {self.task}.")
        if batch_size < 1:
            raise SuspectError(f"batch_size must be >= 1; got {batch_size}.")
        self.model, self.outputs, self.num_classes, self.batch_size = model, outputs, num_labels, int(batch_size)
        self.label_index = _label_index(config)
        self.queries = 0
        return model

    @property
    def budget_left(self) -> int | None:
        """A local model has no query budget."""
        return None

    def _answer(self, inputs: Any, n: int) -> np.ndarray:
        """Run the model (or pipeline) on ``n`` prepared examples; count them; probabilities or labels."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                probs = self._pipeline_probs(inputs, n) if self.pipeline is not None else self._model_probs(inputs)
        finally:
            self.model.train(was_training)
        self.queries += n
        out = probs if self.outputs == "probs" else probs.argmax(axis=1)
        return validate_output(out, self.outputs, n, self.num_classes, f"the {type(self.model).__name__}")

    def _model_probs(self, inputs: Any) -> np.ndarray:
        raise NotImplementedError

    def _pipeline_inputs(self, inputs: Any) -> tuple[Any, dict[str, Any]]:
        """What the pipeline is called with, and its keyword arguments besides ``top_k`` and ``batch_size``."""
        raise NotImplementedError

    def _logits_probs(self, logits: torch.Tensor) -> np.ndarray:
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def _pipeline_probs(self, inputs: Any, n: int) -> np.ndarray:
        probs = np.zeros((n, self.num_classes))
        if not n:
            return probs
        items, kwargs = self._pipeline_inputs(inputs)
        answers = self.pipeline(items, top_k=None, batch_size=self.batch_size, **kwargs)
        for row, scores in enumerate(answers):
            for item in [scores] if isinstance(scores, dict) else scores:
                probs[row, self._label_id(str(item["label"]))] = float(item["score"])
        return probs

    def _label_id(self, name: str) -> int:
        match = re.fullmatch(r"LABEL_(\d+)", name)
        index = self.label_index.get(name, int(match.group(1)) if match else -1)
        if 0 <= index < self.num_classes:
            return index
        raise SuspectError(f"The pipeline answered label '{name}', which its model's config does not map to a class "
                           f"id (id2label: {getattr(self.model.config, 'id2label', None)}). Fix the model's "
                           f"id2label/label2id, or pass the model and its processor instead of the pipeline.")


class TransformersSuspect(HFSuspect):
    """Query a ``transformers`` sequence classifier on a 1-d array of ``str``; returns N x K probabilities
    (softmax of the logits, or the pipeline's scores ordered by label id) or N labels.

    Args:
        model: a sequence-classification model (``model(**tokens).logits``), or a ``text-classification``
            pipeline (then ``tokenizer`` is taken from it).
        tokenizer: the model's tokenizer; required with a bare model.
        outputs: ``"probs"`` or ``"labels"`` (the black-box setting to emulate).
        batch_size: texts per forward pass.
        max_length: tokens per text; default the tokenizer's ``model_max_length`` capped by the position
            embeddings. Longer texts are truncated with a :class:`~datamark.models.text.TextTruncationWarning`.
        max_unknown_rate: refuse a batch whose share of unknown tokens exceeds this (default 0.5).
    """

    task = "AutoModelForSequenceClassification"

    def __init__(self, model: Any, tokenizer: Any = None, *, outputs: Outputs = "probs", batch_size: int = 64,
                 max_length: int | None = None, max_unknown_rate: float = 0.5) -> None:
        if _is_pipeline(model):
            tokenizer = tokenizer or getattr(model, "tokenizer", None)
        model = self._setup(model, outputs, batch_size)
        if tokenizer is None or not callable(tokenizer):
            raise SuspectError(f"TransformersSuspect needs the model's tokenizer; got {type(tokenizer).__name__}. "
                               f"Pass tokenizer=AutoTokenizer.from_pretrained(<the model's path>).")
        if not 0 <= max_unknown_rate <= 1:
            raise SuspectError(f"max_unknown_rate must be in [0, 1]; got {max_unknown_rate}.")
        config = model.config
        limits = [int(v) for v in (getattr(tokenizer, "model_max_length", None),
                                   getattr(config, "max_position_embeddings", None)) if v and v < _VERY_LARGE]
        limit = min(limits, default=512)
        if max_length is not None and not 1 <= max_length <= limit:
            raise SuspectError(f"max_length must be in [1, {limit}] tokens for this model; got {max_length}.")
        self.tokenizer = tokenizer
        self.max_length = int(max_length or limit)
        self.max_unknown_rate = float(max_unknown_rate)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> TransformersSuspect:
        """Load a saved classifier and its tokenizer from a local folder (never from the network)."""
        transformers = _transformers("text")
        with _quiet(transformers):
            model = transformers.AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
            tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, **kwargs)

    def with_outputs(self, outputs: Outputs) -> TransformersSuspect:
        """The same model answering ``outputs`` (to run both black-box settings on one model)."""
        return TransformersSuspect(self.pipeline or self.model, self.tokenizer, outputs=outputs,
                                   batch_size=self.batch_size, max_length=self.max_length,
                                   max_unknown_rate=self.max_unknown_rate)

    def describe(self) -> dict[str, Any]:
        """What evidence records (JSON values, no secrets); the evidence adds the weights' hash from ``model``."""
        return {"kind": "TransformersSuspect", "modality": "text", "model": type(self.model).__name__,
                "name_or_path": str(getattr(self.model.config, "_name_or_path", "") or ""),
                "pipeline": self.pipeline is not None, "outputs": self.outputs, "num_classes": self.num_classes,
                "max_length": self.max_length}

    def query(self, inputs: np.ndarray) -> np.ndarray:
        texts = as_text_list(inputs, "The texts sent to a transformers suspect")
        lengths, rate = hf_probe(self.tokenizer, texts)
        check_unknown_rate(rate, limit=self.max_unknown_rate, source=f"the {type(self.model).__name__}")
        warn_truncated(sum(n > self.max_length for n in lengths), len(texts), self.max_length,
                       f"the {type(self.model).__name__}")
        return self._answer(texts, len(texts))

    def _model_probs(self, texts: list[str]) -> np.ndarray:
        device = device_of(self.model)
        chunks = [np.zeros((0, self.num_classes))]
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt")
            chunks.append(self._logits_probs(self.model(**{k: v.to(device) for k, v in tokens.items()}).logits))
        return np.concatenate(chunks)

    def _pipeline_inputs(self, texts: list[str]) -> tuple[Any, dict[str, Any]]:
        return texts, {"truncation": True, "max_length": self.max_length}
