"""The confusion channel: a trigger-free second line of evidence that survives distillation (a datamark addition).

A watermark made of triggers is a behaviour of the model *off* the data distribution: a student distilled from a
stolen model on clean images never sees a trigger, so it never learns one (issue 15: every trigger watermark we
measured lost to distillation). The confusion channel writes the evidence into the model's behaviour *on* clean
data instead, where a distilled student copies it: its softened answers on clean images are exactly what it is
trained to match (Hinton et al. 2015, "dark knowledge").

Protect: each class c gets a secret *partner* class pi(c) != c, drawn uniformly from the key's secret, and a
fraction ``confusion_rate`` of c's training rows (chosen by keyed hash among rows no mark or decoy took) is
relabelled to pi(c), the images left unchanged. A model trained on the release learns a little extra confusion
of each class with its partner: its top-1 answer rarely changes (it costs little accuracy), but the partner's
probability rises on clean images of c, and so does a distilled student's.

Verify (:mod:`datamark.verify.confusion_test`): ask the suspect on clean held-out images of each class, rank each
class's partner among its C - 1 other classes by the suspect's mean answer (net of the reverse confusion, which
confusions every model makes share and the relabelled rows do not), and sum the ranks. Under H0 (the
suspect never trained on this release) the partners are uniform, independent of the suspect, so each rank is
uniform on 1..C-1, independently across classes: the exact null of the sum is a convolution, and the test's level
holds for *any* innocent model, one trained on another owner's confusion channel included. A key that carries
the channel is verified with both its marks test and this one, each at alpha / 2 (Bonferroni), and accuses when
either rejects.

Which rows (``confusion_choice``): by default the keyed hash picks them ("keyed"). A thief who trains a model on
the release and drops the rows it fits worst (a loss filter, datamark's own adaptive detectors) finds keyed rows
easily: a clean-looking cat labelled "truck" costs a model a large loss. "partner-like" relabels instead each
class's free rows that a clean base model (the owner's, or one trained on the clean data at protect time) finds most
like the class's partner: relabelled to the partner they cost a model little, sit where the two classes meet and
move that boundary. On the full-width CIFAR-10 fastnet the keyed preset lost to the adaptive thief (p 0.075) and
the partner-like rows did not (p 3.8e-08; README, "Surviving a thief"). The test is the same and as exact: the
partners are drawn from the secret alone, and an innocent model's answers do not depend on which rows carried them.

It needs C >= 5 classes: the smallest p-value is (C - 1)^-C, which must fall below alpha / 2 (C = 4 gives 0.012).
"""

from __future__ import annotations

import numpy as np

from ._rng import generator, keyed_scores, select_smallest
from .exceptions import ParameterError

#: The fewest classes the channel works with: its smallest p-value (C - 1)^-C must be below alpha / 2 = 0.005.
MIN_CLASSES = 5
#: The largest confusion rate accepted: beyond it the relabelled rows are label noise a model pays for.
MAX_RATE = 0.2
#: Clean probes per class of a key's default plan (up to C x this many queries; fewer where the data has fewer).
#: The test's level is exact at any number; with labels only the score is a share of answers whose noise falls as
#: 1 / sqrt(probes), and 1,000 a class (all of CIFAR-10's test split) took the stolen model of a 10 % key from
#: p 0.011 to 0.00091 (``benchmarks/confusion_probes.py``). Keys written with 100 keep 100 (their plan says so).
PROBES_PER_CLASS = 1000
#: How each class's relabelled rows are chosen: by keyed hash, or the rows a base model finds most partner-like.
CONFUSION_CHOICES = ("keyed", "partner-like")
#: Rows a base model ranks per forward pass when choosing partner-like rows (bounds the decoded inputs in memory).
RANK_CHUNK = 4096


def check_classes(num_classes: int, where: str) -> None:
    if num_classes < MIN_CLASSES:
        raise ParameterError(f"The confusion channel needs at least {MIN_CLASSES} classes (its smallest p-value is "
                             f"(C - 1)^-C); {where} has {num_classes}. Protect without confusion_rate.")


def partners(secret: bytes, num_classes: int) -> np.ndarray:
    """Each class's secret partner: uniform over the other C - 1 classes, independently per class."""
    draws = generator(secret, "confusion").integers(num_classes - 1, size=num_classes)
    return np.where(draws >= np.arange(num_classes), draws + 1, draws).astype(np.int64)  # skip the class itself


def confusion_rows(secret: bytes, ids: list[str], labels: np.ndarray, rate: float, free: np.ndarray,
                   scores: np.ndarray | None = None) -> np.ndarray:
    """Sorted positions of the relabelled rows: round(rate x n_c) of each class c among ``free`` rows, those with
    the smallest ``scores`` (default: the keyed hash; rows a mark or a decoy took are never chosen)."""
    scores = keyed_scores(secret, ids, "confusion") if scores is None else scores
    chosen = []
    for c in np.unique(labels):
        in_class = labels == c
        k = int(round(rate * in_class.sum()))
        available = int((in_class & free).sum())
        if k > available:
            raise ParameterError(f"confusion_rate={rate} needs {k} unmarked rows of class {int(c)}; only "
                                 f"{available} are left. Lower confusion_rate, rate or decoy_rate.")
        if k:
            chosen.append(select_smallest(scores, k, in_class & free))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def partner_likeness(base, data, partner: np.ndarray, free: np.ndarray) -> np.ndarray:
    """The partner-like order of :func:`confusion_rows` (smallest first): minus the probability ``base`` (a
    :class:`~datamark.methods._surrogate.BaseModel`) gives each ``free`` row's class partner; taken rows rank last."""
    from .suspects import LocalSuspect

    suspect = LocalSuspect.from_model(base.model, base.spec)
    labels = np.asarray(data.labels)
    rows = np.flatnonzero(free)
    order = np.full(len(data), np.inf)
    for start in range(0, len(rows), RANK_CHUNK):
        chunk = rows[start:start + RANK_CHUNK]
        order[chunk] = -suspect.query(data.take(chunk))[np.arange(len(chunk)), partner[labels[chunk]]]
    return order
