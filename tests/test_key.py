import json
import os
import stat

import pytest

from datamark import BadNets, Key
from datamark.exceptions import KeyFormatError, KeyMismatchError, OutputExistsError


@pytest.fixture(scope="module")
def key(digits):
    train, _ = digits
    return BadNets(seed=3, rate=0.05).apply(train.subset(range(200))).key


def test_round_trip_keeps_everything_and_the_commitment(key, tmp_path):
    path = tmp_path / "k.json"
    key.save(path)
    again = Key.load(path)
    assert again.to_dict() == key.to_dict() and again.commitment == key.commitment
    assert len(key.commitment) == 64


def test_key_file_is_owner_only(key, tmp_path):
    path = tmp_path / "k.json"
    key.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_existing_key_is_not_overwritten(key, tmp_path):
    path = tmp_path / "k.json"
    key.save(path)
    with pytest.raises(OutputExistsError, match="overwrite"):
        key.save(path)


def test_tampered_key_is_refused(key, tmp_path):
    path = tmp_path / "k.json"
    key.save(path)
    payload = json.loads(path.read_text())
    payload["target"] = (payload["target"] + 1) % 10
    path.write_text(json.dumps(payload))
    with pytest.raises(KeyFormatError, match="integrity"):
        Key.load(path)


def test_newer_format_and_garbage_are_refused(key, tmp_path):
    path = tmp_path / "k.json"
    key.save(path)
    payload = json.loads(path.read_text())
    payload["schema_version"] = 99
    path.write_text(json.dumps(payload))
    with pytest.raises(KeyFormatError, match="upgrade"):
        Key.load(path)
    path.write_text("{not json")
    with pytest.raises(KeyFormatError, match="not valid JSON"):
        Key.load(path)


def test_published_commitment_is_checked(key, tmp_path):
    path = tmp_path / "k.json"
    key.save(path)
    assert Key.load(path, commitment=key.commitment.upper()).commitment == key.commitment
    with pytest.raises(KeyMismatchError, match="not the published"):
        Key.load(path, commitment="0" * 64)


def test_secret_stays_out_of_repr_and_summary(key):
    assert key.secret not in repr(key)
    summary = json.dumps(key.summary())
    assert key.secret not in summary and key.commitment in summary
    assert key.trigger["params"]["pattern"]["base64"] not in summary


def test_key_for_another_dataset_is_refused(key):
    with pytest.raises(KeyMismatchError, match="another dataset"):
        key.check_data(10, (32, 32, 3), "CIFAR-10")
    with pytest.raises(KeyMismatchError, match="classes"):
        key.check_data(100, (8, 8, 1), "a 100-class model")
