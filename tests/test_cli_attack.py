"""``datamark attack``: the survival table from the command line, its JSON, and its refusals."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from datamark.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")


def invoke(*args):
    return CliRunner().invoke(app, ["--threads", "1", "attack", *map(str, args)])


def test_list_names_every_kind():
    result = invoke("--list")
    assert result.exit_code == 0
    for word in ("query", "model", "jpeg(quality=50)", "top1"):
        assert word in result.output


def test_table_and_json_with_the_clean_control(cli_files):
    path, key = cli_files
    out = path / "attack.json"
    result = invoke("--key", path / "key.json", "--model", path / "stolen.pt", "--data", path / "test.npz",
                    "--clean-model", path / "clean.pt", "--attack", "top1", "--attack", "jpeg:quality=10",
                    "--json", out)
    assert result.exit_code == 0, result.output
    assert key.commitment in result.output and "top1" in result.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "datamark.attack-result/1" and doc["complete"] is True
    assert [(r["label"], r["model"]) for r in doc["rows"]] == [
        ("none", "stolen"), ("none", "clean"), ("top1", "stolen"), ("top1", "clean"),
        ("jpeg(quality=10)", "stolen"), ("jpeg(quality=10)", "clean")]
    top1 = doc["rows"][2]
    assert top1["p_probs"] is None and top1["p_labels"] is not None  # a labels-only API: label-only test
    assert doc["rows"][0]["accused"] and not doc["rows"][1]["accused"]
    assert key.secret not in out.read_text() and key.secret not in result.output


def test_a_chain_of_query_steps_is_one_api_for_both_models(cli_files):
    path, _ = cli_files
    out = path / "attack.json"
    result = invoke("--key", path / "key.json", "--model", path / "stolen.pt", "--data", path / "test.npz",
                    "--clean-model", path / "clean.pt", "--attack", "jpeg:quality=90+top1", "--json", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [(r["label"], r["model"]) for r in rows[2:]] == [("jpeg(quality=90) + top1", "stolen"),
                                                            ("jpeg(quality=90) + top1", "clean")]
    assert rows[2]["p_probs"] is None and [s["name"] for s in rows[2]["attack"]["params"]["steps"]] == ["jpeg", "top1"]
    assert rows[2]["accused"] and not rows[3]["accused_in_either_mode"]


@pytest.mark.parametrize("args, message", [
    (("--attack", "nope"), "Unknown attack 'nope'"),
    (("--attack", "jpeg:quality=200"), "quality"),
    (("--attack", "jpeg:colour=1"), "PARAM=VALUE"),
    (("--attack", "distill"), "thief's clean data"),
    (("--attack", "distill+loss-filter"), "'loss-filter' (data-side) cannot follow 'distill' (model-side)"),
    (("--attack", "loss-filter:fraction=0.2+distill"), "'loss-filter' attack retrains on the released data"),
])
def test_bad_input_is_one_line_and_writes_nothing(cli_files, args, message):
    path, _ = cli_files
    out = path / "attack.json"
    result = invoke("--key", path / "key.json", "--model", path / "stolen.pt", "--data", path / "test.npz",
                    *args, "--json", out)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()
    assert "key commitment" not in result.output  # refused before the key or any data is read
