"""A Hugging Face ``transformers`` text classifier as a local suspect: a model and its tokenizer, or a pipeline.

Suspects built by others rarely come as datamark checkpoints; this wraps what people deploy:
``AutoModelForSequenceClassification`` plus ``AutoTokenizer``, or ``pipeline("text-classification")``. Before a
query is counted, the batch is checked against the tokenizer (a vocabulary that does not know the text makes
every answer meaningless) and over-long texts are truncated to the model's length with one warning per call.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import torch

from .._device import device_of
from ..exceptions import SuspectError
from ..models.text import as_text_list, check_unknown_rate, hf_probe, warn_truncated
from .base import Outputs, validate_output

_VERY_LARGE = 10**6  # tokenizers without a limit report model_max_length = int(1e30)


def _is_pipeline(obj: Any) -> bool:
    return not isinstance(obj, torch.nn.Module) and callable(obj) and hasattr(obj, "model") \
        and hasattr(obj, "tokenizer")


def _label_index(config: Any) -> dict[str, int]:
    """Label name -> class id. ``id2label`` first: it is what the pipeline used to name each score, and
    ``label2id`` of hub models is often left at the ``LABEL_i`` default when ``id2label`` was customised."""
    index = {str(name): int(i) for name, i in (getattr(config, "label2id", None) or {}).items()}
    index.update({str(name): int(i) for i, name in (getattr(config, "id2label", None) or {}).items()})
    return index


class TransformersSuspect:
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

    def __init__(self, model: Any, tokenizer: Any = None, *, outputs: Outputs = "probs", batch_size: int = 64,
                 max_length: int | None = None, max_unknown_rate: float = 0.5) -> None:
        self.pipeline = model if _is_pipeline(model) else None
        if self.pipeline is not None:
            model, tokenizer = self.pipeline.model, tokenizer or self.pipeline.tokenizer
        if outputs not in ("probs", "labels"):
            raise SuspectError(f"outputs must be 'probs' or 'labels'; got '{outputs}'.")
        if tokenizer is None or not callable(tokenizer):
            raise SuspectError(f"TransformersSuspect needs the model's tokenizer; got {type(tokenizer).__name__}. "
                               f"Pass tokenizer=AutoTokenizer.from_pretrained(<the model's path>).")
        config = getattr(model, "config", None)
        num_labels = int(getattr(config, "num_labels", 0) or 0)
        if num_labels < 2:
            raise SuspectError(f"TransformersSuspect needs a sequence classifier with >= 2 labels (config.num_labels);"
                               f" got {num_labels} on a {type(model).__name__}. Load it with "
                               f"AutoModelForSequenceClassification.")
        if batch_size < 1 or not 0 <= max_unknown_rate <= 1:
            raise SuspectError(f"batch_size must be >= 1 and max_unknown_rate in [0, 1]; got {batch_size} and "
                               f"{max_unknown_rate}.")
        limits = [int(v) for v in (getattr(tokenizer, "model_max_length", None),
                                   getattr(config, "max_position_embeddings", None)) if v and v < _VERY_LARGE]
        limit = min(limits, default=512)
        if max_length is not None and not 1 <= max_length <= limit:
            raise SuspectError(f"max_length must be in [1, {limit}] tokens for this model; got {max_length}.")
        self.model, self.tokenizer, self.outputs = model, tokenizer, outputs
        self.num_classes, self.batch_size = num_labels, int(batch_size)
        self.max_length = int(max_length or limit)
        self.max_unknown_rate = float(max_unknown_rate)
        self.label_index = _label_index(config)
        self.queries = 0

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> TransformersSuspect:
        """Load a saved classifier and its tokenizer from a local folder (never from the network)."""
        from ..models.text import _transformers

        transformers = _transformers()
        model = transformers.AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        return cls(model, tokenizer, **kwargs)

    def with_outputs(self, outputs: Outputs) -> TransformersSuspect:
        """The same model answering ``outputs`` (to run both black-box settings on one model)."""
        return TransformersSuspect(self.pipeline or self.model, self.tokenizer, outputs=outputs,
                                   batch_size=self.batch_size, max_length=self.max_length,
                                   max_unknown_rate=self.max_unknown_rate)

    @property
    def budget_left(self) -> int | None:
        """A local model has no query budget."""
        return None

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
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                probs = self._pipeline_probs(texts) if self.pipeline is not None else self._model_probs(texts)
        finally:
            self.model.train(was_training)
        self.queries += len(texts)
        out = probs if self.outputs == "probs" else probs.argmax(axis=1)
        return validate_output(out, self.outputs, len(texts), self.num_classes, f"the {type(self.model).__name__}")

    def _model_probs(self, texts: list[str]) -> np.ndarray:
        device = device_of(self.model)
        chunks = [np.zeros((0, self.num_classes))]
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt")
            logits = self.model(**{k: v.to(device) for k, v in tokens.items()}).logits
            chunks.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(chunks)

    def _pipeline_probs(self, texts: list[str]) -> np.ndarray:
        probs = np.zeros((len(texts), self.num_classes))
        if not texts:
            return probs
        answers = self.pipeline(texts, top_k=None, truncation=True, max_length=self.max_length,
                                batch_size=self.batch_size)
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
                           f"id2label/label2id, or pass the model and tokenizer instead of the pipeline.")
