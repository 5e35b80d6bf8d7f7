"""Forgery (issue 15): a key whose triggers or secret choices are not what its secret draws is refused on load.

The forger of these tests holds an innocent model and writes its own key file (any secret, triggers, targets,
a recomputed checksum). Its model is the worst innocent one: it sends every altered probe to class 7, whatever
the alteration (datamark.testing.ReactingSuspect) -- so a forged key whose every target is 7 accuses it, and
only the consistency check stands between that key and a verdict.
"""

import dataclasses
import json

import numpy as np
import pytest

from datamark import UBWP, BadNets, Blended, Key, Verifier
from datamark.data import from_waveforms
from datamark.exceptions import KeyFormatError, ParameterError
from datamark.marks import Mark
from datamark.testing import ReactingSuspect
from datamark.triggers.base import Trigger
from datamark.verify.consistency import check_key, provenance
from datamark.verify.result import VerificationResult
from datamark.verify.stats import TestOutcome as Outcome

DRAWN = "triggers and secret choices drawn from the secret (checked)"


@pytest.fixture(scope="module")
def train(digits):
    return digits[0].subset(range(300))


@pytest.fixture(scope="module")
def multi(train):
    return BadNets(seed=3, n_marks=5, rate=0.1).apply(train).key


def saved(key: Key, tmp_path, name: str = "k.json") -> str:
    path = tmp_path / name
    key.save(path, overwrite=True)  # save writes a fresh checksum: what a forger does by hand
    return str(path)


def with_marks(key: Key, marks: list[Mark]) -> Key:
    return dataclasses.replace(key, marks=tuple(m.to_config() for m in marks), trigger=marks[0].trigger.to_config(),
                               target=marks[0].target)


@pytest.mark.parametrize("method", [BadNets(seed=1, n_marks=5), Blended(seed=2, n_marks=3),
                                    UBWP(seed=4, n_marks=2, n_candidates=4)], ids=["badnets", "blended", "ubw-p"])
def test_honest_keys_load_and_say_their_triggers_are_drawn(method, train, tmp_path):
    key = method.apply(train).key
    again = Key.load(saved(key, tmp_path))
    assert again.commitment == key.commitment
    assert again.summary()["provenance"] == DRAWN and check_key(again).drawn


def test_a_crafted_trigger_in_a_multi_mark_key_is_refused(multi, tmp_path):
    marks = list(multi.mark_list())
    crafted = marks[2].trigger.independent(np.random.default_rng(0))  # stands for a pattern PGD-crafted on a model
    marks[2] = dataclasses.replace(marks[2], trigger=crafted)
    with pytest.raises(KeyFormatError, match="triggers are not the ones its secret draws: a forged or hand-edited "
                                             "key; mark 2's trigger differs") as info:
        Key.load(saved(with_marks(multi, marks), tmp_path))
    assert "\n" not in str(info.value) and multi.secret not in str(info.value)


def test_a_chosen_target_in_a_multi_mark_key_is_refused(multi, tmp_path):
    marks = list(multi.mark_list())
    marks[1] = dataclasses.replace(marks[1], target=(marks[1].target + 1) % 10)
    with pytest.raises(KeyFormatError, match="targets are not the ones its secret draws.*mark 1's target"):
        Key.load(saved(with_marks(multi, marks), tmp_path))


def test_an_edited_embedded_candidate_is_refused(train, tmp_path):
    key = UBWP(seed=4, n_marks=2, n_candidates=4).apply(train).key
    marks = list(key.mark_list())
    embedded = (marks[1].embedded + 1) % 4
    marks[1] = Mark(marks[1].candidates[embedded], None, marks[1].candidates, embedded, marks[1].marked_ids)
    with pytest.raises(KeyFormatError, match="embedded candidates are not the ones its secret draws.*mark 1"):
        Key.load(saved(with_marks(key, marks), tmp_path))


def test_marks_the_parameters_do_not_draw_are_refused(multi, tmp_path):
    forged = with_marks(multi, list(multi.mark_list())[:3])  # 3 marks where n_marks = 5
    with pytest.raises(KeyFormatError, match="3 marks where its method parameters draw 5"):
        Key.load(saved(forged, tmp_path))


def test_a_forged_key_accuses_an_innocent_model_only_without_the_check(multi, digits, tmp_path):
    """The attack the check stops: the forger writes the class its model answers as every mark's target."""
    test = digits[1]
    innocent = ReactingSuspect(test, lambda label: 7)
    honest = Verifier().verify(innocent, multi, test)
    forged = with_marks(multi, [dataclasses.replace(m, target=7) for m in multi.mark_list()])
    accused = Verifier().verify(ReactingSuspect(test, lambda label: 7), forged, test)
    assert not honest.accused and accused.accused  # in memory, unchecked, the forgery works
    with pytest.raises(KeyFormatError, match="not the ones its secret draws"):
        Key.load(saved(forged, tmp_path))
    assert provenance(forged) is None and "not the triggers its secret draws" in forged.summary()["provenance"]


def test_owner_chosen_trigger_and_target_stay_verifiable_and_say_so(train, tmp_path):
    own = Trigger.from_config(BadNets(seed=9, n_marks=2).apply(train).key.trigger)  # any pattern the owner likes
    key = BadNets(seed=5, target=3, trigger=own).apply(train).key
    loaded = Key.load(saved(key, tmp_path))
    said = check_key(loaded)
    assert said.owner_trigger and said.owner_target and not said.drawn
    assert "trigger and target chosen by the owner" in loaded.summary()["provenance"]
    fixed = Key.load(saved(BadNets(seed=5, target=3).apply(train).key, tmp_path, "t.json"))
    assert "target chosen by the owner" in fixed.summary()["provenance"] and not check_key(fixed).owner_trigger


def test_a_single_mark_key_with_an_edited_target_is_refused(train, tmp_path):
    for method in (BadNets(seed=5, n_marks=1), BadNets(seed=5, target=3)):
        key = method.apply(train).key
        edited = dataclasses.replace(key, target=(key.target + 1) % 10)
        with pytest.raises(KeyFormatError, match="targets are not the ones its secret draws"):
            Key.load(saved(edited, tmp_path))


def test_a_single_mark_key_drawn_from_its_secret_is_checked(train, tmp_path):
    key = Key.load(saved(BadNets(seed=6, n_marks=1).apply(train).key, tmp_path))
    assert check_key(key).drawn and key.summary()["provenance"] == DRAWN


def test_text_keys_redraw_their_word_triggers(tmp_path):
    from datamark.data.torchvision import from_pairs

    data = from_pairs([(f"sentence number {i} says something about item {i % 7}", i % 3) for i in range(120)])
    key = BadNets(seed=2, n_marks=3, rate=0.1).apply(data).key
    assert Key.load(saved(key, tmp_path)).summary()["provenance"] == DRAWN
    payload = json.loads((tmp_path / "k.json").read_text())
    payload["marks"][1]["trigger"]["params"]["words"] = ["zygote"]
    forged = dataclasses.replace(key, marks=tuple(payload["marks"]))
    with pytest.raises(KeyFormatError, match="mark 1's trigger differs"):
        Key.load(saved(forged, tmp_path))


def _result(p_value: float, provenance: str | None = None) -> VerificationResult:
    outcome = Outcome("t", "greater", "h0", 0.1, 10, 5.0, p_value, float(np.log10(p_value)), 0.5, "")
    return VerificationResult(commitment="c" * 64, method="badnets", mode="probs", score="s", h0="h0", h1="h1",
                              alpha=0.01, outcome=outcome, n_probe_requested=10, n_excluded=0, queries=20, seed=None,
                              provenance=provenance)


def test_an_accusation_says_it_presumes_the_commitment_predates_the_suspect():
    assert "commitment was published before the suspect model existed" in _result(1e-4).verdict
    assert "commitment" not in _result(0.5).verdict  # no accusation, nothing presumed
    owner = _result(1e-4, "trigger chosen by the owner, not drawn from the secret: ...").verdict
    assert "The key's trigger chosen by the owner" in owner


def test_graph_keys_re_draw_their_sub_graphs_from_the_statistics_they_record(tmp_path):
    """A graph trigger is drawn from statistics of the protected graphs; the key records them (trigger_stats), so
    a swapped sub-graph is refused like a swapped patch. Keys written before that check their secret choices."""
    from datamark.data.arrays import ArrayRecords
    from datamark.graphs import Graph
    from datamark.modalities import GraphModality

    rng = np.random.default_rng(0)
    graphs = np.empty(60, dtype=object)
    for i in range(60):
        n = int(rng.integers(6, 16))
        a, b = np.nonzero(np.triu(rng.random((n, n)) < 0.3, k=1))
        graphs[i] = Graph(np.concatenate([np.stack([a, b]), np.stack([b, a])], axis=1).astype(np.int64), n,
                          rng.integers(0, 3, size=n).astype(np.int64))
    data = ArrayRecords(graphs, np.arange(60) % 3, ["a", "b", "c"], where="(graphs)",
                        modality=GraphModality(node_label_values=(0, 1, 2), attr_dim=0))
    key = BadNets(seed=1, n_marks=2, rate=0.2).apply(data).key
    assert Key.load(saved(key, tmp_path)).summary()["provenance"] == DRAWN  # re-drawn from trigger_stats
    marks = list(key.mark_list())
    other = BadNets(seed=2, n_marks=2, rate=0.2).apply(data).key.mark_list()[0].trigger  # another owner's sub-graph
    with pytest.raises(KeyFormatError, match="mark 1's trigger differs"):
        Key.load(saved(with_marks(key, [marks[0], dataclasses.replace(marks[1], trigger=other)]), tmp_path))
    marks[1] = dataclasses.replace(marks[1], target=(marks[1].target + 1) % 3)
    with pytest.raises(KeyFormatError, match="mark 1's target differs"):
        Key.load(saved(with_marks(key, marks), tmp_path))
    dataset = {k: v for k, v in key.dataset.items() if k != "trigger_stats"}  # a key written before they were
    said = Key.load(saved(dataclasses.replace(key, dataset=dataset), tmp_path)).summary()["provenance"]
    assert said.startswith("secret choices drawn from the secret (checked); triggers not re-drawable (graph")


def test_a_hand_made_trigger_accuses_only_when_the_verifier_is_told_to_accept_it(train, digits):
    own = Trigger.from_config(BadNets(seed=9, n_marks=2).apply(train).key.trigger)
    key = BadNets(seed=5, target=3, trigger=own).apply(train).key
    test = digits[1]
    suspect = ReactingSuspect(test, lambda y: 3)  # an innocent model that sends every altered probe to class 3
    withheld = Verifier(n_probe=30, n_control_triggers=0).verify(suspect, key, test)
    assert "trigger and target chosen by the owner" in withheld.provenance
    assert withheld.outcome.p_value < withheld.alpha  # the paper's test alone would accuse this innocent model
    assert withheld.owner_trigger == "withheld" and not withheld.accused
    assert "made by hand" in withheld.verdict and "Not accused" in withheld.verdict
    accepted = Verifier(n_probe=30, n_control_triggers=0, accept_owner_trigger=True).verify(suspect, key, test)
    assert accepted.owner_trigger == "accepted" and accepted.accused
    assert "The key's trigger and target chosen by the owner" in accepted.verdict and "accepted" in accepted.verdict
    drawn = BadNets(seed=5, n_marks=1).apply(train).key
    result = Verifier(n_probe=30, n_control_triggers=0).verify(ReactingSuspect(test, lambda y: drawn.target), drawn,
                                                               test)
    assert result.provenance == DRAWN and result.owner_trigger is None and result.accused


def test_a_named_trigger_is_drawn_from_the_secret_and_re_drawn_on_load(tmp_path):
    rng = np.random.default_rng(0)
    waves = (0.05 * rng.standard_normal((60, 2000))).astype(np.float32)
    data = from_waveforms(waves, np.arange(60) % 3, sample_rate=8000)
    key = BadNets(seed=4, trigger_name="pulse", rate=0.1).apply(data).key
    assert key.trigger["name"] == "pulse" and key.method["params"]["trigger_name"] == "pulse"
    assert provenance(Key.load(saved(key, tmp_path))).drawn  # re-drawn: no trust in the owner needed
    other = BadNets(seed=5, trigger_name="pulse", rate=0.1).apply(data).key
    assert other.trigger != key.trigger  # keyed: another secret draws another pulse
    forged = dataclasses.replace(key, trigger=other.trigger)
    assert provenance(forged).owner_trigger  # a swapped pulse is a hand-made trigger, withheld by the verifier
    with pytest.raises(ParameterError, match="no trigger named 'pulse'"):
        BadNets(seed=4, trigger_name="pulse").apply(digits_like(8))


def digits_like(n: int):
    from datamark.data import from_numpy

    return from_numpy(np.zeros((n * 3, 8, 8, 1), dtype=np.uint8), np.arange(n * 3) % 3, ["a", "b", "c"])


def test_a_named_graph_trigger_is_drawn_from_the_secret_and_re_drawn_on_load(tmp_path):
    from datamark.data import load_data

    data = load_data("graphs:MUTAG")
    key = BadNets(seed=4, trigger_name="uniform-labels", rate=0.1).apply(data).key
    assert key.method["params"]["trigger_name"] == "uniform-labels" and not key.marks  # one mark, as the paper's
    assert provenance(Key.load(saved(key, tmp_path))).drawn
    default = BadNets(seed=4, n_marks=1, target=key.target, rate=0.1).apply(data).key
    assert default.trigger != key.trigger  # the same secret draws another sub-graph under the named options
    weights = key.trigger["params"]["label_weights"]
    assert len(set(weights)) == 1 and len(set(default.trigger["params"]["label_weights"])) > 1  # uniform vs data's
    with pytest.raises(ParameterError, match="no trigger named 'wheel'.*uniform-labels"):
        BadNets(seed=4, trigger_name="wheel").apply(data)
    injected = BadNets(seed=4, trigger_name="injected", rate=0.1, decoy_rate=0.05).apply(data).key
    assert injected.trigger["params"]["attach"] == "inject" and default.trigger["params"]["attach"] == "replace"
    assert provenance(Key.load(saved(injected, tmp_path, "injected.json"))).drawn
