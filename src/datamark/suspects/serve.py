"""The reference server: any :class:`Suspect` behind the Open Inference Protocol (KServe V2), over HTTP.

It exists so black-box verification can be exercised end to end (tests, benchmarks, demos) against the same
protocol that KServe, Triton, Seldon MLServer and TorchServe speak. Routes:

- ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{name}/ready``: 200 when up.
- ``GET /v2/models/{name}``: metadata declaring the input (name, datatype, shape) and the output.
- ``POST /v2/models/{name}/infer``: one input tensor of images (text: strings; audio: waveforms; graphs: JSON
  documents, see :mod:`._v2`); the output is ``probs`` (FP32, N x K) or ``labels`` (INT64, N).

Errors answer ``{"error": "..."}`` with 400 (bad request) or 404 (unknown model), as V2 prescribes; 413 when a
request is larger than ``max_request_bytes`` (Content-Length and the body actually received are both checked),
and 401 when the server has a bearer ``token`` and a request does not carry it (the health routes stay open for
orchestrators). Pixel values are validated, never wrapped: a UINT8 300 or an FP32 NaN is a 400.
FastAPI and uvicorn are optional dependencies (``pip install "datamark[serve]"``), imported when a server is built.
The limits and the token are checked by :mod:`._serve_guard`; :mod:`._serving` binds sockets and runs a server in a
thread (both re-exported here).
(No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at runtime.)
"""

import json
import logging
import os
import threading
from typing import Any

import numpy as np

from ..exceptions import DatamarkError, ParameterError
from ._serve_guard import MAX_REQUEST_BYTES, Refusal, authorised, check_server_options, read_body
from ._serving import INSTALL_HINT, BackgroundServer, bind, fastapi_modules
from ._v2 import GRAPH_SCHEMA, TensorFormat, from_tensor, to_tensor
from .base import Suspect

__all__ = ["INSTALL_HINT", "MAX_REQUEST_BYTES", "BackgroundServer", "app_from_checkpoint", "bind",
           "check_server_options", "create_app", "model_metadata", "serve"]

log = logging.getLogger(__name__)


def model_metadata(name: str, suspect: Suspect, input_shape: tuple[int, ...], fmt: TensorFormat,
                   input_name: str = "input") -> dict[str, Any]:
    """The V2 model metadata document of ``suspect`` served under ``name``."""
    output = ({"name": "probs", "datatype": "FP32", "shape": [-1, suspect.num_classes]} if suspect.outputs == "probs"
              else {"name": "labels", "datatype": "INT64", "shape": [-1]})
    return {"name": name, "versions": ["1"], "platform": "datamark",
            "inputs": [{"name": input_name, "datatype": fmt.datatype, "shape": fmt.shape(input_shape)}],
            "outputs": [output],
            # Not part of V2 metadata proper; servers may add parameters. Clients must not rely on it.
            "parameters": {"layout": fmt.layout, "scale": fmt.scale, "num_classes": suspect.num_classes,
                           **_modality_parameters(suspect)}}


def _modality_parameters(suspect: Suspect) -> dict[str, Any]:
    """What a request must agree with: an audio model's sample rate, a graph model's node encoding."""
    modality = getattr(suspect, "modality", None)
    name = getattr(modality, "name", None)
    if name == "audio":
        return {"sample_rate": modality.sample_rate}
    if name == "graph":
        return {"feature_spec": modality.feature_spec(), "graph_schema": GRAPH_SCHEMA}
    return {}


def create_app(suspect: Suspect, *, model_name: str, input_shape: tuple[int, ...],
               fmt: TensorFormat = TensorFormat(), input_name: str = "input",
               max_request_bytes: int = MAX_REQUEST_BYTES, token: str | None = None):
    """A FastAPI app serving ``suspect`` (which takes uint8 NHWC ``input_shape`` images) as ``model_name``.

    Inference runs in a worker thread under a lock (suspects are not thread-safe), so health checks stay
    responsive while a batch is computed. Bodies over ``max_request_bytes`` get 413; with a ``token``, every
    route but the health checks needs ``Authorization: Bearer <token>`` (else 401). The token is never logged.
    """
    check_server_options(max_request_bytes, token)
    fastapi, _ = fastapi_modules()
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    app = fastapi.FastAPI(title=f"datamark V2 server: {model_name}", docs_url=None, redoc_url=None)
    metadata = model_metadata(model_name, suspect, input_shape, fmt, input_name)
    out_name, out_type = metadata["outputs"][0]["name"], metadata["outputs"][0]["datatype"]
    lock = threading.Lock()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def check_model(name: str) -> JSONResponse | None:
        return None if name == model_name else error(404, f"Unknown model '{name}'; this server has '{model_name}'.")

    def check_token(request: Request) -> JSONResponse | None:
        if authorised(request.headers.get("authorization"), token):
            return None
        response = error(401, "This server needs a bearer token: send 'Authorization: Bearer <token>' (datamark "
                              "verify --token, or the DATAMARK_ENDPOINT_TOKEN environment variable).")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.get("/v2")
    def server_metadata(request: Request):
        from .._version import __version__
        return check_token(request) or {"name": "datamark", "version": __version__, "extensions": []}

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    def health() -> dict:
        return {"live": True, "ready": True}

    @app.get("/v2/models/{name}/ready")
    def model_ready(name: str):
        return check_model(name) or {"name": name, "ready": True}

    @app.get("/v2/models/{name}")
    def get_metadata(name: str, request: Request):
        return check_token(request) or check_model(name) or metadata

    expected_rate = _modality_parameters(suspect).get("sample_rate")
    expected_spec = _modality_parameters(suspect).get("feature_spec")

    def decode(body: bytes) -> np.ndarray:
        try:
            request = json.loads(body)
            tensors = request["inputs"]
            tensor = next(t for t in tensors if t.get("name") == input_name)
            rate = (request.get("parameters") or {}).get("sample_rate")
            spec = (request.get("parameters") or {}).get("feature_spec")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
            raise ValueError("the body must be JSON with 'inputs', a list of V2 tensors") from err
        except StopIteration:
            raise ValueError(f"no input tensor named '{input_name}' in 'inputs'") from None
        if expected_rate is not None and rate is not None and rate != expected_rate:
            raise ValueError(f"this model takes audio at {expected_rate} Hz; the request says {rate!r} Hz "
                             f"(parameters.sample_rate): resample the clips")
        if expected_spec is not None and spec is not None and spec != expected_spec:
            raise ValueError(f"this model encodes nodes as {json.dumps(expected_spec)}; the request says "
                             f"{json.dumps(spec)[:300]} (parameters.feature_spec): query it with data of the same "
                             f"node labels and attributes")
        if tensor.get("datatype") != fmt.datatype:
            raise ValueError(f"input '{input_name}' must have datatype {fmt.datatype}; got {tensor.get('datatype')}")
        arr = from_tensor(tensor, f"input '{input_name}'")
        if fmt.datatype == "BYTES":
            return fmt.decode(arr)
        expected = fmt.shape(input_shape)[1:]
        if arr.ndim != len(expected) + 1 or list(arr.shape[1:]) != expected:
            raise ValueError(f"input '{input_name}' must have shape [N, {', '.join(map(str, expected))}] "
                             f"({fmt.layout}); got {list(arr.shape)}")
        return fmt.decode(arr)

    def answer(images: np.ndarray) -> np.ndarray:
        with lock:
            return suspect.query(images)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        if (bad := check_token(request) or check_model(name)) is not None:
            return bad
        try:
            images = decode(await read_body(request, max_request_bytes))
        except Refusal as refusal:
            return error(refusal.status, str(refusal))
        except ValueError as err:
            return error(400, f"Bad inference request: {err}.")
        try:
            out = await run_in_threadpool(answer, images)
        except DatamarkError as err:
            return error(400, str(err))
        dtype = np.float32 if out_type == "FP32" else np.int64
        body = {"model_name": model_name, "model_version": "1",
                "outputs": [to_tensor(out_name, np.asarray(out, dtype=dtype), out_type)]}
        return Response(json.dumps(body), media_type="application/json")

    return app


def app_from_checkpoint(path: str | os.PathLike, *, model_name: str, outputs: str = "probs",
                        fmt: TensorFormat = TensorFormat(), max_request_bytes: int = MAX_REQUEST_BYTES,
                        token: str | None = None):
    """The V2 app serving a datamark checkpoint (the ``datamark serve`` command); see :func:`create_app`."""
    from .local import LocalSuspect

    check_server_options(max_request_bytes, token)  # before the model is loaded
    suspect = LocalSuspect.from_checkpoint(path, outputs=outputs)  # type: ignore[arg-type]
    if suspect.modality.name == "text" and fmt.datatype != "BYTES":
        fmt = TensorFormat("BYTES")  # a text model takes strings, whatever the image options say
    if suspect.modality.name == "audio" and fmt.layout != "NL":
        fmt = TensorFormat("FP32", "NL", 1.0)  # an audio model takes FP32 waveforms [N, L]
    if suspect.modality.name == "graph" and fmt.layout != "GRAPH":
        fmt = TensorFormat("BYTES", "GRAPH")  # a graph model takes JSON graph documents
    if suspect.input_shape is None:
        raise ParameterError(f"The checkpoint '{path}' does not record its input shape; cannot declare it over V2.")
    return create_app(suspect, model_name=model_name, input_shape=suspect.input_shape, fmt=fmt,
                      max_request_bytes=max_request_bytes, token=token)


def serve(path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8080, model_name: str = "model",
          outputs: str = "probs", fmt: TensorFormat = TensorFormat(), max_request_bytes: int = MAX_REQUEST_BYTES,
          token: str | None = None) -> None:
    """Serve a checkpoint in the foreground until interrupted (SIGINT/SIGTERM shut it down cleanly)."""
    _, uvicorn = fastapi_modules()
    app = app_from_checkpoint(path, model_name=model_name, outputs=outputs, fmt=fmt,
                              max_request_bytes=max_request_bytes, token=token)
    log.info("serving %s as '%s' on http://%s:%d (bearer token %s)", path, model_name, host, port,
             "required" if token is not None else "not required")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
