"""A suspect behind an HTTP endpoint that speaks the Open Inference Protocol (KServe V2).

The client reads the model's metadata first and refuses options that disagree with it (printing the
metadata), then sends batches: uint8 N x H x W x C images from the verifier become the tensor the endpoint
declared (UINT8 or FP32, NHWC or NCHW, 0-255 or 0-1); text goes as a BYTES tensor of strings. A hard query
budget is checked *before* each request, and every answer is validated (shape, class count, finite,
normalised) before a test sees it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..exceptions import EndpointError, ParameterError, SuspectError
from ._remote import RemoteSuspect
from ._transport import Transport
from ._v2 import TensorFormat, from_tensor, to_tensor
from .base import Outputs, validate_output


class HTTPSuspect(RemoteSuspect):
    """A V2 endpoint as a :class:`~datamark.suspects.Suspect`.

    Args:
        url: server root, e.g. ``http://127.0.0.1:8080``.
        model_name: the model's name on the server (``/v2/models/{model_name}``).
        input_name / output_name: tensor names; None takes the only one the metadata declares.
        datatype / layout / scale: the input encoding (see :class:`~datamark.suspects._v2.TensorFormat`); audio is
            ``datatype="FP32", layout="NL"``.
        outputs: "probs" or "labels"; None infers it from the output datatype (FP* -> probs, INT* -> labels).
        num_classes: K; None reads it from a probability output's shape [-1, K] (label outputs need it).
        batch_size: examples per request.
        budget: hard cap on examples sent over the lifetime of this object (None = no cap).
        sample_rate: audio only: sent in every request's ``parameters`` (the key's sample rate).
        timeout_s, retries, backoff_s, rate_limit_per_s, transport: see :class:`~._transport.Transport`.
    """

    def __init__(self, url: str, model_name: str, *, input_name: str | None = None, output_name: str | None = None,
                 datatype: str = "UINT8", layout: str = "NHWC", scale: float = 255.0, outputs: Outputs | None = None,
                 num_classes: int | None = None, batch_size: int = 64, budget: int | None = None,
                 sample_rate: int | None = None, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2,
                 rate_limit_per_s: float | None = None, transport: Any = None, **transport_options: Any) -> None:
        if batch_size < 1 or (budget is not None and budget < 0):
            raise ParameterError(f"batch_size must be >= 1 and budget >= 0; got {batch_size} and {budget}.")
        self.format = TensorFormat(datatype, layout, float(scale))  # type: ignore[arg-type]
        self.modality_name = self.format.modality
        if self.modality_name == "audio" and sample_rate is None:
            raise ParameterError("Audio is sent with its sample rate; pass sample_rate (--sample-rate, the key's).")
        self.sample_rate = int(sample_rate) if sample_rate is not None else None
        self.model_name, self.batch_size, self.budget = model_name, batch_size, budget
        self.queries = 0
        self._http = Transport(url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
                               rate_limit_per_s=rate_limit_per_s, transport=transport, **transport_options)
        self.url = self._http.base_url
        self.endpoint = f"{self.url}/v2/models/{model_name}/infer"
        try:
            self.metadata = self._http.request("GET", f"/v2/models/{model_name}")
            self._configure(input_name, output_name, outputs, num_classes)
        except BaseException:
            self._http.close()
            raise

    # -- metadata ---------------------------------------------------------------------------------------------
    def _mismatch(self, problem: str, fix: str) -> EndpointError:
        shown = json.dumps(self.metadata)[:1500]
        return EndpointError(f"The options disagree with the metadata of model '{self.model_name}' at {self.url}: "
                             f"{problem}. {fix} Metadata: {shown}")

    def _pick(self, kind: str, wanted: str | None) -> dict[str, Any]:
        tensors = self.metadata.get(kind) if isinstance(self.metadata, dict) else None
        if not isinstance(tensors, list) or not tensors or not all(isinstance(t, dict) for t in tensors):
            raise self._mismatch(f"it declares no '{kind}'", "Is this a V2 (Open Inference Protocol) endpoint?")
        names = [t.get("name") for t in tensors]
        if wanted is None:
            if len(tensors) > 1:
                raise self._mismatch(f"it declares several {kind} {names}", f"Choose one (--{kind[:-1]}-name).")
            return tensors[0]
        if wanted not in names:
            raise self._mismatch(f"no {kind[:-1]} is named '{wanted}' (it has {names})",
                                 f"Pass one of {names} (--{kind[:-1]}-name).")
        return tensors[names.index(wanted)]

    def _configure(self, input_name: str | None, output_name: str | None, outputs: Outputs | None,
                   num_classes: int | None) -> None:
        inp, out = self._pick("inputs", input_name), self._pick("outputs", output_name)
        self.input_name, self.output_name = inp.get("name"), out.get("name")
        if inp.get("datatype") != self.format.datatype:
            raise self._mismatch(f"input '{self.input_name}' has datatype {inp.get('datatype')}, not "
                                 f"{self.format.datatype}", f"Pass --datatype {inp.get('datatype')}.")
        self.input_shape_declared = inp.get("shape")
        if self.format.datatype == "BYTES":
            shape = self.input_shape_declared
            if not isinstance(shape, list) or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] not in (1, -1)):
                raise self._mismatch(f"input '{self.input_name}' has shape {shape}, not a batch of strings",
                                     "datamark sends text as a BYTES tensor of shape [N] or [N, 1].")
        elif self.format.layout == "NL":
            shape = self.input_shape_declared
            if not isinstance(shape, list) or len(shape) != 2:
                raise self._mismatch(f"input '{self.input_name}' has shape {shape}, not a batch of waveforms",
                                     "datamark sends audio as an FP32 tensor of shape [N, L].")
        elif not isinstance(self.input_shape_declared, list) or len(self.input_shape_declared) != 4:
            raise self._mismatch(f"input '{self.input_name}' has shape {self.input_shape_declared}, not a 4-d "
                                 f"image batch", "datamark sends N x H x W x C (or N x C x H x W) images.")
        out_type = str(out.get("datatype", ""))
        inferred: Outputs = "probs" if out_type.startswith("FP") else "labels"
        if not out_type.startswith(("FP", "INT", "UINT")):
            raise self._mismatch(f"output '{self.output_name}' has datatype {out_type!r}",
                                 "datamark reads probabilities (FP32/FP64) or labels (INT*).")
        if outputs is not None and outputs != inferred:
            raise self._mismatch(f"output '{self.output_name}' has datatype {out_type}, which means {inferred}, "
                                 f"not {outputs}", "Choose the matching output (--output-name) or mode.")
        self.outputs = inferred
        shape = out.get("shape")
        declared_k = shape[-1] if inferred == "probs" and isinstance(shape, list) and len(shape) == 2 else -1
        if num_classes is None and (not isinstance(declared_k, int) or declared_k < 2):
            raise self._mismatch(f"the number of classes cannot be read from output shape {shape}",
                                 "Pass num_classes (--num-classes).")
        if num_classes is not None and isinstance(declared_k, int) and declared_k > 0 and declared_k != num_classes:
            raise self._mismatch(f"output '{self.output_name}' has {declared_k} classes, not {num_classes}",
                                 "Check the model name and the key.")
        self.num_classes = int(num_classes if num_classes is not None else declared_k)

    def _check_shape(self, sent: tuple[int, ...]) -> None:
        if self.format.datatype == "BYTES":
            return  # the shape was checked against the metadata: [N] or [N, 1]
        declared = self.input_shape_declared[1:]
        if any(isinstance(d, int) and d >= 0 and d != s for d, s in zip(declared, sent, strict=True)):
            raise self._mismatch(f"input '{self.input_name}' has shape {self.input_shape_declared} but datamark "
                                 f"would send [N, {', '.join(map(str, sent))}] ({self.format.layout})",
                                 "Check --layout (NHWC or NCHW) and that the probe data fit the model.")

    # -- queries ----------------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What an evidence file records about this suspect (no secrets)."""
        return {"kind": "http-v2", "endpoint": self.endpoint, "input": self.input_name, "output": self.output_name,
                "datatype": self.format.datatype, "layout": self.format.layout, "scale": self.format.scale,
                "outputs": self.outputs, "num_classes": self.num_classes,
                **({"sample_rate": self.sample_rate} if self.sample_rate is not None else {})}

    def _ask(self, images: np.ndarray) -> np.ndarray:
        sent = self.format.encode(images)
        if self.format.datatype == "BYTES" and len(self.input_shape_declared) == 2:
            sent = sent.reshape(-1, 1)
        self._check_shape(tuple(sent.shape[1:]))
        payload = {"inputs": [to_tensor(self.input_name, sent, self.format.datatype)],
                   "outputs": [{"name": self.output_name}]}
        if self.sample_rate is not None:
            payload["parameters"] = {"sample_rate": self.sample_rate}
        self._spend(len(images))
        answer = self._http.request("POST", f"/v2/models/{self.model_name}/infer", payload)
        where = f"The endpoint {self.endpoint}"
        tensors = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(tensors, list):
            raise SuspectError(f"{where} answered without an 'outputs' list: {json.dumps(answer)[:300]}")
        found = [t for t in tensors if isinstance(t, dict) and t.get("name") == self.output_name]
        if not found:
            names = [t.get("name") for t in tensors if isinstance(t, dict)]
            raise SuspectError(f"{where} answered without output '{self.output_name}' (outputs: {names}).")
        try:
            out = from_tensor(found[0], f"output '{self.output_name}'")
        except ValueError as err:
            raise SuspectError(f"{where} answered a malformed tensor: {err}.") from err
        if self.outputs == "labels" and out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]  # [N, 1] label tensors are common (Triton); same information as [N]
        return validate_output(out, self.outputs, len(images), self.num_classes,
                               f"{where} (output '{self.output_name}')")
