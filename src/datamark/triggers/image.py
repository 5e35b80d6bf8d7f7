"""Image triggers: a pattern stamped (BadNets) or alpha-blended (Blended) into a region of the image.

One class serves both: ``blend=1`` replaces pixels exactly (a patch), ``blend<1`` mixes the pattern in
(x' = (1 - blend) * x + blend * pattern). The default patterns are *secret*: drawn from the key's secret so that
no two owners share a trigger and a thief cannot test for a public default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import ParameterError
from ..registry import TRIGGERS, register
from .base import Trigger, decode_array, encode_array

PATTERNS = ("random", "checkerboard", "white", "mosaic", "blocks")
POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "center")


@dataclass(frozen=True, eq=False)
class PatternTrigger(Trigger):
    """Blend ``pattern`` (h x w x C uint8) into images at ``position`` with opacity ``blend`` in (0, 1]."""

    pattern: np.ndarray
    blend: float = 1.0
    position: str = "bottom-right"
    modality = "image"

    def __post_init__(self) -> None:
        pattern = np.asarray(self.pattern)
        if pattern.dtype != np.uint8 or pattern.ndim != 3 or pattern.shape[-1] not in (1, 3):
            raise ParameterError(f"A trigger pattern must be a uint8 h x w x C array with C in (1, 3); got "
                                 f"{pattern.dtype} of shape {pattern.shape}.")
        if not 0.0 < float(self.blend) <= 1.0:
            raise ParameterError(f"The 'blend' (opacity) of a trigger must be in (0, 1]; got {self.blend}.")
        if self.position not in POSITIONS:
            raise ParameterError(f"The 'position' of a trigger must be one of {POSITIONS}; got '{self.position}'.")
        frozen = pattern.copy()
        frozen.setflags(write=False)
        object.__setattr__(self, "pattern", frozen)

    def __repr__(self) -> str:  # never print the secret pattern itself
        h, w, c = self.pattern.shape
        return f"{type(self).__name__}({h}x{w}x{c} pattern, blend={self.blend}, position='{self.position}')"

    def _region(self, height: int, width: int) -> tuple[slice, slice]:
        h, w = self.pattern.shape[:2]
        top = {"top": 0, "bottom": height - h, "center": (height - h) // 2}
        left = {"left": 0, "right": width - w, "center": (width - w) // 2}
        vertical, _, horizontal = self.position.partition("-")
        return slice(top[vertical], top[vertical] + h), slice(left[horizontal or "center"],
                                                              left[horizontal or "center"] + w)

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        h, w, c = self.pattern.shape
        if len(shape) != 3 or shape[0] < h or shape[1] < w or shape[2] != c:
            raise ParameterError(f"The {h}x{w}x{c} trigger does not fit images of shape {tuple(shape)} (H x W x C): "
                                 f"it must be no larger than the image and have the same channel count. Choose "
                                 f"a smaller trigger size.")

    def apply(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x)
        self.check_input_shape(tuple(x.shape[-3:]))
        rows, cols = self._region(x.shape[-3], x.shape[-2])
        out = x.copy()
        if self.blend == 1.0:
            out[..., rows, cols, :] = self.pattern
        else:
            region = out[..., rows, cols, :].astype(np.float32)
            mixed = (1.0 - self.blend) * region + self.blend * self.pattern.astype(np.float32)
            out[..., rows, cols, :] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        return out

    def independent(self, rng: np.random.Generator) -> PatternTrigger:
        """A trigger of the same kind with a fresh random pattern (the Independent-T control, decoys, the
        specificity control): the same size, place and opacity, and the same tiling (:func:`tile_side`), so that
        another owner's ``mosaic`` or ``blocks`` trigger is a texture of the same coarseness, not fine noise."""
        return PatternTrigger(random_tiles(self.pattern.shape, tile_side(self.pattern), rng), self.blend,
                              self.position)

    def params(self) -> dict[str, Any]:
        return {"pattern": encode_array(self.pattern), "blend": float(self.blend), "position": self.position}

    @classmethod
    def decode_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "pattern": decode_array(params["pattern"])}


register(TRIGGERS, "pattern")(PatternTrigger)


def default_patch_size(image_shape: tuple[int, ...]) -> int:
    """DVBW's 3x3 patch at 32 px, scaled up for larger images; never below 3x3 (a 2x2 patch on 8x8 digits is
    too small for a model to tell the owner's pattern from another one) nor above the image side."""
    side = min(image_shape[0], image_shape[1])
    return min(side, max(3, round(3 * side / 32)))


def tile_side(pattern: np.ndarray) -> int:
    """The largest side t >= 1 such that ``pattern`` is flat on every t x t tile of a grid anchored at its top-left
    corner (tiles cut by the far edges included): 1 for noise, 4 for a ``mosaic`` of 32 px or ``blocks`` of
    8 px. Read off the pattern itself, so keys written before any kind was recorded get it too."""
    h, w = pattern.shape[:2]
    run = min(_leading_run(pattern[0], pattern[0, 0]), _leading_run(pattern[:, 0], pattern[0, 0]))
    for side in range(min(h, w, run), 1, -1):  # a tile is no wider than the first row's run of one colour
        coarse = pattern[::side, ::side]
        if np.array_equal(np.repeat(np.repeat(coarse, side, axis=0), side, axis=1)[:h, :w], pattern):
            return side
    return 1


def _leading_run(pixels: np.ndarray, colour: np.ndarray) -> int:
    """How many of ``pixels`` (a row or column, n x C) from the first on are ``colour``."""
    same = np.all(pixels == colour, axis=-1)
    return len(same) if same.all() else int(np.argmin(same))


def random_tiles(shape: tuple[int, int, int], side: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 pattern of ``shape`` made of flat random-colour ``side`` x ``side`` tiles (side 1: uniform noise)."""
    h, w, c = shape
    tiles = rng.integers(0, 256, size=(-(-h // side), -(-w // side), c), dtype=np.uint8)
    return np.repeat(np.repeat(tiles, side, axis=0), side, axis=1)[:h, :w]


def make_pattern(kind: str, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A ``random`` (uniform secret noise), ``checkerboard``, ``white``, ``mosaic`` or ``blocks`` uint8 pattern of
    ``shape``.

    ``mosaic`` is a texture of random-colour square tiles, each 1/8 of the shorter side (4 px at 32 px): coarse
    enough to survive the down-sampling of a CNN's first stages and a blend at low opacity, which fine uniform
    noise does not (the texture trigger of clean-label watermarks, Tang et al. 2023).

    ``blocks`` is a 2 x 2 grid of flat random-colour tiles (4 px each on an 8 x 8 patch): nothing but the lowest
    frequencies, which JPEG keeps. Stamped as an 8 x 8 patch in a corner of a 32 px image it fills one of JPEG's
    8 x 8 DCT blocks exactly (issue 15: query purification by JPEG removed the 3 x 3 noise patch at quality 90;
    ``benchmarks/robustness_cifar10.py --methods badnets-blocks`` measures this one).
    """
    if kind == "random":
        return random_tiles(shape, 1, rng)
    if kind == "checkerboard":
        h, w, c = shape
        board = ((np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0).astype(np.uint8) * 255
        return np.repeat(board[..., None], c, axis=2)
    if kind == "white":
        return np.full(shape, 255, dtype=np.uint8)
    if kind == "mosaic":
        return random_tiles(shape, max(1, min(shape[:2]) // 8), rng)
    if kind == "blocks":
        return random_tiles(shape, -(-max(shape[:2]) // 2), rng)
    raise ParameterError(f"Unknown trigger pattern '{kind}'; choose one of {PATTERNS}.")


def make_patch_trigger(image_shape: tuple[int, ...], rng: np.random.Generator, *, pattern: str = "random",
                       size: int | None = None, position: str = "bottom-right") -> PatternTrigger:
    """The BadNets trigger: a ``size`` x ``size`` patch stamped at ``position``."""
    size = default_patch_size(image_shape) if size is None else int(size)
    if size < 1 or size > min(image_shape[:2]):
        raise ParameterError(f"The trigger size must be between 1 and the image side {min(image_shape[:2])}; "
                             f"got {size}. Choose a smaller --trigger-size.")
    return PatternTrigger(make_pattern(pattern, (size, size, image_shape[2]), rng), 1.0, position)


def make_blend_trigger(image_shape: tuple[int, ...], rng: np.random.Generator, *, pattern: str = "random",
                       blend: float = 0.2, size: int | None = None,
                       position: str = "bottom-right") -> PatternTrigger:
    """The Blended trigger (Chen et al. 2017): a pattern mixed in with opacity ``blend`` (default 0.2), over the
    whole image unless ``size`` asks for a patch."""
    h, w, c = image_shape
    shape = (h, w, c) if size is None else (int(size), int(size), c)
    if shape[0] > h or shape[1] > w or shape[0] < 1:
        raise ParameterError(f"The trigger size must be between 1 and the image side {min(h, w)}; got {size}.")
    return PatternTrigger(make_pattern(pattern, shape, rng), float(blend), position)
