"""HTTP plumbing shared by the remote suspects: timeouts, retries with exponential backoff, a rate limit.

Transient failures (connection errors, timeouts, HTTP 429 and 5xx) are retried with exponential backoff
(honouring ``Retry-After`` up to the backoff cap); anything else fails at once. Every failure becomes an
:class:`~datamark.exceptions.EndpointError` naming the method, the URL, what happened and the fix.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from ..exceptions import EndpointError, ParameterError

INSTALL_HINT = 'HTTP suspects need httpx and tenacity: pip install "datamark[serve]".'


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
    """JSON over HTTP with timeouts, retries and an optional rate limit (requests per second).

    Args:
        base_url: e.g. ``http://127.0.0.1:8080``.
        timeout_s: per-request timeout (connect, read, write), seconds.
        retries: retries after the first attempt for transient failures (0 = never retry).
        backoff_s: first wait; doubles each retry up to ``max_backoff_s``.
        rate_limit_per_s: most requests started per second (None = unlimited); respects a provider's quota.
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``).
        sleep: the sleep function (tests pass a fake to run instantly).
    """

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.2,
                 max_backoff_s: float = 5.0, rate_limit_per_s: float | None = None, headers: dict | None = None,
                 transport: Any = None, sleep: Callable[[float], None] = time.sleep) -> None:
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
        self.timeout_s, self.retries = timeout_s, retries
        self._httpx, self._tenacity = httpx, tenacity
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers, transport=transport)
        self._min_interval_s = 1.0 / rate_limit_per_s if rate_limit_per_s else 0.0
        self._last_start = -float("inf")
        self._sleep = sleep
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self.requests = 0  # HTTP requests sent, retries included

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
            raise _Transient(f"connection failed ({type(err).__name__}: {err})") from err
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code}: {response.text[:200]}",
                             _retry_after(response.headers.get("retry-after")))
        if response.status_code >= 400:
            raise EndpointError(f"{method} {self.base_url}{path} was refused with HTTP {response.status_code}: "
                                f"{response.text[:300]}")
        try:
            return response.json()
        except ValueError as err:
            raise EndpointError(f"{method} {self.base_url}{path} answered HTTP {response.status_code} with a body "
                                f"that is not JSON: {response.text[:200]!r}.") from err

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
