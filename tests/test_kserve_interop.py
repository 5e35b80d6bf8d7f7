"""Interop: HTTPSuspect verifies a model behind KServe's own Python model server (``kserve.ModelServer``), whose
metadata declares no inputs or outputs, so the client runs on the options it is given (the fallback).

Skipped unless ``kserve`` is importable. KServe pulls in gRPC, Kubernetes and pandas, so it is not in the test
extra; to run this test, give a venv both datamark and kserve, e.g. one that sees the project's venv::

    python3 -m venv /tmp/kserve-venv
    echo "import site; site.addsitedir('$PWD/.venv/lib/python3.11/site-packages')" \\
        > /tmp/kserve-venv/lib/python3.11/site-packages/datamark_venv.pth
    /tmp/kserve-venv/bin/pip install kserve
    OMP_NUM_THREADS=1 /tmp/kserve-venv/bin/python -m pytest -q tests/test_kserve_interop.py
"""

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from datamark import Verifier
from datamark.exceptions import ParameterError
from datamark.suspects import HTTPSuspect
from datamark.testing.servers import free_port, save_tiny_checkpoint, wait_ready
from datamark.verify import SequentialVerifier

pytest.importorskip("kserve", reason="kserve is not installed in this interpreter (see this file's docstring)")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kserve" / "model.py"
DECLARED = dict(input_name="input", datatype="UINT8", num_classes=10)


@pytest.fixture(scope="module")
def kserve_url(tiny_marks, tmp_path_factory):
    _, stolen, _, _ = tiny_marks
    folder = tmp_path_factory.mktemp("kserve")
    save_tiny_checkpoint(stolen.model, folder / "model.pt")
    port = free_port()
    log = (folder / "kserve.log").open("w")  # a file, not a pipe: KServe logs every request, and a full pipe blocks it
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--checkpoint", str(folder / "model.pt"), "--model_name",
                             "suspect", "--http_port", str(port), "--grpc_port", str(free_port()), "--enable_grpc",
                             "false", "--workers", "1"], cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        ready_s = wait_ready(f"{url}/v2/models/suspect/ready", proc, timeout_s=120,
                             failure=lambda: (folder / "kserve.log").read_text()[-3000:])
        print(f"KServe ModelServer ready in {ready_s:.1f} s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_stock_kserve_metadata_is_silent_and_the_options_are_required(kserve_url):
    metadata = httpx.get(f"{kserve_url}/v2/models/suspect", timeout=5).json()
    assert metadata.get("inputs") in (None, []) and metadata.get("outputs") in (None, []), metadata
    with pytest.raises(ParameterError, match=r"pass input_name \(--input-name\), datatype \(--datatype\), "
                                             r"num_classes \(--num-classes\)"):
        HTTPSuspect(kserve_url, "suspect")


def test_verify_against_kserve_with_declared_options(kserve_url, tiny_marks):
    key, stolen, _, test = tiny_marks
    start = time.monotonic()
    with HTTPSuspect(kserve_url, "suspect", batch_size=50, **DECLARED) as remote:
        fixed = Verifier().verify(remote, key, test)
        assert remote.output_name == "probs"  # learned from the first answer
        sequential = SequentialVerifier().verify(remote, key, test)
    print(f"{fixed.queries + sequential.queries} queries over KServe in {time.monotonic() - start:.1f} s")
    local = Verifier().verify(stolen, key, test)
    assert fixed.accused and sequential.accused and fixed.queries == local.queries
    assert abs(fixed.outcome.log10_p - local.outcome.log10_p) < 1e-3 * abs(local.outcome.log10_p)
