"""Torchvision-style datasets in: anything with ``__len__`` and ``__getitem__`` returning ``(example, label)``.

Accepted examples (one kind and one shape per dataset, read once into memory as an :class:`~.arrays.ArrayRecords`):

* a PIL image (``L`` and ``RGB`` as they are; other modes converted as when reading files: ``P``/``RGBA``/``CMYK``
  to RGB, ``LA``/``1``/``I;16`` to grey);
* a ``uint8`` numpy array, H x W or H x W x C (C = 1 or 3: PIL's layout);
* a torch tensor, C x H x W or H x W (torchvision's layout): ``uint8`` (``PILToTensor``) or float in [0, 1]
  (``ToTensor``; rounded back to the uint8 it came from, so no information is lost). A normalised tensor
  (values outside [0, 1]) is refused: drop ``Normalize`` from the transform;
* a ``str`` (text datasets).

Labels are ints, numpy integers or 0-d tensors; class names are the dataset's ``classes`` attribute
(torchvision's convention) when it has one. Random augmentations are refused (the watermark goes into the stored
examples, so the same index must give the same example): pass the dataset without its training transform.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..exceptions import DataError
from .arrays import ArrayRecords
from .codec import SUPPORTED_MODES, decode_image, stack_images


def looks_like_pairs(obj: Any) -> bool:
    """Whether ``obj`` is indexable with a length (strings, bytes, arrays and mappings are not datasets)."""
    if isinstance(obj, (str, bytes, np.ndarray, dict)):
        return False
    return hasattr(type(obj), "__len__") and hasattr(type(obj), "__getitem__")


def from_pairs(dataset: Any, *, class_names: Sequence[str] | None = None) -> ArrayRecords:
    """Read every ``(example, label)`` pair of a torchvision-style dataset into memory (see the module docstring).

    Args:
        dataset: indexable with ``len(dataset)``; ``dataset[i]`` is an ``(example, label)`` pair.
        class_names: the class names (default: ``dataset.classes`` if present, else "0", "1", ...).
    """
    where = f"({type(dataset).__name__} of {len(dataset)} pairs)"
    if len(dataset) == 0:
        raise DataError(f"The dataset {where} is empty.")
    examples, labels = [], []
    for i in range(len(dataset)):
        example, label = _pair(dataset[i], i, where)
        examples.append(_example(example, i, where))
        labels.append(_label(label, i, where))
    again = _example(_pair(dataset[0], 0, where)[0], 0, where)
    if not (again == examples[0] if isinstance(again, str) else np.array_equal(again, examples[0])):
        raise DataError(f"The dataset {where} gave two different examples for index 0 (a random transform?); "
                        f"watermarking needs the stored examples: pass it without random augmentation.")
    names = class_names if class_names is not None else getattr(dataset, "classes", None)
    if names is not None:
        names = [str(n) for n in names]
    if isinstance(examples[0], str):
        return ArrayRecords(examples, labels, names, where=where, modality="text")
    return ArrayRecords(stack_images(examples, where), labels, names, where=where, modality="image")


def _pair(item: Any, i: int, where: str) -> tuple[Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise DataError(f"Item {i} of {where} is a {type(item).__name__}, not an (example, label) pair; wrap the "
                        f"dataset so that dataset[i] returns (image, label).")
    return item[0], item[1]


def _label(label: Any, i: int, where: str) -> int:
    value = label.item() if hasattr(label, "item") and getattr(label, "ndim", 0) == 0 else label
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataError(f"The label of item {i} of {where} is {type(label).__name__} {label!r}; datamark needs an "
                        f"integer class index (use a target_transform that maps it to one).")
    return int(value)


def _example(example: Any, i: int, where: str) -> np.ndarray | str:
    """One example as a uint8 H x W x C array (or a string)."""
    if isinstance(example, str):
        return example
    if hasattr(example, "getbands") and hasattr(example, "mode"):  # a PIL image, without importing PIL here
        if example.mode in SUPPORTED_MODES:
            array = np.asarray(example, dtype=np.uint8)
        else:  # the file reader's mode conversions, through a lossless PNG round trip
            buffer = io.BytesIO()
            example.save(buffer, format="PNG")
            return decode_image(buffer.getvalue(), f"item {i} of {where}")
    elif type(example).__module__.startswith("torch"):
        array = _from_tensor(example, i, where)
    elif isinstance(example, np.ndarray) and example.dtype == np.uint8:
        array = example
    else:
        kind = getattr(example, "dtype", type(example).__name__)
        raise DataError(f"Item {i} of {where} holds a {type(example).__name__} ({kind}); datamark reads PIL images, "
                        f"uint8 H x W x C arrays, uint8 or [0, 1] float C x H x W tensors, or strings.")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise DataError(f"Item {i} of {where} has shape {tuple(array.shape)}; expected H x W x C with C = 1 or 3 "
                        f"(numpy) or C x H x W (tensors).")
    return np.ascontiguousarray(array)


def _from_tensor(tensor: Any, i: int, where: str) -> np.ndarray:
    """A C x H x W (or H x W) tensor as H x W x C uint8: uint8 as is, floats in [0, 1] times 255, rounded."""
    array = tensor.detach().cpu().numpy()
    if array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind != "f":
        raise DataError(f"Item {i} of {where} is a {array.dtype} tensor; expected uint8 or float in [0, 1].")
    if array.size and (float(array.min()) < 0.0 or float(array.max()) > 1.0):
        raise DataError(f"Item {i} of {where} is a float tensor with values in [{float(array.min()):.3g}, "
                        f"{float(array.max()):.3g}], not [0, 1] (normalised?); drop Normalize from the transform.")
    return np.rint(array.astype(np.float64) * 255.0).astype(np.uint8)
