"""Watermark metrics, one line each.

* BA (benign accuracy): share of clean test samples classified correctly.
* WSR (watermark success rate): share of triggered test samples *outside the target class* classified as the
  target (samples already in the target class would count trivially, so they are excluded, as in DVBW).
"""

from __future__ import annotations

import numpy as np

from ..data.records import Records
from ..suspects.base import Suspect, labels_of
from ..triggers.base import Trigger


def benign_accuracy(suspect: Suspect, data: Records) -> float:
    """BA: accuracy on the clean test set."""
    return float((labels_of(suspect, data.inputs()) == data.labels).mean())


def watermark_success_rate(suspect: Suspect, data: Records, trigger: Trigger, target: int) -> float:
    """WSR: share of triggered non-target-class test samples predicted as ``target``."""
    rows = np.flatnonzero(data.labels != target)
    return float((labels_of(suspect, trigger.apply(data.inputs()[rows])) == target).mean())
