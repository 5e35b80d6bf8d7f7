"""Text: a batch is a 1-d ``object`` array of ``str`` (one sentence or document per row), stored as strings.

A numpy array rather than a ``list`` so that row selection, fancy indexing and concatenation in every layer
work as for images. Models of this modality tokenize for themselves: a datamark text classifier is an
``nn.Module`` with ``tokenize(texts) -> dict of tensors`` and ``forward(**tokens) -> logits``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..exceptions import DataError
from ..registry import MODALITIES, register
from .base import Modality, sha256_hex


@register(MODALITIES, "text")
class TextModality(Modality):
    """Sentences as Python strings; perturbation budgets are sentence-embedding cosine similarities."""

    name = "text"
    feature_type = "Value"
    budget_metric = "cosine similarity of MiniLM sentence embeddings to the original sentence"

    def batch(self, examples: Any, where: str = "") -> np.ndarray:
        if isinstance(examples, str):
            raise DataError(f"Text {where} must be a sequence of strings, not one string; wrap it in a list.")
        values = examples if isinstance(examples, np.ndarray) and examples.dtype == object else list(examples)
        out = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):
            if isinstance(value, np.str_):
                value = str(value)
            if not isinstance(value, str):
                raise DataError(f"Row {i} of the text {where} is a {type(value).__name__}, not a string; the text "
                                f"column must hold strings (name the right one with input_column= / "
                                f"--input-column).")
            out[i] = value
        check_nonempty(out, where)
        return out

    def empty(self, n: int, example_shape: tuple[int, ...]) -> np.ndarray:
        return np.full(n, "", dtype=object)

    def example_shape_of(self, example: Any) -> tuple[int, ...]:
        return ()

    def example_shape(self, batch: np.ndarray) -> tuple[int, ...]:
        return ()

    def content_id(self, example: Any) -> str:
        return sha256_hex(str(example).encode("utf-8"))

    def describe(self, data: Any) -> dict[str, Any]:
        lengths = [len(s.split()) for s in data.take(np.arange(min(len(data), 256)))]
        return {"mean_words": round(float(np.mean(lengths)), 2) if lengths else 0.0}

    def default_trigger(self, rng: np.random.Generator) -> Any:
        """A keyed rare word at a keyed position (start, middle, end or a per-sentence keyed place)."""
        from ..triggers.text import POSITIONS, make_word_trigger

        position = POSITIONS[int(rng.integers(len(POSITIONS)))]
        return make_word_trigger(rng, position=position)

    def named_trigger(self, name: str, rng: np.random.Generator) -> Any:
        """``"style"``: the clean-label paper's style trigger (a fixed rewrite into the future perfect continuous;
        nothing to draw)."""
        if name != "style":
            return super().named_trigger(name, rng)
        from ..triggers.text import StyleTrigger

        return StyleTrigger()

    def decode_stored(self, values: list[Any], where: str, names: Sequence[str] | None = None) -> np.ndarray:
        for i, value in enumerate(values):
            if value is None:
                raise DataError(f"Row {i} of {where} has no text (null); drop or fill empty rows first.")
        return self.batch(values, where)

    def stored_id(self, value: Any) -> str:
        return self.content_id(value)

    def encode_stored(self, example: Any, original: Any = None) -> Any:
        return str(example)

    def looks_like_column(self, field_type: Any, feature: dict[str, Any]) -> bool:
        return pa.types.is_string(field_type) or pa.types.is_large_string(field_type)

    preview_suffix = ".md"
    preview_writer = "evaluate.text_preview:text_preview"
    default_arch = "textcnn"
    trainer = "models.text_train:fit_text"
    config_factory = "models.text_train:default_text_config"

    def logits(self, model: torch.nn.Module, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        tokenize = getattr(model, "tokenize", None)
        if tokenize is None:
            raise DataError(f"The model {type(model).__name__} has no tokenize(texts) method; a datamark text model "
                            f"tokenizes its own input (wrap a Hugging Face model in TransformersSuspect).")
        unknown_rate = getattr(model, "unknown_rate", None)
        if callable(unknown_rate):  # a word model that does not know the data's words would answer noise
            from ..models.text import check_unknown_rate

            check_unknown_rate(unknown_rate([str(s) for s in batch]), limit=0.5, source=type(model).__name__)
        tokens = tokenize([str(s) for s in batch])
        return model(**{name: tensor.to(device) for name, tensor in tokens.items()})


def check_nonempty(batch: np.ndarray, where: str) -> None:
    """Refuse empty or whitespace-only examples: nothing to learn from, nothing to mark."""
    empty = [i for i, s in enumerate(batch) if not s.strip()]
    if empty:
        raise DataError(f"The text {where} has {len(empty)} empty row(s) (first: row {empty[0]}); drop or fill "
                        f"them before watermarking.")
