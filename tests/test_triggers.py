import numpy as np
import pytest

from datamark.exceptions import ParameterError
from datamark.triggers import PatternTrigger, Trigger, default_patch_size, make_blend_trigger, make_patch_trigger
from datamark.triggers.image import make_pattern, tile_side


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


def test_blocks_pattern_is_a_two_by_two_grid_of_flat_secret_tiles():
    a = make_pattern("blocks", (8, 8, 3), np.random.default_rng(0))
    assert a.dtype == np.uint8 and a.shape == (8, 8, 3) and tile_side(a) == 4
    assert not np.array_equal(a[:4, :4], a[4:, 4:])  # four tiles, not one flat patch
    assert np.array_equal(a, make_pattern("blocks", (8, 8, 3), np.random.default_rng(0)))
    assert not np.array_equal(a, make_pattern("blocks", (8, 8, 3), np.random.default_rng(1)))
    assert make_pattern("blocks", (3, 3, 1), np.random.default_rng(0)).shape == (3, 3, 1)  # odd sides: cut tiles


@pytest.mark.parametrize("kind, shape, side", [("random", (3, 3, 3), 1), ("blocks", (8, 8, 3), 4),
                                               ("mosaic", (32, 32, 3), 4), ("checkerboard", (4, 4, 1), 1)])
def test_independent_trigger_keeps_the_tiling(kind, shape, side):
    """Another owner's trigger of the same kind: a blocks or mosaic key's decoys and Independent-T control are
    coarse textures like it, not fine noise (which a model that learned coarse tiles would ignore)."""
    trigger = PatternTrigger(make_pattern(kind, shape, np.random.default_rng(0)), 0.2 if kind == "mosaic" else 1.0)
    other = trigger.independent(np.random.default_rng(1))
    assert tile_side(trigger.pattern) == side and tile_side(other.pattern) == side
    assert other.pattern.shape == shape and other.blend == trigger.blend and other.position == trigger.position
    assert not np.array_equal(other.pattern, trigger.pattern)


def test_jpeg_keeps_the_blocks_patch_and_not_the_noise_patch():
    """Why ``blocks`` exists (issue 15): JPEG at quality 50 changes an 8 x 8 block-aligned patch of flat tiles far
    less than the 3 x 3 noise patch (mean absolute error per pixel about 19 against 61 here)."""
    from datamark.evaluate.attacks.query import JPEG

    x = np.random.default_rng(5).integers(80, 176, size=(8, 32, 32, 3), dtype=np.uint8)
    x = np.repeat(np.repeat(x[:, ::8, ::8], 8, axis=1), 8, axis=2)  # smooth hosts: what JPEG keeps itself
    jpeg = JPEG(quality=50).filter

    def error(trigger, size):
        stamped = trigger.apply(x)
        return float(np.abs(jpeg(stamped)[:, -size:, -size:].astype(float) - stamped[:, -size:, -size:]).mean())

    blocks = make_patch_trigger((32, 32, 3), np.random.default_rng(0), pattern="blocks", size=8)
    noise = make_patch_trigger((32, 32, 3), np.random.default_rng(0))
    assert error(blocks, 8) < 0.5 * error(noise, 3)


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
