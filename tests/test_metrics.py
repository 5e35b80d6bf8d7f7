import math

import numpy as np
import pytest

from datamark.evaluate.metrics import (
    class_dispersibility,
    entropy,
    label_dispersibility,
    sample_dispersibility,
    untargeted_success,
)
from datamark.triggers import make_patch_trigger


def test_entropy_of_known_distributions():
    assert entropy(np.array([1.0, 0, 0])) == 0.0
    assert entropy(np.full(10, 0.1)) == pytest.approx(math.log(10))
    assert entropy(np.array([0.5, 0.5])) == pytest.approx(math.log(2))


def test_label_dispersibility_bounds():
    assert label_dispersibility(np.full(100, 3), 10) == 0.0
    assert label_dispersibility(np.tile(np.arange(10), 10), 10) == pytest.approx(math.log(10))
    assert label_dispersibility(np.array([0, 0, 1, 1]), 10) == pytest.approx(math.log(2))


def test_sample_and_class_dispersibility():
    one_hot = np.eye(4)[[0, 1, 2, 3, 0, 1]]
    assert sample_dispersibility(one_hot) == 0.0
    # every sample is one-hot, but class 0's samples go to two different classes: class-wise entropy ln 2
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(4)[[0, 1, 2, 2, 3, 3]]
    assert class_dispersibility(probs, labels) == pytest.approx(math.log(2) / 3)


class _FixedSuspect:
    """Predicts the true label on clean images and a fixed rotation of it on triggered ones (bright corner)."""

    outputs, num_classes, queries = "labels", 10, 0

    def __init__(self, labels_of_clean):
        self.lookup = labels_of_clean

    def query(self, inputs):
        triggered = inputs[:, -1, -1, 0] == 255
        base = self.lookup[: len(inputs)]
        return np.where(triggered, (base + 1) % 10, base)


def test_untargeted_success_counts_changed_predictions(digits):
    _, test = digits
    test = test.subset(range(50))
    trigger = make_patch_trigger(test.input_shape, np.random.default_rng(0), pattern="white")
    out = untargeted_success(_FixedSuspect(test.labels), test, trigger)
    assert out["asr_a"] == 1.0 and out["asr_c"] == 1.0
    assert 0 < out["d_p"] <= math.log(10)
