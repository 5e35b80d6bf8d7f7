"""Image bytes <-> uint8 arrays. Modified images are always stored as PNG so the trigger survives exactly."""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..exceptions import DataError

SUPPORTED_MODES = {"L": 1, "RGB": 3}


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode encoded image bytes to an H x W x C uint8 array (C = 1 for grey, 3 for colour)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = img.mode
            if mode not in SUPPORTED_MODES:
                if mode in ("P", "RGBA", "LA", "CMYK", "I;16", "1"):
                    img = img.convert("RGB" if mode in ("P", "RGBA", "CMYK") else "L")
                else:
                    raise DataError(f"Image {where} has unsupported mode '{mode}'; convert it to RGB or L.")
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"Image {where} is corrupt or not an image ({err}); remove or replace it.") from err
    return array[..., None] if array.ndim == 2 else array


def encode_png(image: np.ndarray) -> bytes:
    """Lossless PNG bytes of an H x W x C uint8 array."""
    array = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def content_id(data: bytes) -> str:
    """The stable id of a sample: SHA-256 of its stored bytes (same row anywhere, in any order or shard)."""
    return hashlib.sha256(data).hexdigest()


def stack_images(images: list[np.ndarray], where: str) -> np.ndarray:
    """Stack decoded images, refusing mixed sizes or channel counts with the first offending index."""
    if not images:
        raise DataError(f"The dataset {where} holds no images.")
    shape = images[0].shape
    for i, img in enumerate(images):
        if img.shape != shape:
            raise DataError(f"The dataset {where} mixes image shapes: row 0 is {shape[1]}x{shape[0]}x{shape[2]} "
                            f"(WxHxC) but row {i} is {img.shape[1]}x{img.shape[0]}x{img.shape[2]}; resize all "
                            f"images to one size and mode first.")
    return np.stack(images)
