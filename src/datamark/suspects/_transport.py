"""HTTP plumbing shared by the remote suspects: timeouts, retries with exponential backoff, a rate limit,
credentials (headers, a bearer token) and TLS verification.

Transient failures (connection errors, timeouts, HTTP 429 and 5xx) are retried with exponential backoff
(honouring ``Retry-After`` up to the backoff cap); anything else fails at once, a TLS failure included (a
certificate that does not verify will not verify on the next try). Every failure becomes an
:class:`~datamark.exceptions.EndpointError` naming the method, the URL, what happened and the fix.

Header values hold credentials, so they are never logged and never quoted: errors name headers by name only,
and any header value a server echoes back is masked before its answer is quoted in an error.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import ssl
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import EndpointError, InsecureTransportWarning, ParameterError

log = logging.getLogger(__name__)
INSTALL_HINT = 'HTTP suspects need httpx and tenacity: pip install "datamark[serve]".'
#: A header name is an RFC 9110 token; anything else (spaces, colons, newlines) could split or smuggle headers.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MASK = "***"
_MIN_MASKED = 4  # shorter values ("1", "on") would mask ordinary words in a server's message; they are no secret


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """``headers`` as a plain dict, refused (naming the header, never its value) if one could not travel as
    exactly one HTTP header: a name that is not a token, or a value with a line break, NUL or non-Latin-1
    character."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ParameterError(f"'headers' must be a mapping of header names to values; got {type(headers).__name__}. "
                             f"Pass e.g. {{'X-Api-Key': '...'}} (--header NAME:VALUE).")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ParameterError(f"The header name {name!r} in 'headers' is not a valid HTTP header name (letters, "
                                 f"digits and !#$%&'*+-.^_`|~ only); pass --header NAME:VALUE with a plain name.")
        if not isinstance(value, str):
            raise ParameterError(f"The value of header '{name}' in 'headers' must be a string; got "
                                 f"{type(value).__name__}.")
        if not value.isprintable() or not _latin1(value):  # isprintable: no CR, LF, NUL or other control
            raise ParameterError(f"The value of header '{name}' in 'headers' has a line break, control or non-Latin-1 "
                                 f"character (value not shown); it must fit on one header line.")
        if name.lower() in (n.lower() for n in checked):
            raise ParameterError(f"The header '{name}' is given twice in 'headers' (names are case-insensitive); "
                                 f"give it once.")
        checked[name] = value.strip()
    return checked


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _tls_failure(err: BaseException) -> ssl.SSLError | None:
    """The TLS error behind an httpx connection error if it will fail the same way again (a certificate that does
    not verify, a server that does not speak TLS); None for other errors and for a handshake cut short (EOF), which
    a restarting server causes and a retry may cure."""
    seen: set[int] = set()
    node: BaseException | None = err
    while node is not None and id(node) not in seen:
        if isinstance(node, ssl.SSLError):
            transient = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
            return None if isinstance(node, transient) else node
        seen.add(id(node))
        node = node.__cause__ or node.__context__
    return None


class _Transient(Exception):
    """A failure worth retrying; ``retry_after_s`` is the server's Retry-After hint, if any."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare for model servers; fall back to our own backoff
        return None


class Transport:
    """JSON over HTTP with timeouts, retries, an optional rate limit (requests per second), credentials and TLS.

    Args:
        base_url: e.g. ``http://127.0.0.1:8080``.
        timeout_s: per-request timeout (connect, read, write), seconds.
        retries: retries after the first attempt for transient failures (0 = never retry).
        backoff_s: first wait; doubles each retry up to ``max_backoff_s``.
        rate_limit_per_s: most requests started per second (None = unlimited); respects a provider's quota.
        headers: extra headers sent with every request, e.g. ``{"X-Api-Key": "..."}`` (values are secrets: never
            logged or shown).
        token: a bearer token, sent as ``Authorization: Bearer <token>`` (not with an Authorization header).
        ca_cert: verify an ``https`` server against this CA bundle (PEM) instead of the system's trust store,
            e.g. for a self-signed or cluster-internal CA.
        insecure: do not verify the server's certificate at all (warns :class:`InsecureTransportWarning`): anyone
            on the path can read the queries, answers and credentials.
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``).
        sleep: the sleep function (tests pass a fake to run instantly).
    """

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2,
                 max_backoff_s: float = 5.0, rate_limit_per_s: float | None = None,
                 headers: Mapping[str, str] | None = None, token: str | None = None,
                 ca_cert: str | os.PathLike | None = None, insecure: bool = False, transport: Any = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        try:
            import httpx
            import tenacity
        except ImportError as err:
            raise ImportError(INSTALL_HINT) from err
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ParameterError(f"timeout_s must be > 0, retries and backoff_s >= 0; got {timeout_s}, {retries}, "
                                 f"{backoff_s}.")
        if rate_limit_per_s is not None and rate_limit_per_s <= 0:
            raise ParameterError(f"rate_limit_per_s must be > 0 or None; got {rate_limit_per_s}.")
        self.base_url = base_url.rstrip("/")
        sent = check_headers(headers)
        if token is not None:
            if any(name.lower() == "authorization" for name in sent):
                raise ParameterError("Both 'token' and an Authorization header in 'headers' were given; pass one "
                                     "(--token or --header 'Authorization:...').")
            sent.update(check_headers({"Authorization": f"Bearer {token}"}))
        verify = self._verify(ca_cert, insecure, bool(sent))
        self._secrets = sorted({part for value in sent.values() for part in (value, *value.split()[1:])
                                if len(part) >= _MIN_MASKED}, key=len, reverse=True)
        self.header_names = sorted(sent)  # what may be shown about the credentials: their names
        self.timeout_s, self.retries = timeout_s, retries
        self._httpx, self._tenacity = httpx, tenacity
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=sent, verify=verify,
                                    transport=transport)
        self._min_interval_s = 1.0 / rate_limit_per_s if rate_limit_per_s else 0.0
        self._last_start = -float("inf")
        self._sleep = sleep
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.requests = 0  # HTTP requests sent, retries included

    def _verify(self, ca_cert: str | os.PathLike | None, insecure: bool, credentials: bool) -> ssl.SSLContext | bool:
        """httpx's ``verify``: the system's trust store, a context trusting ``ca_cert``, or False (``insecure``)."""
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ParameterError(f"The endpoint URL must be http://HOST[:PORT] or https://HOST[:PORT]; got "
                                 f"'{self.base_url}'.")
        https = parts.scheme == "https"
        if ca_cert is not None and insecure:
            raise ParameterError("'ca_cert' and 'insecure' contradict each other (verify against a CA, or do not "
                                 "verify at all); pass one of --ca-cert and --insecure.")
        if (ca_cert is not None or insecure) and not https:
            raise ParameterError(f"'{'ca_cert' if ca_cert is not None else 'insecure'}' applies to TLS, but the "
                                 f"endpoint '{self.base_url}' is plain http; use an https:// URL or drop the option.")
        if credentials and not https and not _loopback(parts.hostname):
            warnings.warn(f"Credentials (headers, token) go to {self.base_url} over plain HTTP: anyone on the path "
                          f"can read them; use https://.", InsecureTransportWarning, stacklevel=4)
        if insecure:
            warnings.warn(f"TLS certificates of {self.base_url} are not verified (insecure=True, --insecure): a "
                          f"man in the middle can read and change the queries, answers and credentials; prefer "
                          f"--ca-cert.", InsecureTransportWarning, stacklevel=4)
            return False
        if ca_cert is None:
            return True
        path = Path(ca_cert)
        try:
            context = ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as err:
            raise ParameterError(f"'ca_cert' must be a readable PEM file of CA certificates; '{path}' is not "
                                 f"({type(err).__name__}: {err}). Pass the CA bundle that signed the server's "
                                 f"certificate (--ca-cert).") from err
        log.info("verifying %s against the CA bundle %s", self.base_url, path)
        return context

    def redact(self, text: str) -> str:
        """``text`` with every header value (and bearer credential) masked, so a server that echoes a
        request's headers cannot leak them into an error, a log or an evidence file."""
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        return text

    def _wait(self, state) -> float:
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (state.attempt_number - 1))
        err = state.outcome.exception() if state.outcome is not None else None
        hint = getattr(err, "retry_after_s", None)
        return max(base, min(hint, self.max_backoff_s)) if hint is not None else base

    def _once(self, method: str, path: str, payload: Any) -> Any:
        httpx = self._httpx
        pause = self._last_start + self._min_interval_s - time.monotonic()
        if pause > 0:
            self._sleep(pause)
        self._last_start = time.monotonic()
        self.requests += 1
        try:
            if payload is None:
                response = self._client.request(method, path)
            else:
                response = self._client.request(method, path, content=json.dumps(payload).encode(),
                                                headers={"content-type": "application/json"})
        except httpx.TimeoutException as err:
            raise _Transient(f"no answer within the {self.timeout_s:g} s timeout ({type(err).__name__})") from err
        except httpx.TransportError as err:
            tls = _tls_failure(err)
            if isinstance(tls, ssl.SSLCertVerificationError):  # not retried: it would fail the same way
                raise EndpointError(f"{method} {self.base_url}{path}: the server's TLS certificate did not verify "
                                    f"({_one_line(self.redact(str(tls)))}). If it is signed by a private or "
                                    f"self-signed CA, pass that CA's certificate with --ca-cert (ca_cert=); "
                                    f"--insecure (insecure=True) skips verification.") from err
            if tls is not None:
                raise EndpointError(f"{method} {self.base_url}{path}: the TLS handshake failed "
                                    f"({_one_line(self.redact(str(tls)))}). Does the server speak TLS on this port "
                                    f"(else use http://), and does it accept this client?") from err
            raise _Transient(f"connection failed ({type(err).__name__}: {self.redact(str(err))})") from err

        def text(limit: int) -> str:
            return _one_line(self.redact(response.text[:limit]))

        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code}: {text(200)}",
                             _retry_after(response.headers.get("retry-after")))
        if response.status_code in (401, 403):
            given = f"the headers {self.header_names} were sent" if self.header_names else "no credentials were sent"
            raise EndpointError(f"{method} {self.base_url}{path} was refused with HTTP {response.status_code} "
                                f"({given}): {text(300)} Check the credentials (--token, --header NAME:VALUE).")
        if response.status_code >= 400:
            raise EndpointError(f"{method} {self.base_url}{path} was refused with HTTP {response.status_code}: "
                                f"{text(300)}")
        try:
            return response.json()
        except ValueError as err:
            raise EndpointError(f"{method} {self.base_url}{path} answered HTTP {response.status_code} with a body "
                                f"that is not JSON: {self.redact(response.text[:200])!r}.") from err

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """Send one JSON request (retrying transient failures); return the decoded JSON answer."""
        tenacity = self._tenacity
        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(self.retries + 1), wait=self._wait,
                                     retry=tenacity.retry_if_exception_type(_Transient), sleep=self._sleep,
                                     reraise=True)
        try:
            return retrying(self._once, method, path, payload)
        except _Transient as err:
            raise EndpointError(f"{method} {self.base_url}{path} failed after {self.retries + 1} attempt(s): {err}. "
                                f"Check that the server is up and reachable, or raise the timeout / retries "
                                f"(--timeout, --retries).") from err

    def close(self) -> None:
        self._client.close()


def _one_line(text: str) -> str:
    """Errors are one line: a server's multi-line message is folded."""
    return " ".join(text.split())
