"""The reference server's limits and the JSON client's type checks: values that are not pixels, shapes that are not
batches, bodies too large, requests without the bearer token, and booleans where numbers belong.

A stand-in suspect answers uniform probabilities and records what it was asked, so nothing is trained here.
"""

import json
import logging
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest

from datamark.exceptions import EndpointError, ParameterError, SuspectError
from datamark.suspects import JSONSuspect, JSONTemplate
from datamark.suspects._v2 import TensorFormat
from datamark.suspects.http import HTTPSuspect
from datamark.suspects.serve import BackgroundServer, create_app
from datamark.testing.servers import free_port, wait_ready

SHAPE = (8, 8, 1)
TOKEN = "tok-3c1f9a7e5b"
FAST = dict(backoff_s=0.0, timeout_s=5.0, retries=0)


class Recorder:
    """A suspect that answers uniform probabilities and keeps the last batch it was asked about."""

    outputs, num_classes = "probs", 10

    def __init__(self) -> None:
        self.queries, self.last = 0, None

    def query(self, images: np.ndarray) -> np.ndarray:
        self.queries += len(images)
        self.last = images.copy()
        return np.full((len(images), self.num_classes), 1.0 / self.num_classes)


def _tensor(shape, data, datatype="UINT8"):
    return {"inputs": [{"name": "input", "datatype": datatype, "shape": shape, "data": data}]}


@pytest.fixture(scope="module")
def uint8_server():
    suspect = Recorder()
    with BackgroundServer(create_app(suspect, model_name="m", input_shape=SHAPE, max_request_bytes=50_000,
                                     token=TOKEN)) as srv:
        yield srv.url, suspect


@pytest.fixture(scope="module")
def fp32_server():
    fmt = TensorFormat("FP32", "NHWC", 1.0)
    with BackgroundServer(create_app(Recorder(), model_name="m", input_shape=SHAPE, fmt=fmt)) as srv:
        yield srv.url


def _infer(url, body, token=TOKEN, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    content = json.dumps(body) if isinstance(body, dict) else body  # str, bytes, or an iterator (chunked)
    return httpx.post(f"{url}/v2/models/m/infer", content=content, headers=headers, timeout=10.0, **kwargs)


@pytest.mark.parametrize("value", [-5, 300, 255.5, True])
def test_uint8_values_that_are_not_pixels_are_refused_not_wrapped(uint8_server, value):
    url, suspect = uint8_server
    before = suspect.queries
    res = _infer(url, _tensor([1, 8, 8, 1], [value] + [0] * 63))
    assert res.status_code == 400, res.text
    assert suspect.queries == before  # the model never saw 251 or 44


def test_uint8_pixels_reach_the_model_unchanged(uint8_server):
    url, suspect = uint8_server
    data = list(range(64))
    res = _infer(url, _tensor([1, 8, 8, 1], data))
    assert res.status_code == 200, res.text
    assert suspect.last.ravel().tolist() == data


@pytest.mark.parametrize("data", [[float("nan")] * 64, [float("inf")] + [0.0] * 63, [1e300] + [0.0] * 63,
                                  [-0.5] + [0.0] * 63, ["0.5"] * 64])
def test_fp32_values_that_are_not_pixels_are_refused(fp32_server, data):
    res = _infer(fp32_server, json.dumps(_tensor([1, 8, 8, 1], data, "FP32")), token=None)  # json writes NaN
    assert res.status_code == 400 and "error" in res.json(), res.text


@pytest.mark.parametrize("shape, n", [([8, 8, 1], 64), ([1, 8, 8], 64), ([-1, 8, 8, 1], 64), ([1, -8, -8, 1], 64),
                                      ([2**40, 2**40, 8, 1], 64), ([2**62, 2**62, 2**62, 8], 64), ([1.0, 8, 8, 1], 64),
                                      ([True, 8, 8, 1], 64), ("1x8x8x1", 64), ([1, 8, 8, 1, 1], 64),
                                      ([2**62 + 1, 8, 8, 1], 64)])  # int64 product wraps to 64
def test_malformed_shapes_are_400_not_500(uint8_server, shape, n):
    res = _infer(uint8_server[0], _tensor(shape, [0] * n))
    assert res.status_code == 400, res.text
    assert "shape" in res.json()["error"] or "values" in res.json()["error"]


def test_deeply_nested_json_is_400_not_500(fp32_server):
    res = _infer(fp32_server, "[" * 200_000 + "]" * 200_000, token=None)
    assert res.status_code in (400, 413), res.text


def test_request_size_limit_checks_the_declared_and_the_received_length(uint8_server):
    url, suspect = uint8_server
    before = suspect.queries
    big = json.dumps(_tensor([1000, 8, 8, 1], [0] * 64_000))  # ~190 kB > 50 kB
    assert _infer(url, big).status_code == 413  # Content-Length says so
    chunked = _infer(url, iter([big[i:i + 10_000].encode() for i in range(0, len(big), 10_000)]))
    assert chunked.status_code == 413 and "larger" in chunked.json()["error"]  # no Content-Length: counted
    assert suspect.queries == before
    assert _infer(url, _tensor([2, 8, 8, 1], [0] * 128)).status_code == 200


def test_server_options_are_validated():
    with pytest.raises(ParameterError, match="max_request_bytes"):
        create_app(Recorder(), model_name="m", input_shape=SHAPE, max_request_bytes=0)
    for bad in ("", "two words", "t\u00e9"):
        with pytest.raises(ParameterError, match="token"):
            create_app(Recorder(), model_name="m", input_shape=SHAPE, token=bad)


def test_bearer_token_is_required_except_for_health(uint8_server, caplog):
    url, _ = uint8_server
    caplog.set_level(logging.DEBUG)
    body = _tensor([1, 8, 8, 1], [0] * 64)
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        res = _infer(url, body, token=token)
        assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer", res.text
        assert TOKEN not in res.text
    assert httpx.post(f"{url}/v2/models/m/infer", json=body, headers={"Authorization": TOKEN}).status_code == 401
    assert httpx.get(f"{url}/v2/models/m").status_code == 401
    assert httpx.get(f"{url}/v2").status_code == 401
    for health in ("/v2/health/live", "/v2/health/ready", "/v2/models/m/ready"):
        assert httpx.get(f"{url}{health}").status_code == 200
    assert _infer(url, body).status_code == 200
    assert httpx.post(f"{url}/v2/models/m/infer", json=body, headers={"Authorization": f"bearer  {TOKEN}"}
                      ).status_code == 200  # the scheme is case-insensitive
    assert TOKEN not in caplog.text


def test_http_suspect_sends_the_token_through_headers(uint8_server):
    url, _ = uint8_server
    images = np.zeros((3, *SHAPE), np.uint8)
    with pytest.raises(EndpointError, match="HTTP 401"):
        HTTPSuspect(url, "m", **FAST)
    with HTTPSuspect(url, "m", headers={"Authorization": f"Bearer {TOKEN}"}, **FAST) as remote:
        assert remote.query(images).shape == (3, 10)
        assert TOKEN not in json.dumps(remote.describe())


def _json_answer(value):
    return httpx.MockTransport(lambda request: httpx.Response(200, json={"predictions": value}))


@pytest.mark.parametrize("outputs, answer", [
    ("labels", [True, False, True, False]),
    ("labels", [1, 0, True, 2]),
    ("labels", ["1", "0", "1", "2"]),
    ("probs", [[True] + [False] * 9] * 4),
    ("probs", [[0.1] * 9 + [False]] * 4),
    ("labels", [None, 1, 2, 3]),
])
def test_json_endpoint_refuses_booleans_and_strings_as_numbers(outputs, answer):
    template = JSONTemplate(outputs=outputs)
    with JSONSuspect("http://suspect.test", template, num_classes=10, transport=_json_answer(answer),
                     **FAST) as remote:
        with pytest.raises(SuspectError, match="expected numbers"):
            remote.query(np.zeros((4, *SHAPE), np.uint8))


def test_json_endpoint_still_reads_numbers():
    with JSONSuspect("http://suspect.test", JSONTemplate(outputs="labels"), num_classes=10,
                     transport=_json_answer([1, 0, 3, 9.0]), **FAST) as remote:
        assert remote.query(np.zeros((4, *SHAPE), np.uint8)).tolist() == [1, 0, 3, 9]


def _tiny_checkpoint(path):
    """An untrained tiny model's checkpoint (serving needs a checkpoint, not a trained one)."""
    from datamark.models.checkpoint import ModelSpec, build_model, save_checkpoint

    spec = ModelSpec(arch="tiny", num_classes=10, input_shape=SHAPE, mean=(0.0,), std=(1.0,))
    save_checkpoint(build_model(spec), spec, path)


def test_serve_command_takes_the_token_from_the_environment_and_never_prints_it(tmp_path):
    _tiny_checkpoint(tmp_path / "m.pt")
    port = free_port()
    env = {**os.environ, "DATAMARK_SERVE_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "datamark.cli", "serve", str(tmp_path / "m.pt"), "--port",
                             str(port), "--max-request-mb", "0.01"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/v2/health/ready", proc)
        body = _tensor([1, 8, 8, 1], [0] * 64)
        assert httpx.post(f"{url}/v2/models/model/infer", json=body).status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.post(f"{url}/v2/models/model/infer", json=body, headers=good).status_code == 200
        big = _tensor([100, 8, 8, 1], [0] * 6400)  # > 0.01 MiB of JSON
        assert httpx.post(f"{url}/v2/models/model/infer", json=big, headers=good).status_code == 413
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
    assert "bearer token required" in output and TOKEN not in output


def test_verify_sends_the_token_from_the_environment(tmp_path, monkeypatch):
    """``verify --endpoint`` hands DATAMARK_ENDPOINT_TOKEN to the client as a bearer header (and --token wins)."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    import datamark.key
    import datamark.suspects
    from datamark.cli import app
    from datamark.exceptions import DatamarkError

    seen = []

    class Stop(DatamarkError):
        pass

    def fake_suspect(*args, token=None, **kwargs):
        seen.append(token)
        raise Stop("stopped before any query")
    monkeypatch.setattr(datamark.key.Key, "load", lambda *a, **k: SimpleNamespace(dataset={"num_classes": 10}))
    monkeypatch.setattr(datamark.suspects, "HTTPSuspect", fake_suspect)
    args = ["verify", "--key", "k.json", "--data", "digits:test", "--endpoint", "http://127.0.0.1:9"]
    res = CliRunner().invoke(app, args, env={"DATAMARK_ENDPOINT_TOKEN": TOKEN})
    assert res.exit_code == 2 and "stopped before any query" in res.output and TOKEN not in res.output, res.output
    res = CliRunner().invoke(app, [*args, "--token", "other"], env={"DATAMARK_ENDPOINT_TOKEN": TOKEN})
    assert res.exit_code == 2, res.output
    assert seen == [TOKEN, "other"]  # the option wins over the environment variable
