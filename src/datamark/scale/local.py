"""The local engine: shard tasks on worker processes of one machine (``concurrent.futures``).

``workers=1`` runs every task in this process (no pool: simplest to debug and to interrupt). More workers use a
``forkserver`` pool: each worker is forked from a server that imported datamark once, and no worker inherits the
caller's threads. Results come back in task order whatever order the tasks finish in.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from ..exceptions import ParameterError


class LocalRunner:
    """Run shard tasks on ``workers`` processes; ``order`` (a permutation of task indices, for tests) is the order
    in which tasks are started."""

    def __init__(self, workers: int = 1, *, order: Sequence[int] | None = None) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ParameterError(f"The 'workers' parameter of the local engine must be an integer >= 1; got "
                                 f"{workers!r}.")
        self.workers = workers
        self.order = None if order is None else list(order)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalRunner:
        if self.workers > 1:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["datamark.scale.work"])
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
            # start every worker now, so that pass 1 is not charged with it (and a broken pool fails early)
            list(self._pool.map(_ready, [0.05] * self.workers))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map(self, fn: Callable[..., Any], tasks: Sequence[tuple], *,
            on_done: Callable[[], None] | None = None) -> list[Any]:
        """``[fn(*t) for t in tasks]``, run in parallel; started in ``order`` when it covers the tasks;
        ``on_done()`` after each task finishes (a progress bar)."""
        on_done = on_done or (lambda: None)
        order = self.order if self.order is not None and sorted(self.order) == list(range(len(tasks))) \
            else list(range(len(tasks)))
        results: list[Any] = [None] * len(tasks)
        if self._pool is None:
            for i in order:
                results[i] = fn(*tasks[i])
                on_done()
            return results
        futures = {self._pool.submit(fn, *tasks[i]): i for i in order}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            on_done()
        return results


def _ready(seconds: float) -> int:
    """A task that holds its worker a moment, so that each of the first tasks starts its own worker."""
    time.sleep(seconds)
    return multiprocessing.current_process().pid or 0
