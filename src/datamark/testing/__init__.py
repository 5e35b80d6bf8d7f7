"""Small, seeded helpers for our tests and for users' own tests: real embedded data, tiny fast models."""

from __future__ import annotations

from ..data.arrays import ArrayRecords
from ..data.embedded import load_digits
from ..models.train import default_config, fit
from ..suspects.local import LocalSuspect


def digits_split(n_train: int | None = None, n_test: int | None = None) -> tuple[ArrayRecords, ArrayRecords]:
    """The embedded digits (train, test), optionally cut to their first rows."""
    train, test = load_digits("train"), load_digits("test")
    if n_train is not None:
        train = train.subset(range(n_train))
    if n_test is not None:
        test = test.subset(range(n_test))
    return train, test


def train_tiny(data, *, seed: int = 0, epochs: int = 30, width: int = 32) -> LocalSuspect:
    """A TinyCNN trained on ``data`` in a few seconds, wrapped as a probability-answering suspect."""
    model, spec = fit(data, arch="tiny", config=default_config("tiny", epochs=epochs, seed=seed), width=width)
    return LocalSuspect.from_model(model, spec)
