"""Command-line habits: --version, logging levels, the thread count, train's --limit with its warning, exit
codes a script can branch on, --json documents on stdout, shell completion, and tables that fit 80 columns."""

import json
import logging

import torch
from typer.testing import CliRunner

from datamark import __version__
from datamark.cli import app
from datamark.key import Key


def test_version_and_log_levels():
    runner = CliRunner()
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"datamark {__version__}"
    assert runner.invoke(app, ["-q", "key-info", "--help"]).exit_code == 0
    assert logging.getLogger("datamark").level == logging.ERROR
    assert runner.invoke(app, ["-vv", "key-info", "--help"]).exit_code == 0
    assert logging.getLogger("datamark").level == logging.DEBUG
    runner.invoke(app, ["key-info", "--help"])
    assert logging.getLogger("datamark").level == logging.WARNING


def test_threads_option_and_environment_variable():
    before = torch.get_num_threads()
    try:
        assert CliRunner().invoke(app, ["--threads", "1", "key-info", "--help"]).exit_code == 0
        assert torch.get_num_threads() == 1
        torch.set_num_threads(before)
        assert CliRunner().invoke(app, ["key-info", "--help"], env={"DATAMARK_THREADS": "1"}).exit_code == 0
        assert torch.get_num_threads() == 1
        refused = CliRunner().invoke(app, ["--threads", "0", "key-info", "--help"])
        assert refused.exit_code != 0
    finally:
        torch.set_num_threads(before)


def test_train_limit_and_the_near_chance_warning(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["--threads", "1", "train", "digits:train", "--out", str(tmp_path / "m.pt"), "--arch",
                                 "tiny", "--limit", "12", "--epochs", "1", "--test", "digits:test"])
    torch.set_num_threads(max(1, torch.get_num_threads()))
    assert result.exit_code == 0, result.output
    assert "on 12 image rows" in result.output and "near chance" in result.output


def _invoke(*args, **env):
    return CliRunner().invoke(app, ["--threads", "1", *map(str, args)], env=env or None)


def test_verify_exit_codes_read_like_grep_and_json_goes_to_stdout_alone(cli_files):
    tmp_path, key = cli_files
    common = ("verify", "--key", tmp_path / "key.json", "--data", tmp_path / "test.npz", "--commitment",
              key.commitment)
    stolen = _invoke(*common, "--model", tmp_path / "stolen.pt", "--json", "-")
    assert stolen.exit_code == 0, stolen.output  # 0: accused, so `datamark verify ... && notify` notifies
    document = json.loads(stolen.stdout)  # stdout holds the JSON document and nothing else
    assert document["schema"] == "datamark.verify-result/1" and document["accused"] is True
    assert "H0 rejected" in stolen.stderr and key.secret not in stolen.output
    clean = _invoke(*common, "--model", tmp_path / "clean.pt")
    assert clean.exit_code == 1 and "H0 not rejected" in clean.stdout  # 1: not accused
    missing = _invoke(*common, "--model", tmp_path / "nowhere.pt")
    assert missing.exit_code == 2 and "nowhere.pt" in missing.output  # 2: an error, never a verdict


def test_every_result_command_writes_a_versioned_json_document(cli_files):
    tmp_path, key = cli_files
    protect = _invoke("protect", "digits:test", "--out", tmp_path / "wm.npz", "--key", tmp_path / "k2.json",
                      "--seed", "3", "--json", "-")
    assert protect.exit_code == 0, protect.output
    document = json.loads(protect.stdout)
    assert document["schema"] == "datamark.protect/1" and document["marked_rows"] > 0
    secret = Key.load(tmp_path / "k2.json").secret
    assert f"release): {document['commitment']}" in protect.stderr and secret not in protect.output
    train = _invoke("train", tmp_path / "wm.npz", "--out", tmp_path / "m.pt", "--arch", "tiny", "--epochs", "1",
                    "--limit", "50", "--test", tmp_path / "test.npz", "--json", tmp_path / "train.json")
    assert train.exit_code == 0, train.output
    trained = json.loads((tmp_path / "train.json").read_text())
    assert trained["schema"] == "datamark.train/1" and trained["rows"] == 50 and 0 <= trained["test_accuracy"] <= 1
    run = _invoke("verify", "--key", tmp_path / "key.json", "--data", tmp_path / "test.npz", "--model",
                  tmp_path / "stolen.pt", "--evidence", tmp_path / "run.jsonl")
    assert run.exit_code == 0, run.output
    check = _invoke("evidence", tmp_path / "run.jsonl", "--json", "-")
    assert check.exit_code == 0, check.output
    findings = json.loads(check.stdout)
    assert findings["schema"] == "datamark.evidence-check/1" and findings["finished"] and findings["accused"]
    table = _invoke("evaluate", "--key", tmp_path / "key.json", "--stolen", tmp_path / "stolen.pt", "--clean",
                    tmp_path / "clean.pt", "--data", tmp_path / "test.npz", "--json", "-", "--format", "md")
    assert table.exit_code == 0, table.output
    assert [r["scenario"] for r in json.loads(table.stdout)["rows"]] == ["Independent-T", "Independent-M", "Steal"]
    assert "| Independent-M |" in table.stderr  # Markdown keeps the full names


def test_scenario_table_reads_whole_at_80_columns(cli_files):
    tmp_path, _ = cli_files
    table = _invoke("evaluate", "--key", tmp_path / "key.json", "--stolen", tmp_path / "stolen.pt", "--clean",
                    tmp_path / "clean.pt", "--data", tmp_path / "test.npz", COLUMNS="80")
    assert table.exit_code == 0, table.output
    lines = [line for line in table.stdout.splitlines() if not line.startswith("P / L:")]  # the legend: prose
    assert max(map(len, lines)) <= 80 and "Indepen…" not in table.stdout
    assert {"Indep-T", "Indep-M", "Steal"} <= {line.split()[0] for line in lines if line.strip()}


def test_shell_completion_completes_commands_and_options():
    # (--show-completion detects the shell from the process tree, which a test runner's worker may not have; the
    # completion itself is what the installed script calls:)
    words = CliRunner().invoke(app, [], prog_name="datamark", env={
        "_DATAMARK_COMPLETE": "complete_bash", "COMP_WORDS": "datamark verify --mo", "COMP_CWORD": "2"})
    assert {"--model", "--mode"} <= set(words.output.split())
    commands = CliRunner().invoke(app, [], prog_name="datamark", env={
        "_DATAMARK_COMPLETE": "complete_bash", "COMP_WORDS": "datamark re", "COMP_CWORD": "1"})
    assert set(commands.output.split()) == {"report"}


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    import os

    import datamark._device as device

    assert 0.0 <= device.busy_cpus(0.05) <= (os.cpu_count() or 1) + 1e-9  # measured from /proc/stat
    monkeypatch.delenv("DATAMARK_THREADS", raising=False)  # the default, not a test runner's setting
    monkeypatch.setattr(device, "usable_cpus", lambda: 2)
    for busy, expected in ((0.0, 2), (0.4, 2), (1.0, 1), (1.7, 1), (6.0, 1)):
        monkeypatch.setattr(device, "busy_cpus", lambda sample_s=0.1, b=busy: b)
        assert device.default_threads() == expected
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(device, "busy_cpus", lambda sample_s=0.1: 1.0)
        assert CliRunner().invoke(app, ["key-info", "--help"]).exit_code == 0
        assert torch.get_num_threads() == 1  # the CLI's default: the idle core only
    finally:
        torch.set_num_threads(before)
