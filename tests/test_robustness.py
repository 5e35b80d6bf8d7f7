"""The survival suite: attack, re-verify, cost; the clean control; what each kind of attack needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from datamark.evaluate.attacks import ModelAttack, QueryAttack
from datamark.evaluate.robustness import survival
from datamark.exceptions import ParameterError
from datamark.testing.servers import tiny_spec

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class Identity(QueryAttack):
    """Changes nothing: the baseline must come back."""

    registry_name = "identity"


@dataclass(frozen=True)
class Blackout(QueryAttack):
    """Sends black images: destroys every watermark and the accuracy with it."""

    registry_name = "blackout"

    def transform_inputs(self, batch, modality):
        return np.zeros_like(batch)


@dataclass(frozen=True)
class Reinitialise(ModelAttack):
    """Replaces the model with an untrained one of the same architecture."""

    registry_name = "reinitialise"

    def apply(self, model, spec, thief_data, *, seed=0, progress=False):
        from datamark.models.checkpoint import build_model
        assert len(thief_data) > 0
        return build_model(spec, seed=seed), spec


def _pair(tiny_marks):
    key, stolen, clean, test = tiny_marks
    return key, (stolen.model, tiny_spec(stolen.model)), (clean.model, tiny_spec(clean.model)), test


def test_rows_cover_baseline_attacks_and_the_clean_control(tiny_marks):
    key, stolen, clean, test = _pair(tiny_marks)
    seen = []
    rows = survival(key, [Identity(), Blackout()], test, stolen=stolen, clean=clean, on_row=seen.append)
    assert [(r.label, r.model) for r in rows] == [("none", "stolen"), ("none", "clean"), ("identity", "stolen"),
                                                  ("identity", "clean"), ("blackout", "stolen"),
                                                  ("blackout", "clean")]
    assert seen == rows  # handed over as they are made
    by = {(r.label, r.model): r for r in rows}
    base, same = by["none", "stolen"], by["identity", "stolen"]
    assert base.accused and not by["none", "clean"].accused
    assert same.ba == base.ba and same.cost_points == 0.0 and same.accused
    assert same.probs.outcome.p_value == base.probs.outcome.p_value
    black = by["blackout", "stolen"]
    assert not black.accused and black.cost_points > 50  # a black image carries no trigger, nor the digit
    assert not by["blackout", "clean"].accused
    row = black.to_dict()
    assert row["attack"] == {"name": "blackout", "kind": "query", "params": {}} and row["p_labels"] is not None


def test_model_attacks_need_the_thiefs_data_and_leave_the_input_model_alone(tiny_marks):
    key, stolen, _, test = _pair(tiny_marks)
    before = [p.detach().clone() for p in stolen[0].parameters()]
    with pytest.raises(ParameterError, match="thief's clean data"):
        survival(key, [Reinitialise()], test, stolen=stolen)
    rows = survival(key, [Reinitialise()], test, stolen=stolen, thief_data=test)
    assert rows[-1].label == "reinitialise" and not rows[-1].accused and rows[-1].cost_points > 30
    after = list(stolen[0].parameters())
    assert all(np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(before, after, strict=True))


def test_the_own_data_baseline_is_innocent_and_not_repeated_on_the_clean_control(tiny_marks):
    """own-data ignores the stolen model (a fresh model on the thief's rows): not accused, and not trained a second
    time for the clean control, where it would be the same model."""
    from datamark.evaluate.attacks import parse_attack

    key, stolen, clean, test = _pair(tiny_marks)
    rows = survival(key, [parse_attack("own-data:epochs=3")], test, stolen=stolen, clean=clean, thief_data=test)
    assert [(r.attack["name"], r.model) for r in rows] == [("none", "stolen"), ("none", "clean"),
                                                           ("own-data", "stolen")]
    assert rows[0].accused and not rows[-1].accused and not rows[-1].accused_in_either_mode


def test_tradeoff_plot_draws_every_countermeasure(tmp_path, monkeypatch):
    import matplotlib.axes

    from datamark.evaluate.attacks import parse_attack
    from datamark.evaluate.plots import tradeoff_plot

    def row(name, model, cost, p):
        return {"attack": {"name": name, "kind": "query", "params": {}}, "label": name, "model": model,
                "cost_points": cost, "p_probs": p, "p_labels": p}
    rows = [row("none", "stolen", 0.0, 1e-9), row("jpeg", "stolen", 2.0, 0.5), row("jpeg", "clean", 1.0, 1.0),
            row("top1", "stolen", 0.0, 1e-4)]
    rows += [{**row("sequence", "stolen", cost, 0.5), "attack": parse_attack(chain).to_dict()}
             for chain, cost in (("fine-tune:lr=0.05+distill", 3.0), ("fine-tune:lr=0.01+distill", 3.5),
                                 ("loss-filter+distill", 6.0))]
    rows.append({**row("own-data", "stolen", 4.5, 0.6), "attack": parse_attack("own-data").to_dict()})
    seen, lines = [], []
    title, vline = matplotlib.axes.Axes.set_title, matplotlib.axes.Axes.axvline
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda ax, text, **kw: seen.append(text) or title(ax, text, **kw))
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline", lambda ax, x, **kw: lines.append(x) or vline(ax, x, **kw))
    tradeoff_plot({"badnets": rows}, tmp_path / "t.png", alpha=0.01)
    assert sorted(seen) == ["fine-tune + distill", "jpeg", "loss-filter + distill", "top1"]  # a panel per chain kind
    assert lines.count(4.5) == 4  # no panel of its own: the cost of not stealing, drawn on every panel
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileExistsError):
        tradeoff_plot({"badnets": rows}, tmp_path / "t.png", alpha=0.01)


def test_retrains_keep_the_stolen_models_architecture_and_drop_what_its_data_set():
    """Data- and training-side attacks retrain "the stolen model's architecture": a narrowed net stays narrow
    (its widths are architecture), while a vocabulary, a sample rate or a node encoding comes from the new data."""
    from datamark.evaluate.robustness import default_trainer
    from datamark.models import default_config
    from datamark.models.checkpoint import ModelSpec, architecture_params
    from datamark.testing import digits_split

    text = ModelSpec(arch="bag", num_classes=2, input_shape=(), mean=(), std=(),
                     params={"vocab": ["<pad>", "<unk>", "good"], "embed_dim": 16})
    graph = ModelSpec(arch="gin", num_classes=2, input_shape=(), mean=(), std=(),
                      params={"feature_spec": {"node_labels": 3}, "hidden": 32, "readout": "sum"})
    assert architecture_params(text) == {"embed_dim": 16}
    assert architecture_params(graph) == {"hidden": 32, "readout": "sum"}

    train, _ = digits_split(n_train=64)
    narrow = ModelSpec(arch="tiny", num_classes=10, input_shape=(8, 8, 1), mean=(0.0,), std=(1.0,),
                       params={"width": 4})
    model, spec = default_trainer(narrow, seed=0)(train, default_config("tiny", seed=0, epochs=1))
    assert spec.params == {"width": 4}
    assert tiny_spec(model).params == {"width": 4}  # built narrow, not at the default width of 32


def test_dp_sgd_retrains_the_stolen_architecture_with_group_norm_and_reports_epsilon(capsys):
    import torch

    from datamark.evaluate.attacks import parse_attack
    from datamark.evaluate.robustness import attacked_suspect
    from datamark.models.checkpoint import ModelSpec, build_model
    from datamark.testing import digits_split

    released, _ = digits_split(n_train=96)
    spec = ModelSpec(arch="tiny", num_classes=10, input_shape=(8, 8, 1), mean=(0.0,), std=(1.0,), params={"width": 4})
    suspect, details = attacked_suspect(parse_attack("dp-sgd:noise=0.5"), build_model(spec), spec, released=released,
                                        progress=True)
    assert "train" in capsys.readouterr().err  # the retraining shows its progress
    assert suspect.model.head.in_features == 8 * 4  # width 4, as stolen
    assert any(isinstance(m, torch.nn.GroupNorm) for m in suspect.model.modules())
    assert details["epsilon"] > 0 and details["delta"] == 1e-5


def test_data_attacks_report_their_recall_on_the_marked_rows():
    from datamark.evaluate.attacks import DataAttack
    from datamark.evaluate.robustness import attacked_suspect
    from datamark.models.checkpoint import ModelSpec, build_model
    from datamark.testing import digits_split

    @dataclass(frozen=True)
    class FlagFirstThree(DataAttack):
        registry_name = "flag-first-three"

        def flag(self, model, spec, released, *, seed=0):
            return np.arange(3)

    released, _ = digits_split(n_train=20)
    spec = ModelSpec(arch="tiny", num_classes=10, input_shape=(8, 8, 1), mean=(0.0,), std=(1.0,), params={"width": 4})
    model = build_model(spec)
    kept = []

    def train(records, config, arch_params):
        kept.append(len(records))
        return model, spec

    _, details = attacked_suspect(FlagFirstThree(), model, spec, released=released, train=train, marked_rows=[1, 2, 5])
    assert kept == [17] and details == {"flagged_rows": 3, "marked_rows": 3, "flagged_marked_rows": 2}
    _, details = attacked_suspect(FlagFirstThree(), model, spec, released=released, train=train)
    assert details == {"flagged_rows": 3}


def test_a_truncated_npz_release_is_named_in_one_line(tmp_path):
    from datamark import load_data
    from datamark.exceptions import DataFormatError
    from datamark.testing import digits_split

    train, _ = digits_split(n_train=50)
    whole = tmp_path / "wm.npz"
    train.save(whole)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(whole.read_bytes()[:3000])
    with pytest.raises(DataFormatError, match="cut.npz' is not a datamark .npz dataset"):
        load_data(str(cut))


def test_a_clean_control_accused_with_labels_only_is_flagged_everywhere_it_is_shown():
    """The owner's verdict uses probabilities where the API returns them, but an innocent model that the label-only
    test accuses is a false accusation too: the row, the survival table and the CLI line all say so."""
    from types import SimpleNamespace

    from datamark.cli.attack import verdict_words
    from datamark.evaluate.report import survival_table
    from datamark.evaluate.robustness import SurvivalRow

    def result(p):
        accused = p < 0.01
        return SimpleNamespace(accused=accused, outcome=SimpleNamespace(p_value=p),
                               to_dict=lambda: {"accused": accused, "p_value": p})

    def row(model, p_probs, p_labels):
        return SurvivalRow({"name": "bit-depth", "kind": "query", "params": {"bits": 3}}, "bit-depth(bits=3)", model,
                           0.87, 0.80, result(p_probs), result(p_labels), 1.0)

    stolen, clean = row("stolen", 1e-10, 1e-10), row("clean", 0.13, 0.0018)
    assert not clean.accused and clean.accused_in_either_mode
    assert clean.to_dict()["accused_in_either_mode"] is True
    assert verdict_words(clean) == "ACCUSED with labels only" and verdict_words(stolen) == "ACCUSED"
    table = survival_table([stolen.to_dict(), clean.to_dict()])
    assert "| **YES (labels)** |" in table
    innocent = row("clean", 0.13, 0.3)
    assert not innocent.accused_in_either_mode and verdict_words(innocent) == "not accused"
    assert "| no |" in survival_table([stolen.to_dict(), innocent.to_dict()])



def test_the_own_data_row_reads_as_an_innocent_baseline():
    """own-data's model never saw the release: its row says innocent (or flags a false accusation, in either mode),
    and the table states the cost of not stealing, which the other rows' costs are read against."""
    from types import SimpleNamespace

    from datamark.evaluate.report import survival_table
    from datamark.evaluate.robustness import SurvivalRow

    def result(p):
        return SimpleNamespace(accused=p < 0.01, outcome=SimpleNamespace(p_value=p),
                               to_dict=lambda: {"accused": p < 0.01, "p_value": p})

    def row(p_probs, p_labels):
        return SurvivalRow({"name": "own-data", "kind": "model", "params": {"rows": 20000}}, "own-data(rows=20000)",
                           "stolen", 0.83, 0.79, result(p_probs), result(p_labels), 1.0).to_dict()

    from datamark.cli.attack import verdict_words

    table = survival_table([row(0.4, 0.6)])
    assert "| – (innocent) |" in table and "**no**" not in table
    assert "costs it +4.00 points" in table
    assert "**YES (labels)**: an innocent model accused" in survival_table([row(0.4, 0.001)])
    assert "**YES**: an innocent model accused" in survival_table([row(0.001, 0.001)])

    def live(p_probs, p_labels):
        return SurvivalRow({"name": "own-data", "kind": "model", "params": {}}, "own-data", "stolen", 0.83, 0.79,
                           result(p_probs), result(p_labels), 1.0)

    assert verdict_words(live(0.4, 0.6)) == "not accused (innocent baseline: as it should)"
    assert verdict_words(live(0.4, 0.001)) == "ACCUSED with labels only (innocent baseline: a FALSE accusation)"


def test_a_chain_filters_retrains_with_the_recipe_then_changes_the_model_then_purifies_the_api():
    """``data+training+model+query`` is one thief: the rows every filter flags are dropped together (each judged
    with the stolen model), the recipe trains once on what is left, the model step gets the retrained model, and
    the owner meets it behind the query step."""
    from datamark.evaluate.attacks import AttackChain, DataAttack, TrainingAttack, parse_attack
    from datamark.evaluate.robustness import attacked_suspect
    from datamark.models.checkpoint import ModelSpec, build_model
    from datamark.testing import digits_split

    spec = ModelSpec(arch="tiny", num_classes=10, input_shape=(8, 8, 1), mean=(0.0,), std=(1.0,), params={"width": 4})
    stolen, retrained, changed = build_model(spec, seed=0), build_model(spec, seed=1), build_model(spec, seed=2)
    calls = []

    @dataclass(frozen=True)
    class Flag(DataAttack):
        rows: tuple = ()
        registry_name = "flag"

        def flag(self, model, spec, released, *, seed=0):
            calls.append(("flag", model))
            return np.asarray(self.rows)

    @dataclass(frozen=True)
    class Recipe(TrainingAttack):
        registry_name = "recipe"

        def recipe(self, config):
            return "the recipe's config"

        def details(self, config, rows):
            return {"recipe_rows": rows}

    @dataclass(frozen=True)
    class Swap(ModelAttack):
        registry_name = "swap"

        def apply(self, model, spec, thief_data, *, seed=0, progress=False):
            calls.append(("swap", model))
            return changed, spec

    def train(records, config, arch_params):
        calls.append(("train", len(records), config, arch_params))
        return retrained, spec

    released, thief = digits_split(n_train=20, n_test=10)
    chain = AttackChain((Flag((0, 1, 2)), Flag((2, 7)), Recipe(), Swap(), parse_attack("top1")))
    assert chain.kind == "data" and chain.label == "flag(rows=(0, 1, 2)) + flag(rows=(2, 7)) + recipe + swap + top1"
    suspect, details = attacked_suspect(chain, stolen, spec, released=released, thief_data=thief, train=train,
                                        marked_rows=[2, 3])
    assert calls == [("flag", stolen), ("flag", stolen), ("train", 16, "the recipe's config", {"width": 4}),
                     ("swap", retrained)]
    assert details == {"flagged_rows": 4, "marked_rows": 2, "flagged_marked_rows": 1, "recipe_rows": 16}
    assert suspect.outputs == "labels" and suspect.inner.model is changed  # behind the top-1 API
    with pytest.raises(ParameterError, match="'swap' attack needs the thief's clean data"):
        attacked_suspect(chain, stolen, spec, released=released, train=train)
    with pytest.raises(ParameterError, match="'flag' attack retrains on the released data"):
        attacked_suspect(chain, stolen, spec, thief_data=thief, train=train)


def test_a_chain_is_written_in_the_order_a_thief_works_and_retrains_once():
    from datamark.evaluate.attacks import parse_attack

    assert parse_attack("loss-filter:fraction=0.2+distill:rows=20000").kind == "data"
    assert parse_attack("mixup+fine-tune:lr=0.05").kind == "training"
    assert parse_attack("fine-tune:lr=0.05+jpeg:quality=50").kind == "model"
    assert parse_attack("jpeg:quality=50+round:decimals=1").kind == "query"
    with pytest.raises(ParameterError, match="'loss-filter' \\(data-side\\) cannot follow 'distill' \\(model-side\\)"):
        parse_attack("distill+loss-filter")
    with pytest.raises(ParameterError, match="'fine-tune' \\(model-side\\) cannot follow 'jpeg'"):
        parse_attack("jpeg+fine-tune")
    with pytest.raises(ParameterError, match="retrains once"):
        parse_attack("mixup+cutmix")
    with pytest.raises(ParameterError, match="empty step"):
        parse_attack("jpeg+")
    with pytest.raises(ParameterError, match="no modality in common"):
        parse_attack("jpeg:quality=50+audio-quantize")


def test_an_api_of_several_query_steps_applies_them_in_the_order_written(tiny_marks):
    """Each query passes the steps' input transforms in order and each answer their output transforms: the same
    answers as purifying by hand, and labels only when any step answers labels only."""
    from datamark.evaluate.attacks import parse_attack
    from datamark.evaluate.robustness import attacked_suspect
    from datamark.suspects.local import LocalSuspect

    _, (model, spec), _, test = _pair(tiny_marks)
    x = test.inputs()[:16]
    api, _ = attacked_suspect(parse_attack("bit-depth:bits=2+round:decimals=1"), model, spec)
    by_hand = LocalSuspect.from_model(model, spec).query(parse_attack("bit-depth:bits=2").transform_inputs(x, "image"))
    assert api.outputs == "probs"
    rounded = parse_attack("round:decimals=1").transform_outputs(by_hand, np.random.default_rng(0))
    assert np.allclose(api.query(x), rounded) and not np.allclose(rounded, by_hand)
    labels_only, _ = attacked_suspect(parse_attack("top1+bit-depth:bits=2"), model, spec)
    assert labels_only.outputs == "labels"
    assert np.array_equal(labels_only.query(x), by_hand.argmax(axis=1))


def test_a_chain_that_retrains_is_not_applied_to_the_clean_model_and_a_model_chain_is(tiny_marks):
    key, stolen, clean, test = _pair(tiny_marks)
    from datamark.evaluate.attacks import AttackChain, DataAttack

    @dataclass(frozen=True)
    class FlagNothing(DataAttack):
        registry_name = "flag-nothing"

        def flag(self, model, spec, released, *, seed=0):
            return np.zeros(0, dtype=np.int64)

    def train(records, config, arch_params):
        return stolen

    rows = survival(key, [AttackChain((FlagNothing(), Identity())), AttackChain((Reinitialise(), Identity()))], test,
                    stolen=stolen, clean=clean, thief_data=test, released=test, train=train)
    assert [(r.label, r.model) for r in rows][2:] == [("flag-nothing + identity", "stolen"),
                                                      ("reinitialise + identity", "stolen"),
                                                      ("reinitialise + identity", "clean")]
    assert rows[2].accused and not rows[3].accused
