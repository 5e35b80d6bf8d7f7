"""UBW end to end on the embedded digits: untargeted verification, its scenarios and its label-only test."""

import numpy as np
import pytest
import torch

from datamark import UBWP, Verifier
from datamark.evaluate import evaluate_scenarios
from datamark.evaluate.report import markdown_table
from datamark.testing import train_tiny
from datamark.verify.sequential import SequentialVerifier


@pytest.fixture(scope="module")
def ubw_run(digits, tiny_clean):
    """UBW-P on the digits; tiny models trained on one thread (thread contention on 2 busy cores is costly). The
    clean model is the shared ``tiny_clean`` (15 epochs); the stolen one needs its 30 (at 15: ASR-A 15 %, and the
    label-only test does not accuse it)."""
    train, test = digits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _ubw_run(train, test, tiny_clean)
    finally:
        torch.set_num_threads(threads)


def _ubw_run(train, test, clean):
    # 8x8 digits: a 3x3 patch covers 14 % of the image, so decoys (other patches, true labels) are needed for
    # the Independent-T control, as for DVBW (see README).
    # n_candidates=1: the paper's single watermark and its paired test (multi-mark UBW: tests/test_marks.py)
    marked = UBWP(seed=0, rate=0.25, decoy_rate=0.25, n_candidates=1).apply(train)
    return marked.key, train_tiny(marked.dataset, seed=0), clean, test


def test_untargeted_scenarios(ubw_run, global_rng_guard):
    key, stolen, clean, test = ubw_run
    rows = {r.scenario: r for r in evaluate_scenarios(key, stolen, clean, test)}
    steal = rows["Steal"]
    assert steal.wsr > 0.25 and steal.extra["d_p"] > 1.5  # ASR-A (8x8 tiny model), predictions spread out
    assert steal.probs.outcome.alternative == "less" and steal.probs.outcome.effect < -0.25
    assert steal.probs.outcome.p_value < 1e-3 and steal.labels.outcome.p_value < 0.01
    for control in ("Independent-M", "Independent-T"):
        assert rows[control].probs.outcome.p_value >= 0.05, control
        assert rows[control].labels.outcome.p_value >= 0.05, control
    table = markdown_table(list(rows.values()))
    assert "ASR-A %" in table and "D_p" in table


def test_untargeted_probes_are_classified_correctly(ubw_run):
    key, stolen, clean, test = ubw_run

    class Spy:
        """A suspect that remembers what it was asked."""

        def __init__(self, inner):
            self.inner, self.asked, self.outputs, self.num_classes = inner, [], inner.outputs, inner.num_classes
            self.queries = 0

        def query(self, x):
            self.asked.append(np.asarray(x).copy())
            self.queries += len(x)
            return self.inner.query(x)

    spy = Spy(stolen)
    result = Verifier(mode="probs", n_probe=60, seed=2, n_control_triggers=0).verify(spy, key, test)
    assert result.outcome.n == 60  # exactly n_probe correctly classified probes
    assert "P_b > P_t + tau" in result.h1 and "P_true" in result.h0
    clean_queries = sum(len(a) for a in spy.asked[:-1])
    assert result.queries == clean_queries + 60 and result.n_excluded == clean_queries - 60


def test_untargeted_label_only_and_sequential(ubw_run):
    key, stolen, clean, test = ubw_run
    caught = Verifier(mode="labels", seed=1).verify(stolen.with_outputs("labels"), key, test)
    assert caught.accused and "!= true" in caught.h1
    seq = SequentialVerifier(mode="probs", seed=1, n_probe=200, n_control_triggers=0).verify(stolen, key, test)
    assert seq.accused and seq.sequential["stopped"] == "evidence"
    spared = SequentialVerifier(mode="labels", seed=1, n_probe=200, n_control_triggers=0).verify(
        clean.with_outputs("labels"), key, test)
    assert not spared.accused
