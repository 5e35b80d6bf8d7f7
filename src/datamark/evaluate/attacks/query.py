"""Query-side attacks: the thief's API purifies every query before the stolen model sees it, or every answer
before it is returned (issue 15). The owner can only verify through that API (:meth:`QueryAttack.wrap`).

* images (uint8 N x H x W x C, grey or colour): ``jpeg``, ``blur``, ``median``, ``bit-depth`` -- the input
  purifications that break patch and blend triggers (JPEG q50 removed every default watermark in issue 15);
* audio (float32 N x L waveforms in [-1, 1]): ``audio-quantize``. A low-pass filter is not here: its cutoff is
  in Hz and a plain waveform batch does not carry its sample rate (``modality_of`` assumes 8 kHz);
* any modality, on the answers: ``round`` (coarse probabilities), ``top1`` (labels only), ``logit-noise``.

Every input transform returns the batch in the form, shape and dtype it came in; every output transform returns
valid probabilities (non-negative rows summing to 1).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ...methods._constraints import Interval, check_fields, constrained
from ...modalities import get_modality
from .base import QueryAttack, register_attack


@dataclass(frozen=True)
class Integer:
    """A constraint for :func:`constrained`: an integer in ``[low, high]`` (``high`` None: no upper bound), odd
    when ``odd`` (a median window has a centre pixel)."""

    low: int
    high: int | None = None
    odd: bool = False

    def describe(self) -> str:
        what = "an odd integer" if self.odd else "an integer"
        return f"{what} >= {self.low}" if self.high is None else f"{what} in [{self.low}, {self.high}]"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            return False
        return value >= self.low and (self.high is None or value <= self.high) and (not self.odd or value % 2 == 1)


POSITIVE = Interval(0.0, math.inf)
NON_NEGATIVE = Interval(0.0, math.inf, open_low=False)


@dataclass(frozen=True)
class _Checked(QueryAttack):
    """Validates every field against its constraint at construction (the methods' shared validator)."""

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class _InputFilter(_Checked):
    """An attack on the queries: checks the modality and the batch (with the modality's own checks), filters it
    and gives it back in the shape and dtype it came in (grey N x H x W images stay 3-d)."""

    def transform_inputs(self, batch: np.ndarray, modality: str) -> np.ndarray:
        self.check_modality(modality)
        array = np.asarray(batch)
        checked = get_modality(modality).batch(array, f"given to the '{self.registry_name}' attack")
        return self.filter(checked).astype(array.dtype, copy=False).reshape(array.shape)

    def filter(self, batch: np.ndarray) -> np.ndarray:
        """The purified batch, in the modality's batch form."""
        raise NotImplementedError


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


@register_attack("jpeg")
@dataclass(frozen=True)
class JPEG(_InputFilter):
    """Encode and decode each image as JPEG (Pillow, 4:2:0 chroma subsampling for colour): deterministic.
    Quality 50 removed BadNets, UBW-P and clean-label watermarks for ~7 points of CIFAR-10 accuracy (issue 15)."""

    quality: int = constrained(50, Integer(1, 95))  # Pillow discourages > 95 (nearly lossless, large files)

    modalities = ("image",)
    strength = "quality"
    stronger_when_larger = False

    def filter(self, batch: np.ndarray) -> np.ndarray:
        out = np.empty_like(batch)
        for i, image in enumerate(batch):
            buffer = io.BytesIO()
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
                buffer, format="JPEG", quality=self.quality)
            out[i] = np.asarray(Image.open(buffer)).reshape(image.shape)
        return out


@register_attack("blur")
@dataclass(frozen=True)
class Blur(_InputFilter):
    """Gaussian blur of each channel (``sigma`` in pixels; reflected borders)."""

    sigma: float = constrained(1.0, POSITIVE)

    modalities = ("image",)
    strength = "sigma"

    def filter(self, batch: np.ndarray) -> np.ndarray:
        blurred = ndimage.gaussian_filter(batch.astype(np.float32), sigma=(0, self.sigma, self.sigma, 0))
        return _to_uint8(blurred)


@register_attack("median")
@dataclass(frozen=True)
class Median(_InputFilter):
    """Median filter of each channel over a ``size`` x ``size`` window (reflected borders): removes isolated
    pixels of a patch trigger while keeping edges."""

    size: int = constrained(3, Integer(3, odd=True))

    modalities = ("image",)
    strength = "size"

    def filter(self, batch: np.ndarray) -> np.ndarray:
        return ndimage.median_filter(batch, size=(1, self.size, self.size, 1))


@register_attack("bit-depth")
@dataclass(frozen=True)
class BitDepth(_InputFilter):
    """Feature squeezing (Xu et al., NDSS 2018): each channel quantised to ``2**bits`` levels spread over
    [0, 255] (``bits=1``: black and white)."""

    bits: int = constrained(4, Integer(1, 7))

    modalities = ("image",)
    strength = "bits"
    stronger_when_larger = False

    def filter(self, batch: np.ndarray) -> np.ndarray:
        levels = 2 ** self.bits
        level = batch.astype(np.int32) * levels // 256  # 0 .. levels - 1
        return _to_uint8(level * (255.0 / (levels - 1)))


@register_attack("audio-quantize")
@dataclass(frozen=True)
class AudioQuantize(_InputFilter):
    """Re-quantise each waveform to ``bits``-bit PCM (full scale 1.0: levels k / 2**(bits-1), k in
    [-2**(bits-1), 2**(bits-1) - 1]), as a thief's API that stores or streams coarse audio does."""

    bits: int = constrained(8, Integer(2, 16))

    modalities = ("audio",)
    strength = "bits"
    stronger_when_larger = False

    def filter(self, batch: np.ndarray) -> np.ndarray:
        scale = 2.0 ** (self.bits - 1)
        return np.clip(np.rint(batch.astype(np.float64) * scale), -scale, scale - 1) / scale


def _one_hot(probs: np.ndarray) -> np.ndarray:
    out = np.zeros_like(probs)
    out[np.arange(len(probs)), probs.argmax(axis=1)] = 1.0
    return out


@register_attack("round")
@dataclass(frozen=True)
class Round(_Checked):
    """Answer probabilities rounded to ``decimals`` places, renormalised; a row that rounds to all zeros answers
    one-hot at its top class (the API still names a winner)."""

    decimals: int = constrained(1, Integer(0, 6))

    strength = "decimals"
    stronger_when_larger = False

    def transform_outputs(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rounded = np.clip(np.round(probs, self.decimals), 0.0, None)
        empty = rounded.sum(axis=1) <= 0
        rounded[empty] = _one_hot(probs[empty])
        return rounded / rounded.sum(axis=1, keepdims=True)


@register_attack("top1")
@dataclass(frozen=True)
class Top1(_Checked):
    """Answer the top class only: the owner verifies in the label-only setting."""

    keeps_probs = False

    def transform_outputs(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _one_hot(probs)


@register_attack("logit-noise")
@dataclass(frozen=True)
class LogitNoise(_Checked):
    """Add Gaussian noise N(0, sigma^2) to each log-probability and apply softmax again: the answers' ranking
    near ties and their confidences blur, each query with fresh noise from the wrapper's seeded generator."""

    sigma: float = constrained(1.0, NON_NEGATIVE)

    strength = "sigma"

    def transform_outputs(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        logits = np.log(np.maximum(probs, np.finfo(np.float64).tiny)) + rng.normal(0.0, self.sigma, probs.shape)
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)
