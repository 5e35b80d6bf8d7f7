import numpy as np
import pytest

from datamark.exceptions import ParameterError
from datamark.triggers import PatternTrigger, Trigger, default_patch_size, make_blend_trigger, make_patch_trigger


def _images(n=4, shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def test_patch_replaces_exactly_the_bottom_right_square():
    trigger = make_patch_trigger((32, 32, 3), np.random.default_rng(0))
    x = _images()
    y = trigger.apply(x)
    assert y.dtype == np.uint8 and y.shape == x.shape
    assert np.array_equal(y[:, -3:, -3:, :], np.broadcast_to(trigger.pattern, (4, 3, 3, 3)))
    assert np.array_equal(y[:, :-3, :, :], x[:, :-3, :, :]) and np.array_equal(y[:, :, :-3, :], x[:, :, :-3, :])


def test_apply_does_not_modify_input_and_single_equals_batch():
    trigger = make_blend_trigger((32, 32, 3), np.random.default_rng(1))
    x = _images()
    before = x.copy()
    batch = trigger.apply(x)
    assert np.array_equal(x, before)
    assert np.array_equal(trigger.apply(x[2]), batch[2])


def test_blend_is_the_convex_mix():
    trigger = make_blend_trigger((8, 8, 1), np.random.default_rng(2), blend=0.25)
    x = _images(shape=(8, 8, 1))
    expected = np.rint(0.75 * x.astype(np.float64) + 0.25 * trigger.pattern.astype(np.float64))
    assert np.max(np.abs(trigger.apply(x).astype(np.float64) - expected)) <= 1


def test_patch_size_scales_with_image():
    assert default_patch_size((32, 32, 3)) == 3
    assert default_patch_size((64, 64, 3)) == 6
    assert default_patch_size((8, 8, 1)) == 3
    assert default_patch_size((2, 2, 1)) == 2


@pytest.mark.parametrize("make", [make_patch_trigger, make_blend_trigger])
def test_config_round_trip(make):
    trigger = make((16, 16, 3), np.random.default_rng(3))
    again = Trigger.from_config(trigger.to_config())
    x = _images(shape=(16, 16, 3))
    assert np.array_equal(trigger.apply(x), again.apply(x))


def test_secret_patterns_differ_and_independent_trigger_differs():
    a = make_patch_trigger((32, 32, 3), np.random.default_rng(10))
    b = make_patch_trigger((32, 32, 3), np.random.default_rng(11))
    assert not np.array_equal(a.pattern, b.pattern)
    c = a.independent(np.random.default_rng(12))
    assert c.pattern.shape == a.pattern.shape and c.position == a.position and not np.array_equal(c.pattern, a.pattern)


def test_repr_hides_pattern():
    trigger = make_patch_trigger((32, 32, 3), np.random.default_rng(0))
    assert str(int(trigger.pattern[0, 0, 0])) not in repr(trigger).replace("3x3x3", "")


def test_bad_triggers_are_refused():
    with pytest.raises(ParameterError, match="does not fit"):
        make_patch_trigger((4, 4, 3), np.random.default_rng(0), size=3).check_input_shape((2, 2, 3))
    with pytest.raises(ParameterError, match="trigger size"):
        make_patch_trigger((8, 8, 3), np.random.default_rng(0), size=9)
    with pytest.raises(ParameterError, match="blend"):
        PatternTrigger(np.zeros((2, 2, 3), np.uint8), blend=1.5)
    with pytest.raises(ParameterError, match="channel"):
        make_patch_trigger((32, 32, 3), np.random.default_rng(0)).apply(np.zeros((32, 32, 1), np.uint8))
