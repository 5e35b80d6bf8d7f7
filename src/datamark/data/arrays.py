"""In-memory datasets (the Python API, the embedded digits, probe slices): a batch of any modality plus labels.

Saved as ``.npz`` without pickle (text as a fixed-width unicode array, read back as strings); graphs are saved as a
TU folder (:mod:`.tu_write`) and a ``.npz`` path for them is refused (:func:`.output.resolve_format`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence

import numpy as np

from .._io import Journal, atomic_path
from ..exceptions import DataError, DataFormatError
from ..modalities import Modality, get_modality, modality_of
from .records import Records


class ArrayRecords(Records):
    """A modality's batch held in memory (uint8 N x H x W x C images, N x H x W read as grey; N strings; or
    float N x L waveforms, saved with their sample rate)
    with integer labels. The modality is taken from the batch's type unless given."""

    source_format = "numpy"

    def __init__(self, images: np.ndarray | Sequence[str], labels: Sequence[int] | np.ndarray,
                 class_names: Sequence[str] | None = None, *, where: str = "(numpy arrays)",
                 modality: Modality | str | None = None) -> None:
        if modality is None:
            modality = modality_of(images)
        elif isinstance(modality, str):
            modality = get_modality(modality)
        images = modality.batch(images, where)
        modality = modality.for_batch(images)
        labels = np.asarray(labels)
        if labels.shape != (len(images),):
            raise DataError(f"Labels {where} must be a vector of {len(images)} integers; got shape {labels.shape}.")
        if class_names is None:
            class_names = [str(c) for c in range(int(labels.max()) + 1 if labels.size else 0)]
        super().__init__(labels, class_names, where, modality)
        self._images = images
        if modality.name == "graph":  # graphs are saved as a TU folder (or converted to Arrow), never as .npz
            self.source_format = "tu"

    def _compute_ids(self) -> list[str]:
        return [self.modality.content_id(example) for example in self._images]

    def inputs(self) -> np.ndarray:
        return self._images

    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> ArrayRecords:
        images, new_labels = self._images.copy(), self.labels.copy()
        images[rows], new_labels[rows] = inputs, labels
        return ArrayRecords(images, new_labels, self.class_names, where=f"{self.where}[watermarked]",
                            modality=self.modality)

    def _write(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write a ``.npz`` file (no pickle) atomically; see :meth:`Records.save`."""
        if self.modality.name == "graph":
            from .tu_write import write_tu

            write_tu(self, path, overwrite=overwrite, journal=journal)
            return
        with atomic_path(path, overwrite=overwrite, what="dataset", journal=journal) as tmp:
            with open(tmp, "wb") as f:
                examples = self._images.astype(str) if self.modality.name == "text" else self._images
                settings = {"sample_rate": np.array(self.modality.sample_rate)} if self.modality.name == "audio" else {}
                np.savez(f, images=examples, labels=self.labels, class_names=np.array(self.class_names),
                         modality=np.array(self.modality.name), **settings)

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> ArrayRecords:
        try:
            with np.load(path, allow_pickle=False) as npz:
                modality = str(npz["modality"]) if "modality" in npz.files else "image"
                examples = npz["images"]
                if modality == "text":
                    examples = [str(s) for s in examples]
                settings = {"sample_rate": int(npz["sample_rate"])} if "sample_rate" in npz.files else {}
                return cls(examples, npz["labels"], [str(c) for c in npz["class_names"]], where=f"'{path}'",
                           modality=get_modality(modality, **settings))
        except (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile) as err:  # truncated: not a zip
            raise DataFormatError(f"'{path}' is not a datamark .npz dataset (arrays 'images', 'labels', "
                                  f"'class_names'): {err}.") from err
