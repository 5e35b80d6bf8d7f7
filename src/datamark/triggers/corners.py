"""The label-consistent trigger of Turner et al. (2019): a small +-amplitude pattern added in all four corners.

Turner et al. make their 3x3 black-and-white checkerboard (a) less visible by *adding* it with a reduced
amplitude instead of pasting it (pixels move by +-``amplitude`` on the [0, 1] scale, clipped), and (b) robust to
the horizontal flips of data augmentation by stamping it in all four corners, mirrored, so a flipped image
carries the same trigger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import ParameterError
from ..registry import TRIGGERS, register
from .base import Trigger, decode_array, encode_array
from .image import make_pattern


@register(TRIGGERS, "corners")
@dataclass(frozen=True, eq=False)
class CornerTrigger(Trigger):
    """Add ``amplitude * sign`` in each corner; ``sign`` is an h x w x C int8 array of +-1 (top-left corner),
    mirrored into the other corners."""

    sign: np.ndarray
    amplitude: float = 64 / 255
    modality = "image"

    def __post_init__(self) -> None:
        sign = np.asarray(self.sign)
        if sign.ndim != 3 or sign.shape[-1] not in (1, 3) or not np.isin(sign, (-1, 1)).all():
            raise ParameterError(f"The 'sign' of a CornerTrigger must be an h x w x C array of +-1 with C in (1, 3); "
                                 f"got {sign.dtype} of shape {sign.shape}.")
        if not 0.0 < float(self.amplitude) <= 1.0:
            raise ParameterError(f"The 'amplitude' of a CornerTrigger must be in (0, 1] (pixel scale, 64/255 = "
                                 f"0.251); got {self.amplitude}.")
        frozen = sign.astype(np.int8)
        frozen.setflags(write=False)
        object.__setattr__(self, "sign", frozen)

    def __repr__(self) -> str:
        h, w, c = self.sign.shape
        return f"CornerTrigger({h}x{w}x{c} in 4 corners, amplitude={self.amplitude:.4f})"

    @classmethod
    def from_pattern(cls, pattern: np.ndarray, amplitude: float) -> CornerTrigger:
        """Bright pixels (>= 128) of a uint8 ``pattern`` add, dark ones subtract."""
        return cls(np.where(np.asarray(pattern) >= 128, 1, -1).astype(np.int8), amplitude)

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        h, w, c = self.sign.shape
        if len(shape) != 3 or shape[0] < 2 * h or shape[1] < 2 * w or shape[2] != c:
            raise ParameterError(f"The {h}x{w}x{c} corner trigger needs images of at least {2 * h}x{2 * w}x{c} (its "
                                 f"four corners must not overlap); got {tuple(shape)}. Choose a smaller trigger size.")

    def delta(self, shape: tuple[int, ...]) -> np.ndarray:
        """The int16 offset (in pixel levels) the trigger adds to an image of ``shape`` (H, W, C)."""
        height, width, _ = shape
        h, w, _ = self.sign.shape
        step = np.int16(round(255 * float(self.amplitude)))
        out = np.zeros(shape, dtype=np.int16)
        out[:h, :w] = self.sign * step
        out[:h, width - w:] = self.sign[:, ::-1] * step            # mirrored: a flip maps corner to corner
        out[height - h:, :w] = self.sign[::-1] * step
        out[height - h:, width - w:] = self.sign[::-1, ::-1] * step
        return out

    def apply(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x)
        shape = tuple(x.shape[-3:])
        self.check_input_shape(shape)
        return np.clip(x.astype(np.int16) + self.delta(shape), 0, 255).astype(np.uint8)

    def independent(self, rng: np.random.Generator) -> CornerTrigger:
        """Same size and amplitude, a fresh random sign pattern (the Independent-T control)."""
        return CornerTrigger.from_pattern(make_pattern("random", self.sign.shape, rng), self.amplitude)

    def params(self) -> dict[str, Any]:
        return {"sign": encode_array(self.sign), "amplitude": float(self.amplitude)}

    @classmethod
    def decode_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "sign": decode_array(params["sign"])}
