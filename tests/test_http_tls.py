"""TLS for HTTP suspects, for real: a self-signed CA and server certificate made here with the openssl CLI, and
datamark's own V2 app served over HTTPS by uvicorn on a free loopback port."""

import shutil
import subprocess
import threading
import time
import warnings

import numpy as np
import pytest

from datamark.exceptions import EndpointError, InsecureTransportWarning, ParameterError
from datamark.suspects import HTTPSuspect, JSONSuspect, JSONTemplate
from datamark.suspects.serve import bind, create_app

pytest.importorskip("uvicorn")
if shutil.which("openssl") is None:
    pytest.skip("the openssl command line tool makes the test certificates; install openssl", allow_module_level=True)

SHAPE = (8, 8, 1)
TOKEN = "tls-test-token-5f3c9a"
FAST = dict(timeout_s=5.0, backoff_s=0.0)
IMAGES = np.arange(3 * 64, dtype=np.uint8).reshape(3, *SHAPE)


class MeanSuspect:
    """A deterministic stand-in model: class probabilities from the mean pixel (TLS is what is tested here)."""

    outputs, num_classes, queries = "probs", 3, 0

    def query(self, images):
        mean = np.asarray(images, dtype=np.float64).reshape(len(images), -1).mean(axis=1) / 255.0
        logits = np.stack([mean, 1 - mean, np.full_like(mean, 0.5)], axis=1)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(folder, name):
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout",
             f"{name}.key", "-out", f"{name}.pem", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return folder / f"{name}.pem"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, a server certificate it signs for 127.0.0.1 and localhost, and an unrelated CA."""
    folder = tmp_path_factory.mktemp("pki")
    ca = _make_ca(folder, "ca")
    other = _make_ca(folder, "other-ca")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out",
             "server.csr", cwd=folder)
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days",
             "2", "-extfile", "ext.cnf", "-out", "server.pem", cwd=folder)
    return {"ca": ca, "other": other, "cert": folder / "server.pem", "key": folder / "server.key"}


def _serve_tls(app, pki):
    """Serve ``app`` over HTTPS in a daemon thread; return (url, stop)."""
    import uvicorn

    sock = bind()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            ssl_certfile=str(pki["cert"]), ssl_keyfile=str(pki["key"]))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the HTTPS server did not start"
        time.sleep(0.01)

    def stop():
        server.should_exit = True
        thread.join(10)
        sock.close()
    return f"https://127.0.0.1:{sock.getsockname()[1]}", stop


@pytest.fixture(scope="module")
def https_url(pki):
    url, stop = _serve_tls(create_app(MeanSuspect(), model_name="m", input_shape=SHAPE, token=TOKEN), pki)
    yield url
    stop()


def test_default_verification_fails_at_once_with_the_fix(https_url):
    waits = []
    with pytest.raises(EndpointError) as info:
        HTTPSuspect(https_url, "m", token=TOKEN, retries=3, backoff_s=1.0, sleep=waits.append)
    message = str(info.value)
    assert "certificate did not verify" in message and "--ca-cert" in message and "--insecure" in message
    assert "\n" not in message and TOKEN not in message
    assert waits == []  # not retried: a certificate that fails verification fails the same way next time


def test_ca_cert_verifies_the_server(https_url, pki):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verified TLS on loopback: nothing to warn about
        with HTTPSuspect(https_url, "m", token=TOKEN, ca_cert=pki["ca"], **FAST) as remote:
            assert np.allclose(remote.query(IMAGES), MeanSuspect().query(IMAGES), atol=1e-6)
            assert remote.num_classes == 3 and TOKEN not in str(remote.describe())


def test_a_ca_that_did_not_sign_the_server_is_refused(https_url, pki):
    with pytest.raises(EndpointError, match="did not verify.*--ca-cert"):
        HTTPSuspect(https_url, "m", token=TOKEN, ca_cert=pki["other"], **FAST)


def test_insecure_works_and_warns_once(https_url):
    with pytest.warns(InsecureTransportWarning, match="not verified") as caught:
        with HTTPSuspect(https_url, "m", token=TOKEN, insecure=True, **FAST) as remote:
            for _ in range(3):
                assert remote.query(IMAGES).shape == (3, 3)
    assert len([w for w in caught if issubclass(w.category, InsecureTransportWarning)]) == 1


def test_wrong_token_over_tls_names_the_header_not_its_value(https_url, pki):
    with pytest.raises(EndpointError, match=r"HTTP 401 \(the headers \['Authorization'\] were sent\)") as info:
        HTTPSuspect(https_url, "m", token="wrong-token-value", ca_cert=pki["ca"], **FAST)
    assert "wrong-token-value" not in str(info.value)


def test_json_suspect_shares_the_tls_options(pki):
    from fastapi import FastAPI, Request

    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        images = np.asarray((await request.json())["instances"], dtype=np.uint8)
        return {"predictions": MeanSuspect().query(images).tolist()}

    url, stop = _serve_tls(app, pki)
    try:
        with pytest.raises(EndpointError, match="did not verify"):
            JSONSuspect(url, JSONTemplate(), num_classes=3, **FAST).query(IMAGES)
        with JSONSuspect(url, JSONTemplate(), num_classes=3, ca_cert=pki["ca"], **FAST) as remote:
            assert np.allclose(remote.query(IMAGES), MeanSuspect().query(IMAGES), atol=1e-6)
    finally:
        stop()


def test_https_to_a_plain_http_server_and_option_errors(pki, tmp_path):
    from datamark.suspects.serve import BackgroundServer

    with BackgroundServer(create_app(MeanSuspect(), model_name="m", input_shape=SHAPE)) as srv:
        plain = srv.url.replace("http://", "https://")
        with pytest.raises(EndpointError, match="TLS handshake failed.*speak TLS"):
            HTTPSuspect(plain, "m", ca_cert=pki["ca"], **FAST)
        with pytest.raises(ParameterError, match="'ca_cert' applies to TLS.*plain http"):
            HTTPSuspect(srv.url, "m", ca_cert=pki["ca"], **FAST)
    with pytest.raises(ParameterError, match="contradict.*--ca-cert and --insecure"):
        HTTPSuspect("https://127.0.0.1:1", "m", ca_cert=pki["ca"], insecure=True)
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ParameterError, match="'ca_cert' must be a readable PEM file.*junk.pem"):
        HTTPSuspect("https://127.0.0.1:1", "m", ca_cert=tmp_path / "junk.pem")
    with pytest.raises(ParameterError, match="'ca_cert' must be a readable PEM file"):
        HTTPSuspect("https://127.0.0.1:1", "m", ca_cert=tmp_path / "missing.pem")
