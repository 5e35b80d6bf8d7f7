"""Contract tests, parametrized over every registered method."""

import numpy as np
import pytest

from datamark import METHODS, Key, from_numpy
from datamark.exceptions import DataError, ParameterError
from datamark.triggers import Trigger


@pytest.fixture(scope="module")
def small(digits):
    return digits[0].subset(range(300))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_deterministic_given_seed(name, small):
    a, b = METHODS[name](seed=5).apply(small), METHODS[name](seed=5).apply(small)
    assert np.array_equal(a.rows, b.rows) and a.key.secret == b.key.secret
    assert np.array_equal(a.dataset.inputs(), b.dataset.inputs())
    c = METHODS[name](seed=6).apply(small)
    assert c.key.secret != a.key.secret


@pytest.mark.parametrize("name", sorted(METHODS))
def test_only_key_rows_change_and_the_rest_is_bit_identical(name, small, global_rng_guard):
    before = small.inputs().copy()
    marked = METHODS[name](seed=1, rate=0.1, target=4).apply(small)
    assert np.array_equal(small.inputs(), before), "the input dataset was modified"
    assert len(marked.rows) == 30 and len(marked.key.marked_ids) == 30
    untouched = np.setdiff1d(np.arange(len(small)), marked.rows)
    assert np.array_equal(marked.dataset.inputs()[untouched], before[untouched])
    assert np.array_equal(marked.dataset.labels[untouched], small.labels[untouched])
    assert (marked.dataset.labels[marked.rows] == 4).all()
    assert set(marked.key.marked_ids) == {small.ids[r] for r in marked.rows}
    trigger = Trigger.from_config(marked.key.trigger)  # the key alone rebuilds the trigger
    assert np.array_equal(marked.dataset.inputs()[marked.rows], trigger.apply(before[marked.rows]))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_config_round_trips_through_the_key(name, small, tmp_path):
    marked = METHODS[name](seed=2, rate=0.05).apply(small)
    marked.key.save(tmp_path / "k.json")
    key = Key.load(tmp_path / "k.json")
    assert key.method == {"name": name, "params": marked.key.method["params"]}
    rebuilt = METHODS[name](**{k: v for k, v in key.method["params"].items()})
    again = rebuilt.apply(small)
    assert again.key.marked_ids == key.marked_ids and again.key.trigger == key.trigger


@pytest.mark.parametrize("name", sorted(METHODS))
def test_selection_ignores_row_order(name, small):
    perm = np.random.default_rng(0).permutation(len(small))
    shuffled = from_numpy(small.inputs()[perm], small.labels[perm], list(small.class_names))
    a, b = METHODS[name](seed=9).apply(small), METHODS[name](seed=9).apply(shuffled)
    assert set(a.key.marked_ids) == set(b.key.marked_ids)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_bad_parameters_are_refused(name, small):
    for rate in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ParameterError, match="'rate'"):
            METHODS[name](rate=rate)
    with pytest.raises(ParameterError, match="'target'"):
        METHODS[name](seed=0, target=10).apply(small)
    with pytest.raises(ParameterError, match="no rows"):
        METHODS[name](seed=0, rate=0.001).apply(small)
    with pytest.raises(ParameterError, match="does not fit|trigger size"):
        METHODS[name](seed=0, trigger_size=9).apply(small)


def test_default_target_is_drawn_from_the_secret(small):
    targets = {METHODS["badnets"](seed=s).apply(small).key.target for s in range(12)}
    assert len(targets) > 1


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(DataError, match="outside"):
        from_numpy(np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 2, 7]), ["a", "b", "c"])
