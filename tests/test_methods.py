"""Contract tests, parametrized over every registered method."""

import dataclasses

import numpy as np
import pytest
from scipy import stats

from datamark import METHODS, from_numpy
from datamark.exceptions import DataError, ParameterError
from datamark.methods import PoisonLabel
from datamark.testing.contracts import check_method

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
        if "base_model" in fields_of(name) and not issubclass(cls, PoisonLabel):  # DVBW's ranks confusion rows
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
def test_every_method_keeps_the_contract(name, small, make):
    """The shipped contract checks (datamark.testing.contracts): one call per method."""
    exact = "eps" not in fields_of(name)  # perturbing methods stamp a perturbed copy, checked below
    params = {"rate": 0.1, **({"target": 4} if METHODS[name].targeted else {})}
    check_method(lambda **p: make(name, **p), small, exact=exact, **params)


@pytest.mark.parametrize("name", [n for n in sorted(METHODS) if "eps" in fields_of(n)])
def test_perturbed_rows_stay_within_the_budget(name, small, make):
    before = small.inputs()
    marked = make(name, seed=1, rate=0.1, target=4).apply(small)
    for mark in marked.key.mark_list():
        rows = np.array([small.ids.index(i) for i in mark.marked_ids])
        after = marked.dataset.inputs()[rows].astype(int)
        eps = marked.key.extra.get("pgd_eps") or marked.key.method["params"]["eps"]  # None: the modality's budget
        radius = np.floor(255 * eps) + 1
        gaps = [np.abs(after - ref.astype(int)).max(axis=(1, 2, 3))
                for ref in (mark.trigger.apply(before[rows]), before[rows])]
        assert (np.minimum(*gaps) <= radius).all()
    assert len(marked.rows) == expected_count(name, small, 0.1, 4)


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
