"""In-memory numpy datasets (the Python API and the embedded digits); saved as ``.npz`` without pickle."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .._io import Journal, atomic_path
from ..exceptions import DataError, DataFormatError
from .codec import content_id
from .records import Records


class ArrayRecords(Records):
    """Images as a uint8 N x H x W x C array (N x H x W is read as grey) with integer labels."""

    source_format = "numpy"

    def __init__(self, images: np.ndarray, labels: Sequence[int] | np.ndarray,
                 class_names: Sequence[str] | None = None, *, where: str = "(numpy arrays)") -> None:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise DataError(f"Images {where} must be N x H x W (grey) or N x H x W x C with C in (1, 3); got shape "
                            f"{images.shape}. Reshape or convert them first.")
        if images.dtype != np.uint8:
            raise DataError(f"Images {where} must be uint8 in [0, 255]; got dtype {images.dtype}. Convert with "
                            f"(x * 255).round().astype('uint8') if they are floats in [0, 1].")
        labels = np.asarray(labels)
        if labels.shape != (len(images),):
            raise DataError(f"Labels {where} must be a vector of {len(images)} integers; got shape {labels.shape}.")
        if class_names is None:
            class_names = [str(c) for c in range(int(labels.max()) + 1 if labels.size else 0)]
        super().__init__(labels, class_names, where)
        self._images = images

    def _compute_ids(self) -> list[str]:
        shape = ("x".join(map(str, self._images.shape[1:])) + ":").encode()
        return [content_id(shape + image.tobytes()) for image in self._images]

    def inputs(self) -> np.ndarray:
        return self._images

    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> ArrayRecords:
        images, new_labels = self._images.copy(), self.labels.copy()
        images[rows], new_labels[rows] = inputs, labels
        return ArrayRecords(images, new_labels, self.class_names, where=f"{self.where}[watermarked]")

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write a ``.npz`` file (no pickle) atomically; see :meth:`Records.save`."""
        with atomic_path(path, overwrite=overwrite, what="dataset", journal=journal) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, images=self._images, labels=self.labels, class_names=np.array(self.class_names))

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> ArrayRecords:
        try:
            with np.load(path, allow_pickle=False) as npz:
                return cls(npz["images"], npz["labels"], [str(c) for c in npz["class_names"]], where=f"'{path}'")
        except (KeyError, ValueError, OSError) as err:
            raise DataFormatError(f"'{path}' is not a datamark .npz dataset (arrays 'images', 'labels', "
                                  f"'class_names'): {err}.") from err
