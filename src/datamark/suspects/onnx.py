"""An ONNX model run by ``onnxruntime`` as a local suspect, with its preprocessing declared, never guessed.

An ONNX file says the name, element type and shape of its input, but not what the numbers mean: whether a
white pixel is 1 or 255, which mean and standard deviation were subtracted, whether the output is logits or
probabilities. The user declares those in a :class:`Preprocessing`; what the file does say (element type,
rank, the channel axis, fixed sizes, the output's shape) is checked against the declaration when the suspect
is built, so a mismatch is a one-line error before a single query is counted, not a verdict on garbage.

Images (datamark's uint8 N x H x W x C) and audio (float32 N x L waveforms in [-1, 1], layout ``NL``) are
supported. Text ONNX models are not: they take token ids from a tokenizer the file does not carry (export the
model with its tokenizer to a ``transformers`` folder and use :class:`~.transformers.TransformersSuspect`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from .._io import file_sha256
from ..exceptions import ParameterError, SuspectError
from ..modalities import get_modality
from .base import Outputs, validate_output
from .preprocessing import Preprocessing

INSTALL_HINT = 'pip install "datamark[onnx]"'

#: ONNX element types datamark sends, by the name onnxruntime reports.
_ORT_TYPES = {"tensor(float)": "FP32", "tensor(uint8)": "UINT8"}


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"ONNX suspects need the 'onnxruntime' package; {INSTALL_HINT}.") from err
    return onnxruntime


class ONNXSuspect:
    """An ONNX classifier as a :class:`~.base.Suspect`: ``query`` takes datamark's batch (uint8 N x H x W x C
    images, or float32 N x L waveforms), encodes it as declared, runs the graph and returns N x K probabilities
    or N labels.

    Args:
        path_or_session: an ``.onnx`` file (opened with ``onnxruntime``; its SHA-256 goes into the evidence) or an
            ``onnxruntime.InferenceSession`` already built.
        preprocessing: the declared :class:`Preprocessing` (required: nothing about it is guessed).
        outputs: ``"probs"`` or ``"labels"``: the black-box setting to emulate.
        input_name / output_name: the graph's tensors; None takes the only one it has.
        num_classes: K; None reads it from the output's shape [N, K] (a label output needs it).
        batch_size: examples per run (a graph with a fixed batch size gets chunks of that size, the last one
            padded with zeros whose answers are dropped).
        sample_rate: audio only: the rate (Hz) the model was trained at, checked against the key's.
        providers: onnxruntime execution providers, CPU by default (deterministic).
        threads: onnxruntime's intra-op threads; default torch's (``--threads`` / ``DATAMARK_THREADS``).

    Raises:
        SuspectError: when the file's input or output disagrees with the declaration, naming the mismatch and
            the option that fixes it.
    """

    def __init__(self, path_or_session: str | os.PathLike | Any, *, preprocessing: Preprocessing,
                 outputs: Outputs = "probs", input_name: str | None = None, output_name: str | None = None,
                 num_classes: int | None = None, batch_size: int = 256, sample_rate: int | None = None,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",), threads: int | None = None) -> None:
        if outputs not in ("probs", "labels"):
            raise SuspectError(f"outputs must be 'probs' or 'labels'; got '{outputs}'.")
        if not isinstance(preprocessing, Preprocessing):
            raise ParameterError(f"ONNXSuspect needs its preprocessing declared as a Preprocessing(layout=..., "
                                 f"datatype=..., scale=..., model_outputs=...); got {type(preprocessing).__name__}.")
        if preprocessing.model_outputs == "labels" and outputs == "probs":
            raise SuspectError("The ONNX model was declared to output labels (model_outputs='labels'), so it cannot "
                               "answer probabilities; use outputs='labels' (label-only mode, --mode labels).")
        if batch_size < 1:
            raise ParameterError(f"batch_size must be >= 1; got {batch_size}.")
        if (sample_rate is not None) != (preprocessing.modality == "audio"):
            raise ParameterError(f"'sample_rate' (Hz) is declared for audio models (layout NL) only, and they need it;"
                                 f" got sample_rate={sample_rate} with layout {preprocessing.layout}.")
        self.preprocessing, self.outputs, self.batch_size = preprocessing, outputs, int(batch_size)
        self.sample_rate = int(sample_rate) if sample_rate is not None else None
        self.session, self.sha256 = _open(path_or_session, providers, threads)
        self.modality = get_modality("audio", sample_rate=self.sample_rate) if self.sample_rate else \
            get_modality("image")
        self._check_input(input_name)
        self._check_output(output_name, num_classes)
        self.queries = 0

    # -- what the file declares, against what the user declared -------------------------------------------------
    def _mismatch(self, problem: str, fix: str) -> SuspectError:
        return SuspectError(f"The ONNX model's {problem}; {fix}")

    def _pick(self, nodes: list[Any], wanted: str | None, kind: str) -> Any:
        names = [node.name for node in nodes]
        if wanted is None and len(nodes) == 1:
            return nodes[0]
        if wanted is None or wanted not in names:
            has = f"no {kind} named '{wanted}'" if wanted is not None else f"several {kind}s"
            raise SuspectError(f"The ONNX model has {has} (it has {names}); pass one of them ({kind}_name=..., "
                               f"--{kind}-name).")
        return nodes[names.index(wanted)]

    def _check_input(self, input_name: str | None) -> None:
        prep = self.preprocessing
        node = self._pick(list(self.session.get_inputs()), input_name, "input")
        self.input_name, shape = node.name, list(node.shape)
        where = f"input '{node.name}' (shape {shape}, {node.type})"
        sent = _ORT_TYPES.get(node.type)
        if sent is None:
            raise self._mismatch(f"{where} takes {node.type}, which datamark does not send",
                                 "re-export it with a float32 or uint8 input.")
        if sent != prep.datatype:
            raise self._mismatch(f"{where} takes {sent}, not the declared datatype {prep.datatype}",
                                 f"declare datatype='{sent}' (--datatype {sent}).")
        rank = 2 if prep.layout == "NL" else 4
        if len(shape) != rank:
            what = "an N x L batch of waveforms" if rank == 2 else f"a 4-d {prep.layout} image batch"
            raise self._mismatch(f"{where} is not {what}", "declare the layout it takes (NCHW, NHWC or NL).")
        self._fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        if prep.layout == "NL":
            self._example = (_dim(shape[1]),)
            return
        axis = prep.channel_axis or 1
        channels = _dim(shape[axis])
        if channels is not None and channels not in (1, 3):
            other = "NHWC" if prep.layout == "NCHW" else "NCHW"
            raise self._mismatch(f"{where} has {channels} at axis {axis}, where the declared layout {prep.layout} "
                                 f"puts the channels (1 or 3)", f"if its channels are elsewhere, declare "
                                 f"layout='{other}' (--layout {other}).")
        counts = {len(prep.mean), len(prep.std or ())} - {1} if prep.mean is not None else set()
        if channels is not None and counts - {channels}:
            raise self._mismatch(f"{where} has {channels} channels but {max(counts)} mean/std values were "
                                 f"declared", f"declare one value or {channels} values each.")
        hw = [_dim(shape[i]) for i in ((2, 3) if prep.layout == "NCHW" else (1, 2))]
        self._example = (*hw, channels)

    def _check_output(self, output_name: str | None, num_classes: int | None) -> None:
        node = self._pick(list(self.session.get_outputs()), output_name, "output")
        self.output_name, shape = node.name, list(node.shape)
        where = f"output '{node.name}' (shape {shape}, {node.type})"
        labels = self.preprocessing.model_outputs == "labels"
        wanted = ("tensor(int64)", "tensor(int32)") if labels else ("tensor(float)", "tensor(double)")
        if node.type not in wanted:
            fix = "declare model_outputs='labels'" if "int" in node.type else "declare model_outputs='logits' or "\
                "'probs'"
            raise self._mismatch(f"{where} does not hold {self.preprocessing.model_outputs}", f"{fix} "
                                 f"(--model-outputs), or pick another output (output_name=...).")
        ok_rank = len(shape) in (1, 2) and (len(shape) == 1 or _dim(shape[1]) == 1) if labels else len(shape) == 2
        if not ok_rank:
            raise self._mismatch(f"{where} is not one {'label' if labels else 'score vector'} per example",
                                 "pick the classifier's output (output_name=..., --output-name).")
        declared_k = None if labels else _dim(shape[1])
        if num_classes is not None and declared_k is not None and num_classes != declared_k:
            raise self._mismatch(f"{where} has {declared_k} classes, not num_classes={num_classes}",
                                 f"pass num_classes={declared_k} or leave it out.")
        k = num_classes if num_classes is not None else declared_k
        if k is None or k < 2:
            raise self._mismatch(f"{where} does not say how many classes it has",
                                 "pass num_classes (--num-classes), at least 2.")
        self.num_classes = int(k)

    # -- the protocol -------------------------------------------------------------------------------------------
    def with_outputs(self, outputs: Outputs) -> ONNXSuspect:
        """The same session answering ``outputs`` (to run both black-box settings on one model)."""
        twin = ONNXSuspect(self.session, preprocessing=self.preprocessing, outputs=outputs,
                           input_name=self.input_name, output_name=self.output_name, num_classes=self.num_classes,
                           batch_size=self.batch_size, sample_rate=self.sample_rate)
        twin.sha256 = self.sha256
        return twin

    @property
    def budget_left(self) -> int | None:
        """A local model has no query budget."""
        return None

    def describe(self) -> dict[str, Any]:
        """What evidence records: the declaration, the tensors, and the file's SHA-256 (identifies the model)."""
        extra = {"sample_rate": self.sample_rate} if self.sample_rate else {}
        return {"kind": "ONNXSuspect", "modality": self.modality.name, "outputs": self.outputs,
                "num_classes": self.num_classes, "input_name": self.input_name, "output_name": self.output_name,
                "preprocessing": self.preprocessing.to_dict(), "model_sha256": self.sha256, **extra}

    def query(self, inputs: np.ndarray) -> np.ndarray:
        try:
            batch = self.modality.batch(inputs, "sent to the ONNX model")
        except ValueError as err:
            raise SuspectError(f"The ONNX model takes {self.modality.name} input: {err}") from err
        got = batch.shape[1:]
        if any(want is not None and want != have for want, have in zip(self._example, got, strict=True)):
            dims = " x ".join("?" if d is None else str(d) for d in self._example)
            raise SuspectError(f"The ONNX model's input '{self.input_name}' takes examples of shape {dims} (as "
                               f"datamark holds them: H x W x C or L); got a batch of shape {batch.shape}. Probe "
                               f"it with data of the shape it was trained on.")
        scores = self._run(batch)
        probs = self._as_probs(scores) if self.preprocessing.model_outputs != "labels" else None
        self.queries += len(batch)
        out = scores.reshape(len(batch)) if probs is None else probs if self.outputs == "probs" else \
            probs.argmax(axis=1)
        return validate_output(out, self.outputs, len(batch), self.num_classes, "the ONNX model")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        step = self._fixed_batch or self.batch_size
        chunks = []
        for start in range(0, len(batch), step):
            x = self.preprocessing.encode(batch[start:start + step])
            n = len(x)
            if self._fixed_batch and n < step:  # a graph exported with a fixed batch size: pad, drop the extra
                x = np.concatenate([x, np.zeros((step - n, *x.shape[1:]), dtype=x.dtype)])
            chunks.append(np.asarray(self.session.run([self.output_name], {self.input_name: x})[0])[:n])
        if not chunks:
            return np.zeros((0, self.num_classes))
        return np.concatenate(chunks)

    def _as_probs(self, scores: np.ndarray) -> np.ndarray:
        scores = scores.astype(np.float64)
        if not np.isfinite(scores).all():
            raise SuspectError("The ONNX model returned non-finite scores (NaN or infinity); check the declared "
                               "preprocessing (scale, mean, std).")
        if self.preprocessing.model_outputs == "logits":
            return softmax(scores, axis=1)
        sums = scores.sum(axis=1)
        bad = np.flatnonzero((np.abs(sums - 1.0) > 1e-3) | (scores < -1e-6).any(axis=1))
        if bad.size:
            raise SuspectError(f"The ONNX model was declared to output probabilities (model_outputs='probs'), but "
                               f"row {bad[0]} is not a probability vector (sum {sums[bad[0]]:.4g}); if its graph "
                               f"ends with logits, declare model_outputs='logits' (--model-outputs logits).")
        return scores


def _dim(value: Any) -> int | None:
    """A fixed dimension of an ONNX shape, or None for a symbolic or unknown one."""
    return int(value) if isinstance(value, int) and value > 0 else None


def _open(source: str | os.PathLike | Any, providers: tuple[str, ...], threads: int | None) -> tuple[Any, str | None]:
    """An onnxruntime session and the file's SHA-256 (None for a session built by the caller)."""
    if not isinstance(source, (str, os.PathLike)):
        if not all(callable(getattr(source, m, None)) for m in ("get_inputs", "get_outputs", "run")):
            raise ParameterError(f"ONNXSuspect takes an .onnx path or an onnxruntime.InferenceSession; got "
                                 f"{type(source).__name__}.")
        return source, None
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"No ONNX model at '{path}'; pass the path of an .onnx file.")
    ort = _onnxruntime()
    import torch  # torch's thread count is datamark's (--threads); onnxruntime follows it

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: onnxruntime's graph-optimisation notes are not ours to print
    try:
        session = ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as err:  # onnxruntime raises its own untyped errors for unreadable graphs
        raise SuspectError(f"Cannot load the ONNX model '{path}': {str(err).splitlines()[0]}. Pass a valid .onnx "
                           f"file (its external-data files beside it).") from err
    return session, file_sha256(path)
