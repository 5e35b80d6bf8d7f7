"""``serve``: a checkpoint behind the Open Inference Protocol (KServe V2)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import err
from ._common import Datatype, Layout, Mode, run


def serve(
    checkpoint: Path = typer.Argument(..., help="Model checkpoint to serve."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8080, help="TCP port."),
    outputs: Mode = typer.Option(Mode.probs, "--outputs", help="Answer probabilities or labels only."),
    model_name: str = typer.Option("model", help="Name under /v2/models/."),
    datatype: Datatype = typer.Option(Datatype.UINT8, help="Input datatype the server declares."),
    layout: Layout = typer.Option(Layout.NHWC, help="Input layout the server declares."),
    scale: float = typer.Option(255.0, help="Value of a white pixel for FP32 inputs (255 or 1)."),
    token: str | None = typer.Option(None, envvar="DATAMARK_SERVE_TOKEN", help="Require 'Authorization: Bearer "
                                     "TOKEN' on every route but the health checks (prefer the environment "
                                     "variable: command lines are visible to other users)."),
    max_request_mb: float = typer.Option(64.0, help="Refuse (HTTP 413) inference requests larger than this many "
                                         "MiB."),
) -> None:
    """Serve a checkpoint over the Open Inference Protocol (KServe V2) until interrupted."""
    from ..suspects._v2 import TensorFormat
    from ..suspects.serve import serve as run_server

    def work():
        fmt = TensorFormat(datatype.value, layout.value, scale)
        access = "bearer token required" if token else "no token: anyone who reaches it may query it"
        err.print(f"serving {checkpoint} as '{model_name}' ({outputs.value}) on http://{host}:{port}/v2 ({access}); "
                  f"Ctrl-C stops")
        run_server(checkpoint, host=host, port=port, model_name=model_name, outputs=outputs.value, fmt=fmt,
                   max_request_bytes=max(1, int(max_request_mb * 2**20)), token=token)
    run(work, trap_sigterm=False)  # uvicorn handles SIGINT/SIGTERM itself and shuts down gracefully


