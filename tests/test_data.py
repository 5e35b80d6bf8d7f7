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


def test_text_tables_round_trip_and_map_rows_touches_only_its_rows(tmp_path):
    """A TSV of text: loaded as the text modality, map_rows changes only its rows, saved back in its dialect."""
    from datamark.data import DelimitedRecords, from_texts, load_data

    path = tmp_path / "t.tsv"
    path.write_text("sentence\tlabel\nA fine film .\t1\nA dull film .\t0\n`` Quoted '' text .\t1\n", encoding="utf-8")
    data = load_data(path)
    assert isinstance(data, DelimitedRecords) and data.modality.name == "text" and data.input_shape == ()
    changed = data.map_rows(np.array([1]), lambda x, y: (np.array([s + " cf" for s in x], dtype=object), 1 - y))
    assert list(changed.inputs()) == ["A fine film .", "A dull film . cf", "`` Quoted '' text ."]
    assert changed.labels.tolist() == [1, 1, 1] and data.labels.tolist() == [1, 0, 1]
    assert changed.ids[0] == data.ids[0] and changed.ids[1] != data.ids[1]
    changed.save(tmp_path / "out.tsv")
    lines = (tmp_path / "out.tsv").read_text(encoding="utf-8").splitlines()
    assert lines == ["sentence\tlabel", "A fine film .\t1", "A dull film . cf\t1", "`` Quoted '' text .\t1"]
    memory = from_texts(["a b", "c d"], [0, 1])
    assert memory.modality.name == "text" and memory.subset([1]).inputs().tolist() == ["c d"]


@pytest.mark.parametrize("content, match", [
    (b"sentence\tlabel\n\t1\n", "empty"),
    (b"sentence\tlabel\ncaf\xe9 au lait\t1\n", "UTF-8"),
    (b"text\tlabel\n12\t1\n13\t0\n", "numbers"),
    (b"sentence\tstars\nok\t1\n", "label column"),
])
def test_bad_text_files_give_one_line_errors(tmp_path, content, match):
    from datamark.data import load_data
    from datamark.exceptions import DataError

    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_data(path)


def test_shared_text_corpora_load_with_a_stratified_keyed_ag_news_split():
    from datamark.data import load_data

    sst2 = load_data("sst2:validation")
    assert len(sst2) == 872 and sst2.class_names == ("negative", "positive")
    train, test = load_data("ag_news:train"), load_data("ag_news:test")
    assert len(train) + len(test) == 7600 and not set(train.ids) & set(test.ids)
    assert np.bincount(train.labels).tolist() == [1520] * 4 and np.bincount(test.labels).tolist() == [380] * 4
    assert load_data("ag_news:train").ids == train.ids  # reproducible


def test_parquet_text_column_is_read_as_text_and_unmarked_rows_keep_their_values(tmp_path):
    texts = [f"sentence number {i} is here ." for i in range(40)]
    pq.write_table(pa.table({"text": texts, "label": pa.array([i % 2 for i in range(40)], pa.int64())}),
                   tmp_path / "t.parquet")
    data = load_data(tmp_path / "t.parquet")
    assert data.modality.name == "text" and data.input_column == "text"
    marked = BadNets(seed=0, rate=0.25, n_marks=2).apply(data)
    marked.dataset.save(tmp_path / "w.parquet")
    again = load_data(tmp_path / "w.parquet")
    kept = np.setdiff1d(np.arange(40), marked.rows)
    assert [again.inputs()[i] for i in kept] == [texts[i] for i in kept]
    assert all(again.inputs()[r] != texts[r] for r in marked.rows)
    with pytest.raises(DataError, match="not images .* or text"):
        load_data(tmp_path / "t.parquet", input_column="label")
