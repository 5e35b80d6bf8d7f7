"""Command-line habits: --version, logging levels, the thread count, and train's --limit with its warning."""

import logging

import torch
from typer.testing import CliRunner

from datamark import __version__
from datamark.cli import app


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
