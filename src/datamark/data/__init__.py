"""Dataset adapters: read a dataset in any supported format into :class:`Records`, write it back the same way.

Sources understood by :func:`load_data`:

* ``digits`` / ``digits:train`` / ``digits:test`` -- the embedded scikit-learn digits (no download);
* ``sst2:train|validation|test``, ``ag_news:train|test`` and ``fsdd:train|test`` -- the shared text and audio
  corpora (see :mod:`.corpora`);
* ``NAME:SPLIT`` such as ``cifar10:train`` -- ``$DATAMARK_DATA/NAME/SPLIT.parquet`` (the shared data folder);
* a ``.parquet`` file (Hugging Face layout; image, audio or string column), a ``save_to_disk`` Arrow folder, a
  folder of images or WAV clips (one sub-folder per class, or files named ``{label}_*``), a ``.tsv`` / ``.csv``
  text file with a header row, or a ``.npz`` file with ``images``, ``labels`` and ``class_names``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..exceptions import DataFormatError
from .arrays import ArrayRecords
from .arrow import ArrowRecords
from .corpora import load_ag_news, load_fsdd, load_sst2
from .delimited import DelimitedRecords
from .embedded import load_digits
from .folder import FolderRecords, looks_like_image_folder
from .records import Records

__all__ = ["ArrayRecords", "ArrowRecords", "DelimitedRecords", "FolderRecords", "Records", "from_numpy", "from_texts",
           "from_waveforms", "load_data", "load_digits", "shared_data_dir"]


def shared_data_dir() -> Path:
    """``$DATAMARK_DATA`` if set, else the first ``shared/data`` found beside the working directory or the repo."""
    env = os.environ.get("DATAMARK_DATA")
    if env:
        return Path(env)
    candidates = [Path.cwd() / "../shared/data", Path.cwd() / "shared/data",
                  Path(__file__).resolve().parents[4] / "shared/data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return candidates[0]


def from_numpy(images: np.ndarray, labels: np.ndarray, class_names: list[str] | None = None) -> ArrayRecords:
    """Wrap in-memory uint8 images (N x H x W [x C]) and integer labels."""
    return ArrayRecords(images, labels, class_names)


def from_waveforms(waves: np.ndarray, labels: Sequence[int] | np.ndarray, *, sample_rate: int,
                   class_names: Sequence[str] | None = None) -> ArrayRecords:
    """Wrap in-memory mono float waveforms (N x L, in [-1, 1], one length: pad or crop first) at ``sample_rate``."""
    from ..modalities import AudioModality

    waves = np.asarray(waves)
    length = waves.shape[1] if waves.ndim == 2 else None
    return ArrayRecords(waves, labels, class_names, where="(waveforms)", modality=AudioModality(sample_rate, length))


def from_texts(texts: Sequence[str], labels: Sequence[int] | np.ndarray,
               class_names: Sequence[str] | None = None) -> ArrayRecords:
    """Wrap in-memory strings (one example each) and integer labels."""
    return ArrayRecords(list(texts), labels, class_names, where="(list of strings)", modality="text")


def load_data(source: str | os.PathLike, *, input_column: str | None = None, label_column: str = "label") -> Records:
    """Open a dataset from a path or a short name (see the module docstring); nothing is modified."""
    text = str(source)
    if text == "digits" or text.startswith("digits:"):
        return load_digits(text.split(":", 1)[1] if ":" in text else "train")
    path = Path(text)
    if not path.exists() and ":" in text and "/" not in text:
        name, split = text.split(":", 1)
        if name == "sst2":
            return load_sst2(shared_data_dir(), split)
        if name == "ag_news":
            return load_ag_news(shared_data_dir(), split)
        if name == "fsdd":
            return load_fsdd(shared_data_dir(), split)
        path = shared_data_dir() / name / f"{split}.parquet"
        if not path.exists():
            raise DataFormatError(f"No dataset '{text}': expected '{path}'. Set DATAMARK_DATA to the shared data "
                                  f"folder or pass a path.")
    if not path.exists():
        raise DataFormatError(f"The dataset path '{path}' does not exist.")
    columns = {"input_column": input_column, "label_column": label_column}
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return ArrayRecords.load_npz(path)
        if suffix == ".parquet":
            return ArrowRecords.load(path, **columns)
        if suffix in (".tsv", ".tab", ".csv"):
            return DelimitedRecords.load(path, **columns)
        raise DataFormatError(f"Cannot tell the format of '{path}'; use a .parquet, .tsv, .csv or .npz file, an Arrow "
                              f"folder (datasets.save_to_disk) or a folder of images or WAV clips.")
    if (path / "dataset_info.json").exists() or (path / "state.json").exists():
        return ArrowRecords.load(path, **columns)
    if looks_like_image_folder(path):
        return FolderRecords.load(path)
    raise DataFormatError(f"'{path}' is a folder but neither an Arrow dataset nor a folder of images or WAV clips "
                          f"(one sub-folder per class, or files named '{{label}}_*').")
