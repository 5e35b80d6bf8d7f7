"""What a watermark did to the released images, stage by stage: original, perturbed only, watermarked, and the
change magnified, for the owner's own inspection (``datamark preview``)."""

from __future__ import annotations

import os

import numpy as np

from .._io import Journal
from ..data.records import Records
from ..exceptions import DataError
from ..key import Key
from ..triggers.base import Trigger
from .plots import stages_grid


def marked_positions(key: Key, original: Records, watermarked: Records) -> np.ndarray:
    """Row positions of the key's marked rows: found by id in the original data (ids are content hashes, so the
    watermarked rows have new ones); the watermarked data keeps the original's row order."""
    if len(original) != len(watermarked):
        raise DataError(f"The original data {original.where} has {len(original)} rows but the watermarked data "
                        f"{watermarked.where} has {len(watermarked)}; pass the dataset the key was made from and "
                        f"the one protect wrote from it.")
    where = {row_id: i for i, row_id in enumerate(original.ids)}
    missing = [i for i in key.marked_ids if i not in where]
    if missing:
        raise DataError(f"{len(missing)} of the key's {len(key.marked_ids)} marked rows are not in {original.where}; "
                        f"pass the original (unwatermarked) dataset the key was made from.")
    return np.array([where[i] for i in key.marked_ids], dtype=np.int64)


def watermark_stages(key: Key, original: Records, watermarked: Records, path: str | os.PathLike, *, n: int = 8,
                     magnify: float = 5.0, overwrite: bool = False, journal: Journal | None = None) -> int:
    """Write a PNG of the first ``n`` marked rows: original, perturbed only (if the method perturbs: the released
    image with the trigger's own change taken out), watermarked (released), and the change magnified ``magnify``
    times around mid-grey. Returns the number of images shown. ``journal`` lets a caller undo the write."""
    rows = marked_positions(key, original, watermarked)[:n]
    before, after = original.take(rows), watermarked.take(rows)
    names = list(original.class_names)
    titles = [names[original.labels[r]] + (f"→{names[key.target]}" if key.target is not None and
                                           watermarked.labels[r] != original.labels[r] else "") for r in rows]
    if original.modality.name != "image":  # the modality's own picture (audio: waveforms and spectrograms)
        original.modality.write_preview(before, after, path, titles=titles, overwrite=overwrite)
        return len(rows)
    stamped = Trigger.from_config(key.trigger).apply(before)
    residual = after.astype(np.int16) - stamped.astype(np.int16)  # what the method changed besides the trigger
    stages = [("original", before)]
    if np.any(residual):
        stages.append(("perturbed only", np.clip(before.astype(np.int16) + residual, 0, 255).astype(np.uint8)))
    change = np.clip(128 + magnify * (after.astype(np.float32) - before), 0, 255).astype(np.uint8)
    stages += [("watermarked", after), (f"change x{magnify:g} + grey", change)]
    stages_grid(stages, path, titles=titles, overwrite=overwrite, journal=journal)
    return len(rows)
