"""From a path to a local suspect: what the path *is* decides how it is loaded, never its name alone.

Accepted kinds (:func:`suspect_kind`):

* ``"checkpoint"``: a datamark checkpoint (a file written by ``datamark train`` or
  :func:`~datamark.models.save_checkpoint`; a torch zip archive, read with ``weights_only=True``) ->
  :class:`~.local.LocalSuspect`. It carries its own preprocessing.
* ``"onnx"``: an ``.onnx`` file -> :class:`~.onnx.ONNXSuspect`, with its preprocessing declared by the caller.
* ``"transformers-text"`` / ``"transformers-image"``: a folder saved by ``save_pretrained`` whose
  ``config.json`` names a ``...ForSequenceClassification`` or ``...ForImageClassification`` architecture ->
  :class:`~.transformers.TransformersSuspect` (with its tokenizer) or
  :class:`~.transformers_image.TransformersImageSuspect` (with its image processor). Loaded offline.

The keyword names :func:`load_suspect` accepts per kind (the CLI options of ``datamark verify --model PATH``):

* every kind: ``batch_size``;
* ``onnx``: the :class:`~.preprocessing.Preprocessing` fields ``layout`` (NCHW | NHWC | NL), ``datatype``
  (FP32 | UINT8), ``scale`` (1 | 255), ``mean``, ``std``, ``model_outputs`` (logits | probs | labels), and
  ``input_name``, ``output_name``, ``num_classes``, ``sample_rate`` (audio), ``threads``;
* ``transformers-text``: ``max_length``, ``max_unknown_rate``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Literal

from ..exceptions import DataFormatError, ParameterError
from .base import Outputs, Suspect
from .local import LocalSuspect
from .onnx import ONNXSuspect
from .preprocessing import Preprocessing

SuspectKind = Literal["checkpoint", "onnx", "transformers-text", "transformers-image"]

#: The declared-preprocessing keywords (fields of :class:`Preprocessing`).
PREPROCESSING_OPTIONS = frozenset(f.name for f in dataclasses.fields(Preprocessing))

#: Keyword arguments :func:`load_suspect` passes on, per kind of model.
OPTIONS: dict[str, frozenset[str]] = {
    "checkpoint": frozenset({"batch_size"}),
    "onnx": PREPROCESSING_OPTIONS | {"batch_size", "input_name", "output_name", "num_classes", "sample_rate",
                                     "threads"},
    "transformers-text": frozenset({"batch_size", "max_length", "max_unknown_rate"}),
    "transformers-image": frozenset({"batch_size"}),
}

_ACCEPTED = ("a datamark checkpoint (written by 'datamark train'), an ONNX file (*.onnx), or a folder saved by "
             "transformers' save_pretrained whose config.json names a sequence or image classifier")


def suspect_kind(path: str | os.PathLike) -> SuspectKind:
    """What kind of model ``path`` holds, read from the file or folder itself.

    Raises:
        FileNotFoundError: nothing is at ``path``.
        DataFormatError: ``path`` is none of the accepted kinds (the message lists them).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No model at '{path}'; pass {_ACCEPTED}.")
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise DataFormatError(f"The folder '{path}' holds no config.json, so it is not a transformers model; "
                                  f"pass {_ACCEPTED}.")
        return _transformers_kind(config)
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):  # torch.save's format; load_checkpoint then checks it is a datamark one
        return "checkpoint"
    raise DataFormatError(f"'{path}' is not a model datamark can load; pass {_ACCEPTED}.")


def _transformers_kind(config: Path) -> SuspectKind:
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError) as err:
        raise DataFormatError(f"Cannot read '{config}' as a transformers config ({err}); save the model again "
                              f"with save_pretrained.") from err
    names = [str(a) for a in architectures]
    if any(a.endswith("ForSequenceClassification") for a in names):
        return "transformers-text"
    if any("ForImageClassification" in a for a in names):  # also ...ForImageClassificationWithTeacher (DeiT)
        return "transformers-image"
    what = ", ".join(names) or "model of no declared architecture"
    raise DataFormatError(f"The transformers model in '{config.parent}' is a {what} (config.json 'architectures'), "
                          f"not a classifier datamark can query; pass {_ACCEPTED}.")


def load_suspect(path: str | os.PathLike, *, outputs: Outputs = "probs", **declared: Any) -> Suspect:
    """The suspect held at ``path``, answering ``outputs`` (``"probs"`` or ``"labels"``).

    Args:
        path: a datamark checkpoint, an ``.onnx`` file, or a transformers folder (see the module's docstring).
        outputs: the black-box setting to emulate.
        **declared: the keyword arguments of that kind (module docstring); a value of None counts as not
            given, so a CLI can pass every option it has. An ONNX model needs at least ``layout``,
            ``datatype`` and ``model_outputs`` (and ``scale`` for FP32 images).

    Raises:
        ParameterError: an option that does not apply to this kind of model (a checkpoint or a transformers
            folder carries its own preprocessing), or an incomplete ONNX declaration.
    """
    kind = suspect_kind(path)
    given = {name: value for name, value in declared.items() if value is not None}
    extra = sorted(set(given) - OPTIONS[kind])
    if extra:
        why = " (it carries its own preprocessing)" if set(extra) & PREPROCESSING_OPTIONS else ""
        raise ParameterError(f"The option(s) {', '.join(extra)} do not apply to the {kind} model at '{path}'{why}; "
                             f"it takes {', '.join(sorted(OPTIONS[kind]))}.")
    if kind == "checkpoint":
        return LocalSuspect.from_checkpoint(path, outputs=outputs, **given)
    if kind == "onnx":
        declaration = {name: given.pop(name) for name in PREPROCESSING_OPTIONS & set(given)}
        missing = sorted(name for name in ("layout", "datatype", "model_outputs") if name not in declaration)
        if missing:
            raise ParameterError(f"The ONNX model at '{path}' needs its preprocessing declared; missing "
                                 f"{', '.join(missing)} (e.g. layout='NCHW', datatype='FP32', scale=1, "
                                 f"model_outputs='logits').")
        return ONNXSuspect(path, preprocessing=Preprocessing(**declaration), outputs=outputs, **given)
    if kind == "transformers-text":
        from .transformers import TransformersSuspect

        return TransformersSuspect.from_pretrained(path, outputs=outputs, **given)
    from .transformers_image import TransformersImageSuspect

    return TransformersImageSuspect.from_pretrained(path, outputs=outputs, **given)
