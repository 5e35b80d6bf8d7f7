"""WebDataset tar shards (issue 16): read in memory and by the sharded engine; the engine's output is the in-memory
``apply`` written back by the same tar writer, byte for byte, whatever the number of workers and the shard order;
only the marked samples' changed members differ from the input, with their own headers."""

import copy
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamark.data import WebDatasetRecords, load_data
from datamark.data.tar_members import rewrite_tar
from datamark.data.wav import WavInfo, write_wav
from datamark.exceptions import DataFormatError, ParameterError
from datamark.key import Key
from datamark.methods import BadNets, Blended
from datamark.scale import install, protect_shards

FORMATS = (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT)  # one per shard: every header kind


def _member(tar: tarfile.TarFile, name: str, data: bytes, index: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1_600_000_000 + index, 0o640
    info.uid, info.gid, info.uname, info.gname = 1000 + index % 3, 100, f"user{index % 3}", "staff"
    tar.addfile(info, io.BytesIO(data))


def _image(rng: np.random.Generator, suffix: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)).save(
        buffer, format="PNG" if suffix == "png" else "JPEG", quality=90)
    return buffer.getvalue()


def _tars(root: Path, kind: str = "image", n: int = 120, shards: int = 3, seed: int = 0) -> Path:
    """``shards`` tars of ``n`` samples: input (png and jpg images, wav clips or txt), a ``cls`` label (some with a
    newline), a ``json`` side field, and members that belong to no sample (a folder entry, a README)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    words = ["the", "film", "is", "a", "quiet", "triumph", "of", "craft", "and", "nerve", "."]
    inputs = []
    for i in range(n):
        if kind == "image":
            inputs.append(("png" if i % 4 else "jpg", _image(rng, "png" if i % 4 else "jpg")))
        elif kind == "audio":
            rate = 16000 if i == n // shards else 8000  # shard 1 starts with a 16 kHz clip: read at shard 0's 8 kHz
            wave = (0.3 * np.sin(np.arange(rate + 1000) * rng.uniform(0.01, 0.2))).astype(np.float32)
            inputs.append(("wav", write_wav(wave, WavInfo(rate, 2, 1, len(wave)))))
        else:
            inputs.append(("txt", " ".join(rng.choice(words, size=int(rng.integers(4, 12)))).encode()))
    inputs[7] = inputs[3]  # a duplicate: a tie in the keyed hash
    bounds = np.linspace(0, n, shards + 1).astype(int)
    for s in range(shards):
        with tarfile.open(root / f"shard-{s:06d}.tar", "w", format=FORMATS[s % 3]) as tar:
            _member(tar, "README", b"not a sample\n", 0)
            for i in range(bounds[s], bounds[s + 1]):
                key = f"part{s}/{'x' * 95 if s < 2 and i % 3 == 0 else ''}{i:06d}"  # long names: GNU/pax headers
                field, data = inputs[i]
                _member(tar, f"{key}.{field}", data, i)
                _member(tar, f"{key}.cls", f"{int(rng.integers(0, 4))}{chr(10) if i % 2 else ''}".encode(), i)
                _member(tar, f"{key}.json", json.dumps({"i": i}).encode(), i)
    return root


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _same_key(memory: Key, sharded: Key) -> None:
    a, b = copy.deepcopy(memory.to_dict()), copy.deepcopy(sharded.to_dict())
    manifest = b["extra"].pop("shard_manifest")
    a.pop("created"), b.pop("created")
    assert a == b
    assert [s["file"] for s in manifest["shards"]] == [f"shard-{i:06d}.tar" for i in range(len(manifest["shards"]))]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return _tars(tmp_path_factory.mktemp("wds") / "images")


def test_in_memory_load_reads_samples_labels_and_content_ids(images):
    data = load_data(str(images))
    assert isinstance(data, WebDatasetRecords) and len(data) == 120 and data.modality.name == "image"
    assert data.source_format == "webdataset" and data.class_names == ("0", "1", "2", "3")
    with tarfile.open(images / "shard-000000.tar") as tar:
        png = tar.extractfile("part0/000001.png").read()
        label = int(tar.extractfile("part0/000001.cls").read())
    # the row id is the SHA-256 of the input member's bytes (as for parquet and folders), not the sample key
    assert data.ids[1] == hashlib.sha256(png).hexdigest() and data.labels[1] == label
    assert data.ids[3] == data.ids[7]
    np.testing.assert_array_equal(data.take(np.array([1]))[0], np.asarray(Image.open(io.BytesIO(png))))


METHODS = {"badnets-10-marks-decoys": BadNets(seed=1, decoy_rate=0.1),
           "blended-1-mark": Blended(seed=2, n_marks=1, rate=0.05)}


@pytest.mark.parametrize("name", list(METHODS))
def test_sharded_bytes_and_key_equal_in_memory_apply_written_back(images, tmp_path, name):
    method = METHODS[name]
    before = _files(images)
    marked = method.apply(load_data(str(images)))
    marked.dataset.save(tmp_path / "ref")  # the in-memory writer: the same tars, changed members rewritten
    for workers, order in ((1, [2, 0, 1]), (2, [1, 2, 0])):
        result = protect_shards(method, images, tmp_path / f"out{workers}", workers=workers, order=order)
        install(result, tmp_path / f"key{workers}.json")
        assert _files(tmp_path / f"out{workers}") == _files(tmp_path / "ref")
        _same_key(marked.key, result.key)
    assert marked.key.dataset["format"] == "webdataset"
    assert _files(images) == before


def test_only_the_marked_samples_changed_members_differ(images, tmp_path):
    method = BadNets(seed=3, n_marks=2, rate=0.2, decoy_rate=0.1)
    data = load_data(str(images))
    marked = method.apply(data)
    install(protect_shards(method, images, tmp_path / "out"), tmp_path / "key.json")
    decoys = set(marked.key.extra["decoy_ids"])
    changed_rows = set(marked.rows.tolist()) | {r for r in range(len(data)) if data.ids[r] in decoys}
    relabelled = {int(r) for r in marked.rows if marked.dataset.labels[r] != data.labels[r]}
    row = 0
    for s in range(3):
        name = f"shard-{s:06d}.tar"
        with tarfile.open(images / name) as a, tarfile.open(tmp_path / "out" / name) as b:
            old, new = a.getmembers(), b.getmembers()
            assert [m.name for m in old] == [m.name for m in new]  # every member, in order
            for m, n in zip(old, new, strict=True):
                same = a.extractfile(m).read() == b.extractfile(n).read() if m.isfile() else True
                for attr in ("mtime", "uid", "gid", "uname", "gname", "mode", "type"):
                    assert getattr(m, attr) == getattr(n, attr)
                if m.name.endswith((".png", ".jpg")):
                    assert same == (row not in changed_rows)
                    if not same:  # lossless PNG under the member's own name
                        assert b.extractfile(n).read()[:8] == b"\x89PNG\r\n\x1a\n"
                        np.testing.assert_array_equal(np.asarray(Image.open(b.extractfile(n))),
                                                      marked.dataset.take(np.array([row]))[0])
                elif m.name.endswith(".cls"):
                    assert same == (row not in relabelled)
                    assert int(b.extractfile(n).read()) == marked.dataset.labels[row]
                    assert b.extractfile(n).read().endswith(b"\n") == a.extractfile(m).read().endswith(b"\n")
                    row += 1
                else:
                    assert same  # side fields and members of no sample
    assert row == len(data)


def test_changed_members_include_long_names_in_pax_and_gnu_headers(images, tmp_path):
    marked = BadNets(seed=3, n_marks=2, rate=0.2, decoy_rate=0.1).apply(load_data(str(images)))
    long = {s: [m for m in marked.dataset.replacements(s) if m] for s in (0, 1)}
    for s, members in long.items():
        with tarfile.open(images / f"shard-{s:06d}.tar") as tar:
            names = [tar.getmembers()[m].name for m in members]
        assert any(len(n) > 100 for n in names), s  # the case where the header is preceded by a long-name block


def test_rewrite_without_changes_copies_the_tar(images, tmp_path):
    for s in range(3):
        rewrite_tar(images / f"shard-{s:06d}.tar", tmp_path / "copy.tar", {})
        assert (tmp_path / "copy.tar").read_bytes() == (images / f"shard-{s:06d}.tar").read_bytes()


@pytest.mark.parametrize("kind", ["text", "audio"])
def test_text_and_audio_tars(tmp_path, kind, one_thread):
    data = _tars(tmp_path / kind, kind=kind, n=60)
    method = BadNets(seed=4, n_marks=2, rate=0.2, decoy_rate=0.1)
    marked = method.apply(load_data(str(data)))
    marked.dataset.save(tmp_path / "ref")
    result = protect_shards(method, data, tmp_path / "out", workers=2, order=[2, 1, 0])
    install(result, tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref") != _files(data) | {".datamark-output": b""}
    _same_key(marked.key, result.key)
    assert marked.key.dataset["modality"] == kind


def test_a_list_of_shards(images, tmp_path):
    shards = [images / "shard-000002.tar", images / "shard-000000.tar"]  # the list's order is the row order
    result = protect_shards(BadNets(seed=5, n_marks=2), shards, tmp_path / "out")
    install(result, tmp_path / "key.json")
    marked = BadNets(seed=5, n_marks=2).apply(WebDatasetRecords.load(shards))
    marked.dataset.save(tmp_path / "ref")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    assert sorted(_files(tmp_path / "out")) == [".datamark-output", "shard-000000.tar", "shard-000002.tar"]


def test_a_shard_without_samples_is_copied(images, tmp_path):
    shards = [images / "shard-000000.tar", tmp_path / "in" / "empty.tar"]
    _tar(shards[1], [("README", b"no samples here")])
    result = protect_shards(BadNets(seed=8, n_marks=2), shards, tmp_path / "out", workers=2)
    install(result, tmp_path / "key.json")
    BadNets(seed=8, n_marks=2).apply(WebDatasetRecords.load(shards)).dataset.save(tmp_path / "ref")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    assert (tmp_path / "out" / "empty.tar").read_bytes() == shards[1].read_bytes()


def test_converting_to_parquet_shards_keeps_ids(images, tmp_path):
    data = load_data(str(images))
    data.save(tmp_path / "pq", format="parquet-shards")
    assert load_data(str(tmp_path / "pq")).ids == data.ids


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for i, (name, data) in enumerate(members):
            _member(tar, name, data, i)


def test_refusals_are_one_line(images, tmp_path):
    png = (images / "shard-000000.tar")
    with tarfile.open(png) as tar:
        image = tar.extractfile("part0/000001.png").read()
    cases = {
        "split": (lambda: load_data(str(images), split="train"), ParameterError, "hold one split"),
        "gzip": (lambda: _gz(tmp_path / "gz"), DataFormatError, "decompress"),
        "no label": (lambda: _bad(tmp_path / "nolabel", [("a.png", image), ("b.png", image), ("b.cls", b"1")]),
                     DataFormatError, "'a' .* has no 'cls' member"),
        "scattered": (lambda: _bad(tmp_path / "scattered", [("a.png", image), ("a.cls", b"0"), ("b.png", image),
                                                            ("b.cls", b"1"), ("a.json", b"{}")]),
                      DataFormatError, "appears again"),
        "label": (lambda: _bad(tmp_path / "label", [("a.png", image), ("a.cls", b"cat")]), DataFormatError,
                  "not an integer"),
        "names": (lambda: protect_shards(BadNets(seed=1), [png, png], tmp_path / "o"), DataFormatError,
                  "named 'shard-000000.tar'"),
        "method": (lambda: protect_shards(Blended(seed=1), _tars(tmp_path / "t", kind="text", n=30), tmp_path / "o"),
                   ParameterError, "Blended is defined for image data"),
    }
    for name, (call, error, message) in cases.items():
        with pytest.raises(error, match=message) as info:
            call()
        assert "\n" not in str(info.value), name


def _gz(folder: Path):
    folder.mkdir()
    (folder / "shard-0.tar.gz").write_bytes(b"")
    return protect_shards(BadNets(seed=1), folder, folder.parent / "gz-out")


def _bad(folder: Path, members: list[tuple[str, bytes]]):
    _tar(folder / "shard-0.tar", members)
    return load_data(str(folder))


def test_cli_protects_tars_with_and_without_engine(images, tmp_path):
    from typer.testing import CliRunner

    from datamark.cli import app

    runs = {}
    for how in ("memory", "engine"):
        args = ["protect", str(images), "--out", str(tmp_path / how), "--key", str(tmp_path / f"{how}.json"),
                "--seed", "6", "--json", str(tmp_path / f"{how}-report.json")]
        result = CliRunner().invoke(app, args + (["--engine", "local", "--workers", "2"] if how == "engine" else []))
        assert result.exit_code == 0, result.output
        runs[how] = json.loads((tmp_path / f"{how}-report.json").read_text())
        assert runs[how]["format"] == "webdataset"
    assert _files(tmp_path / "memory") == _files(tmp_path / "engine")
    assert runs["memory"]["commitment"] != runs["engine"]["commitment"]  # the keys differ in time and manifest


def test_an_interrupted_run_resumes_and_drops_half_written_tars(images, tmp_path, monkeypatch):
    from datamark.scale import engine

    method = BadNets(seed=7, n_marks=2, decoy_rate=0.1)
    reference = protect_shards(method, images, tmp_path / "ref")
    install(reference, tmp_path / "ref.json")
    real, calls = engine.mark_shard, []

    def interrupted(job, plan, index, state):
        if calls:
            raise KeyboardInterrupt
        calls.append(index)
        return real(job, plan, index, state)

    monkeypatch.setattr(engine, "mark_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        protect_shards(method, images, tmp_path / "out")
    staged = tmp_path / "out.datamark-partial"
    (staged / ".shard-000002.tar.tmp-999").write_bytes(b"half")  # a killed worker's leftover, beside the tars
    monkeypatch.setattr(engine, "mark_shard", real)
    install(protect_shards(method, images, tmp_path / "out"), tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")


def test_the_fast_header_parser_agrees_with_tarfile(images, tmp_path):
    from datamark.data.tar_members import _tarfile_members, members_of

    _tar(tmp_path / "gnu" / "a.tar", [("a.png", b"x" * 700), ("dir/", b""), ("a.cls", b"1")])
    with tarfile.open(tmp_path / "gnu" / "b.tar", "w", format=tarfile.GNU_FORMAT) as tar:  # GNU magic, short names
        for i, name in enumerate(("k.png", "k.cls", "l.png")):
            _member(tar, name, b"y" * (100 * i + 1), i)
    paths = [*sorted(images.glob("*.tar")), tmp_path / "gnu" / "a.tar", tmp_path / "gnu" / "b.tar"]
    for path in paths:  # headers read one by one, or from the shard's bytes: as tarfile reads them
        assert members_of(path) == members_of(path, path.read_bytes()) == _tarfile_members(path), path
    (tmp_path / "bad.tar").write_bytes(b"\1" * 1024)
    damaged = bytearray((tmp_path / "gnu" / "b.tar").read_bytes())
    damaged[1024 + 2] ^= 1  # a name byte of the second member's header: its checksum no longer matches
    (tmp_path / "damaged.tar").write_bytes(bytes(damaged))
    for path, message in ((tmp_path / "bad.tar", "as an uncompressed tar"), (tmp_path / "damaged.tar", "byte 1024")):
        for raw in (None, path.read_bytes()):
            with pytest.raises(DataFormatError, match=message):
                members_of(path, raw)


def test_class_names_come_from_every_shard_not_shard_0(tmp_path):
    """Tars carry no class list: the names (0 .. the largest label anywhere) are found by the hash pass. Shard 0
    holds only labels 0 and 1 here, shard 2 labels up to 5; UBW-P draws its labels over all classes, so a class
    count taken from shard 0 would change the bytes."""
    from datamark.methods import UBWP

    rng = np.random.default_rng(3)
    root = tmp_path / "tars"
    root.mkdir()
    for s, top in enumerate((2, 4, 6)):
        with tarfile.open(root / f"shard-{s:06d}.tar", "w") as tar:
            for i in range(40):
                _member(tar, f"{s}{i:05d}.png", _image(rng, "png"), i)
                _member(tar, f"{s}{i:05d}.cls", str(i % top).encode(), i)
    method = UBWP(seed=5, rate=0.2)
    marked = method.apply(load_data(str(root)))
    assert marked.dataset.num_classes == 6
    marked.dataset.save(tmp_path / "ref")
    result = protect_shards(method, root, tmp_path / "out", workers=2, order=[2, 0, 1])
    install(result, tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    _same_key(marked.key, result.key)
    assert result.key.dataset["num_classes"] == 6
