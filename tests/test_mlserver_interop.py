"""Interop: HTTPSuspect verifies a model served by Seldon MLServer (a third-party V2 server).

Skipped unless ``mlserver`` is installed (it is not a datamark dependency and pins its own FastAPI, so it
lives in a separate environment: see examples/mlserver/runtime.py).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datamark import Verifier
from datamark.suspects import HTTPSuspect
from datamark.testing.servers import free_port, wait_ready
from datamark.verify import SequentialVerifier

pytest.importorskip("mlserver")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mlserver"


@pytest.fixture
def mlserver_url(cli_files):
    tmp_path, _ = cli_files
    shutil.copy(EXAMPLE / "runtime.py", tmp_path)
    shutil.copy(EXAMPLE / "model-settings.json", tmp_path)
    shutil.copy(tmp_path / "stolen.pt", tmp_path / "model.pt")
    port = free_port()
    (tmp_path / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(), "parallel_workers": 0,
        "metrics_endpoint": None}))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlserver"), "start", str(tmp_path)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/v2/models/suspect/ready", proc, failure=proc.stderr.read)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_verify_against_mlserver(mlserver_url, tiny_marks):
    key, stolen, _, test = tiny_marks  # the stolen model of cli_files, which mlserver_url serves
    with HTTPSuspect(mlserver_url, "suspect", batch_size=50) as remote:
        fixed = Verifier().verify(remote, key, test)
        sequential = SequentialVerifier().verify(remote, key, test)
    local = Verifier().verify(stolen, key, test)
    assert fixed.accused and sequential.accused
    assert abs(fixed.outcome.log10_p - local.outcome.log10_p) < 1e-3 * abs(local.outcome.log10_p)
