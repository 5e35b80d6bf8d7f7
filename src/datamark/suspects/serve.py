"""The reference server: any :class:`Suspect` behind the Open Inference Protocol (KServe V2), over HTTP.

It exists so black-box verification can be exercised end to end (tests, benchmarks, demos) against the same
protocol that KServe, Triton, Seldon MLServer and TorchServe speak. Routes:

- ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2/models/{name}/ready``: 200 when up.
- ``GET /v2/models/{name}``: metadata declaring the input (name, datatype, shape) and the output.
- ``POST /v2/models/{name}/infer``: one input tensor of images; the output is ``probs`` (FP32, N x K) or
  ``labels`` (INT64, N).

Errors answer ``{"error": "..."}`` with 400 (bad request) or 404 (unknown model), as V2 prescribes.
FastAPI and uvicorn are optional dependencies (``pip install "datamark[serve]"``), imported when a server is built.
(No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at runtime.)
"""

import json
import logging
import os
import socket
import threading
import time
from typing import Any

import numpy as np

from ..exceptions import DatamarkError, ParameterError
from ._v2 import TensorFormat, from_tensor, to_tensor
from .base import Suspect

log = logging.getLogger(__name__)
INSTALL_HINT = 'The HTTP server needs FastAPI and uvicorn: pip install "datamark[serve]".'


def _fastapi():
    try:
        import fastapi
        import uvicorn
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return fastapi, uvicorn


def model_metadata(name: str, suspect: Suspect, input_shape: tuple[int, ...], fmt: TensorFormat,
                   input_name: str = "input") -> dict[str, Any]:
    """The V2 model metadata document of ``suspect`` served under ``name``."""
    output = ({"name": "probs", "datatype": "FP32", "shape": [-1, suspect.num_classes]} if suspect.outputs == "probs"
              else {"name": "labels", "datatype": "INT64", "shape": [-1]})
    return {"name": name, "versions": ["1"], "platform": "datamark",
            "inputs": [{"name": input_name, "datatype": fmt.datatype, "shape": fmt.shape(input_shape)}],
            "outputs": [output],
            # Not part of V2 metadata proper; servers may add parameters. Clients must not rely on it.
            "parameters": {"layout": fmt.layout, "scale": fmt.scale, "num_classes": suspect.num_classes}}


def create_app(suspect: Suspect, *, model_name: str, input_shape: tuple[int, ...],
               fmt: TensorFormat = TensorFormat(), input_name: str = "input"):
    """A FastAPI app serving ``suspect`` (which takes uint8 NHWC ``input_shape`` images) as ``model_name``.

    Inference runs in a worker thread under a lock (suspects are not thread-safe), so health checks stay
    responsive while a batch is computed.
    """
    fastapi, _ = _fastapi()
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

    @app.get("/v2")
    def server_metadata() -> dict:
        from .. import __version__
        return {"name": "datamark", "version": __version__, "extensions": []}

    @app.get("/v2/health/live")
    @app.get("/v2/health/ready")
    def health() -> dict:
        return {"live": True, "ready": True}

    @app.get("/v2/models/{name}/ready")
    def model_ready(name: str):
        return check_model(name) or {"name": name, "ready": True}

    @app.get("/v2/models/{name}")
    def get_metadata(name: str):
        return check_model(name) or metadata

    def decode(body: bytes) -> np.ndarray:
        try:
            request = json.loads(body)
            tensors = request["inputs"]
            tensor = next(t for t in tensors if t.get("name") == input_name)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError("the body must be JSON with 'inputs', a list of V2 tensors") from err
        except StopIteration:
            raise ValueError(f"no input tensor named '{input_name}' in 'inputs'") from None
        if tensor.get("datatype") != fmt.datatype:
            raise ValueError(f"input '{input_name}' must have datatype {fmt.datatype}; got {tensor.get('datatype')}")
        arr = from_tensor(tensor, f"input '{input_name}'")
        expected = fmt.shape(input_shape)[1:]
        if arr.ndim != 4 or list(arr.shape[1:]) != expected:
            raise ValueError(f"input '{input_name}' must have shape [N, {', '.join(map(str, expected))}] "
                             f"({fmt.layout}); got {list(arr.shape)}")
        return fmt.decode(arr)

    def answer(images: np.ndarray) -> np.ndarray:
        with lock:
            return suspect.query(images)

    @app.post("/v2/models/{name}/infer")
    async def infer(name: str, request: Request):
        if (bad := check_model(name)) is not None:
            return bad
        try:
            images = decode(await request.body())
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
                        fmt: TensorFormat = TensorFormat()):
    """The V2 app serving a datamark checkpoint (the ``datamark serve`` command)."""
    from .local import LocalSuspect

    suspect = LocalSuspect.from_checkpoint(path, outputs=outputs)  # type: ignore[arg-type]
    if suspect.input_shape is None:
        raise ParameterError(f"The checkpoint '{path}' does not record its input shape; cannot declare it over V2.")
    return create_app(suspect, model_name=model_name, input_shape=suspect.input_shape, fmt=fmt)


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket (port 0: a free port). SO_REUSEADDR lets a restarted server take the same port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """Serve an ASGI ``app`` with uvicorn in a daemon thread (for tests and benchmarks); a context manager.

    ``start()`` returns once the server accepts connections; ``stop()`` shuts it down gracefully and joins.
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 10.0) -> None:
        _, uvicorn = _fastapi()
        self._sock = bind(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name=f"datamark-serve-{self.port}")
        self.start_timeout_s = start_timeout_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "BackgroundServer":
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The background server on {self.url} did not start within "
                                   f"{self.start_timeout_s} s.")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit, wait for the thread, close the socket (idempotent)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8080, model_name: str = "model",
          outputs: str = "probs", fmt: TensorFormat = TensorFormat()) -> None:
    """Serve a checkpoint in the foreground until interrupted (SIGINT/SIGTERM shut it down cleanly)."""
    _, uvicorn = _fastapi()
    app = app_from_checkpoint(path, model_name=model_name, outputs=outputs, fmt=fmt)
    log.info("serving %s as '%s' on http://%s:%d", path, model_name, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
