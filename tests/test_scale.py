"""Sharded protect (issue 16): the local engine gives the bytes and key of in-memory protect, whatever the number
of workers and the shard order, resumes after an interruption, and refuses what it cannot reproduce."""

import copy
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from datamark._rng import resolve_secret, select_smallest
from datamark.cli import app
from datamark.data import load_data
from datamark.data.arrays import ArrayRecords
from datamark.data.output import arrow_table, write_parquet_shards
from datamark.exceptions import DataFormatError, OutputExistsError, ParameterError
from datamark.key import Key
from datamark.methods import BadNets, Blended, CleanLabel, WaNet
from datamark.scale import engine, install, protect_shards, select
from datamark.scale.select import answer, find_cuts

N_ROWS, N_SHARDS = 400, 4


def _shards(root: Path, n: int = N_ROWS, shards: int = N_SHARDS, seed: int = 0) -> Path:
    """A generated parquet-shard folder of 16x16 RGB images (with a duplicated image: a tie in the keyed hash)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)
    images[7] = images[3]
    labels = rng.integers(0, 10, size=n)
    table = arrow_table(ArrayRecords(images, labels, [f"c{i}" for i in range(10)], where="generated"))
    # max_shard_bytes chosen so the same save of the watermarked table (a few PNGs larger or smaller) lays out
    # the same number of shards: in-memory protect's save then writes the same files as the engine
    write_parquet_shards(table, root, max_shard_bytes=math.ceil(table.nbytes / (shards - 0.5)))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _shards(tmp_path_factory.mktemp("scale") / "in")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _reference(method, data: Path, out: Path):
    """In-memory protect of ``data`` followed by the same save (parquet shards, the input's max shard size)."""
    marked = method.apply(load_data(str(data)))
    table = arrow_table(marked.dataset)
    write_parquet_shards(table, out, max_shard_bytes=math.ceil(arrow_table(load_data(str(data))).nbytes
                                                               / (N_SHARDS - 0.5)))
    return marked.key


def _same_key(memory: Key, sharded: Key) -> None:
    a, b = copy.deepcopy(memory.to_dict()), copy.deepcopy(sharded.to_dict())
    manifest = b["extra"].pop("shard_manifest")
    a.pop("created"), b.pop("created")
    assert a == b
    assert [s["file"] for s in manifest["shards"]] == [f"data/train-{i:05d}-of-{N_SHARDS:05d}.parquet"
                                                       for i in range(N_SHARDS)]


METHODS = {"badnets-10-marks": BadNets(seed=1), "badnets-decoys": BadNets(seed=2, decoy_rate=0.1),
           "blended-1-mark-decoys": Blended(seed=3, n_marks=1, decoy_rate=0.05),
           "badnets-candidates": BadNets(seed=4, n_marks=3, n_candidates=3, rate=0.2)}


@pytest.mark.parametrize("name", list(METHODS))
def test_bytes_and_key_equal_in_memory_protect(data, tmp_path, name):
    method = METHODS[name]
    key = _reference(method, data, tmp_path / "ref")
    result = protect_shards(method, data, tmp_path / "out", order=[3, 1, 0, 2])  # shard order does not matter
    install(result, tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    _same_key(key, result.key)
    _same_key(key, Key.load(tmp_path / "key.json"))
    for shard in result.key.extra["shard_manifest"]["shards"]:
        assert hashlib.sha256((tmp_path / "out" / shard["file"]).read_bytes()).hexdigest() == shard["sha256"]
        assert shard["rows"] == pq.read_metadata(tmp_path / "out" / shard["file"]).num_rows


def test_two_workers_give_the_same_bytes_and_the_input_is_untouched(data, tmp_path):
    before = _files(data)
    one = protect_shards(BadNets(seed=5, decoy_rate=0.1), data, tmp_path / "one", workers=1)
    two = protect_shards(BadNets(seed=5, decoy_rate=0.1), data, tmp_path / "two", workers=2, order=[2, 0, 3, 1])
    install(one, tmp_path / "k1.json")
    install(two, tmp_path / "k2.json")
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    assert one.key.to_dict() | {"created": 0} == two.key.to_dict() | {"created": 0}
    assert _files(data) == before


def test_one_shard_equals_records_save(tmp_path):
    data = _shards(tmp_path / "in", n=120, shards=1)
    marked = BadNets(seed=6).apply(load_data(str(data)))
    marked.dataset.save(tmp_path / "ref")  # the in-memory CLI's save, unchanged
    result = protect_shards(BadNets(seed=6), data, tmp_path / "out")
    install(result, tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")


def test_an_interrupted_run_resumes_from_the_shards_written(data, tmp_path, monkeypatch):
    reference = protect_shards(Blended(seed=7, decoy_rate=0.1), data, tmp_path / "ref")
    install(reference, tmp_path / "ref.json")
    calls = []
    real = engine.mark_shard

    def interrupted(job, plan, index, state):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(index)
        return real(job, plan, index, state)

    monkeypatch.setattr(engine, "mark_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        protect_shards(Blended(seed=7, decoy_rate=0.1), data, tmp_path / "out")
    staged = tmp_path / "out.datamark-partial"
    written = {i: (staged / f"data/train-{i:05d}-of-{N_SHARDS:05d}.parquet").stat().st_mtime_ns for i in calls}
    assert not (tmp_path / "out").exists() and len(written) == 2
    (staged / "data/.train-00003-of-00004.parquet.tmp-999").write_bytes(b"half")  # a killed worker's leftover
    monkeypatch.setattr(engine, "mark_shard", real)
    resumed = protect_shards(Blended(seed=7, decoy_rate=0.1), data, tmp_path / "out")
    for i, mtime in written.items():  # finished shards are kept, not redone
        assert (staged / f"data/train-{i:05d}-of-{N_SHARDS:05d}.parquet").stat().st_mtime_ns == mtime
    install(resumed, tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    assert resumed.key.to_dict() | {"created": 0} == reference.key.to_dict() | {"created": 0}


def test_a_seedless_run_resumes_with_its_own_secret(data, tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "mark_shard", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        protect_shards(BadNets(), data, tmp_path / "out")
    secret = (tmp_path / "out.datamark-partial/.datamark-work/secret").read_text()
    monkeypatch.undo()
    result = protect_shards(BadNets(), data, tmp_path / "out")
    assert result.key.secret == secret


def test_refusals(data, tmp_path):
    for method in (CleanLabel(seed=1), WaNet(seed=1)):  # no base model; decoys from its own stream
        with pytest.raises(ParameterError, match="without --engine"):
            protect_shards(method, data, tmp_path / "out")
    with pytest.raises(DataFormatError, match="not a parquet-shard folder"):
        protect_shards(BadNets(seed=1), tmp_path, tmp_path / "out")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ParameterError, match="did not write"):
        protect_shards(BadNets(seed=1), data, tmp_path / "taken", overwrite=True)
    install(protect_shards(BadNets(seed=1), data, tmp_path / "done"), tmp_path / "k.json")
    with pytest.raises(OutputExistsError):
        protect_shards(BadNets(seed=1), data, tmp_path / "done")
    protect_shards(BadNets(seed=1), data, tmp_path / "partial")  # staged, not installed
    with pytest.raises(ParameterError, match="another protect job"):
        protect_shards(BadNets(seed=2), data, tmp_path / "partial")
    assert protect_shards(BadNets(seed=2), data, tmp_path / "partial", overwrite=True).key.secret \
        == resolve_secret(2).hex()


def test_exact_cuts_match_select_smallest(monkeypatch):
    monkeypatch.setattr(select, "GATHER_ROWS", 3)  # force histogram rounds down to single score values
    rng = np.random.default_rng(0)
    for scores in (rng.integers(0, 2**64, size=300, dtype=np.uint64),
                   rng.choice(rng.integers(0, 2**64, size=20, dtype=np.uint64), size=300),  # many ties
                   np.full(300, 12345, dtype=np.uint64)):                                   # all tied
        eligible = rng.random(300) < 0.8
        bounds = np.sort(rng.choice(np.arange(1, 300), size=4, replace=False))
        parts = np.split(np.arange(300), bounds)

        def ask(queries, parts=parts, scores=scores, eligible=eligible):
            return [answer(scores[p], eligible[p], queries) for p in parts]

        ranks = [0, 1, 37, 150, int(eligible.sum())]
        for k, cut in zip(ranks, find_cuts(ask, ranks, len(parts), int(eligible.sum())), strict=True):
            chosen = np.concatenate([cut.below(scores[p], s, eligible[p]) for s, p in enumerate(parts)])
            expected = np.zeros(300, dtype=bool)
            expected[select_smallest(scores, k, eligible)] = True
            assert (chosen == expected).all()


def test_cli_engine_local(data, tmp_path):
    out, key = tmp_path / "out", tmp_path / "key.json"
    result = CliRunner().invoke(app, ["protect", str(data), "--out", str(out), "--key", str(key), "--seed", "1",
                                      "--engine", "local", "--workers", "1", "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["engine"] == "local" and report["shards"] == N_SHARDS and report["rows"] == N_ROWS
    _reference(BadNets(seed=1), data, tmp_path / "ref")
    assert _files(out) == _files(tmp_path / "ref")
    refused = CliRunner().invoke(app, ["protect", str(data), "--out", str(tmp_path / "x"), "--key",
                                       str(tmp_path / "x.json"), "--engine", "spark"])
    assert refused.exit_code != 0 and "--engine must be" in refused.output
    shutil.rmtree(out)


def test_ray_engine_gives_the_local_engines_bytes(data, tmp_path):
    pytest.importorskip("ray", reason="the Ray engine needs ray: pip install \"datamark[ray]\"")
    import signal

    local = protect_shards(BadNets(seed=8, decoy_rate=0.1), data, tmp_path / "local")
    install(local, tmp_path / "local.json")
    before = signal.getsignal(signal.SIGTERM)
    sharded = protect_shards(BadNets(seed=8, decoy_rate=0.1), data, tmp_path / "ray", engine="ray", workers=2)
    install(sharded, tmp_path / "ray.json")
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert sharded.key.to_dict() | {"created": 0} == local.key.to_dict() | {"created": 0}
    # ray.init installs its own SIGTERM handler and leaves it after shutdown: datamark puts this process's back
    assert signal.getsignal(signal.SIGTERM) == before


def test_memory_limit_mode_refuses_without_cgroups(tmp_path, monkeypatch, capsys, load_benchmark):
    """benchmarks/scale.py --memory-limit-mib refuses in one line, before generating anything, without a writable
    cgroup-v1 memory hierarchy."""
    import sys

    module = load_benchmark("scale")
    monkeypatch.setattr(module, "CGROUP_MEMORY", tmp_path / "no-cgroup")
    monkeypatch.setattr(sys, "argv", ["scale.py", "--rows", "10", "--shards", "1", "--memory-limit-mib", "256",
                                      "--work", str(tmp_path / "work"), "--results", str(tmp_path / "results")])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "needs a writable cgroup-v1 memory hierarchy" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "work").exists() and not (tmp_path / "results").exists()


def test_without_ray_the_local_engine_works_and_the_ray_engine_says_how_to_install(data, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed: `import ray` fails
    install(protect_shards(BadNets(seed=1), data, tmp_path / "local"), tmp_path / "local.json")
    assert len(list((tmp_path / "local" / "data").glob("*.parquet"))) == N_SHARDS
    with pytest.raises(ImportError, match=r'pip install "datamark\[ray\]"'):
        protect_shards(BadNets(seed=1), data, tmp_path / "ray", engine="ray")


def test_cifar_repeat_copies_keep_their_pixels_and_get_their_own_ids(load_benchmark):
    """benchmarks/scale.py --cifar-repeat: a JPEG comment makes each copy's bytes (its content id) its own."""
    import io

    from PIL import Image

    module = load_benchmark("scale")
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)
    jpeg = buffer.getvalue()
    copies = [module.with_comment(jpeg, f"datamark-copy-{c}".encode()) for c in range(3)]
    assert len({hashlib.sha256(c).hexdigest() for c in copies + [jpeg]}) == 4
    decoded = [np.asarray(Image.open(io.BytesIO(c))) for c in copies + [jpeg]]
    assert all(np.array_equal(d, decoded[-1]) for d in decoded)
    with pytest.raises(ValueError, match="not a JPEG"):
        module.with_comment(b"\x89PNG", b"x")
