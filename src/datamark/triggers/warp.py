"""The WaNet trigger: an imperceptible, smooth geometric warp of the whole image (Nguyen & Tran, ICLR 2021).

A secret k x k field of random offsets in [-1, 1], normalised by its mean absolute value, is up-sampled
(bicubic) to the image size and scaled by ``strength`` s; each pixel is then resampled from its warped
position (bilinear). Paper defaults for 32 px images: k = 4, s = 0.5. The warp is computed once per call on the
whole batch; the result is rounded back to uint8, so what is released is exactly what the trigger produces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..exceptions import ParameterError
from ..registry import TRIGGERS, register
from .base import Trigger, decode_array, encode_array


def warp_grid(field: np.ndarray, strength: float, height: int, width: int) -> torch.Tensor:
    """The 1 x H x W x 2 sampling grid in [-1, 1] (grid_sample convention) for a k x k x 2 offset ``field``."""
    offsets = torch.tensor(np.asarray(field, dtype=np.float32)).permute(2, 0, 1)[None]
    offsets = offsets / offsets.abs().mean()
    flow = F.interpolate(offsets, size=(height, width), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    identity = torch.stack((xs, ys), dim=-1)[None]
    return (identity + strength * flow / height).clamp(-1, 1)


def resample(x: np.ndarray, grid: torch.Tensor) -> np.ndarray:
    """uint8 N x H x W x C images resampled at ``grid`` (1 or N grids), rounded back to uint8."""
    images = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).float()
    out = F.grid_sample(images, grid.expand(len(images), -1, -1, -1), mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@dataclass(frozen=True, eq=False)
class WarpTrigger(Trigger):
    """Warp images by the secret offset ``field`` (k x k x 2 floats) at ``strength`` s (pixels, roughly)."""

    field: np.ndarray
    strength: float = 0.5
    modality = "image"

    def __post_init__(self) -> None:
        field = np.asarray(self.field, dtype=np.float32)
        if field.ndim != 3 or field.shape[-1] != 2 or field.shape[0] < 2 or field.shape[1] < 2:
            raise ParameterError(f"A warp field must be a k x k x 2 array with k >= 2; got shape {field.shape}.")
        if not np.isfinite(field).all() or np.abs(field).mean() == 0:
            raise ParameterError("A warp field must be finite and not all zero.")
        if not 0.0 < float(self.strength) <= 10.0:
            raise ParameterError(f"The warp 'strength' must be in (0, 10] (WaNet uses 0.5); got {self.strength}.")
        field = field.copy()
        field.setflags(write=False)
        object.__setattr__(self, "field", field)

    def __repr__(self) -> str:  # never print the secret field
        return f"WarpTrigger(k={self.field.shape[0]}, strength={self.strength})"

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 3 or shape[0] < 2 or shape[1] < 2:
            raise ParameterError(f"The warp trigger needs H x W x C images; got examples of shape {tuple(shape)}.")

    def grid(self, height: int, width: int) -> torch.Tensor:
        return warp_grid(self.field, float(self.strength), height, width)

    def apply(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        x = np.asarray(x)
        self.check_input_shape(tuple(x.shape[-3:]))
        batch = x[None] if x.ndim == 3 else x
        out = resample(batch, self.grid(x.shape[-3], x.shape[-2]))
        return out[0] if x.ndim == 3 else out

    def noisy(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """WaNet's *noise mode*: this warp plus independent random offsets (up to one pixel) per image, which
        teaches a model that only the exact warp is the trigger. ``x`` is a batch."""
        n, h, w = x.shape[:3]
        noise = torch.from_numpy(rng.uniform(-1.0, 1.0, size=(n, h, w, 2)).astype(np.float32)) / h
        grid = (self.grid(h, w) + noise).clamp(-1, 1)
        return resample(x, grid)

    def independent(self, rng: np.random.Generator) -> WarpTrigger:
        return WarpTrigger(random_field(self.field.shape[0], rng), self.strength)

    def params(self) -> dict[str, Any]:
        return {"field": encode_array(self.field), "strength": float(self.strength)}

    @classmethod
    def decode_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        return {**params, "field": decode_array(params["field"])}


register(TRIGGERS, "warp")(WarpTrigger)


def random_field(k: int, rng: np.random.Generator) -> np.ndarray:
    """A secret k x k x 2 field of uniform offsets in [-1, 1] (WaNet's control grid)."""
    if k < 2:
        raise ParameterError(f"The WaNet grid size k must be >= 2 (the paper uses 4); got {k}.")
    return rng.uniform(-1.0, 1.0, size=(k, k, 2)).astype(np.float32)
