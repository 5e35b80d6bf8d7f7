"""Hugging Face datasets in: ``datasets`` objects, Hub ids, ``save_to_disk`` folders and parquet-shard folders.

Everything becomes an :class:`~.arrow.ArrowRecords` over the dataset's own Arrow table, so the modality comes from
the feature types (``Image``, ``Audio``, ``Value("string")``) exactly as for a Parquet file, and unchanged rows keep
their stored bytes. One split at a time: a ``DatasetDict`` (or a folder or Hub id with several splits) is refused
with its splits listed unless ``split=`` names one. Hub ids take an explicit prefix, ``hf:ID[:CONFIG]:SPLIT``, and
load through ``datasets.load_dataset``, so they work offline from the user's cache (``HF_DATASETS_OFFLINE=1``);
a plain path is never taken for a Hub id. Images stored as local file paths are embedded (read once, losslessly);
remote files are never fetched.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..exceptions import DataError, DataFormatError, ParameterError
from .arrow import ArrowRecords, import_datasets

HUB_PREFIX = "hf:"
#: A Hub data file: ``{split}-{index:05d}-of-{count:05d}.parquet`` or ``{split}.parquet``.
SHARD_FILE = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)(?:-(?P<index>\d{5})-of-(?P<count>\d{5}))?\.parquet$")


def is_hf_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a ``datasets`` Dataset, DatasetDict or streaming dataset (without importing datasets)."""
    datasets = sys.modules.get("datasets")
    kinds = ("Dataset", "DatasetDict", "IterableDataset", "IterableDatasetDict")
    return datasets is not None and isinstance(obj, tuple(getattr(datasets, k) for k in kinds if hasattr(datasets, k)))


def pick_split(splits: list[str], split: str | None, where: str) -> str:
    """``split`` if it is one of ``splits``; the only split when there is one and none is named; else a one-line
    error listing the splits and how to name one."""
    if split is None and len(splits) == 1:
        return splits[0]
    if split is None:
        raise DataFormatError(f"{where} holds several splits {splits}; name one with split= (e.g. "
                              f"split='{splits[0]}'; --split on the command line).")
    if split not in splits:
        raise DataFormatError(f"{where} has no split '{split}'; its splits are {splits}.")
    return split


def records_from_hf(dataset: Any, *, split: str | None = None, where: str | None = None,
                    source_format: str = "arrow", input_column: str | None = None,
                    label_column: str = "label") -> ArrowRecords:
    """Wrap a ``datasets.Dataset`` (or one split of a ``DatasetDict``) without copying its table.

    Args:
        dataset: a ``Dataset`` or ``DatasetDict``; streaming datasets are refused (protect needs every row).
        split: the split of a ``DatasetDict`` (required when it holds more than one).
        where: what errors call the dataset.
        source_format: the format :meth:`Records.save` writes by default (``"arrow"``: a ``save_to_disk`` folder).
        input_column, label_column: the example and label columns (example column default: detected).
    """
    datasets = import_datasets()
    name = getattr(getattr(dataset, "info", None), "dataset_name", None)
    where = where or f"(Hugging Face dataset{' ' + repr(name) if name else ''})"
    if isinstance(dataset, (datasets.IterableDataset, datasets.IterableDatasetDict)):
        raise DataFormatError(f"{where} is a streaming dataset; watermarking needs every row: load it without "
                              f"streaming=True (or materialise it with Dataset.from_generator).")
    if isinstance(dataset, datasets.DatasetDict):
        split = pick_split(list(dataset), split, f"The DatasetDict {where}")
        dataset, where = dataset[split], f"{where}[{split}]"
    elif split is not None and dataset.split is not None and str(dataset.split) != split:
        raise ParameterError(f"split='{split}' was given for {where}, which is the '{dataset.split}' split; pass a "
                             f"DatasetDict to choose a split, or drop split=.")
    feature = dataset.features.get(label_column)
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        raise DataError(f"The label column '{label_column}' of {where} holds strings; datamark needs class indices: "
                        f"dataset.class_encode_column('{label_column}') converts it.")
    table = (dataset.flatten_indices() if dataset._indices is not None else dataset).with_format(None).data.table
    if any(_has_file_paths(table, column) for column in table.column_names):
        table = datasets.table.embed_table_storage(table, remote_files=False)  # local files only: no download
    split_name = str(dataset.split) if dataset.split is not None else split
    if split_name is not None and not SHARD_FILE.match(f"{split_name}.parquet"):
        split_name = None  # a sliced split ("train[:10%]") is no name to write shards under
    return ArrowRecords(table, where=where, source_format=source_format, input_column=input_column,
                        label_column=label_column, split=split_name)


def _has_file_paths(table: pa.Table, column: str) -> bool:
    """Whether an example column holds files by path only (bytes null): ``datasets`` does that for local files."""
    field = table.schema.field(column)
    if not pa.types.is_struct(field.type) or field.type.get_field_index("bytes") < 0 \
            or field.type.get_field_index("path") < 0:
        return False
    return table.num_rows > 0 and pc.any(pc.is_null(pc.struct_field(table.column(column), "bytes"))).as_py()


def parse_hub_id(spec: str) -> tuple[str, str | None, str | None]:
    """``hf:ID``, ``hf:ID:SPLIT`` or ``hf:ID:CONFIG:SPLIT`` -> (ID, CONFIG, SPLIT)."""
    parts = spec[len(HUB_PREFIX):].split(":")
    if not parts[0] or len(parts) > 3 or not all(parts):
        raise ParameterError(f"A Hub dataset is named 'hf:ID', 'hf:ID:SPLIT' or 'hf:ID:CONFIG:SPLIT' (e.g. "
                             f"'hf:uoft-cs/cifar10:train'); got '{spec}'.")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return parts[0], None, parts[1] if len(parts) == 2 else None


def load_hub(spec: str, *, split: str | None = None, input_column: str | None = None,
             label_column: str = "label") -> ArrowRecords:
    """Load ``hf:ID[:CONFIG][:SPLIT]`` through ``datasets.load_dataset`` (the user's cache first; offline with
    ``HF_DATASETS_OFFLINE=1``). ``split=`` may name the split instead of the spec, not differently."""
    datasets = import_datasets()
    repo, config, named = parse_hub_id(spec)
    if named is not None and split is not None and named != split:
        raise ParameterError(f"'{spec}' names split '{named}' but split='{split}' was given; name it once.")
    split = named or split
    try:
        loaded = datasets.load_dataset(repo, config, split=split)
    except (ConnectionError, FileNotFoundError, ValueError) as err:  # offline and not cached, unknown id/split
        raise DataFormatError(f"Cannot load the Hub dataset '{spec}' through datasets.load_dataset: "
                              f"{str(err).splitlines()[0]}. Check the id, config and split, or download it once "
                              f"online (it is then read from the cache).") from err
    return records_from_hf(loaded, split=split, where=f"'{spec}'", input_column=input_column,
                           label_column=label_column)


def load_arrow_folder(path: str | os.PathLike, *, split: str | None = None, **columns: Any) -> ArrowRecords:
    """Read a ``save_to_disk`` folder (a Dataset, or one split of a DatasetDict)."""
    datasets = import_datasets()
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # datasets raises FileNotFoundError, ValueError, ArrowInvalid, KeyError, ...
        raise DataFormatError(f"Cannot read the Arrow dataset folder '{path}': {err}.") from err
    return records_from_hf(loaded, split=split, where=f"'{path}'", **columns)


def looks_like_parquet_shards(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with Hub-style data files ``data/{split}[-0000i-of-0000N].parquet``."""
    data = Path(path) / "data"
    return data.is_dir() and any(SHARD_FILE.match(f.name) for f in data.iterdir() if f.is_file())


def shard_files(path: str | os.PathLike) -> dict[str, list[Path]]:
    """The data files of a parquet-shard folder by split, each split's shards in order."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for file in sorted((Path(path) / "data").iterdir()):
        match = SHARD_FILE.match(file.name)
        if match and file.is_file():
            found.setdefault(match["split"], []).append((int(match["index"] or 0), file))
    return {split: [f for _, f in sorted(files)] for split, files in sorted(found.items())}


def load_parquet_shards(path: str | os.PathLike, *, split: str | None = None, **columns: Any) -> ArrowRecords:
    """Read one split of a parquet-shard folder (as :func:`~.output.write_parquet_shards` or the Hub writes it)."""
    files = shard_files(path)
    split = pick_split(list(files), split, f"The folder '{path}'")
    try:
        tables = [pq.read_table(f) for f in files[split]]
        table = pa.concat_tables(tables).replace_schema_metadata(tables[0].schema.metadata)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataFormatError(f"Cannot read the parquet shards of split '{split}' in '{path}': {err}.") from err
    return ArrowRecords(table, where=f"'{path}'[{split}]", source_format="parquet-shards", split=split, **columns)
