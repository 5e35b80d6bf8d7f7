"""Sequential verification: calibration and power by simulation, then real tiny models (stolen vs clean)."""

import math

import numpy as np
import pytest

from datamark import Verifier
from datamark.exceptions import ParameterError
from datamark.verify.sequential import SequentialVerifier, betting_log_wealth, betting_state

ALPHA, REPS, T = 0.05, 3000, 300


def _rejection_rate(x, margin, lower):
    """Share of simulated paths whose wealth ever reaches 1/alpha, and the mean stopping time."""
    log_wealth = betting_log_wealth(x, margin=margin, lower=lower)
    crossed = log_wealth >= math.log(1 / ALPHA)
    hit = crossed.any(axis=1)
    return hit.mean(), np.where(hit, crossed.argmax(axis=1) + 1, x.shape[1]).mean()


def _mc_slack(p):
    return 3 * math.sqrt(p * (1 - p) / REPS)


# Boundary nulls (mean exactly tau): the extreme two-point law maximises the variance, the hardest case.
NULLS = {
    "probs two-point +-1": (lambda rng, tau: np.where(rng.random((REPS, T)) < (1 + tau) / 2, 1.0, -1.0), -1.0),
    "probs uniform": (lambda rng, tau: rng.uniform(2 * tau - 1, 1, (REPS, T)), -1.0),
    "labels Bernoulli": (lambda rng, tau: (rng.random((REPS, T)) < tau).astype(float), 0.0),
}


@pytest.mark.parametrize("name", sorted(NULLS))
@pytest.mark.parametrize("tau", [0.05, 0.2, 0.5])
def test_false_positive_rate_is_at_most_alpha_on_the_boundary(name, tau):
    draw, lower = NULLS[name]
    rate, _ = _rejection_rate(draw(np.random.default_rng(7), tau), tau, lower)
    assert rate <= ALPHA + _mc_slack(ALPHA), (name, tau, rate)


@pytest.mark.parametrize("tau", [0.05, 0.2])
def test_power_against_a_modest_effect(tau):
    rng = np.random.default_rng(1)
    probs = np.clip(rng.normal(tau + 0.15, 0.3, (REPS, T)), -1, 1)
    labels = (rng.random((REPS, T)) < tau + 0.2).astype(float)
    for x, lower in ((probs, -1.0), (labels, 0.0)):
        rate, mean_stop = _rejection_rate(x, tau, lower)
        assert rate > 0.99 and mean_stop < T / 3, (tau, lower, rate, mean_stop)


def test_futility_stops_an_innocent_run_without_rejecting():
    rng = np.random.default_rng(2)
    state = betting_state(np.clip(rng.normal(0.0, 0.05, 200), -1, 1), margin=0.2, lower=-1, upper=1)
    assert state.futile(ALPHA) and not state.rejected(ALPHA)


def test_bad_parameters_are_refused():
    with pytest.raises(ParameterError, match="margin > lower"):
        betting_log_wealth([0.1], margin=-1.0, lower=-1.0)
    with pytest.raises(ParameterError, match="bet_cap"):
        SequentialVerifier(bet_cap=1.0)
    with pytest.raises(ParameterError, match=r"\[0.0, 1.0\]"):
        betting_state([1.5], margin=0.2, lower=0.0, upper=1.0)


@pytest.mark.parametrize("mode", ["probs", "labels"])
def test_real_models_stolen_accused_early_clean_spared(tiny_pair, mode, global_rng_guard):
    key, stolen, clean, test = tiny_pair
    # tiny_pair's key is single-mark: its paired test is tested here without the specificity control (a deviation)
    verifier = SequentialVerifier(mode=mode, n_probe=200, batch_size=10, seed=0, n_control_triggers=0)
    fixed = Verifier(mode=mode, seed=0, n_control_triggers=0).verify(stolen.with_outputs(mode), key, test)
    caught = verifier.verify(stolen.with_outputs(mode), key, test)
    assert caught.accused and caught.sequential["stopped"] == "evidence"
    assert caught.queries == 2 * caught.sequential["probes_used"] < fixed.queries
    spared = verifier.verify(clean.with_outputs(mode), key, test)
    assert not spared.accused and spared.sequential["stopped"] in ("futility", "max_probes")
    assert spared.outcome.p_value > key.verification.get("alpha", 0.01)
    print(f"{mode}: stolen stopped after {caught.queries} queries (fixed test: {fixed.queries}); clean after "
          f"{spared.queries} ({spared.sequential['stopped']})")


def test_probe_order_is_keyed_and_reproducible(tiny_pair):
    key, _, _, test = tiny_pair
    a = SequentialVerifier(seed=4).select_probes(key, test, 50, keyed_order=True)
    b = SequentialVerifier(seed=4).select_probes(key, test, 50, keyed_order=True)
    assert np.array_equal(a, b) and not np.array_equal(a, np.sort(a))
    assert np.array_equal(np.sort(a), Verifier(seed=4).select_probes(key, test, 50))
