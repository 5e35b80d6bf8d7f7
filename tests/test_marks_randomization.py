"""The randomization marks test (``marks-randomization``, the default of keys whose marks have two options, as on
binary tasks): the exact p-value over the marks' secret choices on centred shares.

Checked here: the meet-in-the-middle count equals brute force (ties included), the p-value is exact under H0
(never below its level on tables independent of the choices), a class bias common to every trigger changes
nothing, a suspect that follows every mark reaches the floor 2^-K, too large an enumeration is refused, binary
keys recommend the test while few-option keys keep the count, and a stolen tiny binary model is accused while a
clean one and another owner's key are not."""

import itertools

import numpy as np
import pytest

from datamark import BadNets, Key
from datamark.data.arrays import ArrayRecords
from datamark.exceptions import ParameterError
from datamark.testing import check_three_scenarios, train_tiny
from datamark.verify.marks_test import centred_shares, randomization_outcome, randomization_p
from datamark.verify.plan import MARKS_RANDOMIZATION, MARKS_TEST, VerificationPlan


def brute_force_p(table: np.ndarray, choices: np.ndarray) -> float:
    observed = table[np.arange(len(table)), choices].sum()
    sums = [sum(table[k, c] for k, c in enumerate(vector))
            for vector in itertools.product(range(table.shape[1]), repeat=len(table))]
    return float(np.mean(np.asarray(sums) >= observed - 1e-9))


@pytest.mark.parametrize("marks, options", [(5, 3), (6, 2), (1, 4), (7, 2)])
def test_the_count_equals_brute_force(marks, options):
    rng = np.random.default_rng(marks * 10 + options)
    for _ in range(5):
        table = rng.integers(0, 4, size=(marks, options)) / 4.0  # coarse values: many ties
        choices = rng.integers(options, size=marks)
        p, log10_p, statistic = randomization_p(table, choices)
        assert p == pytest.approx(brute_force_p(table, choices), rel=1e-12)
        assert log10_p == pytest.approx(np.log10(p)) and statistic == pytest.approx(
            table[np.arange(marks), choices].sum())


def test_the_p_value_is_exact_under_h0():
    """Tables independent of the choices (H0): P(p <= a) <= a at every level, up to the simulation's noise."""
    rng = np.random.default_rng(0)
    n = 3000
    p = np.array([randomization_p(centred_shares(rng.dirichlet(np.ones(2), size=10), 2),
                                  rng.integers(2, size=10))[0] for _ in range(n)])
    for level in (0.01, 0.05, 0.1, 0.5):
        assert np.mean(p <= level) <= level + 3 * np.sqrt(level * (1 - level) / n), level
    assert np.mean(p <= 0.5) > 0.4  # not trivially conservative


def test_a_bias_common_to_every_trigger_changes_nothing():
    """A model that sends every triggered input a little more to class 1 (whatever the trigger: the kind, not the
    key) moves every mark's shares alike; the centred statistic, and so p, stay as they were."""
    rng = np.random.default_rng(1)
    shares = rng.dirichlet(np.ones(2), size=10) * 0.5
    choices = rng.integers(2, size=10)
    biased = shares + np.array([0.0, 0.5])
    assert randomization_p(centred_shares(biased, 2), choices)[0] == pytest.approx(
        randomization_p(centred_shares(shares, 2), choices)[0])


def test_following_every_mark_reaches_the_floor():
    choices = np.array([0, 1, 1, 0, 0, 1, 0, 1, 0, 0])
    follows = np.eye(2)[choices] * 0.8 + 0.1  # 0.9 on each mark's secret class
    outcome = randomization_outcome(centred_shares(follows, 2), choices, hits=10)
    assert outcome.p_value == pytest.approx(2.0 ** -10) and outcome.effect > 0
    flipped = randomization_outcome(centred_shares(follows, 2), 1 - choices, hits=0)
    assert flipped.p_value == 1.0  # the opposite of every secret choice is the least likely


def test_too_large_an_enumeration_is_refused():
    with pytest.raises(ParameterError, match="marks-binomial"):
        randomization_p(np.zeros((40, 10)), np.zeros(40, dtype=int))


def test_binary_keys_recommend_the_randomization_test(digits):
    train = digits[0].subset(range(300))
    binary = ArrayRecords(train.inputs(), train.labels % 2, ["even", "odd"], where="parity")
    assert BadNets(seed=0).apply(binary).key.plan.test == MARKS_RANDOMIZATION
    assert BadNets(seed=0, n_candidates=5).apply(binary).key.plan.test == MARKS_TEST  # 10 options: the count
    assert BadNets(seed=0).apply(train).key.plan.test == MARKS_TEST  # 10 classes
    assert BadNets(seed=0, n_marks=1).apply(binary).key.plan.test == "paired-t"  # the paper's single mark
    assert VerificationPlan.from_dict({"test": MARKS_RANDOMIZATION, "n_probe": 100}).uses_marks


@pytest.fixture(scope="module")
def parity_models(digits):
    train, test = digits
    parity = [ArrayRecords(d.inputs(), d.labels % 2, ["even", "odd"], where=f"{d.where}[parity]")
              for d in (train, test.subset(range(300)))]
    marked = BadNets(seed=3, rate=0.2, decoy_rate=0.1).apply(parity[0])
    return marked.key, train_tiny(marked.dataset, epochs=10), train_tiny(parity[0], epochs=10), parity[1]


def test_a_stolen_binary_model_is_accused_and_the_innocent_are_not(parity_models, tmp_path):
    key, stolen, clean, probes = parity_models
    key.save(tmp_path / "k.json")
    key = Key.load(tmp_path / "k.json")
    assert key.plan.test == MARKS_RANDOMIZATION
    check_three_scenarios(key, stolen, clean, probes)


def test_every_mark_is_asked_on_the_same_n_probe_over_k_probes(parity_models):
    """The randomization test asks each of the K marks on the same n_probe / K probes (the same query cost as
    disjoint slices), so the marks' shares differ by their triggers alone."""
    from datamark import Verifier

    key, stolen, _, probes = parity_models
    seen = []

    class Watching:
        num_classes, queries, outputs = 2, 0, "labels"

        def query(self, inputs):
            seen.append(inputs)
            self.queries += len(inputs)
            return stolen.with_outputs("labels").query(inputs)

    result = Verifier(mode="labels", n_probe=300).verify(Watching(), key, probes)
    assert result.marks["probes_per_mark"] == 30 and result.queries == 300
    hosts = [{x.tobytes() for x in batch} for batch in seen]
    assert len(seen) == 10 and all(len(h) == 30 for h in hosts)
    # every mark's triggered probes come from the same 30 hosts: each differs from its host in the patch only
    base = probes.inputs()
    for batch in seen:
        nearest = {int(np.abs(base.astype(int) - x.astype(int)).reshape(len(base), -1).sum(1).argmin()) for x in batch}
        assert nearest == {int(np.abs(base.astype(int) - x.astype(int)).reshape(len(base), -1).sum(1).argmin())
                           for x in seen[0]}


def test_evidence_replays_and_sequential_bets_on_hits(parity_models, tmp_path):
    """A randomization key's run is recorded and replayed to the same p; the sequential verifier, which judges one
    mark at a time, bets on the marks' hits (valid whatever fixed-n test the key names)."""
    from datamark import Verifier
    from datamark.verify.evidence import reverify, verify_with_evidence
    from datamark.verify.sequential import SequentialVerifier

    key, stolen, _, probes = parity_models
    recorded = verify_with_evidence(Verifier(), stolen, key, probes, tmp_path / "ev.jsonl")
    replayed = reverify(tmp_path / "ev.jsonl", key, probes)
    assert replayed.outcome.p_value == recorded.outcome.p_value and replayed.outcome.test == recorded.outcome.test
    assert "randomization" in recorded.outcome.test and "uniform over the 2^10" in recorded.h0
    sequential = SequentialVerifier(mode="labels", probes_per_mark=5).verify(stolen.with_outputs("labels"), key, probes)
    assert sequential.outcome.test.startswith("betting e-process") and sequential.sequential is not None


def test_keys_too_large_to_enumerate_keep_the_count_and_an_edited_plan_is_refused_before_any_query(digits):
    """A binary key of 50 marks recommends the binomial count (2^25 choice vectors per half is too many); a key
    edited to name the randomization test where it cannot be enumerated is refused before the first query."""
    import dataclasses

    from datamark import Verifier
    from datamark.testing import ReactingSuspect
    from datamark.verify.plan import marks_test_for

    assert marks_test_for(2, 44) == MARKS_RANDOMIZATION and marks_test_for(2, 50) == MARKS_TEST
    train, test = digits
    key = BadNets(seed=0, n_marks=40, rate=0.3).apply(train).key
    edited = dataclasses.replace(key, verification={**key.verification, "test": MARKS_RANDOMIZATION})
    suspect = ReactingSuspect(test, lambda label: (label + 1) % 10)
    with pytest.raises(ParameterError, match="too large to enumerate"):
        Verifier(n_probe=400).verify(suspect, edited, test)
    assert suspect.queries == 0
