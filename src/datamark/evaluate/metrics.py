"""Watermark metrics, one line each.

* BA (benign accuracy): share of clean test samples classified correctly.
* WSR (watermark success rate): share of triggered test samples *outside the target class* classified as the
  target (samples already in the target class would count trivially, so they are excluded, as in DVBW).
* ASR-A (UBW): share of triggered test samples whose prediction differs from their true label.
* ASR-C (UBW): the same share among the test samples the model classifies correctly without the trigger.
* D_p (UBW, average prediction dispersibility): entropy, in nats, of the distribution of predicted labels on
  triggered test samples (0 = all to one class, ln K = spread evenly).
* D_s (UBW, sample-wise dispersibility): mean entropy of the predicted probability vectors of triggered samples.
* D_c (UBW, class-wise dispersibility): mean over true classes of the entropy of the class's average predicted
  probability vector on triggered samples.
* AD (clean label, accuracy drop): clean model's BA minus the watermarked model's BA, in percentage points.
* TSR (clean label, trigger success rate): WSR under the name of Tang et al. 2023.
* WDR (clean label, watermark detection rate): share of R resamples of n non-target test samples in which the
  one-sided Wilcoxon signed-rank test with margin tau rejects at alpha (the pool is queried once).

Every metric that triggers test samples uses only the samples the trigger can mark (all of them, except for
triggers such as a style rewrite that need a verb); see :func:`carriers`.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._rng import generator, seed_secret
from ..data.records import Records
from ..exceptions import DegenerateTestWarning, ParameterError
from ..suspects.base import Suspect, labels_of, require_probs
from ..triggers.base import Trigger, carrying
from ..verify.stats import wilcoxon_signed_rank


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats of probability vectors along ``axis`` (0 log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=axis)


def carriers(data: Records, trigger: Trigger, rows: np.ndarray | None = None) -> np.ndarray:
    """The rows (of ``rows``, default all) whose examples ``trigger`` can mark."""
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64)
    return rows[carrying([trigger], data, rows)]


def benign_accuracy(suspect: Suspect, data: Records) -> float:
    """BA: accuracy on the clean test set."""
    return float((labels_of(suspect, data.inputs()) == data.labels).mean())


def watermark_success_rate(suspect: Suspect, data: Records, trigger: Trigger, target: int) -> float:
    """WSR: share of triggered non-target-class test samples predicted as ``target``."""
    rows = carriers(data, trigger, np.flatnonzero(data.labels != target))
    return float((labels_of(suspect, trigger.apply(data.take(rows))) == target).mean())


def untargeted_success(suspect: Suspect, data: Records, trigger: Trigger) -> dict[str, float]:
    """ASR-A, ASR-C and D_p of an untargeted watermark (see the module docstring)."""
    rows = carriers(data, trigger)
    inputs, labels = data.take(rows), data.labels[rows]
    clean = labels_of(suspect, inputs)
    triggered = labels_of(suspect, trigger.apply(inputs))
    changed = triggered != labels
    correct = clean == labels
    return {"asr_a": float(changed.mean()),
            "asr_c": float(changed[correct].mean()) if correct.any() else float("nan"),
            "d_p": label_dispersibility(triggered, data.num_classes)}


def label_dispersibility(predicted: np.ndarray, num_classes: int) -> float:
    """D_p: entropy (nats) of the histogram of predicted labels."""
    counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=num_classes)
    return float(entropy(counts / max(counts.sum(), 1)))


def sample_dispersibility(probs: np.ndarray) -> float:
    """D_s: mean entropy (nats) of per-sample predicted probability vectors."""
    return float(entropy(probs, axis=1).mean())


def class_dispersibility(probs: np.ndarray, labels: np.ndarray) -> float:
    """D_c: mean over true classes of the entropy (nats) of the class's average predicted probabilities."""
    classes = np.unique(labels)
    return float(np.mean([entropy(probs[labels == c].mean(axis=0)) for c in classes]))


def dispersibility(suspect: Suspect, data: Records, trigger: Trigger) -> dict[str, float]:
    """D_s and D_c of a probability-answering suspect on the triggered test set."""
    require_probs(suspect, "Sample- and class-wise dispersibility")
    rows = carriers(data, trigger)
    probs = suspect.query(trigger.apply(data.take(rows)))
    return {"d_s": sample_dispersibility(probs), "d_c": class_dispersibility(probs, data.labels[rows])}


def accuracy_drop(clean_ba: float, watermarked_ba: float) -> float:
    """AD: how many percentage points of benign accuracy the watermark costs (negative: it gained)."""
    return 100.0 * (float(clean_ba) - float(watermarked_ba))


def trigger_success_rate(suspect: Suspect, data: Records, trigger: Trigger, target: int) -> float:
    """TSR (Tang et al. 2023): share of triggered non-target test samples classified as ``target`` (= WSR)."""
    return watermark_success_rate(suspect, data, trigger, target)


def watermark_detection_rate(suspect: Suspect, data: Records, trigger: Trigger, target: int, *, draws: int = 100,
                             n: int = 200, margin: float = 0.1, alpha: float = 0.05, seed: int = 0) -> float:
    """WDR: share of ``draws`` resamples of ``n`` non-target test samples (without replacement within a draw) in
    which the one-sided Wilcoxon signed-rank test, H1: P_target(triggered) - P_target(clean) > ``margin``,
    rejects at ``alpha``. Every non-target sample is queried once, clean and triggered; the draws resample those
    answers (seeded from ``seed``), so R tests cost 2 x pool queries, not 2 x R x n.
    """
    if draws < 1 or n < 2:
        raise ParameterError(f"WDR needs draws >= 1 and n >= 2 samples per draw; got draws={draws}, n={n}.")
    require_probs(suspect, "The watermark detection rate (WDR)")
    rows = carriers(data, trigger, np.flatnonzero(data.labels != target))
    if len(rows) < 2:
        raise ParameterError(f"WDR needs at least 2 test samples outside the target class {target}; "
                             f"{data.where} has {len(rows)}.")
    clean = data.take(rows)
    probs = suspect.query(np.concatenate([clean, trigger.apply(clean)]))
    control, treated = probs[:len(rows), target], probs[len(rows):, target]
    rng, k, rejected = generator(seed_secret(seed), "wdr"), min(n, len(rows)), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateTestWarning)  # all-equal draws are a documented p = 1
        for _ in range(draws):
            pick = rng.choice(len(rows), size=k, replace=False)
            outcome = wilcoxon_signed_rank(treated[pick], control[pick], margin=margin, alternative="greater")
            rejected += outcome.p_value < alpha
    return rejected / draws


def signal_to_noise_db(original: np.ndarray, marked: np.ndarray) -> dict[str, float]:
    """How much a watermark changed audio clips: per clip, 10 log10(|x|^2 / |x' - x|^2) in dB (higher: a
    quieter change), summarised as the median and 5th percentile over clips (unchanged clips: +inf, left out)."""
    x = np.asarray(original, dtype=np.float64)
    d = np.asarray(marked, dtype=np.float64) - x
    noise = (d ** 2).sum(axis=-1)
    changed = noise > 0
    if not changed.any():
        return {"n": 0, "snr_db_median": float("inf"), "snr_db_p5": float("inf")}
    snr = 10 * np.log10(np.maximum((x ** 2).sum(axis=-1)[changed], 1e-20) / noise[changed])
    return {"n": int(changed.sum()), "snr_db_median": float(np.median(snr)), "snr_db_p5": float(np.percentile(snr, 5))}
