"""Sharded protect of the methods beyond BadNets/Blended (issue 16): a method whose marking is row-local
(``unshardable()`` is None) runs shard by shard and writes the bytes and key of in-memory protect; the engine
refuses one that redefines the promised parts below the class that made the promise."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from datamark.exceptions import ParameterError
from datamark.methods import UBWP, BadNets
from datamark.methods.base import MarkBatch
from datamark.scale import install, protect_shards
from test_scale import _files, _reference, _same_key, _shards

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
