"""Small, seeded helpers for our tests and for users' own tests: real embedded data, tiny fast models."""

from __future__ import annotations

import numpy as np

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


class ReactingSuspect:
    """A synthetic suspect for calibration tests: it knows the probe images and answers their true label on a
    clean probe; on an altered probe (a triggered one) it answers ``react(true label)`` with confidence 0.91 --
    for every alteration (a model that reacts to *any* trigger of the kind, e.g. one trained on another owner's
    watermark), or only for the inputs in ``responds_to`` (a model that learned those triggers).

    It is the most dangerous innocent model a test of trigger specificity can meet, at no training cost.
    """

    def __init__(self, data, react, outputs: str = "probs", responds_to=None) -> None:
        self.images, self.labels = data.inputs().astype(np.int64), np.asarray(data.labels)
        self.responds = None if responds_to is None else {x.tobytes() for x in responds_to}
        self.react, self.outputs, self.num_classes, self.queries = react, outputs, len(data.class_names), 0

    def _label(self, x) -> int:
        distance = np.abs(self.images - x.astype(np.int64)).reshape(len(self.images), -1).sum(1)
        nearest = int(distance.argmin())  # a trigger alters only part of the image: the probe it came from
        label = int(self.labels[nearest])
        reacts = self.responds is None or x.tobytes() in self.responds
        return self.react(label) if distance[nearest] > 0 and reacts else label

    def query(self, inputs):
        self.queries += len(inputs)
        labels = np.array([self._label(x) for x in inputs], dtype=np.int64)
        if self.outputs == "labels":
            return labels
        probs = np.full((len(inputs), self.num_classes), 0.09 / (self.num_classes - 1))
        probs[np.arange(len(inputs)), labels] = 0.91
        return probs


def check_three_scenarios(key, stolen: LocalSuspect, clean: LocalSuspect, probes, *, alpha: float = 0.01) -> None:
    """The verdicts a watermark must give in both black-box modes: the thief's model (Steal) is accused at
    ``alpha``; a model trained without the data (Independent-M) and the thief's model under another owner's key
    of the same method (Independent-T) are not. Raises ``AssertionError`` naming the failed scenario."""
    from ..evaluate.scenarios import independent_key
    from ..verify import Verifier

    for mode in ("probs", "labels"):
        verifier = Verifier(mode=mode)
        steal = verifier.verify(stolen.with_outputs(mode), key, probes)
        assert steal.accused and steal.outcome.p_value < alpha, f"Steal ({mode}) not accused: {steal.outcome}"
        assert not verifier.verify(clean.with_outputs(mode), key, probes).accused, f"Independent-M ({mode}) accused"
        other = independent_key(key, seed=1)  # another owner of the same method
        assert not verifier.verify(stolen.with_outputs(mode), other, probes).accused, f"Independent-T ({mode}) accused"
