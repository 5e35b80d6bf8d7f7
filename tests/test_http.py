"""Black-box verification over HTTP: the V2 reference server on loopback, the client's checks, faults, resume."""

import asyncio
import json
import math
import warnings

import httpx
import numpy as np
import pytest

from datamark import Verifier
from datamark.exceptions import (
    EndpointError,
    EvidenceWarning,
    InsecureTransportWarning,
    ParameterError,
    QueryBudgetError,
    SuspectError,
)
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


# -- endpoints whose metadata declares nothing (stock KServe models), credentials ---------------------------------
SILENT = {"name": "m", "versions": [], "platform": "", "inputs": [], "outputs": []}  # what kserve.Model answers
DECLARED = dict(input_name="input", datatype="UINT8", num_classes=10)


def _recording(answer, metadata=SILENT):
    """A mock V2 endpoint that records each infer request's JSON (answer(request_json, n) -> httpx.Response)."""
    sent = []

    def handler(request):
        if request.method == "GET":
            return httpx.Response(200, json=metadata)
        body = json.loads(request.content)
        sent.append(body)
        return answer(body, body["inputs"][0]["shape"][0])
    return httpx.MockTransport(handler), sent


def _silent_app(suspect):
    """datamark's V2 app, but answering metadata as a stock KServe model does: no inputs, no outputs."""
    from fastapi.responses import JSONResponse

    app = create_app(suspect, model_name="m", input_shape=SHAPE)

    @app.middleware("http")
    async def silent_metadata(request, call_next):
        if request.method == "GET" and request.url.path == "/v2/models/m":
            return JSONResponse(SILENT)
        return await call_next(request)
    return app


def test_silent_metadata_uses_the_declared_options_end_to_end(tiny_marks, caplog):
    key, stolen, _, test = tiny_marks
    with BackgroundServer(_silent_app(stolen)) as srv:
        with caplog.at_level("INFO", logger="datamark"), HTTPSuspect(srv.url, "m", **DECLARED, **FAST) as remote:
            assert (remote.input_name, remote.output_name, remote.outputs) == ("input", None, "probs")
            before = remote.describe()
            result = Verifier().verify(remote, key, test)
            assert remote.output_name == "probs" and remote.describe() == before  # stable for evidence resumes
    expected = Verifier().verify(stolen, key, test)
    assert result.accused and result.queries == expected.queries
    assert math.isclose(result.outcome.log10_p, expected.outcome.log10_p, rel_tol=1e-4)
    assert before["metadata_silent"] == ["inputs", "outputs"]
    assert "input_name='input' (yours)" in caplog.text and "layout='NHWC' (default)" in caplog.text
    assert "output 'probs' (FP32, probs, 10 classes) learned from the first answer" in caplog.text


def test_silent_metadata_without_the_options_fails_before_any_query():
    transport, sent = _recording(lambda body, n: _probs(n))
    with pytest.raises(ParameterError, match=r"declares no inputs and outputs in its metadata.*pass input_name "
                                             r"\(--input-name\), datatype \(--datatype\), num_classes "
                                             r"\(--num-classes\)\.$") as info:
        HTTPSuspect("http://suspect.test", "m", transport=transport, **FAST)
    assert "\n" not in str(info.value)
    with pytest.raises(ParameterError, match=r"pass datatype \(--datatype\)\.$"):
        HTTPSuspect("http://suspect.test", "m", input_name="input", num_classes=10, transport=transport, **FAST)
    outputs_only = {**_metadata(), "outputs": []}  # inputs declared: only the class count is missing
    with pytest.raises(ParameterError, match=r"declares no outputs .*pass num_classes \(--num-classes\)\.$"):
        HTTPSuspect("http://suspect.test", "m", transport=_recording(None, outputs_only)[0], **FAST)
    assert sent == []


def test_declared_metadata_still_wins_over_disagreeing_options():
    transport, _ = _recording(lambda body, n: _probs(n), _metadata())
    with pytest.raises(EndpointError, match="options disagree with the metadata.*no input is named 'x'"):
        HTTPSuspect("http://suspect.test", "m", input_name="x", transport=transport, **FAST)
    with pytest.raises(EndpointError, match="options disagree.*has 10 classes, not 7"):
        HTTPSuspect("http://suspect.test", "m", num_classes=7, transport=transport, **FAST)


def test_the_first_answer_of_a_silent_endpoint_is_validated_and_fixes_the_output():
    answers = iter([_probs(4, k=9), _probs(4), _probs(4)])
    transport, sent = _recording(lambda body, n: next(answers))
    with HTTPSuspect("http://suspect.test", "m", **DECLARED, transport=transport, **FAST) as remote:
        with pytest.raises(SuspectError, match=r"\(output 'probs'\) returned probabilities of shape \(4, 9\)"):
            remote.query(IMAGES)
        assert remote.output_name is None  # a refused answer teaches nothing
        assert remote.query(IMAGES).shape == (4, 10) and remote.output_name == "probs"
        remote.query(IMAGES)
    assert "outputs" not in sent[0] and "outputs" not in sent[1] and sent[2]["outputs"] == [{"name": "probs"}]
    assert sent[0]["inputs"][0]["name"] == "input" and sent[0]["inputs"][0]["datatype"] == "UINT8"


def _labels(n, values=None, name="labels"):
    data = [3] * n if values is None else values
    return httpx.Response(200, json={"outputs": [{"name": name, "datatype": "INT64", "shape": [n], "data": data}]})


def test_a_silent_endpoint_answering_labels_needs_label_mode():
    transport, _ = _recording(lambda body, n: _labels(n))
    with HTTPSuspect("http://suspect.test", "m", **DECLARED, transport=transport, **FAST) as remote:
        with pytest.raises(SuspectError, match="as INT64, which means labels, not the probs datamark assumed.*"
                                               "--mode labels"):
            remote.query(IMAGES)
    with HTTPSuspect("http://suspect.test", "m", **DECLARED, outputs="labels", transport=transport, **FAST) as remote:
        assert remote.query(IMAGES).tolist() == [3, 3, 3, 3]
    transport, _ = _recording(lambda body, n: _labels(n, [1, 2, 12, 3]))
    with HTTPSuspect("http://suspect.test", "m", **DECLARED, outputs="labels", transport=transport, **FAST) as remote:
        with pytest.raises(SuspectError, match="outside 0..9"):
            remote.query(IMAGES)
    transport, _ = _recording(lambda body, n: _probs(n))
    with HTTPSuspect("http://suspect.test", "m", **DECLARED, outputs="labels", transport=transport, **FAST) as remote:
        with pytest.raises(SuspectError, match="which means probs, not the labels you asked for"):
            remote.query(IMAGES)


def test_a_silent_endpoint_with_several_outputs_needs_the_output_name():
    def two(body, n):
        tensors = [{"name": name, "datatype": "FP32", "shape": [n, 10], "data": [0.1] * (10 * n)}
                   for name in ("logits", "probs")]
        return httpx.Response(200, json={"outputs": tensors})

    transport, _ = _recording(two)
    with HTTPSuspect("http://suspect.test", "m", **DECLARED, transport=transport, **FAST) as remote:
        with pytest.raises(SuspectError, match=r"answered 2 outputs \['logits', 'probs'\].*--output-name"):
            remote.query(IMAGES)
    with HTTPSuspect("http://suspect.test", "m", **DECLARED, output_name="probs", transport=transport,
                     **FAST) as remote:
        assert remote.query(IMAGES).shape == (4, 10) and remote.describe()["output"] == "probs"


@pytest.mark.filterwarnings("ignore::datamark.exceptions.InsecureTransportWarning")  # plain http on purpose
def test_headers_are_sent_validated_and_never_shown():
    secret = "s3cr3t-api-key-value"
    seen = []

    def echo(body, n):  # a careless server that quotes the credentials back in its error
        return httpx.Response(400, json={"error": f"bad key {secret} / Bearer tok-123456"})

    transport, _ = _recording(echo, _metadata())
    inner = transport.handle_request
    transport.handle_request = lambda request: seen.append(dict(request.headers)) or inner(request)
    with HTTPSuspect("http://suspect.test", "m", headers={"X-Api-Key": secret}, token="tok-123456",
                     transport=transport, **FAST) as remote:
        with pytest.raises(EndpointError, match="HTTP 400") as info:
            remote.query(IMAGES)
        assert secret not in json.dumps(remote.describe())
    assert seen[0]["x-api-key"] == secret and seen[0]["authorization"] == "Bearer tok-123456"
    assert secret not in str(info.value) and "tok-123456" not in str(info.value) and "***" in str(info.value)
    for bad, message in [({"X-Key": "a\r\nInjected: 1"}, "header 'X-Key'.*line break"),
                         ({"Bad Name": "v"}, "not a valid HTTP header name"),
                         ({"X-Key": "a", "x-key": "b"}, "given twice")]:
        with pytest.raises(ParameterError, match=message) as info:
            HTTPSuspect("http://suspect.test", "m", headers=bad, transport=transport)
        assert "Injected" not in str(info.value)
    with pytest.raises(ParameterError, match="Both 'token' and an Authorization header"):
        HTTPSuspect("http://suspect.test", "m", headers={"authorization": "x"}, token="y", transport=transport)


def test_credentials_over_plain_http_warn_except_on_loopback():
    transport, _ = _recording(lambda body, n: _probs(n), _metadata())
    with pytest.warns(InsecureTransportWarning, match="over plain HTTP"):
        HTTPSuspect("http://suspect.test", "m", token="tok-123456", transport=transport).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HTTPSuspect("http://127.0.0.1:9", "m", token="tok-123456", transport=transport).close()
        HTTPSuspect("http://suspect.test", "m", transport=transport).close()  # no credentials, nothing to leak
    with pytest.raises(ParameterError, match="'insecure' applies to TLS"):
        HTTPSuspect("http://suspect.test", "m", insecure=True, transport=transport)
