"""Image folders: one sub-folder per class (class names are the sorted folder names), any PIL format.

Writing keeps every unchanged file byte for byte; changed images become PNG (lossless) under the folder of
their new label, keeping the original file stem.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from .._io import Journal, atomic_path
from ..exceptions import DataError, DataFormatError
from .codec import content_id, decode_image, encode_png, stack_images
from .records import Records

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def looks_like_image_folder(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


class FolderRecords(Records):
    """An image folder; rows are the files in sorted order, ``changed`` maps rows to new PNG bytes."""

    source_format = "imagefolder"

    def __init__(self, root: Path, files: list[str], labels: np.ndarray, class_names: list[str],
                 changed: dict[int, bytes] | None = None) -> None:
        super().__init__(labels, class_names, f"'{root}'")
        self.root, self.files, self._changed = root, files, dict(changed or {})
        self._bytes: list[bytes] | None = None
        self._decoded: np.ndarray | None = None

    @classmethod
    def load(cls, root: str | os.PathLike) -> FolderRecords:
        root = Path(root)
        class_names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_names:
            raise DataFormatError(f"'{root}' has no class sub-folders; an image folder holds one folder per class.")
        files, labels = [], []
        for label, name in enumerate(class_names):
            for file in sorted((root / name).iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f"{name}/{file.name}")
                    labels.append(label)
        if not files:
            raise DataError(f"The image folder '{root}' holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        return cls(root, files, np.asarray(labels), class_names)

    def _read(self) -> list[bytes]:
        if self._bytes is None:
            out = []
            for i, rel in enumerate(self.files):
                if i in self._changed:
                    out.append(self._changed[i])
                    continue
                try:
                    out.append((self.root / rel).read_bytes())
                except OSError as err:
                    raise DataError(f"Cannot read image '{self.root / rel}': {err}. Restore or remove it.") from err
            self._bytes = out
        return self._bytes

    def _compute_ids(self) -> list[str]:
        return [content_id(b) for b in self._read()]

    def inputs(self) -> np.ndarray:
        if self._decoded is None:
            self._decoded = stack_images([decode_image(b, f"'{self.root / rel}'")
                                          for b, rel in zip(self._read(), self.files, strict=False)], self.where)
        return self._decoded

    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> FolderRecords:
        changed = dict(self._changed)
        changed.update({int(r): encode_png(img) for r, img in zip(rows, inputs, strict=False)})
        new_labels = self.labels.copy()
        new_labels[rows] = labels
        out = FolderRecords(self.root, self.files, new_labels, list(self.class_names), changed)
        if self._decoded is not None:
            decoded = self._decoded.copy()
            decoded[rows] = inputs
            out._decoded = decoded
        return out

    def _target_name(self, row: int, taken: set[str]) -> str:
        stem = Path(self.files[row]).stem
        folder = self.class_names[self.labels[row]]
        name, n = f"{folder}/{stem}.png", 1
        while name in taken:
            name, n = f"{folder}/{stem}_{n}.png", n + 1
        return name

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write an image folder atomically (unchanged files copied, changed ones as PNG); see Records.save.

        The source folder is an input: the output may not be it or hold it (the copy reads from it).
        """
        with atomic_path(path, overwrite=overwrite, directory=True, what="dataset", inputs=[self.root],
                         journal=journal) as tmp:
            for name in self.class_names:
                (tmp / name).mkdir()
            taken = {rel for i, rel in enumerate(self.files) if i not in self._changed}
            for i, rel in enumerate(self.files):
                if i in self._changed:
                    name = self._target_name(i, taken)
                    taken.add(name)
                    (tmp / name).write_bytes(self._changed[i])
                else:
                    shutil.copy2(self.root / rel, tmp / rel)
