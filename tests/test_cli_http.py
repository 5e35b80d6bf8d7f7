"""The command line over HTTP: ``datamark serve`` in a real process, ``verify --endpoint``, evidence and resume."""

import json
import signal
import subprocess
import sys

import httpx
import pytest
from typer.testing import CliRunner

from datamark.cli import app
from datamark.testing.servers import free_port, wait_ready


@pytest.fixture
def files(cli_files):
    return cli_files


@pytest.fixture
def served(files):
    """``datamark serve stolen.pt`` in its own process on a free port."""
    tmp_path, _ = files
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "datamark.cli", "serve", str(tmp_path / "stolen.pt"), "--port",
                             str(port), "--model-name", "stolen"], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        startup_s = wait_ready(f"{url}/v2/health/ready", proc, failure=proc.stderr.read)
        yield url, proc, startup_s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _invoke(*args):
    """Run the CLI; ``res.text`` is its output with rich's line wrapping undone."""
    res = CliRunner().invoke(app, list(args))
    res.text = " ".join(res.output.split())
    return res


def _verify(tmp_path, *extra):
    return _invoke("verify", "--key", str(tmp_path / "key.json"), "--data", str(tmp_path / "test.npz"), *extra)


def test_serve_starts_in_seconds_answers_v2_and_stops_cleanly(served):
    url, proc, startup_s = served
    assert startup_s < 30  # typically 2-4 s: importing torch dominates
    meta = httpx.get(f"{url}/v2/models/stolen").json()
    assert meta["inputs"][0] == {"name": "input", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}
    assert meta["outputs"][0] == {"name": "probs", "datatype": "FP32", "shape": [-1, 10]}
    bad = httpx.post(f"{url}/v2/models/stolen/infer", json={"inputs": [{"name": "input", "datatype": "UINT8",
                                                                       "shape": [1, 8, 8], "data": [0] * 64}]})
    assert bad.status_code == 400 and "shape" in bad.json()["error"]
    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status says why it stopped.
    assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
    assert "Traceback" not in proc.stderr.read()


def test_verify_endpoint_sequential_with_evidence_then_check(served, files):
    url, _, _ = served
    tmp_path, key = files
    evidence = tmp_path / "run.jsonl"
    res = _verify(tmp_path, "--endpoint", url, "--model-name", "stolen", "--sequential", "--evidence",
                  str(evidence), "--json", str(tmp_path / "r.json"), "--budget", "400")
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["accused"] and result["sequential"]["stopped"] == "evidence" and result["queries"] <= 20
    assert "sequential: stopped on evidence" in res.text and "last hash" in res.text
    res = _invoke("evidence", str(evidence), "--key", str(tmp_path / "key.json"), "--data", str(tmp_path / "test.npz"))
    assert res.exit_code == 0 and "chain intact" in res.text and "accused = True" in res.text, res.output
    lines = evidence.read_text().splitlines()
    lines[1] = lines[1].replace('"batch"', '"batch "')
    evidence.write_text("\n".join(lines) + "\n")
    res = _invoke("evidence", str(evidence))
    assert res.exit_code == 2 and "line 2" in res.text


def test_verify_endpoint_resume_and_option_errors(served, files):
    url, proc, _ = served
    tmp_path, _ = files
    evidence = tmp_path / "run.jsonl"
    # A budget too small for the fixed test is refused before any query; no evidence file is left behind, so a
    # retry starts afresh with --evidence (a header-only file used to block it).
    res = _verify(tmp_path, "--endpoint", url, "--model-name", "stolen", "--mode", "labels", "--evidence",
                  str(evidence), "--budget", "40")
    assert res.exit_code == 3 and "inconclusive" in res.text and "needs 50 queries" in res.text  # 3: budget
    assert not evidence.exists()
    res = _verify(tmp_path, "--endpoint", url, "--model-name", "stolen", "--mode", "labels", "--evidence",
                  str(evidence), "--json", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["accused"]
    res = _verify(tmp_path, "--endpoint", url, "--model-name", "stolen", "--layout", "NCHW")
    assert res.exit_code == 2 and "--layout" in res.text
    res = _verify(tmp_path, "--endpoint", url, "--model", str(tmp_path / "clean.pt"))
    assert res.exit_code == 2 and "exactly one suspect" in res.text
    proc.kill()
    proc.wait()
    res = _verify(tmp_path, "--endpoint", url, "--model-name", "stolen", "--retries", "1")
    assert res.exit_code == 2 and "failed after 2 attempt" in res.text


def test_verify_local_model_with_evidence(files):
    tmp_path, _ = files
    res = _verify(tmp_path, "--model", str(tmp_path / "clean.pt"), "--sequential", "--evidence",
                  str(tmp_path / "clean.jsonl"))
    assert res.exit_code == 1, res.output  # not accused
    assert "H0 not rejected" in res.text and "sequential: stopped on futility" in res.text
