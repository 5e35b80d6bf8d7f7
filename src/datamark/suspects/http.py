"""A suspect behind an HTTP endpoint that speaks the Open Inference Protocol (KServe V2).

The client reads the model's metadata first and refuses options that disagree with it (printing the
metadata), then sends batches: uint8 N x H x W x C images from the verifier become the tensor the endpoint
declared (UINT8 or FP32, NHWC or NCHW, 0-255 or 0-1); text goes as a BYTES tensor of strings; graphs as a BYTES
tensor of JSON documents (layout ``GRAPH``, schema in :mod:`._v2`) with the key's node encoding. A hard query
budget is checked *before* each request, and every answer is validated (shape, class count, finite,
normalised) before a test sees it.

Stock servers often declare nothing: KServe's Python ``ModelServer`` answers metadata with empty ``inputs`` and
``outputs`` unless the model author overrides ``get_input_types`` / ``get_output_types``. Then the input is
described by the caller's options (``input_name``, ``datatype``, ``num_classes``: refused before the first
query if one is missing, since a guessed wire format can turn into a garbage verdict rather than an error), and
the output's name and kind are learned from the first answer, which is validated like every other.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from ..exceptions import EndpointError, ParameterError, SuspectError
from ._remote import RemoteSuspect
from ._transport import Transport
from ._v2 import TensorFormat, from_tensor, to_tensor
from .base import Outputs, validate_output

log = logging.getLogger(__name__)


class HTTPSuspect(RemoteSuspect):
    """A V2 endpoint as a :class:`~datamark.suspects.Suspect`.

    Args:
        url: server root, e.g. ``http://127.0.0.1:8080``.
        model_name: the model's name on the server (``/v2/models/{model_name}``).
        input_name / output_name: tensor names; None takes the only one the metadata declares. Where the metadata
            declares no inputs, ``input_name`` is required; where it declares no outputs, None takes the only
            output of the first answer.
        datatype / layout / scale: the input encoding (see :class:`~datamark.suspects._v2.TensorFormat`); audio is
            ``datatype="FP32", layout="NL"``. ``datatype`` None means UINT8 (FP32 for layout NL), checked against
            the metadata; where the metadata declares no inputs it is required.
        outputs: "probs" or "labels"; None infers it from the output datatype (FP* -> probs, INT* -> labels), or,
            where the metadata declares no outputs, assumes probs and checks it on the first answer.
        num_classes: K; None reads it from a probability output's shape [-1, K] (label outputs, and endpoints
            that declare no outputs, need it).
        batch_size: examples per request.
        budget: hard cap on examples sent over the lifetime of this object (None = no cap).
        sample_rate: audio only: sent in every request's ``parameters`` (the key's sample rate).
        feature_spec: graphs only (``layout="GRAPH"``; datatype BYTES is implied): the node encoding the key records
            (``GraphModality.feature_spec()``), sent in every request's ``parameters`` and checked against the
            metadata's where the server declares one. None sends none.
        timeout_s, retries, backoff_s, rate_limit_per_s, transport: see :class:`~._transport.Transport`; so are
            the keyword-only ``headers``, ``token``, ``ca_cert`` and ``insecure`` (credentials and TLS), passed
            through ``transport_options``.
    """

    def __init__(self, url: str, model_name: str, *, input_name: str | None = None, output_name: str | None = None,
                 datatype: str | None = None, layout: str = "NHWC", scale: float = 255.0,
                 outputs: Outputs | None = None, num_classes: int | None = None, batch_size: int = 64,
                 budget: int | None = None, sample_rate: int | None = None,
                 feature_spec: dict[str, Any] | None = None, timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.2, rate_limit_per_s: float | None = None,
                 transport: Any = None, **transport_options: Any) -> None:
        if batch_size < 1 or (budget is not None and budget < 0):
            raise ParameterError(f"batch_size must be >= 1 and budget >= 0; got {batch_size} and {budget}.")
        self._given = {"input_name": input_name is not None,
                       "datatype": datatype is not None or layout in ("NL", "GRAPH"),
                       "output_name": output_name is not None, "outputs": outputs is not None,
                       "num_classes": num_classes is not None}
        datatype = datatype if datatype is not None else {"NL": "FP32", "GRAPH": "BYTES"}.get(layout, "UINT8")
        self.format = TensorFormat(datatype, layout, float(scale))  # type: ignore[arg-type]
        self.modality_name = self.format.modality
        if self.modality_name == "audio" and sample_rate is None:
            raise ParameterError("Audio is sent with its sample rate; pass sample_rate (--sample-rate, the key's).")
        self.sample_rate = int(sample_rate) if sample_rate is not None else None
        if feature_spec is not None and self.modality_name != "graph":
            raise ParameterError(f"feature_spec is the node encoding of graphs (layout 'GRAPH'); got layout "
                                 f"'{layout}'. Drop it, or pass layout='GRAPH' for a graph endpoint.")
        self.feature_spec = _graph_encoding(feature_spec)
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
        shown = self._http.redact(json.dumps(self.metadata)[:1500])
        return EndpointError(f"The options disagree with the metadata of model '{self.model_name}' at {self.url}: "
                             f"{problem}. {fix} Metadata: {shown}")

    def _silent(self, kind: str) -> bool:
        """True if the metadata is a V2 document that declares no ``kind`` tensors (missing or empty list)."""
        return isinstance(self.metadata, dict) and self.metadata.get(kind) in (None, [])

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

    def _require_declared(self) -> None:
        """Refuse, before any query, a silent endpoint the caller did not describe (naming every missing option)."""
        needed = ["input_name", "datatype"] if self._silent("inputs") else []
        needed += ["num_classes"] if self._silent("outputs") else []
        missing = [name for name in needed if not self._given[name]]
        if missing:
            silent = " and ".join(kind for kind in ("inputs", "outputs") if self._silent(kind))
            options = ", ".join(f"{name} (--{name.replace('_', '-')})" for name in missing)
            raise ParameterError(f"Model '{self.model_name}' at {self.url} declares no {silent} in its metadata (as "
                                 f"stock KServe models do), so datamark cannot tell how to query it: pass {options}.")

    def _configure(self, input_name: str | None, output_name: str | None, outputs: Outputs | None,
                   num_classes: int | None) -> None:
        self._require_declared()
        self._unchecked = True  # a silent endpoint's output kind is checked on its first valid answer
        self.silent = [kind for kind in ("inputs", "outputs") if self._silent(kind)]
        if "inputs" in self.silent:
            self.input_name, self.input_shape_declared = input_name, None
        else:
            self._configure_input(self._pick("inputs", input_name))
        if "outputs" in self.silent:
            self.output_name, self.outputs = output_name, outputs or "probs"  # checked on the first answer
            self.num_classes = int(num_classes)  # type: ignore[arg-type]  # _require_declared: given
        else:
            self._configure_output(self._pick("outputs", output_name), outputs, num_classes)
        self._log_sources()

    def _log_sources(self) -> None:
        """Log which settings came from the metadata, which from the caller and which are defaults or assumed."""
        def shown(name: str, value: Any, kind: str) -> str:
            where = ("yours" if self._given.get(name) else "default" if name in ("layout", "scale") else
                     "metadata" if kind not in self.silent else "assumed, checked on the first answer"
                     if name == "outputs" else "from the first answer")
            return f"{name}={value!r} ({where})"

        parts = [shown("input_name", self.input_name, "inputs"), shown("datatype", self.format.datatype, "inputs"),
                 shown("layout", self.format.layout, "inputs"), shown("scale", self.format.scale, "inputs"),
                 shown("output_name", self.output_name, "outputs"), shown("outputs", self.outputs, "outputs"),
                 shown("num_classes", self.num_classes, "outputs")]
        log.info("model '%s' at %s: %s", self.model_name, self.url, ", ".join(parts))

    def _configure_input(self, inp: dict[str, Any]) -> None:
        self.input_name = inp.get("name")
        if inp.get("datatype") != self.format.datatype:
            raise self._mismatch(f"input '{self.input_name}' has datatype {inp.get('datatype')}, not "
                                 f"{self.format.datatype}", f"Pass --datatype {inp.get('datatype')}.")
        declared = (self.metadata.get("parameters") or {}).get("feature_spec")
        if self.feature_spec is not None and isinstance(declared, dict) and declared != self.feature_spec:
            raise self._mismatch(f"its model encodes nodes as {declared}, the key as {self.feature_spec}",
                                 "Verify with the key of the data this model was trained on.")
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

    def _configure_output(self, out: dict[str, Any], outputs: Outputs | None, num_classes: int | None) -> None:
        self.output_name = out.get("name")
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
        if self.format.datatype == "BYTES" or self.input_shape_declared is None:
            return  # BYTES: checked against the metadata ([N] or [N, 1]); None: the metadata declares no shape
        declared = self.input_shape_declared[1:]
        if any(isinstance(d, int) and d >= 0 and d != s for d, s in zip(declared, sent, strict=True)):
            raise self._mismatch(f"input '{self.input_name}' has shape {self.input_shape_declared} but datamark "
                                 f"would send [N, {', '.join(map(str, sent))}] ({self.format.layout})",
                                 "Check --layout (NHWC or NCHW) and that the probe data fit the model.")

    # -- queries ----------------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What an evidence file records about this suspect (no secrets)."""
        return {"kind": "http-v2", "endpoint": self.endpoint, "input": self.input_name, "output": self._described,
                "datatype": self.format.datatype, "layout": self.format.layout, "scale": self.format.scale,
                "outputs": self.outputs, "num_classes": self.num_classes,
                **({"sample_rate": self.sample_rate} if self.sample_rate is not None else {}),
                **({"feature_spec": self.feature_spec} if self.feature_spec is not None else {}),
                **({"metadata_silent": self.silent} if self.silent else {})}

    @property
    def _described(self) -> str | None:
        """The output name as configured (None until learned): a description must not change during a run, or
        a resumed run would not match the evidence header written before the first query."""
        return None if "outputs" in self.silent and not self._given["output_name"] else self.output_name

    def _ask(self, images: np.ndarray) -> np.ndarray:
        sent = self.format.encode(images)
        if self.format.datatype == "BYTES" and len(self.input_shape_declared or [None]) == 2:
            sent = sent.reshape(-1, 1)
        self._check_shape(tuple(sent.shape[1:]))
        payload: dict[str, Any] = {"inputs": [to_tensor(self.input_name, sent, self.format.datatype)]}
        if self.output_name is not None:  # else (not declared yet) the server answers all its outputs
            payload["outputs"] = [{"name": self.output_name}]
        if self.sample_rate is not None:
            payload["parameters"] = {"sample_rate": self.sample_rate}
        if self.feature_spec is not None:
            payload["parameters"] = {"feature_spec": self.feature_spec}
        self._spend(len(images))
        answer = self._http.request("POST", f"/v2/models/{self.model_name}/infer", payload)
        where = f"The endpoint {self.endpoint}"
        tensors = answer.get("outputs") if isinstance(answer, dict) else None
        if not isinstance(tensors, list):
            raise SuspectError(f"{where} answered without an 'outputs' list: "
                               f"{self._http.redact(json.dumps(answer)[:300])}")
        names = [t.get("name") for t in tensors if isinstance(t, dict)]
        name = self.output_name if self.output_name is not None else self._learn_name(names, where)
        found = [t for t in tensors if isinstance(t, dict) and t.get("name") == name]
        if not found:
            raise SuspectError(f"{where} answered without output '{name}' (outputs: {names}).")
        try:
            out = from_tensor(found[0], f"output '{name}'")
        except ValueError as err:
            raise SuspectError(f"{where} answered a malformed tensor: {err}.") from err
        if "outputs" in self.silent and self._unchecked:
            self._check_first_answer(found[0]["datatype"], name, where)
        if self.outputs == "labels" and out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]  # [N, 1] label tensors are common (Triton); same information as [N]
        out = validate_output(out, self.outputs, len(images), self.num_classes, f"{where} (output '{name}')")
        if self.output_name is None or self._unchecked:
            log.info("model '%s': output '%s' (%s, %s, %d classes) learned from the first answer", self.model_name,
                     name, found[0]["datatype"], self.outputs, self.num_classes)
            self.output_name, self._unchecked = name, False  # later answers must carry the same output
        return out

    def _learn_name(self, names: list[Any], where: str) -> str:
        """The only output of the first answer of an endpoint that declares no outputs."""
        if len(names) != 1 or not isinstance(names[0], str):
            raise SuspectError(f"{where} declares no outputs in its metadata and answered {len(names)} outputs "
                               f"{names}; choose one (output_name=, --output-name).")
        return names[0]

    def _check_first_answer(self, datatype: Any, name: str, where: str) -> None:
        """The first answer of a silent endpoint must be of the kind datamark assumed or was told."""
        kind = "probs" if str(datatype).startswith("FP") else "labels"
        if kind != self.outputs:
            told = "you asked for" if self._given["outputs"] else "datamark assumed (the metadata declares none)"
            fix = ("verify in label-only mode (outputs='labels', --mode labels)" if kind == "labels" else
                   "drop outputs='labels' (label-only mode works on probabilities too)")
            raise SuspectError(f"{where} answered output '{name}' as {datatype}, which means {kind}, not the "
                               f"{self.outputs} {told}; {fix}.")


def _graph_encoding(feature_spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """A node encoding validated and normalised the way a graph model records it (None stays None)."""
    if feature_spec is None:
        return None
    from ..modalities.graph import GraphModality

    if not isinstance(feature_spec, dict):
        raise ParameterError(f"feature_spec must be a GraphModality.feature_spec() mapping; got "
                             f"{type(feature_spec).__name__}.")
    try:
        return GraphModality(**feature_spec).feature_spec()
    except TypeError as err:
        raise ParameterError(f"feature_spec has unknown settings ({err}); pass GraphModality.feature_spec() "
                             f"(node_label_values, attr_dim, max_degree).") from None
