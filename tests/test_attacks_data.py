"""Data-side attacks: the rows each flags (sorted, unique, in range, as many as its rule says), determinism, and
that STRIP finds stamped rows on real CIFAR-10 images with a tiny model."""

import math

import numpy as np
import pytest

from datamark import load_data
from datamark.data import ArrayRecords, shared_data_dir
from datamark.evaluate.attacks import attack_names, parse_attack
from datamark.evaluate.attacks.data import Adaptive, LossFilter
from datamark.exceptions import ParameterError
from datamark.models.train import default_config, fit

CIFAR_TEST = shared_data_dir() / "cifar10" / "test.parquet"
N_CLEAN, N_STAMPED, TARGET = 300, 30, 0

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not CIFAR_TEST.exists(), reason="CIFAR-10 not in the shared data folder")]


@pytest.fixture(scope="module")
def poisoned():
    """(released, model, spec, stamped rows): 300 CIFAR-10 test images plus 30 others stamped with a 4x4
    black-and-white checkerboard in the lower right and relabelled to class 0 (BadNets); a tiny model trained on
    them for 5 epochs learns the stamp (a flat white patch loses its contrast in STRIP's 50/50 blends)."""
    cifar = load_data(str(CIFAR_TEST)).subset(range(N_CLEAN + N_STAMPED))
    images, labels = cifar.inputs().copy(), np.asarray(cifar.labels).copy()
    checker = (np.indices((4, 4)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None]
    images[N_CLEAN:, -6:-2, -6:-2] = checker
    labels[N_CLEAN:] = TARGET
    released = ArrayRecords(images, labels, cifar.class_names)
    model, spec = fit(released, arch="tiny", config=default_config("tiny", epochs=5, seed=0), width=8)
    return released, model, spec, np.arange(N_CLEAN, N_CLEAN + N_STAMPED)


@pytest.fixture(scope="module")
def flagged(poisoned):
    """Each data attack's rows at its defaults, seed 0 (computed once for the tests below)."""
    released, model, spec, _ = poisoned
    return {name: parse_attack(name).flag(model, spec, released, seed=0) for name in attack_names("data")}


def test_every_data_attack_is_registered():
    assert attack_names("data") == ["activation-clustering", "adaptive", "autoencoder-filter", "loss-filter",
                                    "spectral-signatures", "strip"]


@pytest.mark.parametrize("name", attack_names("data"))
def test_flags_sorted_unique_rows_in_range(name, flagged, poisoned):
    rows = flagged[name]
    assert rows.dtype == np.int64 and rows.ndim == 1
    assert np.array_equal(rows, np.unique(rows))
    assert len(rows) == 0 or (rows[0] >= 0 and rows[-1] < len(poisoned[0]))


@pytest.mark.parametrize("name", ["loss-filter", "autoencoder-filter", "strip"])
def test_fraction_filters_flag_their_share(name, flagged, poisoned):
    assert len(flagged[name]) == round(0.05 * len(poisoned[0]))  # 16 of 330


def test_spectral_signatures_flags_its_rule_per_class(flagged, poisoned):
    labels = np.asarray(poisoned[0].labels)
    expected = {c: math.ceil(round(1.5 * 0.1 * n, 6)) for c, n in enumerate(np.bincount(labels))}
    assert dict(enumerate(np.bincount(labels[flagged["spectral-signatures"]], minlength=10))) == expected


def test_adaptive_is_the_union_of_every_detector(flagged):
    union = np.unique(np.concatenate([flagged[n] for n in attack_names("data") if n != "adaptive"]))
    assert np.array_equal(flagged["adaptive"], union)


def test_strip_finds_the_stamped_rows(poisoned):
    """With the fraction set to the stamped share, most flagged rows are stamped (chance: 9 %)."""
    released, model, spec, stamped = poisoned
    rows = parse_attack(f"strip:fraction={N_STAMPED / len(released)}").flag(model, spec, released)
    precision = len(np.intersect1d(rows, stamped)) / len(rows)
    assert precision >= 0.5, precision


@pytest.mark.parametrize("name", ["strip", "activation-clustering", "autoencoder-filter"])
def test_seeded_and_deterministic(name, flagged, poisoned, global_rng_guard):
    released, model, spec, _ = poisoned
    again = parse_attack(name).flag(model, spec, released, seed=0)
    assert np.array_equal(again, flagged[name])


def test_strip_partners_are_other_rows_and_follow_the_seed():
    strip = parse_attack("strip:overlays=5")
    partners = strip.partners(50, seed=3)
    assert partners.shape == (50, 5) and partners.min() >= 0 and partners.max() < 50
    assert not (partners == np.arange(50)[:, None]).any()
    assert np.array_equal(partners, strip.partners(50, seed=3))
    assert not np.array_equal(partners, strip.partners(50, seed=4))


@pytest.mark.parametrize("spec, param", [("spectral-signatures:eps=0", "eps"),
                                         ("activation-clustering:threshold=1.5", "threshold"),
                                         ("loss-filter:fraction=0", "fraction"),
                                         ("autoencoder-filter:fraction=1", "fraction"),
                                         ("autoencoder-filter:epochs=0", "epochs"),
                                         ("strip:overlays=0", "overlays"),
                                         ("strip:fraction=-0.1", "fraction")])
def test_bad_parameters_are_refused_by_name(spec, param):
    with pytest.raises(ParameterError, match=f"'{param}'"):
        parse_attack(spec)


@pytest.mark.parametrize("name", ["spectral-signatures", "activation-clustering", "autoencoder-filter", "strip"])
def test_image_detectors_refuse_text(name, poisoned):
    text = ArrayRecords(["a fine film", "a dull film"], [1, 0], ["neg", "pos"])
    with pytest.raises(ParameterError, match="applies to image"):
        parse_attack(name).flag(poisoned[1], poisoned[2], text)


def test_adaptive_runs_what_applies_to_the_modality():
    assert Adaptive().detectors("text") == [LossFilter()]
    assert len(Adaptive().detectors("image")) == 5
