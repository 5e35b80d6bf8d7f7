"""The Open Inference Protocol (KServe V2) tensor format, shared by the client (:mod:`.http`) and the reference
server (:mod:`.serve`) so both sides encode and decode images the same way.

A V2 tensor is ``{"name", "datatype", "shape", "data"}`` with ``data`` the row-major flattened values
(nested lists are accepted too). Images in datamark are uint8 N x H x W x C arrays; a :class:`TensorFormat`
says how an endpoint wants them: datatype (UINT8 or FP32), layout (NHWC or NCHW) and, for FP32, the value of
a white pixel (255 or 1). Text travels as a BYTES tensor of UTF-8 strings, shape [N] (or [N, 1] where the
endpoint declares it so), as the Hugging Face runtimes of MLServer and KServe expect. Audio travels as an FP32
tensor of mono waveforms in [-1, 1], shape [N, L] (layout ``NL``), with the sample rate in the request's
``parameters`` (``{"sample_rate": 8000}``). See https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/.

Graphs (layout ``GRAPH``) travel as a BYTES tensor of shape [N] (or [N, 1]) holding one JSON document per graph,
schema ``datamark-graph-v1`` -- the graph as its dataset stores it, not a model's features, as images travel as
pixels and not as normalised tensors::

    {"num_nodes": 4,                              # N >= 1 (isolated nodes count)
     "edge_index": [[0, 1, 1, 2], [1, 0, 2, 1]],  # 2 lists of 0-based node ids; every undirected edge both ways
     "node_labels": [3, 1, 1, 2],                 # optional: the dataset's integer node labels, one per node
     "node_attr": [[0.5], [1.0], [0.0], [2.5]],   # optional: continuous node attributes, N rows of equal width
     "edge_labels": [0, 0, 1, 1]}                 # optional: one integer per column of edge_index

The request's ``parameters`` may carry ``{"feature_spec": {...}}``: the node encoding (one-hot node labels, then
attributes, or one-hot degrees capped at ``max_degree``; see :class:`~datamark.modalities.graph.GraphModality`)
the client's key records; datamark's server refuses a request whose encoding differs from its model's, and
declares its own in the metadata's ``parameters`` with ``"graph_schema": "datamark-graph-v1"``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..exceptions import ParameterError
from ..graphs import Graph

Datatype = Literal["UINT8", "FP32", "BYTES"]
Layout = Literal["NHWC", "NCHW", "NL", "GRAPH"]
#: The name of the JSON schema of one graph on the wire (see the module docstring).
GRAPH_SCHEMA = "datamark-graph-v1"

#: V2 datatype name -> numpy dtype, for the tensors datamark sends and reads.
NUMPY_DTYPES: dict[str, type] = {"UINT8": np.uint8, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32,
                                  "FP64": np.float64, "BYTES": object}


@dataclass(frozen=True)
class TensorFormat:
    """How an endpoint wants a batch: images as ``datatype`` UINT8/FP32 in ``layout`` with ``scale`` (value of
    white, FP32); text as ``datatype`` BYTES (layout and scale do not apply); audio as FP32 waveforms in layout
    ``NL`` (samples in [-1, 1]; scale does not apply); graphs as BYTES JSON documents in layout ``GRAPH``."""

    datatype: Datatype = "UINT8"
    layout: Layout = "NHWC"
    scale: float = 255.0

    def __post_init__(self) -> None:
        if self.datatype not in ("UINT8", "FP32", "BYTES"):
            raise ParameterError(f"The input 'datatype' must be 'UINT8' or 'FP32' (images, audio) or 'BYTES' (text); "
                                 f"got '{self.datatype}'.")
        if self.layout not in ("NHWC", "NCHW", "NL", "GRAPH"):
            raise ParameterError(f"The input 'layout' must be 'NHWC' or 'NCHW' (images), 'NL' (audio) or 'GRAPH' "
                                 f"(graphs); got '{self.layout}'.")
        if self.layout == "GRAPH" and self.datatype != "BYTES":
            raise ParameterError(f"Graphs (layout GRAPH) travel as BYTES JSON documents; got datatype "
                                 f"'{self.datatype}'.")
        if self.layout == "NL" and self.datatype != "FP32":
            raise ParameterError(f"Audio (layout NL) travels as FP32 waveforms; got datatype '{self.datatype}'.")
        if self.scale not in (1.0, 255.0):
            raise ParameterError(f"The input 'scale' (value of a white pixel) must be 255 or 1; got {self.scale}.")
        if self.datatype == "UINT8" and self.scale != 255.0:
            raise ParameterError("UINT8 inputs always use the 0-255 scale; pass scale=255 or datatype='FP32'.")

    @property
    def modality(self) -> str:
        """The kind of data this format carries."""
        if self.layout == "GRAPH":
            return "graph"
        return "text" if self.datatype == "BYTES" else "audio" if self.layout == "NL" else "image"

    def shape(self, hwc: tuple[int, ...]) -> list[int]:
        """The V2 shape of a batch of any size (-1) of ``hwc`` images, in this layout ([-1] for text and graphs,
        [-1, L] for audio)."""
        if self.datatype == "BYTES":
            return [-1]
        if self.layout == "NL":
            return [-1, *hwc]
        h, w, c = hwc
        return [-1, h, w, c] if self.layout == "NHWC" else [-1, c, h, w]

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 N x H x W x C images -> the array to send (layout, datatype and scale applied); text as is;
        graphs as JSON documents."""
        if self.layout == "GRAPH":
            out = np.empty(len(images), dtype=object)
            out[:] = [graph_to_json(g) for g in images]
            return out
        if self.datatype == "BYTES":
            return np.asarray(images, dtype=object)
        if self.layout == "NL":
            return np.ascontiguousarray(images, dtype=np.float32)
        arr = np.asarray(images)
        if self.layout == "NCHW":
            arr = arr.transpose(0, 3, 1, 2)
        if self.datatype == "FP32":
            arr = arr.astype(np.float32) * np.float32(self.scale / 255.0)
        return np.ascontiguousarray(arr)

    def decode(self, arr: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`encode`: a received array -> uint8 N x H x W x C images.

        Values that are not pixels are refused (ValueError), never wrapped or clipped into some: a UINT8 value
        outside 0..255, or an FP32 value that is not finite or does not round to 0..255 on this scale. Text
        comes back as a 1-d object array of strings ([N, 1] is flattened), graphs as a 1-d object array of
        :class:`~datamark.graphs.Graph` (each document validated: :func:`graph_from_json`).
        """
        if self.datatype == "BYTES":
            if arr.ndim == 2 and arr.shape[1] == 1:
                arr = arr[:, 0]
            if arr.ndim != 1:
                raise ParameterError(f"Expected a BYTES batch of shape [N] or [N, 1]; got shape {list(arr.shape)}.")
            if self.layout == "GRAPH":
                graphs = np.empty(len(arr), dtype=object)
                graphs[:] = [graph_from_json(doc, f"graph {i}") for i, doc in enumerate(arr)]
                return graphs
            return arr
        if self.layout == "NL":
            waves = arr.astype(np.float32)
            if waves.ndim != 2 or not np.isfinite(waves).all() or (waves.size and np.abs(waves).max() > 1.0):
                raise ParameterError(f"Expected an FP32 [N, L] batch of waveforms with finite samples in [-1, 1]; "
                                     f"got shape {list(arr.shape)}.")
            return waves
        if arr.ndim != 4:
            raise ParameterError(f"Expected a 4-d {self.layout} image batch; got shape {list(arr.shape)}.")
        values = np.rint(arr.astype(np.float64) * (255.0 / self.scale))
        bad = ~np.isfinite(values) | (values < 0) | (values > 255)
        if bad.any():
            first = float(arr.ravel()[np.flatnonzero(bad.ravel())[0]])
            raise ParameterError(f"{self.datatype} pixel values must be finite and within 0..{self.scale:g}; got "
                                 f"{first:g}")
        arr = values.astype(np.uint8)
        return arr.transpose(0, 2, 3, 1) if self.layout == "NCHW" else arr


def to_tensor(name: str, arr: np.ndarray, datatype: str) -> dict[str, Any]:
    """A V2 tensor (JSON-ready dict) holding ``arr`` flattened in row-major order."""
    if datatype == "BYTES":
        return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": [str(x) for x in np.ravel(arr)]}
    return {"name": name, "datatype": datatype, "shape": list(arr.shape), "data": np.ravel(arr).tolist()}


def from_tensor(tensor: Any, where: str) -> np.ndarray:
    """A V2 tensor dict -> numpy array of its declared shape and datatype; ValueError naming the bad field."""
    if not isinstance(tensor, dict):
        raise ValueError(f"{where} is not a JSON object with name/datatype/shape/data")
    missing = [f for f in ("datatype", "shape", "data") if f not in tensor]
    if missing:
        raise ValueError(f"{where} has no field {', '.join(repr(m) for m in missing)}")
    datatype, shape = tensor["datatype"], tensor["shape"]
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise ValueError(f"{where} has datatype {datatype!r}; expected one of {sorted(NUMPY_DTYPES)}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"{where} has shape {shape!r}; expected a list of non-negative integers")
    size = math.prod(shape)  # exact: numpy's product of huge dimensions would overflow and wrap
    if datatype == "BYTES":
        return _strings(tensor["data"], shape, size, where)
    others = leaf_types(tensor["data"]) - {int, float}
    if others:
        raise ValueError(f"{where} has 'data' holding {', '.join(sorted(t.__name__ for t in others))} values; a "
                         f"{datatype} tensor holds numbers only (JSON true/false and strings are not numbers)")
    try:
        # float64 first so NaN/inf and out-of-range values are caught by validation, not silently cast.
        flat = np.asarray(tensor["data"], dtype=np.float64).ravel()
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{where} has malformed 'data' ({err})") from err
    if flat.size != size:
        raise ValueError(f"{where} has {flat.size} values in 'data' but its shape {shape} needs {size}")
    dtype = NUMPY_DTYPES[datatype]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not np.isfinite(flat).all() or (flat != np.rint(flat)).any():
            raise ValueError(f"{where} has datatype {datatype} but non-integer 'data'")
        if (flat < info.min).any() or (flat >= info.max + 1.0).any():
            raise ValueError(f"{where} has datatype {datatype} but values outside {info.min}..{info.max}")
        return flat.astype(dtype).reshape(shape)
    with np.errstate(over="ignore"):  # a value beyond FP32 becomes inf, which the readers then refuse by name
        return flat.reshape(shape) if dtype == np.float64 else flat.astype(dtype).reshape(shape)


def _strings(data: Any, shape: list[int], size: int, where: str) -> np.ndarray:
    """A BYTES tensor's data (UTF-8 strings, possibly nested) as an object array of ``shape``."""
    others = leaf_types(data) - {str}
    if others:
        raise ValueError(f"{where} has 'data' holding {', '.join(sorted(t.__name__ for t in others))} values; a "
                         f"BYTES tensor holds strings")
    flat = list(itertools.chain.from_iterable(data)) if data and isinstance(data[0], list) else list(data)
    if len(flat) != size:
        raise ValueError(f"{where} has {len(flat)} values in 'data' but its shape {shape} needs {size}")
    out = np.empty(size, dtype=object)
    out[:] = flat
    return out.reshape(shape)


def leaf_types(data: Any) -> set[type]:
    """The types of the leaves of ``data`` (nested JSON lists), one nesting level at a time at C speed.

    Lets a reader refuse booleans and strings, which numpy would silently read as 1/0 or parse as numbers.
    """
    found: set[type] = set()
    level = [data]
    while level:
        kinds = set(map(type, level))
        found |= kinds - {list}
        nested = [x for x in level if type(x) is list] if list in kinds else []
        level = nested[0] if len(nested) == 1 else list(itertools.chain.from_iterable(nested))  # no copy if flat
    return found


def graph_to_json(graph: Graph) -> str:
    """One graph as its ``datamark-graph-v1`` JSON document (see the module docstring); optional fields only
    where the graph has them."""
    doc: dict[str, Any] = {"num_nodes": int(graph.num_nodes), "edge_index": np.asarray(graph.edge_index).tolist()}
    for name in ("node_labels", "node_attr", "edge_labels"):
        value = getattr(graph, name)
        if value is not None:
            doc[name] = np.asarray(value).tolist()
    return json.dumps(doc, separators=(",", ":"))


def graph_from_json(document: Any, where: str) -> Graph:
    """A ``datamark-graph-v1`` JSON document -> a validated :class:`~datamark.graphs.Graph`; a one-line ValueError
    naming ``where`` and the bad field otherwise (never a guess: booleans and strings are not numbers)."""
    try:
        doc = json.loads(document) if isinstance(document, (str, bytes)) else document
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{where} is not a JSON document ({err})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where} is not a JSON object with num_nodes and edge_index ({GRAPH_SCHEMA})")
    unknown = sorted(set(doc) - {"num_nodes", "edge_index", "node_labels", "node_attr", "edge_labels"})
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {unknown}; {GRAPH_SCHEMA} has num_nodes, edge_index, "
                         f"node_labels, node_attr and edge_labels")
    n = doc.get("num_nodes")
    if type(n) is not int or n < 1:
        raise ValueError(f"{where} has num_nodes {n!r}; expected a positive integer")
    edges = _numbers(doc.get("edge_index"), f"{where}'s edge_index", integer=True)
    if edges.size == 0:
        edges = np.zeros((2, 0), np.int64)
    if edges.ndim != 2 or edges.shape[0] != 2:
        raise ValueError(f"{where}'s edge_index has shape {list(edges.shape)}; expected two lists of node ids "
                         f"[[sources], [targets]]")
    fields = {name: _numbers(doc[name], f"{where}'s {name}", integer=name != "node_attr")
              for name in ("node_labels", "node_attr", "edge_labels") if doc.get(name) is not None}
    flat = next((name for name in ("node_labels", "edge_labels") if name in fields and fields[name].ndim != 1), None)
    if flat is not None:
        raise ValueError(f"{where}'s {flat} must be a flat list of integers; got shape {list(fields[flat].shape)}")
    attr = fields.get("node_attr")
    if attr is not None and (attr.ndim != 2 or not np.isfinite(attr).all()):
        raise ValueError(f"{where}'s node_attr must be N rows of equal width of finite numbers; got shape "
                         f"{list(attr.shape)}")
    graph = Graph(edges, n, fields.get("node_labels"), None if attr is None else attr.astype(np.float32),
                  fields.get("edge_labels"))
    return graph.check(where)  # a DataError (a ValueError) names what is wrong: ids out of range, counts


def _numbers(value: Any, where: str, *, integer: bool) -> np.ndarray:
    """A nested JSON list of numbers as int64 (``integer``) or float64; ValueError for anything else."""
    if not isinstance(value, list):
        raise ValueError(f"{where} is {type(value).__name__}; expected a (nested) list of numbers")
    others = leaf_types(value) - ({int} if integer else {int, float})
    if others:
        raise ValueError(f"{where} holds {', '.join(sorted(t.__name__ for t in others))} values; expected "
                         f"{'integers' if integer else 'numbers'}")
    try:
        return np.asarray(value, dtype=np.int64 if integer else np.float64)
    except (ValueError, OverflowError) as err:  # ragged rows, integers beyond int64
        raise ValueError(f"{where} is not a regular array of {'integers' if integer else 'numbers'} ({err})") \
            from None
