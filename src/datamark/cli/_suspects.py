"""From verify's options to a suspect: a local model of any kind, or an endpoint with its wire format and access."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from ..exceptions import ParameterError
from ._common import Datatype, Layout


class ModelOutputs(str, Enum):
    logits = "logits"
    probs = "probs"
    labels = "labels"


def _value(option: Enum | None) -> Any:
    return None if option is None else option.value


def _floats(text: str | None, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise ParameterError(f"--{name} takes comma-separated numbers (e.g. 0.485,0.456,0.406); got '{text}'.") from err


def parse_headers(pairs: list[str] | None) -> dict[str, str] | None:
    """``NAME:VALUE`` options -> a header mapping (values are secrets: never echoed in the error)."""
    headers = {}
    for pair in pairs or ():
        name, sep, value = pair.partition(":")
        if not sep or not name.strip():
            raise ParameterError(f"--header takes NAME:VALUE (e.g. 'X-Api-Key: ...'); got one without a name "
                                 f"before ':' (header #{len(headers) + 1}).")
        headers[name.strip()] = value.strip()
    return headers or None


def local_suspect(key: Any, model: Path, *, outputs: str, input_name: str | None, output_name: str | None,
                  layout: Layout | None, datatype: Datatype | None, scale: float | None, num_classes: int | None,
                  batch_size: int, mean: str | None, std: str | None, model_outputs: ModelOutputs | None) -> Any:
    """The model at ``model``, whatever it is (checkpoint, ONNX, transformers folder); options that do not apply
    to its kind are refused by :func:`~datamark.suspects.loading.load_suspect`, naming them."""
    from ..suspects.loading import load_suspect, suspect_kind

    onnx_audio = suspect_kind(model) == "onnx" and key.dataset.get("modality") == "audio"
    return load_suspect(model, outputs=outputs, batch_size=batch_size, input_name=input_name,
                        output_name=output_name, layout=_value(layout), datatype=_value(datatype), scale=scale,
                        num_classes=num_classes, mean=_floats(mean, "mean"), std=_floats(std, "std"),
                        model_outputs=_value(model_outputs),
                        sample_rate=key.dataset.get("sample_rate") if onnx_audio else None)


def endpoint_suspect(key: Any, endpoint: str, *, model_name: str, template: Path | None, input_name: str | None,
                     output_name: str | None, layout: Layout | None, datatype: Datatype | None, scale: float | None,
                     num_classes: int | None, batch_size: int, timeout: float, retries: int,
                     rate_limit: float | None, budget: int | None, token: str | None,
                     headers: dict[str, str] | None, ca_cert: Path | None, insecure: bool) -> Any:
    """An HTTP suspect: a described JSON API (``template``) or the Open Inference Protocol, whose wire format
    follows the key's modality unless an option says otherwise (a silent server's metadata needs the options)."""
    from ..suspects import HTTPSuspect, JSONSuspect, JSONTemplate

    rate = key.dataset.get("sample_rate")
    common = dict(num_classes=num_classes or key.dataset.get("num_classes"), batch_size=batch_size,
                  budget=budget, timeout_s=timeout, retries=retries, rate_limit_per_s=rate_limit, token=token,
                  headers=headers, ca_cert=ca_cert, insecure=insecure)
    kind = key.dataset.get("modality", "image")
    graph_spec = {k: key.dataset[k] for k in ("node_label_values", "attr_dim", "max_degree") if k in key.dataset}
    if template is not None:
        extra = {"sample_rate": rate} if rate else {"feature_spec": graph_spec} if kind == "graph" else {}
        return JSONSuspect(endpoint, JSONTemplate.load(template), **common, **extra)
    wire: dict[str, Any] = {"text": dict(datatype="BYTES", layout=_value(layout) or "NHWC", scale=scale or 255.0),
                            "audio": dict(datatype="FP32", layout="NL", scale=1.0, sample_rate=rate),
                            "graph": dict(datatype="BYTES", layout="GRAPH", scale=1.0, feature_spec=graph_spec),
                            }.get(kind, dict(datatype=None, layout=_value(layout) or "NHWC", scale=scale or 255.0))
    if datatype is not None:
        wire["datatype"] = datatype.value
    return HTTPSuspect(endpoint, model_name, input_name=input_name, output_name=output_name, **wire, **common)
