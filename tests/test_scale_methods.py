"""Sharded protect of the methods beyond BadNets/Blended (issue 16): a method whose marking is row-local
(``unshardable()`` is None) runs shard by shard and writes the bytes and key of in-memory protect; the engine
refuses one that redefines the promised parts below the class that made the promise. Clean-label crafts each
shard's rows in that shard's worker against one shared base model (a checkpoint), with row-local PGD."""

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from datamark.cli import app
from datamark.data import load_data
from datamark.exceptions import ParameterError
from datamark.key import Key
from datamark.methods import UBWP, BadNets, CleanLabel, LabelConsistent, clean_label
from datamark.methods._pgd import pgd_perturb
from datamark.methods.base import MarkBatch
from datamark.models import build_model, save_checkpoint
from datamark.models.checkpoint import ModelSpec
from datamark.scale import install, protect_shards
from test_scale import _files, _reference, _same_key, _shards

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models and PGD on one thread (see conftest)

UBW_METHODS = {"ubw-p-4-marks-candidates": UBWP(seed=11),
               "ubw-p-paper-other-labels-decoys": UBWP(seed=12, n_marks=1, n_candidates=1, labels="other",
                                                       decoy_rate=0.1)}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _shards(tmp_path_factory.mktemp("methods") / "in")


@pytest.mark.parametrize("name", list(UBW_METHODS))
def test_ubw_p_sharded_equals_in_memory_with_one_and_two_workers(data, tmp_path, name):
    method = UBW_METHODS[name]
    key = _reference(method, data, tmp_path / "ref")
    for workers, order in ((1, [3, 1, 0, 2]), (2, [2, 0, 3, 1])):
        out = tmp_path / f"out-{workers}"
        result = protect_shards(method, data, out, workers=workers, order=order)
        install(result, tmp_path / f"key-{workers}.json")
        assert _files(out) == _files(tmp_path / "ref")
        _same_key(key, result.key)  # new_labels in marked-row order, kept_true_label, note: all as in memory
    assert len(key.extra["new_labels"]) == len(key.marked_ids) > 0
    if method.labels == "other":  # drawn from the other classes: no marked row keeps its label
        assert key.extra["kept_true_label"] == 0


@dataclass(frozen=True, kw_only=True)
class _StreamBadNets(BadNets):
    """Redefines mark (drawing from the marking stream) below PoisonLabel's row-local promise."""

    def mark(self, batch: MarkBatch) -> tuple[np.ndarray, np.ndarray]:
        return batch.trigger.apply(batch.inputs), batch.rng.integers(0, batch.num_classes, len(batch.inputs))


def test_a_redefined_mark_is_not_covered_by_an_inherited_promise(data, tmp_path):
    with pytest.raises(ParameterError, match="redefines mark below PoisonLabel.*without --engine"):
        protect_shards(_StreamBadNets(seed=1), data, tmp_path / "out")
    assert not (tmp_path / "out.datamark-partial").exists()  # refused before any work


def _tiny(tmp: Path, num_classes: int = 10) -> str:
    """An untrained tiny CNN for the generated 16x16 shards, saved as a checkpoint (PGD needs no accuracy)."""
    spec = ModelSpec("tiny", num_classes, (16, 16, 3), (0.5,) * 3, (0.25,) * 3, tuple(f"c{i}" for i in
                                                                                      range(num_classes)))
    path = tmp / f"tiny-{num_classes}.pt"
    save_checkpoint(build_model(spec, seed=1), spec, path)
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return _tiny(tmp_path_factory.mktemp("base"))


def test_row_local_pgd_crafts_full_batches_and_each_row_on_its_own(checkpoint):
    from datamark.models import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    sizes = []
    model.register_forward_hook(lambda module, args, out: sizes.append(len(args[0])))
    rng = np.random.default_rng(0)
    x, y, seeds = (rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8), rng.integers(0, 10, 20),
                   rng.integers(0, 2**63, 20, dtype=np.uint64))
    settings = dict(eps=16 / 255, step_size=4 / 255, steps=3, batch_size=8)
    whole, stats = pgd_perturb(model, x, y, row_seeds=seeds, **settings)
    assert set(sizes) == {8} and stats.images == 20  # 8, 8 and 4 rows, the last padded: one batch shape
    order = rng.permutation(20)
    shuffled, _ = pgd_perturb(model, x[order], y[order], row_seeds=seeds[order], **settings)
    groups = np.concatenate([pgd_perturb(model, x[s:s + 3], y[s:s + 3], row_seeds=seeds[s:s + 3], **settings)[0]
                             for s in range(0, 20, 3)])
    assert np.array_equal(shuffled, whole[order]) and np.array_equal(groups, whole)
    assert (whole != x).any()
    for wrong in (dict(seed=1, row_seeds=seeds), dict(row_seeds=seeds[:5])):
        with pytest.raises(ParameterError, match="seed"):
            pgd_perturb(model, x, y, **{**settings, **wrong})


TIMINGS = ("base_model_train_s", "pgd_s", "pgd_images_per_s")  # seconds, not outcomes: differ run to run


def _same_crafting_key(memory: Key, sharded: Key) -> None:
    """The keys agree but for the creation time, the shard manifest and the crafting's timings."""
    a, b = copy.deepcopy(memory), copy.deepcopy(sharded)
    for key in (a, b):
        for name in TIMINGS:
            key.extra.pop(name)
    _same_key(a, b)


def test_clean_label_sharded_equals_in_memory_with_one_and_two_workers(data, checkpoint, tmp_path, monkeypatch):
    method = CleanLabel(seed=7, base_model=checkpoint, class_rate=0.5, steps=4, pgd_batch_size=8, decoy_rate=0.05)
    sizes: dict[str, list[int]] = {"memory": [], "shards": []}  # PGD runs' batch sizes (this process's runs)
    real = clean_label.pgd_perturb
    monkeypatch.setattr(clean_label, "pgd_perturb", lambda *a, **kw: sizes[where].append(kw["batch_size"]) or
                        real(*a, **kw))
    where = "memory"
    key = _reference(method, data, tmp_path / "ref")
    where = "shards"
    targets = [m["target"] for m in key.marks]
    assert len(set(targets)) < len(targets)  # two marks share a target: consecutive ranks of one class
    for workers, order in ((1, [2, 0, 3, 1]), (2, [3, 1, 0, 2])):
        out = tmp_path / f"out-{workers}"
        result = protect_shards(method, data, out, workers=workers, order=order)
        install(result, tmp_path / f"key-{workers}.json")
        assert _files(out) == _files(tmp_path / "ref")  # crafted rows included: the same bytes
        _same_crafting_key(key, result.key)
        assert result.key.extra["pgd_images"] == len(key.marked_ids) == key.extra["pgd_images"]
    # every PGD batch has one size, in memory (one run per mark) and in each shard (one run for all its marks)
    assert sizes == {"memory": [8] * len(key.marks), "shards": [8] * 4}
    records = load_data(str(data))
    labels_of: dict[str, set[int]] = {}  # the generated data has two rows with one image (one id)
    for row_id, label in zip(records.ids, records.labels.tolist(), strict=True):
        labels_of.setdefault(row_id, set()).add(label)
    for mark in key.marks:  # clean label: every mark's rows are of its target class
        assert all(mark["target"] in labels_of[i] for i in mark["marked_ids"])


def test_clean_label_refusals(data, tmp_path):
    with pytest.raises(ParameterError, match="trains its base model on the whole dataset.*--base-model.*without "
                                             "--engine"):
        protect_shards(CleanLabel(seed=1), data, tmp_path / "out")
    wrong = _tiny(tmp_path, num_classes=3)
    with pytest.raises(ParameterError, match="3 classes but the data"):
        protect_shards(CleanLabel(seed=1, base_model=wrong), data, tmp_path / "out")
    assert not list((tmp_path / "out.datamark-partial").rglob("*.parquet"))  # refused before any shard is marked


def test_cli_clean_label_with_a_base_model_on_two_workers(data, checkpoint, tmp_path):
    out, key = tmp_path / "out", tmp_path / "key.json"
    result = CliRunner().invoke(app, ["protect", str(data), "--out", str(out), "--key", str(key), "--method",
                                      "clean-label", "--base-model", checkpoint, "--n-marks", "1", "--class-rate",
                                      "0.3", "--seed", "5", "--engine", "local", "--workers", "2",
                                      "--pgd-batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert Key.load(key).method["params"]["pgd_batch_size"] == 8
    memory = _reference(CleanLabel(seed=5, n_marks=1, class_rate=0.3, base_model=checkpoint, pgd_batch_size=8), data,
                        tmp_path / "ref")
    assert _files(out) == _files(tmp_path / "ref")
    _same_crafting_key(memory, Key.load(key))


def test_label_consistent_sharded_equals_in_memory_and_loads_the_base_model_once(data, checkpoint, tmp_path,
                                                                                   monkeypatch):
    import datamark.models

    method = LabelConsistent(seed=8, base_model=checkpoint, class_rate=0.4, steps=2, pgd_batch_size=16)
    key = _reference(method, data, tmp_path / "ref")
    loads = []
    real = datamark.models.load_checkpoint
    monkeypatch.setattr(datamark.models, "load_checkpoint", lambda path: loads.append(path) or real(path))
    result = protect_shards(method, data, tmp_path / "out", order=[1, 3, 0, 2])
    assert loads == [checkpoint]  # one worker (this process): loaded once for the check and all four shards
    install(result, tmp_path / "key.json")
    assert _files(tmp_path / "out") == _files(tmp_path / "ref")
    _same_crafting_key(key, result.key)


@dataclass(frozen=True, kw_only=True)
class _AllButTarget(CleanLabel):
    """Eligible: every class but the mark's target, so two marks' classes overlap without being the same."""

    def eligible_rows(self, data, target):
        return np.asarray(data.labels) != target

    def unshardable(self) -> str | None:
        return super().unshardable()


def test_marks_whose_classes_overlap_partly_are_refused(data, checkpoint, tmp_path):
    method = _AllButTarget(seed=7, base_model=checkpoint, class_rate=0.05)
    with pytest.raises(ParameterError, match="eligible classes of _AllButTarget's marks 0 and [0-9] overlap "
                                             "without being the same.*without --engine"):
        protect_shards(method, data, tmp_path / "out")


def test_a_resumed_clean_label_run_refuses_a_base_model_replaced_in_between(data, tmp_path):
    base = Path(_tiny(tmp_path))
    method = CleanLabel(seed=3, n_marks=1, class_rate=0.3, base_model=str(base), steps=2, pgd_batch_size=8)
    protect_shards(method, data, tmp_path / "out")  # staged, not installed: a rerun would resume it
    spec = ModelSpec("tiny", 10, (16, 16, 3), (0.5,) * 3, (0.25,) * 3, tuple(f"c{i}" for i in range(10)))
    save_checkpoint(build_model(spec, seed=2), spec, base, overwrite=True)  # other weights, the same name
    with pytest.raises(ParameterError, match="another protect job"):
        protect_shards(method, data, tmp_path / "out")
