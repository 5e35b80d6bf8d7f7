"""A suspect behind any JSON-over-HTTP endpoint, described by a small template instead of a protocol.

Many deployed models speak neither V2 nor anything standard: TensorFlow Serving's REST API takes
``{"instances": [...]}`` and answers ``{"predictions": [...]}``; a hand-written Flask app may answer
``{"result": {"probs": [...]}}``. A :class:`JSONTemplate` says where the batch of images goes in the request
(the string ``"$inputs"`` anywhere in the request JSON) and where the answers are in the response (a dotted
path; integers index lists), so one client covers them all with the same timeouts, retries, budget and
validation as :class:`~datamark.suspects.http.HTTPSuspect`.

The batch is encoded as for V2 (:class:`~datamark.suspects._v2.TensorFormat`): images as nested lists of pixels, text
as strings, audio as lists of samples, and graphs (``layout="GRAPH"``) as a list of ``datamark-graph-v1`` documents
(the schema in :mod:`._v2`, made by the same :func:`~datamark.suspects._v2.graph_to_json`), here as JSON objects
rather than the strings a V2 BYTES tensor needs::

    {"instances": [{"num_nodes": 3, "edge_index": [[0, 1, 1, 2], [1, 0, 2, 1]], "node_labels": [0, 2, 1]}, ...],
     "encoding": {"node_label_values": [0, 1, 2], "attr_dim": 0, "max_degree": 64}}

for the request ``{"instances": "$inputs", "encoding": "$feature_spec"}``: the string ``"$feature_spec"`` becomes the
node encoding the key records (``GraphModality.feature_spec()``), so a server can refuse graphs encoded otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..exceptions import ParameterError, SuspectError
from ._remote import RemoteSuspect
from ._transport import Transport
from ._v2 import TensorFormat, leaf_types
from .base import Outputs, validate_output
from .http import _graph_encoding

PLACEHOLDER = "$inputs"
SAMPLE_RATE = "$sample_rate"  # audio: where the clips' sample rate goes (an integer, Hz)
FEATURE_SPEC = "$feature_spec"  # graphs: where the node encoding goes (GraphModality.feature_spec())
#: The datatype a layout implies where a template names none (audio waveforms are floats, graphs JSON documents).
IMPLIED_DATATYPE = {"NL": "FP32", "GRAPH": "BYTES"}


@dataclass(frozen=True)
class JSONTemplate:
    """Where a JSON endpoint takes the batch and puts the answers.

    Args:
        request: the request body with the string ``"$inputs"`` where the batch goes (a list).
        response_path: dotted path of the answers in the response, e.g. ``"predictions"`` or ``"result.probs"``.
        outputs: "probs" (an N x K list) or "labels" (a list of N integers) at ``response_path``.
        path: URL path of the endpoint, e.g. ``"/v1/models/m:predict"``.
        datatype / layout / scale: the image encoding (FP32 images are sent as floats); ``"BYTES"`` sends text,
            a list of strings; layout ``"NL"`` sends audio, a list of waveforms (floats in [-1, 1]), and the string
            ``"$sample_rate"`` anywhere in ``request`` becomes the sample rate; layout ``"GRAPH"`` sends graphs, a
            list of ``datamark-graph-v1`` objects (module docstring), and ``"$feature_spec"`` becomes the node
            encoding. ``datatype`` None: UINT8, or the one the layout implies (FP32 for NL, BYTES for GRAPH).
        sample_rate: audio: the sample rate put where ``"$sample_rate"`` is (None: the key's).
        feature_spec: graphs: the node encoding put where ``"$feature_spec"`` is (None: the key's).
    """

    request: dict[str, Any] = field(default_factory=lambda: {"instances": PLACEHOLDER})
    response_path: str = "predictions"
    outputs: Outputs = "probs"
    path: str = "/predict"
    datatype: str | None = None
    layout: str = "NHWC"
    scale: float = 255.0
    sample_rate: int | None = None
    feature_spec: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.datatype is None:
            object.__setattr__(self, "datatype", IMPLIED_DATATYPE.get(self.layout, "UINT8"))
        if PLACEHOLDER not in json.dumps(self.request):
            raise ParameterError(f"The JSON template's 'request' must contain the string '{PLACEHOLDER}' where the "
                                 f"batch goes; got {json.dumps(self.request)}.")
        if self.outputs not in ("probs", "labels"):
            raise ParameterError(f"The JSON template's 'outputs' must be 'probs' or 'labels'; got '{self.outputs}'.")
        if not self.response_path:
            raise ParameterError("The JSON template's 'response_path' is empty; give e.g. 'predictions'.")
        TensorFormat(self.datatype, self.layout, float(self.scale))  # type: ignore[arg-type]  # validates
        if self.feature_spec is not None:
            if self.layout != "GRAPH":
                raise ParameterError(f"The JSON template's 'feature_spec' is the node encoding of graphs (layout "
                                     f"'GRAPH'); got layout '{self.layout}'.")
            object.__setattr__(self, "feature_spec", _graph_encoding(self.feature_spec))

    @classmethod
    def load(cls, path: str | os.PathLike) -> JSONTemplate:
        """A template from a JSON file with the fields of this class."""
        try:
            return cls(**json.loads(open(path, encoding="utf-8").read()))
        except (ValueError, TypeError) as err:
            raise ParameterError(f"The JSON template '{path}' is not valid: {err}. Expected an object with "
                                 f"'request', 'response_path', 'outputs' and optionally 'path', 'datatype', "
                                 f"'layout', 'scale', 'sample_rate', 'feature_spec'.") from err

    def asks_for(self, placeholder: str) -> bool:
        """Whether ``request`` has ``placeholder`` (e.g. ``"$sample_rate"``) somewhere."""
        return placeholder in json.dumps(self.request)

    def fill(self, batch: list, sample_rate: int | None = None, feature_spec: dict[str, Any] | None = None) -> Any:
        """The request body: ``request`` with the batch, the sample rate and the node encoding in their places."""
        values = {PLACEHOLDER: batch, SAMPLE_RATE: sample_rate, FEATURE_SPEC: feature_spec}

        def walk(node):
            if isinstance(node, str) and node in values:
                return values[node]
            if isinstance(node, dict):
                return {k: walk(v) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            return node
        return walk(self.request)

    def extract(self, answer: Any, where: str) -> Any:
        node = answer
        for i, part in enumerate(self.response_path.split(".")):
            step = int(part) if part.lstrip("-").isdigit() and isinstance(node, list) else part
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                done = ".".join(self.response_path.split(".")[:i]) or "(the top level)"
                raise SuspectError(f"{where} answered without '{self.response_path}': nothing at '{part}' under "
                                   f"{done} of {json.dumps(answer)[:300]}") from None
        return node


class JSONSuspect(RemoteSuspect):
    """A generic JSON endpoint as a :class:`~datamark.suspects.Suspect` (see :class:`JSONTemplate`).

    ``num_classes`` is required (a plain JSON API does not declare it); ``sample_rate`` (audio) and
    ``feature_spec`` (graphs: the key's node encoding) fill the template's ``"$sample_rate"`` and
    ``"$feature_spec"`` where the template itself gives none; the other options are those of
    :class:`~datamark.suspects.http.HTTPSuspect`.
    """

    def __init__(self, url: str, template: JSONTemplate, *, num_classes: int, batch_size: int = 64,
                 budget: int | None = None, sample_rate: int | None = None,
                 feature_spec: dict[str, Any] | None = None, timeout_s: float = 10.0,
                 retries: int = 3, backoff_s: float = 0.2, rate_limit_per_s: float | None = None,
                 transport: Any = None, **transport_options: Any) -> None:
        if num_classes < 2 or batch_size < 1:
            raise ParameterError(f"num_classes must be >= 2 and batch_size >= 1; got {num_classes}, {batch_size}.")
        self.template, self.num_classes, self.outputs = template, int(num_classes), template.outputs
        self.format = TensorFormat(template.datatype, template.layout, float(template.scale))  # type: ignore[arg-type]
        self.modality_name = self.format.modality  # datatype BYTES: a list of strings goes where "$inputs" is
        self.sample_rate = template.sample_rate if template.sample_rate is not None else sample_rate
        if self.modality_name == "audio" and template.asks_for(SAMPLE_RATE) and self.sample_rate is None:
            raise ParameterError("The JSON template asks for '$sample_rate'; give 'sample_rate' in the template or "
                                 "verify with an audio key (its sample rate is used).")
        if feature_spec is not None and self.modality_name != "graph":
            raise ParameterError(f"feature_spec is the node encoding of graphs (template layout 'GRAPH'); got layout "
                                 f"'{template.layout}'. Drop it, or set the template's layout to 'GRAPH'.")
        self.feature_spec = template.feature_spec if template.feature_spec is not None else \
            _graph_encoding(feature_spec)
        if template.asks_for(FEATURE_SPEC) and self.feature_spec is None:
            raise ParameterError("The JSON template asks for '$feature_spec'; give 'feature_spec' in the template or "
                                 "verify with a graph key (its node encoding is used).")
        self.batch_size, self.budget, self.queries = batch_size, budget, 0
        self._http = Transport(url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s,
                               rate_limit_per_s=rate_limit_per_s, transport=transport, **transport_options)
        self.endpoint = f"{self._http.base_url}{template.path}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "http-json", "endpoint": self.endpoint, "template": asdict(self.template),
                "num_classes": self.num_classes,
                **({"sample_rate": self.sample_rate} if self.modality_name == "audio" and self.sample_rate else {}),
                **({"feature_spec": self.feature_spec} if self.feature_spec is not None else {})}

    def _ask(self, images: np.ndarray) -> np.ndarray:
        batch = self.format.encode(images).tolist()
        if self.modality_name == "graph":  # V2 needs each document as a string; a JSON body embeds it as an object
            batch = [json.loads(document) for document in batch]
        body = self.template.fill(batch, self.sample_rate, self.feature_spec)
        self._spend(len(images))
        where = f"The endpoint {self.endpoint}"
        found = self.template.extract(self._http.request("POST", self.template.path, body), where)
        others = leaf_types(found) - {int, float}
        if others:  # numpy would read true/false as 1/0 and "0.5" as 0.5: a malformed answer, not a label
            raise SuspectError(f"{where} answered '{self.template.response_path}' holding "
                               f"{', '.join(sorted(t.__name__ for t in others))} values; expected numbers "
                               f"({'integer labels' if self.outputs == 'labels' else 'probabilities'}). Check the "
                               f"template's 'response_path' and 'outputs'.")
        try:
            out = np.asarray(found, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise SuspectError(f"{where} answered non-numeric '{self.template.response_path}' ({err}).") from err
        if self.outputs == "labels":
            if out.ndim == 2 and out.shape[1] == 1:
                out = out[:, 0]
            if np.isfinite(out).all() and (out == np.rint(out)).all():
                out = out.astype(np.int64)
        return validate_output(out, self.outputs, len(images), self.num_classes,
                               f"{where} ('{self.template.response_path}')")
