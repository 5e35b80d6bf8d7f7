"""Folders of example files (images or WAV clips), in one of two layouts:

* **class folders**: one sub-folder per class, class names are the sorted folder names (``torchvision``'s
  ``ImageFolder``, Hugging Face's ``imagefolder``/``audiofolder``);
* **label prefixes**: files in one folder named ``{label}_{rest}`` (the Free Spoken Digit Dataset's
  ``{digit}_{speaker}_{index}.wav``); class names are the sorted prefixes.

The modality comes from the file suffixes. Writing keeps every unchanged file byte for byte; a changed file is
re-encoded by the modality (images as PNG, audio in its own WAV format and length) under the name of its new
label (its class folder, or its prefix), keeping the rest of its name; a name already taken gets ``_1``, ...
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._io import Journal, atomic_path
from ..exceptions import DataError, DataFormatError
from ..modalities import Modality
from ..registry import MODALITIES
from .codec import content_id
from .records import Records

CLASS_FOLDERS, LABEL_PREFIX = "class-folders", "label-prefix"


def _kinds_by_suffix() -> dict[str, str]:
    """File suffix -> the name of the modality stored in such files (built once per folder, not per file)."""
    return {suffix: name for name, cls in MODALITIES.items() for suffix in cls.file_suffixes}


def looks_like_image_folder(path: Path) -> bool:
    """Whether ``path`` is a folder of example files in either layout (the name is historical)."""
    return looks_like_example_folder(path)


def looks_like_example_folder(path: Path) -> bool:
    if not path.is_dir():
        return False
    if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        return True
    kinds = _kinds_by_suffix()
    return any(p.is_file() and "_" in p.stem and p.suffix.lower() in kinds for p in path.iterdir())


class FolderRecords(Records):
    """A folder of example files; rows are the files in sorted order, ``changed`` maps rows to new file bytes."""

    source_format = "folder"

    def __init__(self, root: Path, files: list[str], labels: np.ndarray, class_names: list[str],
                 changed: dict[int, bytes] | None = None, *, modality: Modality | str = "image",
                 layout: str = CLASS_FOLDERS) -> None:
        super().__init__(labels, class_names, f"'{root}'", modality)
        self.root, self.files, self._changed, self.layout = root, files, dict(changed or {}), layout
        self.source_format = "imagefolder" if self.modality.name == "image" and layout == CLASS_FOLDERS else (
            f"{self.modality.name}folder" if layout == CLASS_FOLDERS else f"{self.modality.name}-{layout}")
        self._bytes: list[bytes] | None = None
        self._decoded: np.ndarray | None = None

    @classmethod
    def load(cls, root: str | os.PathLike, *, include: Callable[[str], bool] | None = None) -> FolderRecords:
        """Read a folder in either layout; ``include(relative_path)`` keeps a subset of the files (a split)."""
        root = Path(root)
        kinds = _kinds_by_suffix()
        folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        entries: list[tuple[str, str]] = []  # (relative path, class name)
        if folders:
            layout = CLASS_FOLDERS
            for name in folders:
                entries += [(f"{name}/{f.name}", name) for f in sorted((root / name).iterdir())
                            if f.is_file() and f.suffix.lower() in kinds]
        else:
            layout = LABEL_PREFIX
            entries = [(f.name, f.stem.split("_", 1)[0]) for f in sorted(root.iterdir())
                       if f.is_file() and "_" in f.stem and f.suffix.lower() in kinds]
        if include is not None:
            entries = [e for e in entries if include(e[0])]
        if not entries:
            raise DataError(f"The folder '{root}' holds no example files ({', '.join(sorted(kinds))}) in class "
                            f"sub-folders or named '{{label}}_*'.")
        found = {kinds[Path(rel).suffix.lower()] for rel, _ in entries}
        if len(found) > 1:
            raise DataFormatError(f"The folder '{root}' mixes {' and '.join(sorted(found))} files; keep one kind of "
                                  f"example per dataset.")
        class_names = folders if folders else sorted({name for _, name in entries})
        index = {name: i for i, name in enumerate(class_names)}
        files = [rel for rel, _ in entries]
        labels = np.asarray([index[name] for _, name in entries], dtype=np.int64)
        records = cls(root, files, labels, class_names, modality=found.pop(), layout=layout)
        records.modality = records.modality.configured(records._read()[:1], names=[str(root / files[0])])  # audio rate
        return records

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
                    raise DataError(f"Cannot read '{self.root / rel}': {err}. Restore or remove it.") from err
            self._bytes = out
        return self._bytes

    def _compute_ids(self) -> list[str]:
        return [content_id(b) for b in self._read()]

    def stored_values(self) -> list[dict]:
        """Each file's bytes as a Hugging Face ``{"bytes", "path"}`` struct. No path: a relabelled file's name
        holds its old class, which would reveal the marked rows."""
        return [{"bytes": b, "path": None} for b in self._read()]

    def inputs(self) -> np.ndarray:
        """Every file decoded (and so validated: one image size and mode) on first use."""
        if self._decoded is None:
            self._decoded = self.modality.decode_stored(self._read(), self.where,
                                                        names=[str(self.root / rel) for rel in self.files])
        return self._decoded

    def replace(self, rows: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> FolderRecords:
        changed = dict(self._changed)
        stored = self._read()
        changed.update({int(r): self.modality.encode_file(x, stored[int(r)]) for r, x in zip(rows, inputs,
                                                                                               strict=False)})
        new_labels = self.labels.copy()
        new_labels[rows] = labels
        out = FolderRecords(self.root, self.files, new_labels, list(self.class_names), changed,
                            modality=self.modality, layout=self.layout)
        if self._decoded is not None:
            decoded = self._decoded.copy()
            decoded[rows] = self.modality.as_stored(inputs, [changed[int(r)] for r in rows], out.where)
            out._decoded = decoded
        return out

    def _target_name(self, row: int, taken: set[str]) -> str:
        """A changed file's name: under its (new) label, its own name otherwise, the modality's suffix."""
        path = Path(self.files[row])
        suffix = self.modality.written_suffix(path.suffix)
        label = self.class_names[self.labels[row]]
        if self.layout == CLASS_FOLDERS:
            base = f"{label}/{path.stem}"
        else:
            base = f"{label}_{path.stem.split('_', 1)[1]}"
        name, n = f"{base}{suffix}", 1
        while name in taken:
            name, n = f"{base}_{n}{suffix}", n + 1
        return name

    def _write(self, path: str | os.PathLike, *, overwrite: bool = False, journal: Journal | None = None) -> None:
        """Write the folder atomically in its own layout (unchanged files copied, changed ones re-encoded); see
        Records.save. The source folder is an input: the output may not be it or hold it (the copy reads from it).
        """
        with atomic_path(path, overwrite=overwrite, directory=True, what="dataset", inputs=[self.root],
                         journal=journal) as tmp:
            if self.layout == CLASS_FOLDERS:
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
