"""Images: uint8 N x H x W x C batches (C = 1 grey or 3 colour), stored as encoded bytes (PNG when modified)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from ..data.codec import decode_image, encode_png, stack_images
from ..exceptions import DataError
from ..registry import MODALITIES, register
from .base import Modality, sha256_hex, stored_bytes, value_names


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC images -> float NCHW in [0, 1]: the preprocessing every datamark image model expects."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)


@register(MODALITIES, "image")
class ImageModality(Modality):
    """uint8 images; budgets are L-infinity on the [0, 1] pixel scale (16/255, not 16)."""

    name = "image"
    feature_type = "Image"
    budget_metric = "L-infinity distance on the [0, 1] pixel scale"

    def batch(self, examples: Any, where: str = "") -> np.ndarray:
        images = np.asarray(examples)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise DataError(f"Images {where} must be N x H x W (grey) or N x H x W x C with C in (1, 3); got shape "
                            f"{images.shape}. Reshape or convert them first.")
        if images.dtype != np.uint8:
            raise DataError(f"Images {where} must be uint8 in [0, 255]; got dtype {images.dtype}. Convert with "
                            f"(x * 255).round().astype('uint8') if they are floats in [0, 1].")
        return images

    def empty(self, n: int, example_shape: tuple[int, ...]) -> np.ndarray:
        return np.empty((n, *example_shape), dtype=np.uint8)

    def stack(self, examples: list[Any], where: str = "") -> np.ndarray:
        return stack_images(list(examples), where)

    def example_shape_of(self, example: Any) -> tuple[int, ...]:
        return tuple(np.asarray(example).shape)

    def content_id(self, example: Any) -> str:
        image = np.asarray(example)
        return sha256_hex(("x".join(map(str, image.shape)) + ":").encode() + image.tobytes())

    def decode_stored(self, values: list[Any], where: str, names: Sequence[str] | None = None) -> np.ndarray:
        labels = value_names(len(values), where, names)
        return stack_images([decode_image(_image_bytes(v, i, where), label if names else f"at {label}")
                             for i, (v, label) in enumerate(zip(values, labels, strict=True))], where)

    def stored_id(self, value: Any) -> str:
        return sha256_hex(_image_bytes(value, -1, ""))

    file_suffixes = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})

    def encode_file(self, example: Any, original: bytes | None = None) -> bytes:
        return encode_png(np.asarray(example))  # lossless: the trigger survives exactly

    def written_suffix(self, original_suffix: str) -> str:
        return ".png"

    def looks_like_column(self, field_type: Any, feature: dict[str, Any]) -> bool:
        if feature.get("_type") == "Image":
            return True
        return (feature.get("_type") is None and pa.types.is_struct(field_type)
                and field_type.get_field_index("bytes") >= 0)  # a bare bytes struct, not another kind's feature

    preview_suffix = ".png"
    preview_writer = "evaluate.plots:preview_grid"
    default_arch = "fastnet"
    trainer = "models.train:fit_images"
    config_factory = "models.train:default_config"

    bounds = (0.0, 1.0)
    pgd_eps, pgd_step = 16 / 255, 4 / 255  # Tang et al. 2023

    def to_model_input(self, batch: np.ndarray) -> torch.Tensor:
        return to_tensor(batch)

    def from_model_input(self, tensor: torch.Tensor, original: np.ndarray, eps: float) -> np.ndarray:
        """Rounded to uint8 and re-clipped to the ball in whole pixel levels, so rounding never leaves it:
        ``|x' - x| <= floor(255 * eps)``."""
        radius = math.floor(255.0 * float(eps) + 1e-6)
        rounded = np.rint(tensor.detach().cpu().permute(0, 2, 3, 1).numpy() * 255.0).astype(np.int16)
        base = original.astype(np.int16)
        return np.clip(np.clip(rounded, base - radius, base + radius), 0, 255).astype(np.uint8)


def _image_bytes(value: Any, row: int, where: str) -> bytes:
    return stored_bytes(value, row, where, "image", "embed the images in the table (Hugging Face: cast_column with "
                        "Image(decode=True)) first.")
