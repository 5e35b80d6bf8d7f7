"""What every remote suspect shares: a hard query budget, batching, input checks and closing the connection.

A subclass sets ``outputs``, ``num_classes``, ``batch_size``, ``budget``, ``endpoint`` and ``_http`` (a
:class:`~._transport.Transport`) and implements :meth:`RemoteSuspect._ask` for one batch.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import QueryBudgetError, SuspectError
from ..modalities import get_modality
from ._transport import Transport
from .base import Outputs


class RemoteSuspect:
    """Base of :class:`~.http.HTTPSuspect` and :class:`~.json_endpoint.JSONSuspect`."""

    outputs: Outputs
    num_classes: int
    batch_size: int
    budget: int | None
    queries: int
    endpoint: str
    _http: Transport
    modality_name: str = "image"  # the kind of data the endpoint takes; subclasses set it from their format

    @property
    def budget_left(self) -> int | None:
        """Examples that may still be sent (None: no budget)."""
        return None if self.budget is None else self.budget - self.queries

    def _spend(self, n: int) -> None:
        """Count ``n`` examples about to be sent; raise, sending nothing, if that would pass the budget."""
        left = self.budget_left
        if left is not None and n > left:
            raise QueryBudgetError(f"Querying {n} more example(s) from {self.endpoint} would exceed the query budget "
                                   f"of {self.budget} ({self.queries} used); raise the budget (--budget) or probe "
                                   f"less (--n-probe, or --sequential to stop as soon as the evidence is conclusive).")
        self.queries += n

    def _ask(self, images: np.ndarray) -> np.ndarray:
        """Validated answers for one batch (call :meth:`_spend` before sending)."""
        raise NotImplementedError

    def query(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities (N x K) or labels (N) for a batch of the endpoint's modality (uint8 N x H x W x C
        images, or strings), ``batch_size`` per request."""
        try:
            inputs = get_modality(self.modality_name).batch(inputs, f"sent to {self.endpoint}")
        except ValueError as err:
            raise SuspectError(f"{type(self).__name__}.query takes {self.modality_name} input: {err}") from err
        if self.modality_name == "image" and inputs.ndim != 4:
            raise SuspectError(f"{type(self).__name__}.query takes uint8 N x H x W x C images; got {inputs.dtype} "
                               f"{inputs.shape}.")
        left = self.budget_left
        if left is not None and len(inputs) > left:
            self._spend(len(inputs))  # raises before any request of this call is sent
        chunks = [self._ask(inputs[s:s + self.batch_size]) for s in range(0, len(inputs), self.batch_size)]
        if not chunks:
            return np.zeros((0, self.num_classes)) if self.outputs == "probs" else np.zeros(0, dtype=np.int64)
        return np.concatenate(chunks)

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
