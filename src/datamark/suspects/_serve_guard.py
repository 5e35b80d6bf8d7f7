"""Who may ask the reference server (:mod:`.serve`) and how much: the size limit on a request's body and the bearer
token, checked before a request is decoded."""

from __future__ import annotations

import hmac

from ..exceptions import ParameterError

#: Default cap on an inference request's body: a batch of 64 ImageNet-size (224 x 224 x 3) UINT8 images is about
#: 40 MB of V2 JSON, so honest clients fit while a multi-gigabyte body cannot exhaust the server's memory.
MAX_REQUEST_BYTES = 64 * 2**20


class Refusal(Exception):
    """A request refused with an HTTP ``status`` and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_server_options(max_request_bytes: int, token: str | None) -> None:
    """Refuse a size limit that is not a positive integer and a token that cannot travel in an HTTP header."""
    if type(max_request_bytes) is not int or max_request_bytes < 1:
        raise ParameterError(f"The server's 'max_request_bytes' must be a positive integer; got "
                             f"{max_request_bytes!r}.")
    if token is not None and not (token and token.isascii() and token.isprintable() and " " not in token):
        raise ParameterError("The server's bearer 'token' must be a non-empty string of printable ASCII without "
                             "spaces (it travels in the Authorization header); generate one with "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))'.")


def authorised(header: str | None, token: str | None) -> bool:
    """True if no token is required, or ``header`` is 'Bearer <token>' (constant-time comparison)."""
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def read_body(request, limit: int) -> bytes:
    """The request body, refused (413) as soon as the declared or the received size passes ``limit`` bytes."""
    too_big = f"The request body is larger than this server accepts ({limit} bytes); send smaller batches " \
              f"(--batch-size)."
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise Refusal(400, f"Bad Content-Length header {declared[:40]!r}.")
    if declared is not None and int(declared) > limit:
        raise Refusal(413, too_big)
    chunks, received = [], 0
    async for chunk in request.stream():  # the declared length may lie, or be absent (chunked encoding)
        received += len(chunk)
        if received > limit:
            raise Refusal(413, too_big)
        chunks.append(chunk)
    return b"".join(chunks)
