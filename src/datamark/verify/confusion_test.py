"""The exact test of the confusion channel (:mod:`datamark.confusion`) and its Bonferroni union with the marks test.

Per class c, the suspect's answers on clean probes of class c give one score per other class d: the mean
log-probability of d (probability mode) or the share of answers that are d (label-only). The key's plan fixes how
the partner is scored (``confusion_score``, chosen at protect time, never by the verifier):

* ``"net"`` (keys written since it exists): the score of d on class c's probes *minus* the score of c on class d's
  probes. Confusions every model makes (cat and dog, car and truck) run both ways and cancel; the relabelled rows
  teach one way only (c to pi(c)), so what is left is the watermark (README, "The confusion channel", for what it
  gains). Two classes that are each other's partners cancel too (about one such pair in two keys of 10 classes);
  that costs those two ranks' power, never the test's level.
* ``"direct"`` (keys written before): the score alone.

The partner pi(c) is ranked among the C - 1 classes d != c (rank 1 = the largest score); ties are broken by a keyed
random order that is independent of the partners, so a constant model gets uniform ranks too. T = the sum of the
ranks.

H0: the suspect was not trained on this release. The partners are drawn from the key's secret, uniformly and
independently per class, and nothing the suspect does can depend on them, so each rank is uniform on 1..C-1 and
independent across classes: p = P(sum of n iid uniform{1..C-1} <= T), computed exactly by convolution (n = the
classes asked). Both scores are functions of the suspect's answers alone, so the argument holds for either. One-
sided: small ranks are evidence. No margin is needed.
"""

from __future__ import annotations

import numpy as np

from .stats import TestOutcome

CONFUSION_TEST_NAME = "exact rank test of the classes' secret partners"
#: How a key's confusion channel scores a partner (the plan's ``confusion_score``; see the module).
CONFUSION_SCORES = ("direct", "net")
UNION_TEST_NAME = "Bonferroni union of the marks test and the confusion test"
_FLOOR = 1e-12  # log of a zero probability


def class_scores(answers: np.ndarray, true: np.ndarray, num_classes: int, mode: str) -> np.ndarray:
    """A C x C table: row c holds, over the probes of class c, each class's mean log-probability (``probs``:
    ``answers`` are probability rows) or answer share (``labels``: ``answers`` are labels); NaN rows for classes
    without probes."""
    table = np.full((num_classes, num_classes), np.nan)
    for c in range(num_classes):
        asked = true == c
        if not asked.any():
            continue
        if mode == "probs":
            table[c] = np.log(np.clip(answers[asked], _FLOOR, 1.0)).mean(0)
        else:
            table[c] = np.bincount(answers[asked].astype(np.int64), minlength=num_classes)[:num_classes] / asked.sum()
    return table


def net_scores(table: np.ndarray) -> np.ndarray:
    """The ``"net"`` score table: ``table[c, d] - table[d, c]``, confusions of c with d beyond those of d with c. A
    class without probes has no reverse term (0 there); rows of such classes stay NaN."""
    return table - np.nan_to_num(table.T, nan=0.0)


def scored(table: np.ndarray, score: str) -> np.ndarray:
    """The table the partners are ranked on: ``table`` itself (``"direct"``) or :func:`net_scores` (``"net"``)."""
    if score not in CONFUSION_SCORES:
        raise ValueError(f"confusion score must be one of {CONFUSION_SCORES}; got {score!r}")
    return net_scores(table) if score == "net" else table


def partner_ranks(table: np.ndarray, partner: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """Each asked class's partner rank among its C - 1 other classes (1 = largest score); ``tie_break`` (C x C,
    distinct values drawn independently of the partners) orders equal scores. Classes without probes are left
    out."""
    ranks = []
    for c in range(table.shape[0]):
        if np.isnan(table[c]).any():
            continue
        others = np.array([d for d in range(table.shape[0]) if d not in (c, partner[c])])
        s, t = table[c], tie_break[c]
        ahead = (s[others] > s[partner[c]]) | ((s[others] == s[partner[c]]) & (t[others] > t[partner[c]]))
        ranks.append(1 + int(ahead.sum()))
    return np.asarray(ranks, dtype=np.int64)


def rank_sum_p(total: int, n_classes: int, options: int) -> float:
    """P(sum of ``n_classes`` iid uniform{1..options} <= ``total``), by convolution of the ranks' distribution
    (exact up to float rounding, about 1e-16)."""
    if total >= n_classes * options:
        return 1.0
    dist = np.array([1.0])
    step = np.r_[0.0, np.full(options, 1.0 / options)]
    for _ in range(n_classes):
        dist = np.convolve(dist, step)
    return float(min(1.0, dist[:total + 1].sum()))


def confusion_outcome(table: np.ndarray, partner: np.ndarray, tie_break: np.ndarray, per_class: int,
                      score: str) -> TestOutcome:
    """The exact rank test on a score table (:func:`class_scores`), the partners scored as the key's plan says
    (``score``, one of :data:`CONFUSION_SCORES`); effect: the partners' mean score above the mean of the other
    classes (log-probability or answer share; net of the reverse confusion for ``"net"``)."""
    num_classes = table.shape[0]
    table = scored(table, score)
    ranks = partner_ranks(table, partner, tie_break)
    asked = [c for c in range(num_classes) if not np.isnan(table[c]).any()]
    total = int(ranks.sum())
    p = rank_sum_p(total, len(ranks), num_classes - 1) if len(ranks) else 1.0
    lift = [table[c, partner[c]] - np.mean([table[c, d] for d in range(num_classes) if d not in (c, partner[c])])
            for c in asked]
    return TestOutcome(test=CONFUSION_TEST_NAME, alternative="less",
                       null_hypothesis=f"each class's partner rank is uniform on 1..{num_classes - 1}",
                       margin=0.0, n=len(ranks), statistic=float(total), p_value=p,
                       log10_p=float(np.log10(max(p, 1e-300))), effect=float(np.mean(lift)) if lift else 0.0,
                       note=f"{len(ranks)} classes asked, up to {per_class} clean probes each, {score} score; ranks "
                            f"{ranks.tolist()} (1 = the partner is the class the suspect confuses most"
                            f"{', beyond the reverse confusion' if score == 'net' else ''})")


def union_outcome(marks: TestOutcome, confusion: TestOutcome) -> TestOutcome:
    """Either channel may accuse: p = min(1, 2 x min(p_marks, p_confusion)), a valid p-value whatever the
    dependence between the channels (Bonferroni), so the verdict's level stays alpha."""
    p = min(1.0, 2.0 * min(marks.p_value, confusion.p_value))
    return TestOutcome(test=UNION_TEST_NAME, alternative=marks.alternative,
                       null_hypothesis="neither channel's null is rejected", margin=marks.margin,
                       n=marks.n + confusion.n, statistic=min(marks.p_value, confusion.p_value), p_value=p,
                       log10_p=float(np.log10(max(p, 1e-300))), effect=marks.effect,
                       note=f"marks p = {marks.p_value:.3g}, confusion p = {confusion.p_value:.3g}; each at alpha / 2")
