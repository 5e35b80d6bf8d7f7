"""The whole flow on real embedded data with tiny models: protect, train, verify, the three scenarios."""

import json

import pytest
from typer.testing import CliRunner

from datamark import BadNets, Blended, Key, LocalSuspect, Verifier
from datamark.cli import app
from datamark.evaluate import evaluate_scenarios
from datamark.exceptions import KeyMismatchError, SuspectError
from datamark.testing import train_tiny


@pytest.fixture(scope="module")
def trained(digits, tiny_clean, one_thread):
    """The clean model is the shared ``tiny_clean`` (15 epochs); the stolen ones are trained for 15 epochs too (30
    cost twice as long for the same verdicts: WSR 0.95 / 0.64, Steal p < 1e-20, controls p >= 0.36)."""
    train, test = digits
    runs = {}
    # Decoys (other random triggers, true labels) make the 8x8 digits model answer only the owner's pattern;
    # without them any bright corner fires it and the Independent-T control fails (see README).
    for method in (BadNets(seed=0, target=5, decoy_rate=0.1), Blended(seed=1, target=5, decoy_rate=0.1)):
        marked = method.apply(train)
        runs[method.registry_name] = (marked.key, train_tiny(marked.dataset, seed=0, epochs=15))
    return tiny_clean, runs, test


@pytest.mark.parametrize("name", ["badnets", "blended"])
def test_scenarios_catch_the_thief_and_spare_the_innocent(trained, name, global_rng_guard):
    clean, runs, test = trained
    key, stolen = runs[name]
    rows = {r.scenario: r for r in evaluate_scenarios(key, stolen, clean, test)}
    steal = rows["Steal"]
    assert steal.wsr > 0.5  # 8x8 digits with decoys; the CIFAR benchmark measures the paper-scale WSR
    assert steal.probs.outcome.p_value < 1e-3 and steal.labels.outcome.p_value < 0.01
    for control in ("Independent-M", "Independent-T"):
        assert rows[control].probs.outcome.p_value >= 0.05, control
        assert rows[control].labels.outcome.p_value >= 0.05, control
    assert abs(rows["Independent-M"].ba - steal.ba) < 0.08


def test_labels_only_suspect_is_refused_before_any_query(trained):
    clean, runs, test = trained
    key, stolen = runs["badnets"]
    labels_only = stolen.with_outputs("labels")
    with pytest.raises(SuspectError, match="label-only"):
        Verifier(mode="probs").verify(labels_only, key, test)
    assert labels_only.queries == 0


def test_result_reports_the_whole_test(trained):
    clean, runs, test = trained
    key, stolen = runs["badnets"]
    result = Verifier(mode="probs", seed=3).verify(stolen, key, test)
    record = result.to_dict()
    assert record["outcome"]["n"] == 100 and record["outcome"]["margin"] == 0.2 and record["alpha"] == 0.01
    assert record["outcome"]["alternative"] == "greater" and "tau = 0.2" in record["h0"]
    # a single-mark key runs the specificity control by default: 100 probes x (clean, key, 100 random triggers)
    assert record["specificity"]["n"] == 100 and record["queries"] == 200 + 100 * 100
    assert record["commitment"] == key.commitment and record["accused"]
    assert record["deviations"] == [{"setting": "seed", "key": "key", "used": 3}] and "user seed 3" in record[
        "probe_seed"]
    assert key.secret not in json.dumps(record)


def test_wrong_key_for_the_data_is_refused(trained):
    clean, runs, test = trained
    key, stolen = runs["badnets"]
    other = LocalSuspect(stolen.model, num_classes=3)
    with pytest.raises(KeyMismatchError, match="classes"):
        Verifier().verify(other, key, test)


@pytest.mark.slow
def test_command_line_flow(tmp_path, digits):
    runner = CliRunner()
    train, test = digits
    train.save(tmp_path / "train.npz")
    test.save(tmp_path / "test.npz")
    res = runner.invoke(app, ["protect", str(tmp_path / "train.npz"), "--out", str(tmp_path / "wm.npz"),
                              "--key", str(tmp_path / "key.json"), "--seed", "0", "--target", "3",
                              "--decoy-rate", "0.1", "--preview", str(tmp_path / "preview.png")])
    assert res.exit_code == 0, res.output
    key = Key.load(tmp_path / "key.json")
    assert key.commitment in res.output and key.secret not in res.output and (tmp_path / "preview.png").exists()
    res = runner.invoke(app, ["protect", str(tmp_path / "train.npz"), "--out", str(tmp_path / "wm.npz"),
                              "--key", str(tmp_path / "key.json")])
    assert res.exit_code == 2 and "already exists" in res.output
    for name, data in (("stolen", "wm.npz"), ("clean", "train.npz")):
        res = runner.invoke(app, ["train", str(tmp_path / data), "--out", str(tmp_path / f"{name}.pt"),
                                  "--arch", "tiny", "--epochs", "15", "--test", str(tmp_path / "test.npz")])
        assert res.exit_code == 0, res.output
    verdicts = {}
    for name in ("stolen", "clean"):
        for mode in ("probs", "labels"):
            res = runner.invoke(app, ["verify", "--key", str(tmp_path / "key.json"), "--model",
                                      str(tmp_path / f"{name}.pt"), "--data", str(tmp_path / "test.npz"),
                                      "--mode", mode, "--json", str(tmp_path / f"{name}-{mode}.json"),
                                      "--commitment", key.commitment])
            verdicts[name, mode] = json.loads((tmp_path / f"{name}-{mode}.json").read_text())["accused"]
            assert res.exit_code == (0 if verdicts[name, mode] else 1), res.output  # grep-like: 0 accused
    assert verdicts == {("stolen", "probs"): True, ("stolen", "labels"): True,
                        ("clean", "probs"): False, ("clean", "labels"): False}
    res = runner.invoke(app, ["verify", "--key", str(tmp_path / "key.json"), "--model", str(tmp_path / "stolen.pt"),
                              "--data", str(tmp_path / "test.npz"), "--control-triggers", "100",
                              "--json", str(tmp_path / "controlled.json")])
    assert res.exit_code == 0 and "specificity control" in res.output, res.output
    controlled = json.loads((tmp_path / "controlled.json").read_text())
    assert controlled["accused"] and controlled["specificity"]["p_value"] < 0.01  # decoys: the key's trigger wins
    res = runner.invoke(app, ["verify", "--key", str(tmp_path / "key.json"), "--model", str(tmp_path / "clean.pt"),
                              "--data", str(tmp_path / "test.npz"), "--commitment", "ab" * 32])
    assert res.exit_code == 2 and "not the published" in res.output
    res = runner.invoke(app, ["evaluate", "--key", str(tmp_path / "key.json"), "--stolen", str(tmp_path / "stolen.pt"),
                              "--clean", str(tmp_path / "clean.pt"), "--data", str(tmp_path / "test.npz"),
                              "--json", str(tmp_path / "scenarios.json")])
    assert res.exit_code == 0, res.output
    document = json.loads((tmp_path / "scenarios.json").read_text())
    assert document["schema"] == "datamark.scenarios/1" and document["commitment"] == key.commitment
    scenarios = {r["scenario"]: r for r in document["rows"]}
    assert scenarios["Steal"]["probs"]["accused"] and not scenarios["Independent-M"]["probs"]["accused"]
    res = runner.invoke(app, ["key-info", str(tmp_path / "key.json")])
    assert res.exit_code == 0 and key.commitment in res.output and key.secret not in res.output


def test_demo_writes_every_artefact(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    for expected in ("badnets.key.json", "blended.key.json", "badnets-watermarked.npz", "clean.pt",
                     "badnets-stolen.pt", "badnets-preview.png", "pvalues.png", "results.json", "results.md"):
        assert expected in names
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [r["scenario"] for r in results["methods"]["badnets"]["scenarios"]] == [
        "Independent-T", "Independent-M", "Steal"]
    assert "Steal" in res.output


def test_protect_passes_the_ubw_p_label_draw(tmp_path, digits):
    train, _ = digits
    train.save(tmp_path / "train.npz")
    common = ["protect", str(tmp_path / "train.npz"), "--method", "ubw-p", "--seed", "0", "--random-labels"]
    res = CliRunner().invoke(app, [*common, "other", "--out", str(tmp_path / "wm.npz"), "--key",
                                   str(tmp_path / "key.json")])
    assert res.exit_code == 0, res.output
    key = Key.load(tmp_path / "key.json")
    assert key.method["params"]["labels"] == "other" and key.extra["kept_true_label"] == 0
    res = CliRunner().invoke(app, [*common, "some", "--out", str(tmp_path / "wm2.npz"), "--key",
                                   str(tmp_path / "key2.json")])
    assert res.exit_code != 0 and "'labels'" in res.output and not (tmp_path / "key2.json").exists()
