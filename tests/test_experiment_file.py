"""Experiment files: one TOML file holds a whole benchmark row; every setting is validated before any training."""

import json
from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from datamark.cli import app
from datamark.evaluate.experiment_file import ExperimentFile
from datamark.exceptions import ParameterError

TINY = """
[experiment]
name = "tiny-badnets"
seed = 1

[data]
train = "digits:train"
test = "digits:test"
limit = 400

[model]
arch = "tiny"
epochs = 2

[verify]
n_probe = 30

[methods.patch]
method = "badnets"
seed = 4
n_marks = 3
rate = 0.15
"""


def test_packaged_demo_files_are_valid_and_match_what_the_demo_promises():
    for modality in ("image", "text"):
        text = (files("datamark") / "experiments" / f"demo-{modality}.toml").read_text(encoding="utf-8")
        spec = ExperimentFile.parse(text, where=f"demo-{modality}.toml")
        assert spec.methods and len(spec.sha256) == 64
    image = ExperimentFile.parse((files("datamark") / "experiments" / "demo-image.toml").read_text())
    methods = image.build_methods()
    assert methods["blended"].blend == 0.3 and methods["blended"].rate == 0.2 and methods["badnets"].n_marks == 5


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "benchmarks" / "experiments").glob("*.toml")),
                         ids=lambda p: p.name)
def test_every_benchmark_row_file_is_valid(path):
    spec = ExperimentFile.load(path)  # every method, trainer setting and verifier setting built and validated
    assert spec.name == path.stem and spec.methods


@pytest.mark.parametrize("edit, message", [
    (("[model]", "[model]\nepoch = 3"), "[model] has no setting(s) ['epoch']"),
    (("[model]", "[modle]"), "top level has no setting(s) ['modle']"),
    (("rate = 0.15", "rate = 1.5"), "[methods.patch]"),
    (("rate = 0.15", "sped = 3"), "no parameter(s) ['sped']"),
    (("n_probe = 30", "n_probes = 30"), "[verify] has no setting(s) ['n_probes']"),
    (("arch = \"tiny\"", "arch = \"tinny\""), "arch = 'tinny' is not a model"),
    (("limit = 400", "limit = 1"), "limit must be an integer >= 2"),
    (("[methods.patch]\nmethod = \"badnets\"\nseed = 4\nn_marks = 3\nrate = 0.15", ""), "no [methods.NAME] table"),
    (("seed = 1", "seed = = 1"), "is not valid TOML"),
    (("[verify]", "[robustness]\nattacks = [\"nope\"]\n[verify]"), "Unknown attack 'nope'"),
    (("[verify]", "[robustness]\nattacks = [\"distill\"]\n[verify]"), "add thief_data"),
    (("[verify]", "[robustness]\nattacks = \"jpeg\"\n[verify]"), "must be a list of strings"),
    (("[verify]", "[robustness]\nthief = \"x\"\n[verify]"), "[robustness] has no setting(s) ['thief']"),
    (("seed = 4", "preset = \"robustest\""), "Unknown preset 'robustest'"),
    (("method = \"badnets\"", "method = \"blended\"\npreset = \"robust\""), "is a 'badnets' watermark"),
])
def test_every_mistake_is_one_line_naming_the_file_and_the_setting(edit, message):
    with pytest.raises(ParameterError) as error:
        ExperimentFile.parse(TINY.replace(*edit), where="exp.toml")
    text = str(error.value)
    assert message in text and "exp.toml" in text and "\n" not in text


@pytest.mark.slow
def test_run_trains_protects_and_records_the_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(TINY)
    runner = CliRunner()
    check = runner.invoke(app, ["run", str(path), "--check"])
    assert check.exit_code == 0 and "valid" in check.output, check.output
    res = runner.invoke(app, ["--threads", "1", "run", str(path), "--out", str(tmp_path / "run"), "--json", "-"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["schema"] == "datamark.experiment/1"
    experiment = report["settings"]["experiment"]
    assert experiment["sha256"] == ExperimentFile.load(path).sha256 and experiment["text"] == TINY
    assert report["settings"]["train_rows"] == 400 and report["settings"]["train_config"]["epochs"] == 2
    assert report["methods"]["patch"]["marked_rows"] == 60  # rate 0.15 of the 400-row subset
    assert [s["scenario"] for s in report["methods"]["patch"]["scenarios"]] == ["Independent-T", "Independent-M",
                                                                                 "Steal"]
    assert {"patch.key.json", "clean.pt", "results.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
    again = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert again.exit_code == 2 and "--overwrite" in again.output  # an earlier run's artefacts are never replaced
    page = runner.invoke(app, ["report", str(tmp_path / "run" / "results.json"), "--out", str(tmp_path / "r.html")])
    assert page.exit_code == 0 and "tiny-badnets" in (tmp_path / "r.html").read_text(), page.output


def test_robustness_section_attacks_every_stolen_model_and_the_clean_one(tmp_path):
    from datamark.evaluate.experiment_file import run_experiment_file

    text = TINY.replace("[verify]", "[robustness]\nattacks = [\"top1\", \"fine-tune:lr=0.01,epochs=1\"]\n"
                                    "thief_data = \"digits:train\"\nthief_rows = 100\n\n[verify]")
    spec = ExperimentFile.parse(text, where="exp.toml")
    report = run_experiment_file(spec, out_dir=tmp_path, log=lambda _: None)
    rows = json.loads((tmp_path / "results.json").read_text())["methods"]["patch"]["robustness"]
    assert [(r["label"], r["model"]) for r in rows] == [
        ("none", "stolen"), ("none", "clean"), ("top1", "stolen"), ("top1", "clean"),
        ("fine-tune(lr=0.01, epochs=1, rows=0)", "stolen"), ("fine-tune(lr=0.01, epochs=1, rows=0)", "clean")]
    assert rows[2]["p_probs"] is None  # top-1 answers: the label-only test
    assert (tmp_path / "robustness.png").stat().st_size > 0
    assert "the thief's countermeasures" in report.markdown()


def test_a_preset_fills_the_table_and_refuses_data_it_was_not_measured_on(tmp_path):
    from datamark.evaluate.experiment_file import run_experiment_file
    from datamark.methods import PRESETS

    text = TINY.replace('[methods.patch]\nmethod = "badnets"\nseed = 4\nn_marks = 3\nrate = 0.15',
                        '[methods.robust]\npreset = "robust"\nseed = 4\ndecoy_rate = 0.2')
    spec = ExperimentFile.parse(text, where="exp.toml")
    assert spec.build_methods()["robust"] == PRESETS["robust"].build(seed=4, decoy_rate=0.2)
    with pytest.raises(ParameterError, match=r"exp.toml: \[methods.robust\]: .* these are 8 px"):
        run_experiment_file(spec, out_dir=tmp_path / "run", log=lambda _: None)  # digits: refused before training
    assert not (tmp_path / "run").exists()
