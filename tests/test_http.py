"""Black-box verification over HTTP: the V2 reference server on loopback, the client's checks, faults, resume."""

import asyncio
import json
import math

import httpx
import numpy as np
import pytest

from datamark import Verifier
from datamark.exceptions import EndpointError, EvidenceWarning, ParameterError, QueryBudgetError, SuspectError
from datamark.suspects._v2 import TensorFormat
from datamark.suspects.http import HTTPSuspect
from datamark.suspects.serve import BackgroundServer, create_app
from datamark.verify.evidence import check_evidence, verify_with_evidence
from datamark.verify.sequential import SequentialVerifier

SHAPE = (8, 8, 1)
FAST = dict(backoff_s=0.0, timeout_s=5.0)


def _server(suspect, name="m", fmt=TensorFormat(), port=0):
    return BackgroundServer(create_app(suspect, model_name=name, input_shape=SHAPE, fmt=fmt), port=port)


@pytest.fixture(scope="module")
def servers(tiny_marks):
    """Loopback servers: the stolen and the clean model, each answering probabilities and labels."""
    _, stolen, clean, _ = tiny_marks
    running = {(who, mode): _server(model.with_outputs(mode)).start()
               for who, model in (("stolen", stolen), ("clean", clean)) for mode in ("probs", "labels")}
    yield {k: s.url for k, s in running.items()}
    for s in running.values():
        s.stop()


@pytest.mark.parametrize("mode", ["probs", "labels"])
@pytest.mark.parametrize("sequential", [False, True])
def test_verify_over_http_matches_local(servers, tiny_marks, mode, sequential):
    key, stolen, clean, test = tiny_marks
    verifier = SequentialVerifier(mode=mode) if sequential else Verifier(mode=mode)
    for who, local in (("stolen", stolen), ("clean", clean)):
        with HTTPSuspect(servers[who, mode], "m", batch_size=50, num_classes=test.num_classes, **FAST) as remote:
            assert remote.outputs == mode and remote.num_classes == 10
            result = verifier.verify(remote, key, test)
        expected = verifier.verify(local.with_outputs(mode), key, test)
        assert result.accused == expected.accused == (who == "stolen"), (who, mode, sequential)
        assert result.queries == expected.queries == remote.queries
        assert math.isclose(result.outcome.log10_p, expected.outcome.log10_p, rel_tol=1e-4, abs_tol=1e-6)


def test_fp32_nchw_unit_scale_endpoint_and_mismatch_messages(tiny_pair):
    _, stolen, _, test = tiny_pair
    images = test.inputs()[:20]
    with _server(stolen, fmt=TensorFormat("FP32", "NCHW", 1.0)) as srv:
        with HTTPSuspect(srv.url, "m", datatype="FP32", layout="NCHW", scale=1.0, **FAST) as remote:
            assert np.allclose(remote.query(images), stolen.query(images), atol=1e-6)
        with pytest.raises(EndpointError, match="datatype FP32, not UINT8.*--datatype FP32.*Metadata: \\{"):
            HTTPSuspect(srv.url, "m", **FAST)
        with HTTPSuspect(srv.url, "m", datatype="FP32", **FAST) as wrong_layout:
            with pytest.raises(EndpointError, match="--layout"):
                wrong_layout.query(images)
        with pytest.raises(EndpointError, match="no input is named 'x'"):
            HTTPSuspect(srv.url, "m", input_name="x", datatype="FP32", layout="NCHW", scale=1.0, **FAST)
        with pytest.raises(EndpointError, match="means probs, not labels"):
            HTTPSuspect(srv.url, "m", outputs="labels", datatype="FP32", layout="NCHW", scale=1.0, **FAST)
        with pytest.raises(EndpointError, match="HTTP 404"):
            HTTPSuspect(srv.url, "other", **FAST)


def _metadata(output=("probs", "FP32", [-1, 10])):
    name, dtype, shape = output
    return {"name": "m", "inputs": [{"name": "input", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}],
            "outputs": [{"name": name, "datatype": dtype, "shape": shape}]}


def _mock(infer, metadata=None):
    """An httpx transport answering metadata and handing infer requests to ``infer(request, n)``."""
    calls = []

    def handler(request):
        if request.method == "GET":
            return httpx.Response(200, json=metadata or _metadata())
        n = json.loads(request.content)["inputs"][0]["shape"][0]
        calls.append(n)
        return infer(len(calls), n)
    return httpx.MockTransport(handler), calls


def _probs(n, k=10, value=None):
    data = np.full((n, k), 1.0 / k) if value is None else value
    body = {"outputs": [{"name": "probs", "datatype": "FP32", "shape": [n, k], "data": np.ravel(data).tolist()}]}
    return httpx.Response(200, content=json.dumps(body).encode())  # json.dumps writes NaN, as careless servers do


IMAGES = np.zeros((4, 8, 8, 1), dtype=np.uint8)


@pytest.mark.parametrize("answer, message", [
    (lambda n: _probs(n, value=np.full((n, 10), np.nan)), "non-finite"),
    (lambda n: _probs(n - 1), r"shape \(3, 10\); expected \(4, 10\)"),
    (lambda n: _probs(n, k=9), r"shape \(4, 9\)"),
    (lambda n: _probs(n, value=np.full((n, 10), 0.5)), "not probability vectors"),
    (lambda n: httpx.Response(200, json={"outputs": [{"name": "probs", "shape": [n, 10]}]}), "no field 'datatype'"),
    (lambda n: httpx.Response(200, json={"outputs": [{"name": "other"}]}), "without output 'probs'"),
    (lambda n: httpx.Response(200, json={"outputs": [{"name": "probs", "datatype": "FP32", "shape": [n, 10],
                                                      "data": [0.1] * 7}]}), "7 values"),
    (lambda n: httpx.Response(200, text="<html>oops</html>"), "not JSON"),
])
def test_bad_answers_name_the_endpoint_and_the_field(answer, message):
    transport, _ = _mock(lambda call, n: answer(n))
    with HTTPSuspect("http://suspect.test", "m", transport=transport, **FAST) as remote:
        with pytest.raises(SuspectError, match=message) as info:
            remote.query(IMAGES)
    assert "http://suspect.test/v2/models/m/infer" in str(info.value)


def test_transient_errors_are_retried_with_backoff_then_succeed():
    def flaky(call, n):
        if call == 1:
            return httpx.Response(500, text="boom")
        if call == 2:
            return httpx.Response(429, headers={"retry-after": "0.5"}, text="slow down")
        return _probs(n)

    transport, calls = _mock(flaky)
    waits = []
    with HTTPSuspect("http://suspect.test", "m", transport=transport, retries=3, backoff_s=0.1,
                     sleep=waits.append) as remote:
        assert remote.query(IMAGES).shape == (4, 10)
    assert len(calls) == 3 and waits == [0.1, 0.5]  # exponential backoff; Retry-After honoured on the 429


def test_persistent_errors_give_up_and_client_errors_are_not_retried():
    transport, calls = _mock(lambda call, n: httpx.Response(503, text="overloaded"))
    with HTTPSuspect("http://suspect.test", "m", transport=transport, retries=2, sleep=lambda s: None) as remote:
        with pytest.raises(EndpointError, match="failed after 3 attempt.*HTTP 503: overloaded.*--retries"):
            remote.query(IMAGES)
    assert len(calls) == 3
    transport, calls = _mock(lambda call, n: httpx.Response(400, json={"error": "bad input"}))
    with HTTPSuspect("http://suspect.test", "m", transport=transport, retries=5, sleep=lambda s: None) as remote:
        with pytest.raises(EndpointError, match="HTTP 400.*bad input"):
            remote.query(IMAGES)
    assert len(calls) == 1


def test_labels_need_the_class_count_and_accept_n_by_1():
    meta = _metadata(("labels", "INT64", [-1]))
    answer = lambda call, n: httpx.Response(200, json={"outputs": [{"name": "labels", "datatype": "INT64",  # noqa
                                                                    "shape": [n, 1], "data": [3] * n}]})
    with pytest.raises(EndpointError, match="--num-classes"):
        HTTPSuspect("http://suspect.test", "m", transport=_mock(answer, meta)[0], **FAST)
    with HTTPSuspect("http://suspect.test", "m", num_classes=10, transport=_mock(answer, meta)[0], **FAST) as remote:
        assert remote.outputs == "labels" and remote.query(IMAGES).tolist() == [3, 3, 3, 3]


def test_slow_answers_time_out(tiny_pair):
    _, stolen, _, _ = tiny_pair
    app = create_app(stolen, model_name="m", input_shape=SHAPE)

    @app.middleware("http")
    async def slow(request, call_next):
        if request.method == "POST":
            await asyncio.sleep(1.0)
        return await call_next(request)

    with BackgroundServer(app) as srv:
        with HTTPSuspect(srv.url, "m", timeout_s=0.2, retries=1, backoff_s=0.0) as remote:
            with pytest.raises(EndpointError, match="failed after 2 attempt.*0.2 s timeout"):
                remote.query(IMAGES)


def test_rate_limit_spaces_requests():
    transport, _ = _mock(lambda call, n: _probs(n))
    waits = []
    with HTTPSuspect("http://suspect.test", "m", transport=transport, batch_size=1, rate_limit_per_s=10,
                     sleep=waits.append) as remote:
        remote.query(IMAGES)
    assert len(waits) >= 3 and all(0 < w <= 0.1 for w in waits)


def test_budget_is_enforced_before_spending(servers, tiny_marks):
    key, _, _, test = tiny_marks
    with HTTPSuspect(servers["stolen", "probs"], "m", budget=150, **FAST) as remote:
        with pytest.raises(QueryBudgetError, match="needs 200 queries.*150 left"):
            Verifier(n_probe=100).verify(remote, key, test)  # 5 marks x 20 probes, clean and triggered
        assert remote.queries == 0
        result = SequentialVerifier().verify(remote, key, test)
        assert result.queries <= 20 and result.accused
        with pytest.raises(QueryBudgetError, match="exceed the query budget of 150"):
            remote.query(np.zeros((150, 8, 8, 1), dtype=np.uint8))


def test_server_killed_mid_run_then_resumed(tiny_marks, tmp_path):
    key, stolen, _, test = tiny_marks
    reference = Verifier().verify(stolen, key, test)
    path = tmp_path / "run.jsonl"
    server = _server(stolen).start()
    port = server.port

    class KillsServer(HTTPSuspect):
        def query(self, inputs):
            if self.queries >= 64:
                server.stop()  # the server dies after two batches were answered
            return super().query(inputs)

    with KillsServer(server.url, "m", batch_size=32, retries=1, backoff_s=0.0, timeout_s=2.0) as remote:
        with pytest.raises(EndpointError, match="connection failed"), pytest.warns(EvidenceWarning, match="--resume"):
            verify_with_evidence(Verifier(), remote, key, test, path, batch_size=32)
    recorded = check_evidence(path).queries  # the marks are asked in calls of 10: the server died at 64 or after
    assert 64 <= recorded < reference.queries
    with _server(stolen, port=port) as restarted, HTTPSuspect(restarted.url, "m", **FAST) as remote:
        result = verify_with_evidence(Verifier(), remote, key, test, path, resume=True, batch_size=32)
        assert remote.queries == reference.queries - recorded
    assert math.isclose(result.outcome.log10_p, reference.outcome.log10_p, rel_tol=1e-4)
    assert check_evidence(path).result["accused"]


def _tf_serving_app(suspect):
    """A TensorFlow-Serving-style REST app: {"instances": [...]} in, {"predictions": [...]} out."""
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.post("/v1/models/m:predict")
    async def predict(request: Request):
        images = np.asarray((await request.json())["instances"], dtype=np.uint8)
        return {"predictions": suspect.query(images).tolist()}
    return app


def test_generic_json_endpoint_described_by_a_template(tiny_marks, tmp_path):
    from datamark.suspects import JSONSuspect, JSONTemplate

    key, stolen, _, test = tiny_marks
    (tmp_path / "tf.json").write_text(json.dumps({"request": {"instances": "$inputs"},
                                                  "response_path": "predictions", "path": "/v1/models/m:predict"}))
    template = JSONTemplate.load(tmp_path / "tf.json")
    with BackgroundServer(_tf_serving_app(stolen)) as srv:
        with JSONSuspect(srv.url, template, num_classes=10, batch_size=50, **FAST) as remote:
            result = SequentialVerifier().verify(remote, key, test)
    assert result.accused and result.queries == remote.queries


def test_json_template_errors_name_the_path():
    from datamark.suspects import JSONSuspect, JSONTemplate

    with pytest.raises(ParameterError, match=r"\$inputs"):
        JSONTemplate(request={"instances": []})
    nested = JSONTemplate(request={"batch": {"x": "$inputs"}}, response_path="result.0.labels", outputs="labels")
    assert nested.fill([1, 2]) == {"batch": {"x": [1, 2]}}
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"result": [{"probs": [0.1]}]}))
    with JSONSuspect("http://suspect.test", nested, num_classes=10, transport=transport, **FAST) as remote:
        with pytest.raises(SuspectError, match="without 'result.0.labels': nothing at 'labels' under result.0"):
            remote.query(IMAGES)
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"result": [{"labels": [1, 2, 12, 3]}]}))
    with JSONSuspect("http://suspect.test", nested, num_classes=10, transport=transport, **FAST) as remote:
        with pytest.raises(SuspectError, match=r"suspect.test/predict \('result.0.labels'\).*outside 0..9"):
            remote.query(IMAGES)
