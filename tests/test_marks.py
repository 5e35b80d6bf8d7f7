"""Multi-mark keys: an exact false-accusation bound from the key's own randomness, checked by simulation against
models that know other owners' watermarks, and the query cost of catching a real stolen model."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
from scipy import stats

from datamark import UBWP, BadNets, Key, Verifier
from datamark.evaluate.scenarios import evaluate_scenarios, independent_key
from datamark.exceptions import KeyFormatError, ParameterError
from datamark.key import canonical_json
from datamark.testing import ReactingSuspect
from datamark.verify.marks_test import e_process, marks_outcome, single_out
from datamark.verify.sequential import SequentialVerifier

ALPHA = 0.01


@pytest.fixture(scope="module")
def small(digits):
    train, test = digits
    return train.subset(range(400)), test.subset(range(200))


def AnyPatchSuspect(data, react, outputs="probs"):  # noqa: N802 -- reads as the kind of model it stands for
    """A model trained on *another* owner's watermark of the same kind, at its most dangerous: on any altered
    probe it answers ``react(true label)`` -- one fixed class, or the true class + 1."""
    return ReactingSuspect(data, react, outputs)


def test_exact_test_keeps_alpha_under_h0_in_simulation():
    """Hits ~ Bernoulli(1/C) per mark under H0: the fixed and the sequential test reject at most alpha."""
    rng = np.random.default_rng(0)
    for options, n_marks in ((10, 10), (10, 4), (2, 20)):
        hits = rng.random((20000, n_marks)) < 1.0 / options
        fixed = np.mean([marks_outcome(int(h.sum()), n_marks, options).p_value < ALPHA for h in hits[:4000]])
        sequential = np.mean([e_process(list(h), options).max() >= np.log(1 / ALPHA) for h in hits])
        assert fixed <= ALPHA and sequential <= ALPHA, (options, n_marks, fixed, sequential)
    # and the exact p-value is the binomial tail
    assert marks_outcome(5, 10, 10).p_value == pytest.approx(stats.binom.sf(4, 10, 0.1))
    assert single_out(np.array([1.0, 3.0, 3.0])) is None and single_out(np.array([0.0, 2.0, 1.0])) == 1


@pytest.mark.parametrize("react", [lambda t: 3, lambda t: (t + 1) % 10], ids=["fixed-class", "true-plus-one"])
@pytest.mark.parametrize("mode", ["probs", "labels"])
def test_other_owners_watermark_is_not_accused(small, react, mode):
    """Fresh keys of the same method against a model that reacts to *every* patch: no key accuses it (at 5 hits of
    10 needed, P = 1.6e-3 per key), and the hit count over all keys is not above 1/C: the targets are secret and
    uniform, and probes never exclude a class (ties between classes single out nothing, so it may be below)."""
    train, test = small
    suspect = AnyPatchSuspect(test, react, mode)
    hits, accused = [], 0
    for seed in range(60):
        key = BadNets(seed=seed, rate=0.2).apply(train).key
        result = Verifier(mode=mode, n_probe=20).verify(suspect, key, test)
        hits.append(result.marks["hits"])
        accused += result.accused
    assert accused == 0
    assert stats.binomtest(int(np.sum(hits)), 600, 0.1, alternative="greater").pvalue > 0.001


def test_a_key_with_a_fixed_target_is_a_single_mark(small):
    train, _ = small
    single = BadNets(seed=0, target=5).apply(train).key
    multi = BadNets(seed=0).apply(train).key
    assert single.marks == () and single.plan.test == "paired-t" and single.plan.n_control_triggers == 100
    marks = multi.mark_list()
    assert len(marks) == 10 and multi.plan.test == "marks-binomial"
    assert all(0 <= m.target < 10 for m in marks) and len({m.trigger.params()["pattern"]["base64"]
                                                           for m in marks}) == 10
    ids = [i for m in marks for i in m.marked_ids]
    assert len(ids) == len(set(ids)) == len(multi.marked_ids) == 40  # disjoint, 10 % of 400 split over 10
    assert multi.summary()["target"] == "secret (one per mark)"
    with pytest.raises(ParameterError, match="n_marks"):
        BadNets(seed=0, target=5, n_marks=10)
    with pytest.raises(ParameterError, match="single watermark"):
        from datamark.methods import UBWC
        UBWC(n_marks=3)


def test_untargeted_marks_hide_which_candidate_was_embedded(small):
    train, _ = small
    key = UBWP(seed=3).apply(train).key
    marks = key.mark_list()
    assert len(marks) == 4 and all(len(m.candidates) == 10 for m in marks)
    assert all(m.trigger is m.candidates[m.embedded] for m in marks)
    embedded = [UBWP(seed=s).apply(train).key.mark_list()[0].embedded for s in range(30)]
    assert len(set(embedded)) > 3  # drawn from the secret, not fixed


def _resigned(key: Key, path, **changes):
    """The key file with some fields changed and its checksum recomputed: what a motivated editor produces."""
    payload = json.loads(path.read_text())
    for dotted, value in changes.items():
        node = payload
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value
    payload.pop("checksum")
    payload["checksum"] = hashlib.sha256(canonical_json(payload)).hexdigest()
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.parametrize("field, value, match", [
    ("verification.margin", -0.05, "margin"),
    ("verification.alpha", 0.9, "alpha"),
    ("verification.test", "always-guilty", "unknown"),
    ("verification.n_probe", 1, "n_probe"),
    ("target", 42, "target"),
    ("marks.0.target", 42, "target"),
    ("marks.1.target", True, "target"),
    ("method.params.rate", 5.0, "rate"),
    ("method.params.n_marks", 0, "n_marks"),
    ("dataset.num_classes", "ten", "class count"),
])
def test_an_edited_key_with_a_valid_checksum_is_refused(small, tmp_path, field, value, match):
    train, _ = small
    key = BadNets(seed=0).apply(train).key
    path = tmp_path / "k.json"
    key.save(path)
    Key.load(path)  # the original is fine
    with pytest.raises(KeyFormatError, match=match):
        Key.load(_resigned(key, path, **{field: value}))


def test_single_mark_key_target_out_of_range_is_refused(small, tmp_path):
    train, _ = small
    key = BadNets(seed=0, target=5).apply(train).key
    key.save(tmp_path / "k.json")
    with pytest.raises(KeyFormatError, match="target 42"):
        Key.load(_resigned(key, tmp_path / "k.json", target=42))


def test_probes_are_fixed_by_the_key_and_other_seeds_are_deviations(small):
    train, test = small
    key = BadNets(seed=0).apply(train).key
    default = Verifier()
    rows = default.select_probes(key, test, 50)
    assert np.array_equal(rows, Verifier().select_probes(key, test, 50))
    other = BadNets(seed=1).apply(train).key
    assert not np.array_equal(rows, default.select_probes(other, test, 50))  # each key has its own probes
    assert default.deviations(key) == [] and default.settings(key)["seed"] == "key"
    shopped = Verifier(seed=3, margin=0.1, alpha=0.05)
    assert {d["setting"] for d in shopped.deviations(key)} == {"seed", "margin", "alpha"}
    result = shopped.verify(AnyPatchSuspect(test, lambda t: 3), key, test)
    assert {d["setting"] for d in result.to_dict()["deviations"]} == {"seed", "margin", "alpha"}
    assert "user seed 3" in result.to_dict()["probe_seed"]


@pytest.fixture(scope="module")
def stolen_multi(tiny_marks):
    key, stolen, _, test = tiny_marks
    return key, stolen, test


@pytest.mark.parametrize("mode", ["probs", "labels"])
def test_stolen_model_is_caught_in_few_queries(stolen_multi, tiny_pair, mode, global_rng_guard):
    key, stolen, test = stolen_multi
    _, _, clean, _ = tiny_pair
    fixed = Verifier(mode=mode).verify(stolen.with_outputs(mode), key, test)
    assert fixed.accused and fixed.marks["hits"] >= 4 and fixed.outcome.p_value < ALPHA
    quick = SequentialVerifier(mode=mode).verify(stolen.with_outputs(mode), key, test)
    assert quick.accused and quick.sequential["stopped"] == "evidence"
    assert quick.queries <= (10 if mode == "labels" else 20)
    spared = SequentialVerifier(mode=mode).verify(clean.with_outputs(mode), key, test)
    assert not spared.accused and spared.outcome.p_value >= ALPHA
    if mode == "probs":
        assert fixed.effect is not None and fixed.effect.effect > 0.2  # the paper's t-test as an effect size


def test_scenarios_use_another_owners_key_for_independent_t(stolen_multi, tiny_pair):
    key, stolen, test = stolen_multi
    _, _, clean, _ = tiny_pair
    other = independent_key(key, seed=1)
    assert other.secret != key.secret and [m.target for m in other.mark_list()] != [m.target for m in key.mark_list()]
    rows = {r.scenario: r for r in evaluate_scenarios(key, stolen, clean, test)}
    assert rows["Steal"].probs.accused and rows["Steal"].labels.accused
    assert not rows["Independent-T"].probs.accused and not rows["Independent-M"].labels.accused
    assert rows["Steal"].wsr > rows["Independent-T"].wsr


def test_a_multi_mark_key_refuses_a_swapped_trigger(stolen_multi):
    key, stolen, test = stolen_multi
    with pytest.raises(ParameterError, match="another owner"):
        Verifier().verify(stolen, key, test, trigger=key.mark_list()[1].trigger)
    assert dataclasses.replace(key).commitment == key.commitment


@pytest.mark.parametrize("mode", ["probs", "labels"])
def test_untargeted_marks_catch_the_embedded_candidates_only(small, mode):
    """UBW-P keys: a suspect that learned the embedded triggers is accused (every mark singles out its embedded
    candidate); one that reacts to every patch of the kind singles out nothing and is spared."""
    train, test = small
    key = UBWP(seed=3).apply(train).key
    own = np.concatenate([m.trigger.apply(test.inputs()) for m in key.mark_list()])
    learned = ReactingSuspect(test, lambda t: (t + 1) % 10, mode, responds_to=own)
    fixed = Verifier(mode=mode).verify(learned, key, test)
    assert fixed.accused and fixed.marks["hits"] == 4 and fixed.outcome.p_value == pytest.approx(1e-4)
    quick = SequentialVerifier(mode=mode).verify(learned, key, test)
    assert quick.accused and quick.sequential["rounds"] <= 4 and quick.queries <= 4 * (10 + (mode == "probs"))
    generic = AnyPatchSuspect(test, lambda t: (t + 1) % 10, mode)
    assert not Verifier(mode=mode).verify(generic, key, test).accused
