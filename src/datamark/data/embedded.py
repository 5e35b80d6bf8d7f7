"""Datasets that need no download: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).

Pixels are scaled from 0..16 to 0..255 (x16, clipped) and split once, with a fixed seed, into 1,347 training and
450 test images, so examples, tests and the demo all see the same split.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ParameterError
from .arrays import ArrayRecords

SPLITS = ("train", "test")
_TEST_SIZE = 450


def load_digits(split: str = "train") -> ArrayRecords:
    """The embedded digits split ``"train"`` or ``"test"`` as uint8 8 x 8 x 1 images."""
    if split not in SPLITS:
        raise ParameterError(f"The embedded digits have splits {SPLITS}; got '{split}'.")
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)[..., None]
    order = np.random.default_rng(20240101).permutation(len(images))  # fixed split, not a global RNG
    rows = order[_TEST_SIZE:] if split == "train" else order[:_TEST_SIZE]
    return ArrayRecords(images[rows], bunch.target[rows], [str(d) for d in range(10)], where=f"digits:{split}")
