import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datamark import BadNets, load_data
from datamark.data import ArrowRecords, FolderRecords, shared_data_dir
from datamark.exceptions import DataError, DataFormatError, OutputExistsError

CIFAR_TEST = shared_data_dir() / "cifar10" / "test.parquet"
needs_cifar = pytest.mark.skipif(not CIFAR_TEST.exists(), reason="shared CIFAR-10 data not present")


@pytest.fixture(scope="module")
def cifar_slice(tmp_path_factory):
    """The first 200 rows of the shared CIFAR-10 test parquet (JPEG bytes, HF metadata), as a small file."""
    table = pq.read_table(CIFAR_TEST).slice(0, 200)
    path = tmp_path_factory.mktemp("cifar") / "slice.parquet"
    pq.write_table(table, path)
    return path


@needs_cifar
def test_parquet_round_trip_keeps_format_metadata_and_untouched_bytes(cifar_slice, tmp_path):
    original_bytes = cifar_slice.read_bytes()
    records = load_data(cifar_slice)
    assert records.input_shape == (32, 32, 3) and records.class_names[0] == "airplane"
    marked = BadNets(seed=0, rate=0.1, target=5).apply(records)
    out = tmp_path / "wm.parquet"
    marked.dataset.save(out)
    assert cifar_slice.read_bytes() == original_bytes, "the input file was modified"
    written = pq.read_table(out)
    assert written.schema.metadata == pq.read_table(cifar_slice).schema.metadata  # HF features and class names
    src = pq.read_table(cifar_slice).column("image").combine_chunks().field("bytes").to_pylist()
    dst = written.column("image").combine_chunks().field("bytes").to_pylist()
    changed = {i for i in range(len(src)) if src[i] != dst[i]}
    assert changed == set(marked.rows.tolist())
    assert all(dst[i][:8] == b"\x89PNG\r\n\x1a\n" for i in changed)  # lossless
    reread = load_data(out)
    assert np.array_equal(reread.inputs(), marked.dataset.inputs())
    assert (reread.labels[marked.rows] == 5).all()


@needs_cifar
def test_hugging_face_dataset_loads_our_output(cifar_slice, tmp_path):
    datasets = pytest.importorskip("datasets")
    marked = BadNets(seed=0, target=1).apply(load_data(cifar_slice))
    marked.dataset.save(tmp_path / "wm.parquet")
    ds = datasets.Dataset.from_parquet(str(tmp_path / "wm.parquet"), cache_dir=str(tmp_path / "cache"))
    assert ds.features["label"].names[1] == "automobile"
    row = int(marked.rows[0])
    assert np.array_equal(np.asarray(ds[row]["image"]), marked.dataset.inputs()[row])


@needs_cifar
def test_arrow_folder_round_trip(cifar_slice, tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_parquet(str(cifar_slice), cache_dir=str(tmp_path / "cache"))
    ds.save_to_disk(str(tmp_path / "arrow"))
    records = load_data(tmp_path / "arrow")
    assert records.source_format == "arrow"
    marked = BadNets(seed=0).apply(records)
    marked.dataset.save(tmp_path / "arrow-wm")
    again = load_data(tmp_path / "arrow-wm")
    assert np.array_equal(again.inputs(), marked.dataset.inputs())


def _image_folder(root: Path, n_per_class=6, size=(12, 12)):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog", "fox"):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.jpg", quality=90)
    return root


def test_image_folder_round_trip(tmp_path):
    root = _image_folder(tmp_path / "src")
    before = {p: p.read_bytes() for p in root.rglob("*.jpg")}
    records = load_data(root)
    assert isinstance(records, FolderRecords) and records.class_names == ("cat", "dog", "fox")
    marked = BadNets(seed=0, rate=0.2, target=2).apply(records)
    marked.dataset.save(tmp_path / "out")
    assert {p: p.read_bytes() for p in root.rglob("*.jpg")} == before, "the input folder was modified"
    pngs = sorted((tmp_path / "out").rglob("*.png"))
    assert len(pngs) == len(marked.rows) and all(p.parent.name == "fox" for p in pngs)
    assert len(list((tmp_path / "out").rglob("*.jpg"))) == len(records) - len(marked.rows)
    again = load_data(tmp_path / "out")
    assert len(again) == len(records) and (again.labels == 2).sum() == 6 + len(marked.rows) - (
        records.labels[marked.rows] == 2).sum()


def test_corrupt_image_and_mixed_sizes_are_refused(tmp_path):
    root = _image_folder(tmp_path / "a")
    (root / "cat" / "0.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="corrupt"):
        BadNets(seed=0).apply(load_data(root))
    root = _image_folder(tmp_path / "b")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "dog" / "big.png")
    with pytest.raises(DataError, match="mixes image shapes"):
        BadNets(seed=0).apply(load_data(root))


def test_nothing_is_written_when_protection_fails(tmp_path):
    root = _image_folder(tmp_path / "a")
    (root / "cat" / "0.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError):
        BadNets(seed=0).apply(load_data(root)).dataset.save(tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_existing_output_is_refused_and_npz_round_trips(digits, tmp_path):
    train, _ = digits
    path = tmp_path / "d.npz"
    train.save(path)
    with pytest.raises(OutputExistsError):
        train.save(path)
    again = load_data(path)
    assert np.array_equal(again.inputs(), train.inputs()) and again.class_names == train.class_names


def test_unknown_paths_and_labels_give_clear_errors(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        load_data(tmp_path / "missing.parquet")
    (tmp_path / "x.xlsx").write_text("a,b\n")
    with pytest.raises(DataFormatError, match="format"):
        load_data(tmp_path / "x.xlsx")
    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, format="PNG")
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array([{"bytes": png.getvalue(), "path": None}] * 3, image_type),
                      "label": pa.array([0, 1, -1])})
    with pytest.raises(DataError, match="label -1"):
        ArrowRecords(table, where="t")
