"""The trigger-specificity control: a suspect that reacts to *any* trigger of the key's kind is not accused."""

import dataclasses

import pytest

from datamark import UBWP, BadNets, Verifier
from datamark.exceptions import ParameterError
from datamark.testing import ReactingSuspect
from datamark.triggers import Trigger
from datamark.verify.evidence import verifier_from_settings
from datamark.verify.sequential import SequentialVerifier

pytestmark = pytest.mark.filterwarnings("ignore::datamark.exceptions.DegenerateTestWarning")  # synthetic suspects


def _suspects(key, test, react, outputs):
    """(generic, specific): reacts to every altered probe / only to probes carrying the key's own trigger."""
    own = Trigger.from_config(key.trigger).apply(test.inputs())
    return ReactingSuspect(test, react, outputs), ReactingSuspect(test, react, outputs, responds_to=own)


@pytest.fixture(scope="module")
def probes(digits):
    train, test = digits
    return train.subset(range(300)), test.subset(range(150))


@pytest.mark.parametrize("mode", ["probs", "labels"])
def test_targeted_generic_reaction_is_not_accused_with_the_control(probes, mode):
    train, test = probes
    key = BadNets(seed=0, target=5).apply(train).key
    generic, specific = _suspects(key, test, lambda label: 5, mode)
    plain = Verifier(mode=mode, n_probe=60, n_control_triggers=0).verify(generic, key, test)
    assert plain.accused and plain.specificity is None  # without the control: a false accusation
    assert {"setting": "n_control_triggers", "key": 100, "used": 0} in plain.deviations
    default = Verifier(mode=mode, n_probe=60).verify(generic, key, test)  # a single-mark key runs it by default
    assert not default.accused and default.specificity.n == 100
    checked = Verifier(mode=mode, n_probe=60, alpha=0.05, n_control_triggers=20).verify(generic, key, test)
    assert not checked.accused and checked.outcome.p_value < checked.alpha
    assert checked.specificity.p_value == 1.0 and "specificity control failed" in checked.verdict
    assert checked.to_dict()["specificity"]["n"] == 20
    real = Verifier(mode=mode, n_probe=60, alpha=0.05, n_control_triggers=20).verify(specific, key, test)
    assert real.accused and real.specificity.p_value == pytest.approx(1 / 21)  # the smallest possible: 1/(k+1)
    assert real.queries == 2 * 60 + 20 * 60  # clean + key-triggered + twenty control triggers per kept probe


def test_untargeted_control_uses_the_correct_probes(probes):
    train, test = probes
    key = UBWP(seed=0, n_candidates=1).apply(train).key  # the paper's single watermark
    generic, specific = _suspects(key, test, lambda label: (label + 1) % 10, "probs")
    assert not Verifier(n_probe=50, n_control_triggers=100).verify(generic, key, test).accused
    real = Verifier(n_probe=50, n_control_triggers=100).verify(specific, key, test)  # alpha 0.01 from the key
    assert real.accused and real.specificity.p_value == pytest.approx(1 / 101) and real.specificity.effect > 0.5
    with pytest.raises(ParameterError, match="at least 100 control triggers"):
        Verifier(n_probe=50, n_control_triggers=20).verify(specific, key, test)


def test_a_single_mark_key_runs_the_control_by_default(probes):
    """Single-mark keys (the papers' watermark) get the control: a verifier left at None runs it, an explicit 0
    turns it off (a deviation), and the sequential test (which cannot run it) refuses such a key unless told 0.
    A multi-mark key needs no control: its own test is exact."""
    train, test = probes
    key = UBWP(seed=0, n_candidates=1).apply(train).key
    assert key.verification["n_control_triggers"] == 100
    generic, _ = _suspects(key, test, lambda label: (label + 1) % 10, "probs")
    followed = Verifier(n_probe=50).verify(generic, key, test)
    assert followed.outcome.p_value < 0.01 and followed.specificity is not None and not followed.accused
    assert Verifier().settings(key)["n_control_triggers"] == 100
    off = Verifier(n_probe=50, n_control_triggers=0).verify(generic, key, test)
    assert off.specificity is None and off.accused  # the risk the recommendation guards against
    with pytest.raises(ParameterError, match="--control-triggers 0"):
        SequentialVerifier(n_probe=50).verify(generic, key, test)
    old = dataclasses.replace(key, verification={k: v for k, v in key.verification.items()
                                                 if k != "n_control_triggers"})
    assert Verifier().control_triggers(old) == 100  # keys written before the control was the default get it too
    assert Verifier().control_triggers(UBWP(seed=0).apply(train).key) == 0


def test_control_settings_round_trip_and_errors(probes):
    train, _ = probes
    key = BadNets(seed=0, target=5).apply(train).key
    settings = Verifier(n_control_triggers=4).settings(key)
    assert verifier_from_settings(settings).n_control_triggers == 4
    assert Verifier().settings(key)["n_control_triggers"] == 100  # the single-mark default
    assert "n_control_triggers" not in Verifier(n_control_triggers=0).settings(key)
    with pytest.raises(ParameterError, match="n_control_triggers"):
        Verifier(n_control_triggers=-1)
    with pytest.raises(ParameterError, match="fixed-n test only"):
        SequentialVerifier(n_control_triggers=2)


def test_scenarios_report_the_control(tiny_pair):
    """On a real (tiny) stolen model the key's trigger beats independent ones; the table shows the control."""
    from datamark.evaluate import evaluate_scenarios
    from datamark.evaluate.report import SPECIFICITY, markdown_table

    key, stolen, clean, test = tiny_pair
    rows = {r.scenario: r for r in evaluate_scenarios(key, stolen, clean, test,
                                                      verifier=Verifier(alpha=0.05, n_control_triggers=39))}
    assert rows["Steal"].probs.accused and rows["Steal"].labels.accused
    assert rows["Steal"].probs.specificity.p_value == pytest.approx(1 / 40)
    assert not rows["Independent-T"].probs.accused and not rows["Independent-M"].labels.accused
    assert SPECIFICITY in markdown_table(list(rows.values()))
