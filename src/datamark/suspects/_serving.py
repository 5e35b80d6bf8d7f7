"""Running an ASGI app: a listening socket (:func:`bind`) and uvicorn in a daemon thread (:class:`BackgroundServer`,
for tests and benchmarks). FastAPI and uvicorn are optional dependencies (``pip install "datamark[serve]"``),
imported when a server is built."""

from __future__ import annotations

import socket
import threading
import time

INSTALL_HINT = 'The HTTP server needs FastAPI and uvicorn: pip install "datamark[serve]".'


def fastapi_modules():
    """FastAPI and uvicorn, imported on first use (an ImportError with the install hint without them)."""
    try:
        import fastapi
        import uvicorn
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return fastapi, uvicorn



def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket (port 0: a free port). SO_REUSEADDR lets a restarted server take the same port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """Serve an ASGI ``app`` with uvicorn in a daemon thread (for tests and benchmarks); a context manager.

    ``start()`` returns once the server accepts connections; ``stop()`` shuts it down gracefully and joins.
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 10.0) -> None:
        _, uvicorn = fastapi_modules()
        self._sock = bind(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
                                        name=f"datamark-serve-{self.port}")
        self.start_timeout_s = start_timeout_s

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The background server on {self.url} did not start within "
                                   f"{self.start_timeout_s} s.")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit, wait for the thread, close the socket (idempotent)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
