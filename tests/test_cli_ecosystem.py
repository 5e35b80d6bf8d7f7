"""The command line where users already are: Hub layouts and dataset cards out, ONNX models in."""

import json
import warnings

import pytest
import torch
from typer.testing import CliRunner

from datamark.cli import app
from datamark.data import load_data
from datamark.key import Key


def _invoke(*args):
    return CliRunner().invoke(app, ["--threads", "1", *map(str, args)])


def test_protect_writes_hub_shards_and_a_card_and_refuses_a_suffix_of_another_format(tmp_path):
    res = _invoke("protect", "digits:train", "--out", tmp_path / "wm", "--format", "parquet-shards", "--key",
                  tmp_path / "k.json", "--card", tmp_path / "README.md", "--seed", "2")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "wm" / "data" / "train-00000-of-00001.parquet").is_file()
    key, card = Key.load(tmp_path / "k.json"), (tmp_path / "README.md").read_text()
    assert key.commitment in card and key.secret not in card
    assert len(load_data(str(tmp_path / "wm"))) == 1347
    printed = _invoke("card", "--key", tmp_path / "k.json", "--name", "digits")
    assert printed.exit_code == 0 and key.commitment in printed.stdout and 'pretty_name: "digits"' in printed.stdout
    # one parquet file in, an .npz path out: refused before any row is marked, nothing written
    assert _invoke("protect", "digits:test", "--out", tmp_path / "one.parquet", "--format", "parquet", "--key",
                   tmp_path / "k1.json").exit_code == 0
    res = _invoke("protect", tmp_path / "one.parquet", "--out", tmp_path / "x.npz", "--key", tmp_path / "k2.json")
    assert res.exit_code == 2 and "x.npz" in res.output and "--format" in res.output
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "k2.json").exists()


def test_verify_an_onnx_export_with_declared_preprocessing(cli_files):
    pytest.importorskip("onnxruntime")
    tmp_path, key = cli_files
    from datamark.models import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "stolen.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.9 calls the TorchScript exporter legacy
        torch.onnx.export(model.eval(), (torch.zeros(1, 1, 8, 8),), str(tmp_path / "m.onnx"), dynamo=False,
                          input_names=["pixels"], output_names=["scores"],
                          dynamic_axes={"pixels": {0: "n"}, "scores": {0: "n"}})
    common = ("verify", "--key", tmp_path / "key.json", "--data", tmp_path / "test.npz", "--json", "-")
    torch_run = _invoke(*common, "--model", tmp_path / "stolen.pt")
    onnx_run = _invoke(*common, "--model", tmp_path / "m.onnx", "--layout", "NCHW", "--datatype", "FP32",
                       "--scale", "1", "--model-outputs", "logits")
    assert onnx_run.exit_code == torch_run.exit_code == 0, onnx_run.output
    assert json.loads(onnx_run.stdout)["outcome"]["p_value"] == pytest.approx(
        json.loads(torch_run.stdout)["outcome"]["p_value"], rel=1e-3)
    undeclared = _invoke(*common, "--model", tmp_path / "m.onnx")
    assert undeclared.exit_code == 2 and "layout" in undeclared.output
    misapplied = _invoke(*common, "--model", tmp_path / "stolen.pt", "--mean", "0.5")
    assert misapplied.exit_code == 2 and "own preprocessing" in misapplied.output
