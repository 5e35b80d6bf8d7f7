"""Hugging Face and torchvision-style datasets in, Hugging Face layouts out, and the dataset card.

Real data (a slice of the embedded digits), no network: Hub ids load from a cache built here, with the Hub
offline.
"""

import hashlib
import io
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datamark import BadNets, load_data
from datamark._io import MARKER, Journal
from datamark.data import ArrowRecords, from_texts, from_waveforms, load_digits
from datamark.data.card import dataset_card
from datamark.data.output import resolve_format, write_parquet_shards, writes_directory
from datamark.exceptions import DataError, DataFormatError, ParameterError

datasets = pytest.importorskip("datasets")

CLASSES = [f"digit_{w}" for w in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """The Hub is unreachable for every test here (as HF_DATASETS_OFFLINE=1 makes it for a user)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def digits_ds():
    """240 real digits as a datasets.Dataset: PNG bytes in an Image column, named classes in a ClassLabel."""
    digits = load_digits("train")
    rows = np.arange(240)
    features = datasets.Features(image=datasets.Image(), label=datasets.ClassLabel(names=CLASSES))
    images = [Image.fromarray(x[..., 0]) for x in digits.take(rows)]
    return datasets.Dataset.from_dict({"image": images, "label": digits.labels[rows].tolist()}, features=features)


def _bytes(table: pa.Table, column: str = "image") -> list[bytes]:
    """The stored bytes of each row of an Image (or Audio) column."""
    return table.column(column).combine_chunks().field("bytes").to_pylist()


def test_hf_dataset_apply_save_to_disk_round_trip(digits_ds, tmp_path):
    marked = BadNets(seed=0, rate=0.1, n_marks=2).apply(digits_ds)  # a Dataset straight into apply
    same = BadNets(seed=0, rate=0.1, n_marks=2).apply(load_data(digits_ds))
    assert marked.key.marked_ids == same.key.marked_ids and len(marked.rows) == 24
    assert marked.dataset.modality.name == "image" and marked.dataset.class_names == tuple(CLASSES)
    marked.dataset.save(tmp_path / "wm")  # its own format: a save_to_disk folder
    back = datasets.load_from_disk(str(tmp_path / "wm"))
    assert back.features == digits_ds.features and len(back) == len(digits_ds)
    src, dst = _bytes(digits_ds.data.table), _bytes(back.data.table)
    changed = {i for i in range(len(src)) if src[i] != dst[i]}
    assert changed == set(marked.rows.tolist())  # marked rows changed, every other row bit-identical
    labels = np.array(back["label"])
    kept = np.setdiff1d(np.arange(len(src)), marked.rows)
    assert np.array_equal(labels[kept], np.array(digits_ds["label"])[kept])
    assert np.array_equal(labels, marked.dataset.labels)
    assert np.array_equal(np.asarray(back[int(marked.rows[0])]["image"]),
                          marked.dataset.take(marked.rows[:1])[0, ..., 0])
    again = load_data(tmp_path / "wm")
    assert again.ids == marked.dataset.ids and set(marked.key.marked_ids) <= set(load_data(digits_ds).ids)


def test_dataset_dict_needs_a_split(digits_ds, tmp_path):
    dd = datasets.DatasetDict({"train": digits_ds.select(range(200)), "test": digits_ds.select(range(200, 240))})
    with pytest.raises(DataFormatError, match=r"several splits \['train', 'test'\]; name one with split=") as err:
        load_data(dd)
    assert "\n" not in str(err.value)
    with pytest.raises(DataFormatError):
        BadNets(seed=0).apply(dd)
    with pytest.raises(DataFormatError, match="no split 'valid'"):
        load_data(dd, split="valid")
    test = load_data(dd, split="test")
    assert len(test) == 40 and test.ids == load_data(digits_ds).ids[200:]
    dd.save_to_disk(str(tmp_path / "dd"))  # a DatasetDict folder: the same rule
    with pytest.raises(DataFormatError, match="several splits"):
        load_data(tmp_path / "dd")
    assert load_data(tmp_path / "dd", split="train").ids == load_data(dd, split="train").ids
    with pytest.raises(ParameterError, match="split="):
        load_data("digits:test", split="train")


class Pairs:
    """A torchvision-style dataset: __len__, __getitem__ -> (example, label), and class names in ``classes``."""

    def __init__(self, images, labels, convert, classes=None):
        self.images, self.labels, self.convert = images, labels, convert
        if classes is not None:
            self.classes = classes

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.convert(self.images[i]), self.labels[i]


def test_torchvision_style_inputs(tmp_path):
    import torch

    digits = load_digits("test")
    images, labels = digits.take(np.arange(80)), digits.labels[:80]
    rgb = np.repeat(images, 3, axis=-1)
    kinds = {
        "pil": (lambda x: Image.fromarray(x[..., 0]), images),
        "uint8 HWC": (lambda x: x, rgb),
        "ToTensor": (lambda x: torch.from_numpy(x).permute(2, 0, 1).float().div(255), rgb),
        "PILToTensor": (lambda x: torch.from_numpy(x.copy()).permute(2, 0, 1), rgb),
        "palette PIL": (lambda x: Image.fromarray(x).convert("P", palette=Image.Palette.ADAPTIVE).convert("RGB")
                        .convert("P"), rgb),
    }
    for name, (convert, expected) in kinds.items():
        data = load_data(Pairs(expected, [torch.tensor(int(y)) for y in labels], convert, classes=CLASSES))
        if name != "palette PIL":  # a palette image is read as RGB, as a palette file would be
            assert np.array_equal(data.inputs(), expected), name
        assert data.input_shape[-1] == expected.shape[-1] and data.class_names == tuple(CLASSES), name
        assert np.array_equal(data.labels, labels), name
    marked = BadNets(seed=1, rate=0.1, n_marks=1).apply(Pairs(rgb, labels, lambda x: x))
    marked.dataset.save(tmp_path / "wm", format="hf-disk")  # in memory -> a Hub layout: PNG, lossless
    back = load_data(tmp_path / "wm")
    assert np.array_equal(back.inputs(), marked.dataset.inputs()) and np.array_equal(back.labels,
                                                                                    marked.dataset.labels)


def test_torchvision_style_refusals():
    import torch

    rgb = np.zeros((4, 5, 5, 3), dtype=np.uint8)
    normalised = Pairs(rgb, [0, 1, 0, 1], lambda x: (torch.from_numpy(x).permute(2, 0, 1).float() - 0.5) / 0.25)
    with pytest.raises(DataError, match="Normalize"):
        load_data(normalised)
    rng = np.random.default_rng(0)
    augmented = Pairs(rgb, [0, 1, 0, 1], lambda x: x + rng.integers(0, 2, x.shape, dtype=np.uint8))  # noise
    with pytest.raises(DataError, match="random transform"):
        load_data(augmented)
    with pytest.raises(DataError, match="integer class index"):
        load_data(Pairs(rgb, ["cat", "dog", "cat", "dog"], lambda x: x))
    with pytest.raises(DataError, match="not an \\(example, label\\) pair"):
        load_data([rgb[0], rgb[1]])


def test_parquet_shards_for_the_hub(digits_ds, tmp_path):
    marked = BadNets(seed=0, rate=0.1, n_marks=2).apply(digits_ds)
    assert resolve_format(marked.dataset, tmp_path / "shards", "parquet-shards") == "parquet-shards"
    assert writes_directory(marked.dataset, "parquet-shards")
    marked.dataset.save(tmp_path / "shards", format="parquet-shards")
    assert sorted(os.listdir(tmp_path / "shards" / "data")) == ["train-00000-of-00001.parquet"]
    files = {"train": str(tmp_path / "shards" / "data" / "train-*.parquet")}
    hub = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))["train"]
    assert hub.features == digits_ds.features and hub["label"] == marked.dataset.labels.tolist()
    assert _bytes(hub.data.table) == _bytes(marked.dataset.table)
    folder = datasets.load_dataset(str(tmp_path / "shards"), cache_dir=str(tmp_path / "cache"))  # script-free
    assert list(folder) == ["train"] and len(folder["train"]) == 240  # the marker file is not data
    back = load_data(tmp_path / "shards")
    assert back.source_format == "parquet-shards" and back.ids == marked.dataset.ids
    # several shards, in order, under another split name; read back whole
    names = write_parquet_shards(marked.dataset.table, tmp_path / "many", split="validation",
                                 max_shard_bytes=marked.dataset.table.nbytes // 3 + 1)
    assert names == [f"data/validation-0000{i}-of-00003.parquet" for i in range(3)]
    many = load_data(tmp_path / "many")
    assert many.split == "validation" and many.ids == marked.dataset.ids
    many.save(tmp_path / "many2")  # its own format keeps its split
    assert sorted(os.listdir(tmp_path / "many2" / "data")) == ["validation-00000-of-00001.parquet"]


def test_suffix_that_contradicts_the_format_is_refused(digits_ds, tmp_path):
    parquet = tmp_path / "in.parquet"
    pq.write_table(digits_ds.data.table, parquet)
    marked = BadNets(seed=0, rate=0.1, n_marks=1).apply(load_data(parquet))
    with pytest.raises(ParameterError, match=r"names a \.npz file.*a \.parquet file; use '.*x\.parquet'") as err:
        marked.dataset.save(tmp_path / "x.npz")
    assert "\n" not in str(err.value) and not (tmp_path / "x.npz").exists()
    with pytest.raises(ParameterError, match="folder name such as"):
        marked.dataset.save(tmp_path / "y.parquet", format="hf-disk")
    with pytest.raises(ParameterError, match="must be one of"):
        marked.dataset.save(tmp_path / "z", format="npz")
    with pytest.raises(ParameterError, match=r"a \.npz file"):  # and the other way round
        load_digits("test").save(tmp_path / "d.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]  # nothing written, nothing left over
    marked.dataset.save(tmp_path / "x.parquet")
    marked.dataset.save(tmp_path / "plain", format="parquet")  # no suffix: allowed, as before
    assert pq.read_table(tmp_path / "plain").equals(pq.read_table(tmp_path / "x.parquet"))
    load_digits("test").save(tmp_path / "d.parquet", format="parquet")  # explicit conversion: lossless PNG
    assert np.array_equal(load_data(tmp_path / "d.parquet").inputs(), load_digits("test").inputs())


def test_failed_hub_write_leaves_nothing_and_keeps_the_old_output(digits_ds, tmp_path, monkeypatch):
    marked = BadNets(seed=0, rate=0.1, n_marks=1).apply(digits_ds)
    marked.dataset.save(tmp_path / "out", format="parquet-shards")
    before = (tmp_path / "out" / "data" / "train-00000-of-00001.parquet").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        marked.dataset.save(tmp_path / "out", format="parquet-shards", overwrite=True)
    with pytest.raises(OSError, match="disk full"), Journal() as journal:
        (tmp_path / "key.json").write_text("{}")
        journal.record(tmp_path / "key.json", None)
        marked.dataset.save(tmp_path / "new", format="parquet-shards", journal=journal)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporaries, the key rolled back
    assert (tmp_path / "out" / "data" / "train-00000-of-00001.parquet").read_bytes() == before
    assert (tmp_path / "out" / MARKER).is_file()


def _hub_cache(root, repo: str, splits: dict[str, pa.Table]):
    """A ``datasets`` cache holding ``repo`` as a Hub download leaves it (config 'default'), built offline from
    local parquet files with the parquet builder, then laid out under the repo's cache name."""
    from datasets.data_files import DataFilesDict
    from datasets.packaged_modules.parquet.parquet import Parquet

    source = root / "source"
    (source / "data").mkdir(parents=True)
    for split, table in splits.items():
        pq.write_table(table, source / "data" / f"{split}-00000-of-00001.parquet")
    files = DataFilesDict.from_patterns({s: [f"data/{s}-*.parquet"] for s in splits}, base_path=str(source))
    name = repo.split("/")[-1]
    builder = Parquet(cache_dir=str(root / "build"), dataset_name=name, data_files=files)
    builder.download_and_prepare()
    (built,) = (root / "build" / name).glob("default-*/0.0.0")
    target = root / "cache" / repo.replace("/", "___") / "default" / "0.0.0" / "0123abcd"
    target.mkdir(parents=True)
    for f in built.iterdir():
        f.rename(target / f.name)
    return root / "cache"


def test_hub_id_loads_offline_from_the_cache(digits_ds, tmp_path, monkeypatch):
    table = digits_ds.data.table
    cache = _hub_cache(tmp_path, "someone/digits-demo", {"train": table.slice(0, 200), "test": table.slice(200)})
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    train = load_data("hf:someone/digits-demo:train")
    assert len(train) == 200 and train.class_names == tuple(CLASSES) and train.split == "train"
    assert train.ids == load_data(digits_ds).ids[:200]  # the stored bytes, untouched
    assert len(load_data("hf:someone/digits-demo", split="test")) == 40
    with pytest.raises(DataFormatError, match=r"several splits \['test', 'train'\]|several splits \['train', 'test'"):
        load_data("hf:someone/digits-demo")
    with pytest.raises(DataFormatError, match="Cannot load the Hub dataset 'hf:nobody/absent:train'"):
        load_data("hf:nobody/absent:train")  # offline and not cached: a clear error, no network
    with pytest.raises(ParameterError, match="names split 'train' but split='test'"):
        load_data("hf:someone/digits-demo:train", split="test")
    with pytest.raises(ParameterError, match="hf:ID:SPLIT"):
        load_data("hf:a:b:c:d")
    marked = BadNets(seed=0, rate=0.1, n_marks=1).apply("hf:someone/digits-demo:train")
    assert len(marked.rows) == 20


def test_other_feature_types_and_local_files(digits_ds, tmp_path):
    # text: a Value("string") column is text, as in a parquet file
    texts = datasets.Dataset.from_dict({"sentence": [f"a short sentence number {i}" for i in range(20)],
                                        "label": [i % 2 for i in range(20)]})
    data = load_data(texts)
    assert data.modality.name == "text" and data.ids == from_texts(texts["sentence"], texts["label"]).ids
    data.save(tmp_path / "text", format="parquet-shards")
    assert load_data(tmp_path / "text").inputs().tolist() == texts["sentence"]
    # audio: an Audio column (built with pyarrow: encoding audio in datasets needs torchcodec)
    wav = _wav(np.sin(np.arange(800) / 5) * 0.3)
    features = {"audio": {"_type": "Audio", "sampling_rate": 8000, "decode": False},
                "label": {"_type": "ClassLabel", "names": ["a", "b"]}}
    table = pa.table({"audio": pa.array([{"bytes": wav, "path": None}] * 4,
                                        pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "label": pa.array([0, 1, 0, 1], pa.int64())})
    audio = datasets.Dataset(table.replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})}))
    assert load_data(audio).modality.name == "audio" and load_data(audio).modality.sample_rate == 8000
    waves = from_waveforms(np.zeros((4, 800), np.float32), [0, 1, 0, 1], sample_rate=8000)
    with pytest.raises(DataError, match="lossily"):
        waves.save(tmp_path / "w", format="hf-disk")
    # images stored as local file paths are embedded (their bytes, once); string labels are refused with the fix
    paths = []
    for i, image in enumerate(digits_ds.select(range(6))["image"]):
        paths.append(str(tmp_path / f"{i}.png"))
        image.save(paths[-1])
    by_path = datasets.Dataset.from_dict({"image": paths, "label": [0, 1, 0, 1, 0, 1]},
                                         features=datasets.Features(image=datasets.Image(),
                                                                    label=datasets.ClassLabel(names=["x", "y"])))
    assert load_data(by_path).ids == [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]
    named = datasets.Dataset.from_dict({"sentence": ["one", "two"], "label": ["pos", "neg"]})
    with pytest.raises(DataError, match="class_encode_column"):
        load_data(named)


def _wav(wave: np.ndarray, rate: int = 8000) -> bytes:
    import wave as wavmod

    buffer = io.BytesIO()
    with wavmod.open(buffer, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((wave * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def test_image_folder_to_shards_keeps_file_bytes(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "in" / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((6, 6, 3), 40 * i, np.uint8)).save(tmp_path / "in" / name / f"{i}.jpg")
    folder = load_data(tmp_path / "in")
    folder.save(tmp_path / "out", format="parquet-shards")
    back = load_data(tmp_path / "out")
    assert back.ids == folder.ids and back.class_names == ("cat", "dog")  # the JPEG bytes, not re-encoded
    assert all(v["path"] is None for v in back.stored_values())  # file names would reveal relabelled rows


def test_card_publishes_the_commitment_and_nothing_secret(digits_ds):
    import huggingface_hub

    for method in (BadNets(seed=3, rate=0.1, target=7, n_marks=1, decoy_rate=0.05),
                   BadNets(seed=4, rate=0.1, n_marks=2)):
        key = method.apply(digits_ds).key
        card = dataset_card(key, dataset_name="Digits (watermarked)")
        assert key.commitment in card and "## Watermark" in card and "Li et al." in card
        assert f"{len(key.marked_ids)} of 240 (10 %)" in card
        for secret in (key.secret, *key.marked_ids, json.dumps(key.trigger["params"])[:40], *CLASSES):
            assert secret not in card
        meta = huggingface_hub.DatasetCard(card).data
        assert meta.pretty_name == "Digits (watermarked)" and "datamark" in meta.tags
        assert meta.task_categories == ["image-classification"] and meta.size_categories == ["n<1K"]
    assert "12 more carry other random patterns" in dataset_card(
        BadNets(seed=3, rate=0.1, target=7, n_marks=1, decoy_rate=0.05).apply(digits_ds).key)
    assert "pretty_name" not in dataset_card(key)


def test_records_pass_through_and_odd_sources():
    digits = load_digits("test")
    assert load_data(digits) is digits
    with pytest.raises(ParameterError, match="already read"):
        load_data(digits, label_column="y")
    with pytest.raises(DataFormatError, match="Cannot read a int"):
        load_data(3)
    assert isinstance(load_data(load_digits("test").to_hf()), ArrowRecords)


def test_own_formats_still_round_trip_through_save(tmp_path):
    """save(path) with no format writes each adapter's own format, as before (npz, tsv, csv, image folders)."""
    digits = load_digits("test")
    digits.save(tmp_path / "d.npz")
    assert np.array_equal(load_data(tmp_path / "d.npz").inputs(), digits.inputs())
    for name, text in (("t.tsv", "sentence\tlabel\nhello there\t0\ngood bye\t1\n"),
                       ("t.csv", "text,label\n\"hi, you\",1\nbye,0\n")):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_text(text)
        load_data(tmp_path / "in" / name).save(tmp_path / name)
        assert (tmp_path / name).read_text() == text
    for i in range(4):
        (tmp_path / "imgs" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((5, 5), 30 * i, np.uint8)).save(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png")
    load_data(tmp_path / "imgs").save(tmp_path / "imgs-out")
    assert load_data(tmp_path / "imgs-out").ids == load_data(tmp_path / "imgs").ids
    with pytest.raises(ParameterError, match="names the shards"):
        digits.save(tmp_path / "e.npz", split="train")
