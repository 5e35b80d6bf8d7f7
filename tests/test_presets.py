"""Presets (datamark.methods.presets): named settings measured together, filled in where the user left an option
unset, refused on data unlike what they were measured on."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from datamark import BadNets
from datamark.cli import app
from datamark.data.arrays import ArrayRecords
from datamark.exceptions import ParameterError
from datamark.key import Key
from datamark.methods.presets import PRESETS, preset


@pytest.fixture
def small_images(tmp_path):
    """300 random 32 x 32 RGB images of 10 classes, as an .npz file (the format protect writes back)."""
    rng = np.random.default_rng(0)
    records = ArrayRecords(rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8), np.arange(300) % 10,
                           [f"c{i}" for i in range(10)])
    path = tmp_path / "small.npz"
    records.save(path)
    return path


def _protect(tmp_path, data, *options):
    return CliRunner().invoke(app, ["--threads", "1", "protect", str(data), "--out", str(tmp_path / "wm.npz"),
                                    "--key", str(tmp_path / "k.json"), "--seed", "3", *map(str, options)])


def test_robust_preset_builds_the_measured_method_and_explicit_options_win():
    robust = PRESETS["robust"]
    assert robust.build(seed=1) == BadNets(seed=1, pattern="blocks", trigger_size=8, decoy_rate=0.1,
                                           confusion_rate=0.1)
    merged, overridden = robust.fill({"decoy_rate": 0.2, "trigger_size": None, "rate": 0.05})
    assert merged == {"pattern": "blocks", "trigger_size": 8, "decoy_rate": 0.2, "confusion_rate": 0.1, "rate": 0.05}
    assert overridden == {"decoy_rate": 0.2}
    with pytest.raises(ParameterError, match="Unknown preset 'fast'"):
        preset("fast")


@pytest.mark.parametrize(("method", "modality", "shape", "message"), [
    ("blended", "image", (32, 32, 3), "sets up the 'badnets' method"),
    ("badnets", "text", (), "is for image data"),
    ("badnets", "image", (8, 8, 1), "measured on images of 32 px or more and these are 8 px"),
])
def test_robust_preset_refuses_what_it_was_not_measured_on(method, modality, shape, message):
    with pytest.raises(ParameterError, match=message):
        PRESETS["robust"].check(method, modality, shape)
    PRESETS["robust"].check("badnets", "image", (32, 32, 3))  # what it was measured on passes
    PRESETS["robust"].check("badnets", "image", (64, 48, 3))


def test_protect_with_the_preset_writes_its_settings_into_the_key(tmp_path, small_images):
    result = _protect(tmp_path, small_images, "--preset", "robust", "--decoy-rate", "0.2", "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["preset"] == "robust"
    params = Key.load(tmp_path / "k.json").method["params"]
    assert (params["pattern"], params["trigger_size"], params["confusion_rate"]) == ("blocks", 8, 0.1)
    assert params["decoy_rate"] == 0.2  # the explicit option won, and was said to
    assert "your decoy_rate=0.2 replaces it" in result.stderr


def test_protect_refuses_the_preset_on_data_it_was_not_measured_on_in_one_line(tmp_path):
    small = _protect(tmp_path, "digits:train", "--preset", "robust")
    assert small.exit_code != 0 and "8 px" in small.output and "Traceback" not in small.output
    unknown = _protect(tmp_path, "digits:train", "--preset", "fastest")
    assert unknown.exit_code != 0 and "Unknown preset 'fastest'" in unknown.output
    assert not (tmp_path / "k.json").exists() and not (tmp_path / "wm.npz").exists()


def test_protect_with_partner_like_rows_trains_a_base_model_when_none_is_given(tmp_path, small_images):
    """--confusion-choice partner-like without --base-model trains the modality's default model on the data first
    (its cost is in the key); a --base-model that is not a file is refused in one line, and nothing is written."""
    missing = _protect(tmp_path, small_images, "--preset", "robust", "--confusion-choice", "partner-like",
                       "--base-model", tmp_path / "none.pt")
    assert missing.exit_code != 0 and "none.pt" in missing.output and "Traceback" not in missing.output
    assert not (tmp_path / "k.json").exists() and not (tmp_path / "wm.npz").exists()
    result = _protect(tmp_path, small_images, "--preset", "robust", "--confusion-choice", "partner-like", "--json", "-")
    assert result.exit_code == 0, result.output
    key = Key.load(tmp_path / "k.json")
    assert key.method["params"]["confusion_choice"] == "partner-like" and "base_model" not in key.method["params"]
    assert key.extra["confusion_base_model"] == "trained:fastnet" and key.extra["confusion_base_model_train_s"] > 0
    assert len(key.extra["confusion_ids"]) == 30
