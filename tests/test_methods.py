"""Contract tests, parametrized over every registered method."""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from datamark import METHODS, Key, from_numpy
from datamark.exceptions import DataError, ParameterError
from datamark.triggers import Trigger

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models and PGD on one thread (see conftest)


@pytest.fixture(scope="module")
def small(digits):
    return digits[0].subset(range(300))


def fields_of(name):
    return {f.name for f in dataclasses.fields(METHODS[name])}


def rate_name(name):
    """``class_rate`` (a fraction of the target class) for clean-label methods, ``rate`` (of all rows) otherwise."""
    return "class_rate" if "class_rate" in fields_of(name) else "rate"


@pytest.fixture(scope="module")
def base_checkpoint(small, tmp_path_factory):
    """A tiny model trained on ``small``: the base model of methods that craft against one (kept fast)."""
    from datamark.models import default_config, fit, save_checkpoint

    model, spec = fit(small, arch="tiny", config=default_config("tiny", epochs=5, seed=0), width=8)
    path = tmp_path_factory.mktemp("base") / "tiny.pt"
    save_checkpoint(model, spec, path)
    return str(path)


@pytest.fixture
def make(base_checkpoint):
    """Build a registered method: ``target`` is dropped for untargeted methods, ``rate`` becomes the method's own
    rate parameter, and methods that need a base model get the tiny checkpoint."""
    def build(name, **params):
        cls = METHODS[name]
        if not cls.targeted:
            params.pop("target", None)
        if "rate" in params:
            params[rate_name(name)] = params.pop("rate")
        if "base_model" in fields_of(name):
            params.setdefault("base_model", base_checkpoint)
        if "craft_steps" in fields_of(name):  # the contract, not the attack's strength: keep crafting short
            params.setdefault("craft_steps", 2)
            params.setdefault("retrain_rounds", 0)
        return cls(**params)
    return build


def expected_count(name, data, rate, target):
    """Rows a method marks: a fraction of the target class (clean label) or of all rows."""
    n = int((data.labels == target).sum()) if rate_name(name) == "class_rate" else len(data)
    return int(round(rate * n))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_deterministic_given_seed(name, small, make):
    a, b = make(name, seed=5).apply(small), make(name, seed=5).apply(small)
    assert np.array_equal(a.rows, b.rows) and a.key.secret == b.key.secret
    assert np.array_equal(a.dataset.inputs(), b.dataset.inputs())
    c = make(name, seed=6).apply(small)
    assert c.key.secret != a.key.secret


@pytest.mark.parametrize("name", sorted(METHODS))
def test_only_key_rows_change_and_the_rest_is_bit_identical(name, small, make, global_rng_guard):
    before = small.inputs().copy()
    marked = make(name, seed=1, rate=0.1, target=4).apply(small)
    assert np.array_equal(small.inputs(), before), "the input dataset was modified"
    k = expected_count(name, small, 0.1, 4)
    assert len(marked.rows) == k and len(marked.key.marked_ids) == k
    decoys = [small.ids.index(i) for i in marked.key.extra.get("decoy_ids", [])]  # other triggers, own labels
    assert np.array_equal(marked.dataset.labels[decoys], small.labels[decoys])
    untouched = np.setdiff1d(np.arange(len(small)), np.concatenate([marked.rows, decoys]).astype(int))
    assert np.array_equal(marked.dataset.inputs()[untouched], before[untouched])
    assert np.array_equal(marked.dataset.labels[untouched], small.labels[untouched])
    if METHODS[name].targeted:
        assert (marked.dataset.labels[marked.rows] == 4).all()
    assert set(marked.key.marked_ids) == {small.ids[r] for r in marked.rows}
    marks = marked.key.mark_list()  # the key alone rebuilds every mark's trigger
    assert sum(len(m.marked_ids) for m in marks) == k and Trigger.from_config(marked.key.trigger) is not None
    for mark in marks:
        rows = np.array([small.ids.index(i) for i in mark.marked_ids])
        if "eps" in fields_of(name):  # perturbed rows: within the budget of the stamped (or plain) original
            after = marked.dataset.inputs()[rows].astype(int)
            radius = np.floor(255 * marked.key.method["params"]["eps"]) + 1
            gaps = [np.abs(after - ref.astype(int)).max(axis=(1, 2, 3))
                    for ref in (mark.trigger.apply(before[rows]), before[rows])]
            assert (np.minimum(*gaps) <= radius).all()
        else:
            assert np.array_equal(marked.dataset.inputs()[rows], mark.trigger.apply(before[rows]))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_config_round_trips_through_the_key(name, small, make, tmp_path):
    marked = make(name, seed=2, rate=0.05).apply(small)
    marked.key.save(tmp_path / "k.json")
    key = Key.load(tmp_path / "k.json")
    assert key.method == {"name": name, "params": marked.key.method["params"]}
    rebuilt = METHODS[name](**{k: v for k, v in key.method["params"].items()})
    again = rebuilt.apply(small)
    assert again.key.marked_ids == key.marked_ids and again.key.trigger == key.trigger


@pytest.mark.parametrize("name", sorted(METHODS))
def test_selection_ignores_row_order(name, small, make):
    perm = np.random.default_rng(0).permutation(len(small))
    shuffled = from_numpy(small.inputs()[perm], small.labels[perm], list(small.class_names))
    a, b = make(name, seed=9).apply(small), make(name, seed=9).apply(shuffled)
    assert set(a.key.marked_ids) == set(b.key.marked_ids)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_bad_parameters_are_refused(name, small, make):
    param = rate_name(name)
    for rate in (0.0, 1.5, -0.1) if param == "class_rate" else (0.0, 1.0, 1.5, -0.1):  # all of a class is valid
        with pytest.raises(ParameterError, match=f"'{param}'"):
            make(name, rate=rate)
    if METHODS[name].targeted:
        with pytest.raises(ParameterError, match="'target'"):
            make(name, seed=0, target=10).apply(small)
    else:
        with pytest.raises(ParameterError, match="untargeted"):
            METHODS[name](seed=0, target=1)
    with pytest.raises(ParameterError, match="no rows"):
        make(name, seed=0, rate=0.001).apply(small)
    if "trigger_size" in fields_of(name):
        with pytest.raises(ParameterError, match="does not fit|trigger size"):
            make(name, seed=0, trigger_size=9).apply(small)


def test_ubw_p_labels_are_keyed_uniform_and_recorded(digits):
    train = digits[0]
    marked = METHODS["ubw-p"](seed=4, rate=0.3).apply(train)
    new = marked.dataset.labels[marked.rows]
    assert marked.key.target is None and marked.key.extra["new_labels"] == new.tolist()
    counts = np.bincount(new, minlength=10)
    assert stats.chisquare(counts).pvalue > 0.001  # uniform over the 10 classes
    kept = int((new == train.labels[marked.rows]).sum())
    assert marked.key.extra["kept_true_label"] == kept and 0.03 < kept / len(new) < 0.2  # about 1/K
    shuffled_order = np.random.default_rng(1).permutation(len(train))
    again = METHODS["ubw-p"](seed=4, rate=0.3).apply(
        from_numpy(train.inputs()[shuffled_order], train.labels[shuffled_order], list(train.class_names)))
    by_id = dict(zip(marked.key.marked_ids, new.tolist(), strict=True))
    assert all(by_id[i] == lab for i, lab in zip(again.key.marked_ids, again.key.extra["new_labels"], strict=True))


def test_ubw_p_other_labels_never_keep_the_true_label(digits):
    train = digits[0]
    marked = METHODS["ubw-p"](seed=4, rate=0.3, labels="other").apply(train)
    new, true = marked.dataset.labels[marked.rows], train.labels[marked.rows]
    assert marked.key.extra["kept_true_label"] == 0 and not (new == true).any()
    shift = (new - true) % 10
    assert stats.chisquare(np.bincount(shift, minlength=10)[1:]).pvalue > 0.001  # uniform over the 9 others
    with pytest.raises(ParameterError, match="'labels'.*uniform"):
        METHODS["ubw-p"](seed=4, labels="random")


def test_default_target_is_drawn_from_the_secret(small):
    targets = {METHODS["badnets"](seed=s).apply(small).key.target for s in range(12)}
    assert len(targets) > 1


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(DataError, match="outside"):
        from_numpy(np.zeros((4, 8, 8), np.uint8), np.array([0, 1, 2, 7]), ["a", "b", "c"])
