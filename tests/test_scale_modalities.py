"""Sharded protect of text and audio parquet shards (issue 16): the engine writes the bytes and key of in-memory
protect on small slices of real data (SST-2, AG News, spoken digits), with 1 and 2 workers and any shard order,
and refuses in one line what it cannot reproduce."""

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from datamark.data import load_data
from datamark.data.output import arrow_table, write_parquet_shards
from datamark.exceptions import ParameterError
from datamark.key import Key
from datamark.methods import BadNets, Blended
from datamark.scale import install, protect_shards

SHARDS = 3


def _slice(name: str, n: int, tmp: Path) -> Path:
    """The first ``n`` rows of the shared corpus ``name`` as a parquet-shard folder of :data:`SHARDS` shards."""
    records = load_data(name)
    table = arrow_table(records).slice(0, n)
    folder = tmp / name.replace(":", "-")
    write_parquet_shards(table, folder, max_shard_bytes=_max_bytes(table.nbytes))
    return folder


def _max_bytes(nbytes: int) -> int:
    """A shard size that lays ``nbytes`` out in SHARDS shards, with half a shard of slack, so the watermarked table
    (a few rows longer or shorter) is laid out the same way."""
    return math.ceil(nbytes / (SHARDS - 0.5))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _reference(method, data: Path, out: Path) -> Key:
    """In-memory protect of ``data`` followed by the same save (parquet shards of the input's shard size)."""
    original = arrow_table(load_data(str(data)))
    marked = method.apply(load_data(str(data)))
    write_parquet_shards(arrow_table(marked.dataset), out, max_shard_bytes=_max_bytes(original.nbytes))
    return marked.key


def _same_key(memory: Key, sharded: Key) -> None:
    a, b = copy.deepcopy(memory.to_dict()), copy.deepcopy(sharded.to_dict())
    b["extra"].pop("shard_manifest")
    a.pop("created"), b.pop("created")
    assert a == b


@pytest.fixture(scope="module")
def sst2(tmp_path_factory) -> Path:
    return _slice("sst2:train", 240, tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module")
def fsdd(tmp_path_factory) -> Path:
    return _slice("fsdd:train", 60, tmp_path_factory.mktemp("audio"))


CASES = {"sst2-10-marks-decoys": ("sst2", BadNets(seed=1, decoy_rate=0.1)),
         "sst2-1-mark": ("sst2", BadNets(seed=2, n_marks=1, rate=0.05)),
         "fsdd-3-marks-decoys": ("fsdd", BadNets(seed=3, n_marks=3, rate=0.2, decoy_rate=0.1))}


@pytest.mark.parametrize("case", list(CASES))
def test_text_and_audio_shards_equal_in_memory_protect(case, tmp_path, request, one_thread):
    fixture, method = CASES[case]
    data = request.getfixturevalue(fixture)
    key = _reference(method, data, tmp_path / "ref")
    before = _files(data)
    for workers, order in ((1, [2, 0, 1]), (2, [1, 2, 0])):
        out = tmp_path / f"out{workers}"
        result = protect_shards(method, data, out, workers=workers, order=order)
        install(result, tmp_path / f"key{workers}.json")
        assert _files(out) == _files(tmp_path / "ref")
        _same_key(key, result.key)
        assert result.n_marked == len(key.marked_ids) > 0
    assert _files(data) == before
    assert key.dataset["modality"] == fixture_modality(fixture)


def fixture_modality(fixture: str) -> str:
    return {"sst2": "text", "fsdd": "audio"}[fixture]


def test_ag_news_shards_equal_in_memory_protect(tmp_path, one_thread):
    data = _slice("ag_news:train", 200, tmp_path)
    method = BadNets(seed=4, n_marks=2, decoy_rate=0.05)
    key = _reference(method, data, tmp_path / "ref")
    result = protect_shards(method, data, tmp_path / "out", order=[1, 0, 2])
    install(result, tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    _same_key(key, result.key)


def test_refusals_name_the_fix(sst2, fsdd, tmp_path):
    with pytest.raises(ParameterError, match="is defined for image data; .* holds text") as info:
        protect_shards(Blended(seed=1), sst2, tmp_path / "blended")
    assert "\n" not in str(info.value)
    # the style rewrite cannot mark a sentence without a finite verb: in memory those rows are left out of the
    # selection and counted in the key, which the engine does not reproduce yet
    with pytest.raises(ParameterError, match="rows of .* cannot carry the trigger.*without --engine") as info:
        protect_shards(BadNets(seed=1, trigger_name="style"), sst2, tmp_path / "style")
    assert "\n" not in str(info.value) and not (tmp_path / "style").exists()


def test_cli_engine_on_text_shards_takes_the_text_trigger(sst2, tmp_path):
    from typer.testing import CliRunner

    from datamark.cli import app

    out, key = tmp_path / "out", tmp_path / "key.json"
    result = CliRunner().invoke(app, ["protect", str(sst2), "--out", str(out), "--key", str(key), "--seed", "5",
                                      "--trigger", "word", "--engine", "local"])
    assert result.exit_code == 0, result.output
    _reference(BadNets(seed=5), sst2, tmp_path / "ref")
    assert _files(out) == _files(tmp_path / "ref")
    refused = CliRunner().invoke(app, ["protect", str(sst2), "--out", str(tmp_path / "x"), "--key",
                                       str(tmp_path / "x.json"), "--trigger", "tone", "--engine", "local"])
    assert refused.exit_code != 0 and "is for audio data" in refused.output


def test_audio_without_a_declared_rate_is_read_at_shard_0s_rate(tmp_path, one_thread):
    """A table whose Audio feature has no sampling_rate is read at its first clip's rate in memory; every shard
    must be read at that rate too, not at its own first clip's (shard 1 starts with a 16 kHz clip here)."""
    import json

    import pyarrow as pa

    from datamark.data.wav import WavInfo, write_wav

    rng = np.random.default_rng(0)
    clips = []
    for i in range(45):
        rate = 16000 if i == 15 else 8000
        wave = (0.3 * np.sin(np.arange(rate + 500) * rng.uniform(0.01, 0.2))).astype(np.float32)
        clips.append({"bytes": write_wav(wave, WavInfo(rate, 2, 1, len(wave))), "path": None})
    features = {"audio": {"_type": "Audio"}, "label": {"_type": "ClassLabel", "names": ["a", "b", "c"]}}
    table = pa.table({"audio": clips, "label": pa.array(rng.integers(0, 3, 45), pa.int64())}).replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})})
    write_parquet_shards(table, tmp_path / "in", max_shard_bytes=_max_bytes(table.nbytes))
    method = BadNets(seed=6, n_marks=2, rate=0.2, decoy_rate=0.1)
    key = _reference(method, tmp_path / "in", tmp_path / "ref")
    result = protect_shards(method, tmp_path / "in", tmp_path / "out", order=[2, 1, 0])
    install(result, tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    _same_key(key, result.key)


def test_image_shards_without_marked_rows_are_written_unchanged(tmp_path):
    """At a low rate most shards hold no marked row; they are written as read (nothing is decoded)."""
    from datamark.data.arrays import ArrayRecords

    rng = np.random.default_rng(1)
    records = ArrayRecords(rng.integers(0, 256, size=(90, 8, 8, 3), dtype=np.uint8), rng.integers(0, 3, 90),
                           ["a", "b", "c"], where="generated")
    table = arrow_table(records)
    write_parquet_shards(table, tmp_path / "in", max_shard_bytes=_max_bytes(table.nbytes))
    method = BadNets(seed=9, n_marks=1, rate=0.02)  # 2 rows: at least one of the 3 shards has none
    key = _reference(method, tmp_path / "in", tmp_path / "ref")
    result = protect_shards(method, tmp_path / "in", tmp_path / "out", workers=2)
    install(result, tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    _same_key(key, result.key)
    assert len(key.marked_ids) == 2 and len(result.key.extra["shard_manifest"]["shards"]) == 3
