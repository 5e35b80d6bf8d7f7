"""The modality contract: everything that depends on the kind of data lives in one object per kind.

Layers above (records, methods, suspects, the verifier, evidence, the CLI) hold a *batch* -- a numpy array
whose first axis is the example axis -- and ask the modality what to do with it. Images are uint8
N x H x W x C arrays; text is a 1-d ``object`` array of ``str`` (numpy, not ``list``, so that the fancy
indexing, concatenation and row selection every layer already does work unchanged). Adding a modality adds a
file here, never a branch in the old layers.
"""

from __future__ import annotations

import hashlib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..exceptions import DataError, ParameterError
from ..graphs import Graph
from ..registry import MODALITIES


class Modality(ABC):
    """One kind of data: its batch type, storage codec, content ids, model-side preprocessing and wire codec."""

    name: ClassVar[str]
    #: Hugging Face feature ``_type`` of a column holding this kind of example ("Image", "Value", ...).
    feature_type: ClassVar[str]
    #: What the clean-label perturbation budget measures for this modality (documentation and reports).
    budget_metric: ClassVar[str]

    # --- the batch ------------------------------------------------------------------------------------------
    @abstractmethod
    def batch(self, examples: Any, where: str = "") -> np.ndarray:
        """``examples`` validated and normalised to this modality's batch type (a new or the same array)."""

    @abstractmethod
    def empty(self, n: int, example_shape: tuple[int, ...]) -> np.ndarray:
        """A batch of ``n`` placeholder examples of ``example_shape``, to be filled row by row."""

    def stack(self, examples: list[Any], where: str = "") -> np.ndarray:
        """A batch from a list of single examples."""
        out = self.empty(len(examples), self.example_shape_of(examples[0]) if examples else ())
        for i, example in enumerate(examples):
            out[i] = example
        return self.batch(out, where)

    @abstractmethod
    def example_shape_of(self, example: Any) -> tuple[int, ...]:
        """The shape of one example as the key records it ((H, W, C) for images, () for text)."""

    def example_shape(self, batch: np.ndarray) -> tuple[int, ...]:
        return tuple(np.asarray(batch).shape[1:])

    @abstractmethod
    def content_id(self, example: Any) -> str:
        """The stable id of an in-memory example (SHA-256 of a canonical encoding)."""

    def describe(self, data: Any) -> dict[str, Any]:
        """What the key records about ``data`` (a Records) beyond shape (none by default: decodes nothing)."""
        return {}

    def default_trigger(self, rng: np.random.Generator) -> Any:
        """The trigger a method uses on this modality when it has no trigger of its own for it."""
        raise NotImplementedError(f"Methods bring their own {self.name} triggers.")

    def mark_trigger(self, rng: np.random.Generator, name: str | None = None, mark: int = 0, n_marks: int = 1) -> Any:
        """The trigger of mark ``mark`` of a key of ``n_marks`` marks: the named one (``name``) or the default,
        drawn with ``rng``. Every mark's is of the same kind here; a modality may vary it by mark (graphs size each
        mark's sub-graph apart)."""
        return self.default_trigger(rng) if name is None else self.named_trigger(name, rng)

    def named_trigger(self, name: str, rng: np.random.Generator) -> Any:
        """The modality's alternative trigger called ``name`` (a method's ``trigger_name``), drawn with ``rng``."""
        raise ParameterError(f"{self.name} data has no trigger named '{name}'; named triggers are 'style' (text), "
                             f"'pulse' or 'noise' (audio) and 'uniform-labels', 'complete' or 'star' (graphs). "
                             f"Leave trigger_name unset for the default trigger.")

    def for_batch(self, batch: np.ndarray) -> Modality:
        """This modality fitted to an in-memory batch (audio: the clip length); others need nothing."""
        return self

    # --- storage ---------------------------------------------------------------------------------------------
    @abstractmethod
    def decode_stored(self, values: list[Any], where: str, names: Sequence[str] | None = None) -> np.ndarray:
        """Values of a stored Arrow column (as ``to_pylist`` gives them) or files' bytes -> a batch. ``names``
        (file paths) are what errors call the values; default: their rows in ``where``."""

    @abstractmethod
    def stored_id(self, value: Any) -> str:
        """The content id of a stored value (its stored bytes: unchanged rows keep their ids across formats)."""

    def encode_stored(self, example: Any, original: Any = None) -> Any:
        """One example as the value to store in its Arrow column; ``original`` is the stored value it replaces
        (audio keeps the original file's format and length). By default a Hugging Face ``{"bytes", "path"}``
        struct holding :meth:`encode_file`'s bytes, as for images and audio."""
        raw = original.get("bytes") if isinstance(original, dict) else original
        return {"bytes": self.encode_file(example, raw), "path": None}

    #: Whether a stored example decodes to exactly the batch row it was encoded from (audio: quantised to the
    #: file's sample format, so adapters re-decode what they store).
    lossless_storage: ClassVar[bool] = True
    #: Whether multi-mark keys of this modality also ask each mark's released rows at verification
    #: (:mod:`datamark.verify.plan`, ``marked_rows``): where datasets are small and a mark has few rows.
    verify_marked_rows: ClassVar[bool] = False

    def as_stored(self, examples: np.ndarray, stored: list[Any], where: str) -> np.ndarray:
        """The batch that ``stored`` (the values just encoded from ``examples``) decodes to: ``examples`` itself
        where storage is lossless, else decoded again, so an in-memory dataset holds what its files hold."""
        return examples if self.lossless_storage else self.decode_stored(stored, where)

    #: File name suffixes of examples stored one per file (image and audio folders); empty: not stored as files.
    file_suffixes: ClassVar[frozenset[str]] = frozenset()

    def encode_file(self, example: Any, original: bytes | None = None) -> bytes:
        """One example as the bytes of a file replacing ``original`` (image and audio folders)."""
        raise NotImplementedError(f"{self.name} examples are not stored one per file.")

    def written_suffix(self, original_suffix: str) -> str:
        """The suffix of a rewritten file (images become PNG; audio stays WAV)."""
        return original_suffix

    def configured(self, values: list[Any], feature: dict[str, Any] | None = None,
                   names: Sequence[str] | None = None) -> Modality:
        """This modality set up for a stored dataset (its first stored values and Hugging Face feature): audio
        takes the dataset's sample rate. Others need nothing."""
        return self

    def stored_schema(self) -> tuple[Any, dict[str, Any]] | None:
        """The Arrow type and Hugging Face feature of a column of :meth:`encode_stored` values, for a modality whose
        column is not the usual one (a ``{"bytes", "path"}`` struct, or strings, under :attr:`feature_type`): graphs
        store a struct of lists. None: the usual one."""
        return None

    @abstractmethod
    def looks_like_column(self, field_type: Any, feature: dict[str, Any]) -> bool:
        """Whether an Arrow column (its type and Hugging Face feature) holds examples of this modality."""

    # --- what people see, and the reference model: named functions, imported only when used -------------
    #: Suffix and writer (``"module:function"`` under ``datamark``) of a preview of marked examples.
    preview_suffix: ClassVar[str]
    preview_writer: ClassVar[str]
    #: The reference architecture trained on this modality when none is named, its trainer and its configs.
    default_arch: ClassVar[str]
    trainer: ClassVar[str]
    config_factory: ClassVar[str]

    def preview(self, originals: np.ndarray, marked: np.ndarray, stem: str | Path, *, titles: Sequence[str] = (),
                overwrite: bool = False) -> Path:
        """Write a preview of marked examples beside their originals at ``stem`` plus this modality's suffix
        (a PNG grid for images, Markdown for text); returns the path written."""
        path = Path(f"{stem}{self.preview_suffix}")
        self.write_preview(originals, marked, path, titles=titles, overwrite=overwrite)
        return path

    def write_preview(self, originals: np.ndarray, marked: np.ndarray, path: str | Path, *,
                      titles: Sequence[str] = (), overwrite: bool = False) -> None:
        """Write the preview of marked examples beside their originals at ``path`` (its suffix as given)."""
        _named(self.preview_writer)(originals, marked, path, titles=titles, overwrite=overwrite,
                                    **self.preview_options())

    def preview_options(self) -> dict[str, Any]:
        """Extra keyword arguments of the preview writer (audio: the sample rate)."""
        return {}

    def fit(self, data: Any, *, arch: str, config: Any = None, progress: bool = False, **arch_params: Any
            ) -> tuple[torch.nn.Module, Any]:
        """Train a fresh ``arch`` on ``data``; returns ``(model, spec)``."""
        return _named(self.trainer)(data, arch=arch, config=config, progress=progress, **arch_params)

    def default_config(self, arch: str, **overrides: Any) -> Any:
        """The training configuration of ``arch`` on this modality."""
        return _named(self.config_factory)(arch, **overrides)

    # --- the model side: continuous inputs for gradient-based perturbations (PGD) ----------------------------
    #: The valid range of :meth:`to_model_input`'s values; None for modalities without a continuous input.
    bounds: ClassVar[tuple[float, float] | None] = None
    #: The clean-label PGD budget (eps, step) in :attr:`budget_metric` units when a method does not set one.
    pgd_eps: ClassVar[float | None] = None
    pgd_step: ClassVar[float | None] = None

    def to_model_input(self, batch: np.ndarray) -> torch.Tensor:
        """A batch as the float tensor its models take (images: NCHW in [0, 1]; audio: N x L in [-1, 1])."""
        raise NotImplementedError(f"{self.name} models take no continuous tensor input (no gradient attacks).")

    def from_model_input(self, tensor: torch.Tensor, original: np.ndarray, eps: float) -> np.ndarray:
        """A perturbed model input back to a batch, kept within ``eps`` of ``original`` after quantisation."""
        raise NotImplementedError(f"{self.name} models take no continuous tensor input (no gradient attacks).")

    def logits(self, model: torch.nn.Module, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        """Run ``model`` on a batch (the preprocessing a model of this modality expects)."""
        return model(self.to_model_input(batch).to(device))


def _named(target: str) -> Any:
    """The function ``"module:function"`` of the datamark package (imported on first use: no import cycles)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(f"datamark.{module}"), name)


def value_names(count: int, where: str, names: Sequence[str] | None = None) -> list[str]:
    """What errors call each of ``count`` stored values: its file (quoted) where known, else its row."""
    return [f"'{n}'" for n in names] if names is not None else [f"row {i} of {where}" for i in range(count)]


def stored_bytes(value: Any, row: int, where: str, what: str, fix: str) -> bytes:
    """The file bytes of a stored value (a Hugging Face ``{"bytes", "path"}`` struct, or bytes), or a one-line
    error naming the row, what is missing and ``fix``."""
    data = value.get("bytes") if isinstance(value, dict) else value
    if data is None:
        raise DataError(f"Row {row} of {where} has no {what} bytes; {fix}")
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def get_modality(name: str, **params: Any) -> Modality:
    """The registered modality called ``name`` (``params``: its settings, e.g. an audio ``sample_rate``)."""
    try:
        return MODALITIES[name](**params)
    except KeyError:
        raise DataError(f"Unknown modality '{name}'; known modalities are {sorted(MODALITIES)}.") from None


def modality_of(batch: Any) -> Modality:
    """The modality a batch belongs to, from its type alone (uint8 4-d arrays are images; strings are text; float
    2-d arrays are audio waveforms, at the default 8 kHz unless wrapped with a sample rate; datamark Graphs are
    graphs, their encoding learned by the records that hold them)."""
    objects = isinstance(batch, (list, tuple)) or (isinstance(batch, np.ndarray) and batch.dtype == object)
    if objects and len(batch) and isinstance(batch[0], Graph):
        return get_modality("graph")
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(x, str) for x in batch):
        return get_modality("text")
    array = np.asarray(batch) if not isinstance(batch, np.ndarray) else batch
    if array.dtype.kind in "OUS" and array.ndim == 1:
        return get_modality("text")
    if array.dtype.kind == "f" and array.ndim == 2:  # float waveforms; the sample rate is unknown: the default
        return get_modality("audio", length=array.shape[1])
    return get_modality("image")


def modality_of_model(model: Any) -> Modality:
    """The modality a model takes: its ``modality`` attribute (with its ``sample_rate`` and ``length`` for
    audio, its ``feature_spec`` -- the node encoding it was trained with -- for graphs), else text for a model with
    a ``tokenize`` method, else images."""
    name = getattr(model, "modality", None)
    if not isinstance(name, str):
        name = "text" if callable(getattr(model, "tokenize", None)) else "image"
    if name == "audio":
        params = {k: int(getattr(model, k)) for k in ("sample_rate", "length") if getattr(model, k, None)}
        return get_modality(name, **params)
    if name == "graph":
        return get_modality(name, **(getattr(model, "feature_spec", None) or {}))
    return get_modality(name)
