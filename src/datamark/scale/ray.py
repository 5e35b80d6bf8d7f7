"""The Ray engine: the same shard tasks as the local engine (:mod:`datamark.scale.work`), run as Ray tasks.

Every task reads and writes the input, the staged output and its work folder by path, so on a multi-node cluster
those paths must be on a filesystem every node sees (NFS, a mounted bucket); on one machine nothing more is
needed. The output is byte-identical to the local engine's: the tasks are the same functions, and the
coordinator combines their results in shard order whatever order they finish in.

``pip install "datamark[ray]"``. Connects to the cluster named by ``address`` (or ``RAY_ADDRESS``), else starts a
local one with ``num_cpus`` CPUs; a Ray runtime already started in this process (``ray.init`` by the caller) is
used as it is, and left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def import_ray():
    """The ``ray`` package, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ImportError('The Ray engine needs the \'ray\' package: pip install "datamark[ray]".') from err
    return ray


@contextlib.contextmanager
def kept_signal_handlers() -> Iterator[None]:
    """Put back this process's SIGTERM and SIGINT handlers after the block. ``ray.init`` installs its own SIGTERM
    handler and leaves it after ``ray.shutdown``; datamark's (a protect interrupted by SIGTERM rolls back what it
    wrote, then exits with 143) must stay in charge, during the run and after it."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                try:
                    signal.signal(sig, handler)
                except ValueError:  # not the main thread: handlers cannot be changed here
                    pass


class RayRunner:
    """Run shard tasks as Ray tasks (one CPU each); results in task order."""

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS")
        self.num_cpus = num_cpus
        self._started = False
        self._remote: dict[Callable, Any] = {}

    def __enter__(self) -> RayRunner:
        ray = import_ray()
        if not ray.is_initialized():
            with kept_signal_handlers():
                ray.init(address=self.address, num_cpus=None if self.address else self.num_cpus,
                         include_dashboard=False, log_to_driver=False)
            self._started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            with kept_signal_handlers():
                import_ray().shutdown()
            self._started = False

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple], *,
            on_done: Callable[[], None] | None = None) -> list[Any]:
        """``[fn(*t) for t in tasks]`` as Ray tasks; their results in task order; ``on_done()`` after each task
        finishes (a progress bar)."""
        ray = import_ray()
        remote = self._remote.setdefault(fn, ray.remote(num_cpus=1)(fn))
        refs = [remote.remote(*task) for task in tasks]
        pending = list(refs)
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            if on_done is not None:
                on_done()
        return ray.get(refs)
