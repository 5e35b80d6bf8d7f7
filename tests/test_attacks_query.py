"""Query-side attacks (the thief's purifying API): every registered one keeps the batch's form and answers valid
probabilities; each changes real inputs as its name says; strength sweeps point the declared way; wrapping a
suspect records the attack and, for top-1, answers labels only."""

import numpy as np
import pytest

from datamark import load_data
from datamark.evaluate.attacks.base import attack_names, parse_attack
from datamark.evaluate.attacks.purified import PurifiedSuspect
from datamark.exceptions import ParameterError
from datamark.models.checkpoint import ModelSpec, build_model
from datamark.suspects.local import LocalSuspect

pytestmark = pytest.mark.usefixtures("one_thread")

QUERY = attack_names("query")
INPUT_ATTACKS = [n for n in QUERY if parse_attack(n).modalities is not None]
#: For every attack with a strength: (weak, strong) values of that parameter; a new attack must add its pair.
SWEEPS = {"jpeg": (90, 10), "blur": (0.5, 2.0), "median": (3, 7), "bit-depth": (6, 2), "audio-quantize": (12, 4),
          "round": (3, 0), "logit-noise": (0.1, 2.0)}


@pytest.fixture(scope="module")
def batches():
    """Real examples of each modality: 12 CIFAR-10 colour images, 12 MNIST grey ones, 6 FSDD clips, 3 texts."""
    return {"rgb": load_data("cifar10:test").subset(range(12)).inputs(),
            "grey": load_data("mnist:test").subset(range(12)).inputs()[..., 0],  # N x H x W stays 3-d
            "audio": load_data("fsdd:test").subset(range(6)).inputs(),
            "text": ["a fine film", "dull and long", "the plot holds"]}


MODALITY = {"rgb": "image", "grey": "image", "audio": "audio", "text": "text"}


def _probs(n: int = 40, k: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(k, 0.3), size=n)


def _distortion(attack, batches) -> float:
    """Mean absolute change the attack makes to its typical input (real data, or answers for output attacks)."""
    if attack.modalities is None:
        probs = _probs()
        return float(np.abs(attack.transform_outputs(probs, np.random.default_rng(1)) - probs).mean())
    batch = batches["rgb" if attack.modalities == ("image",) else "audio"]
    return float(np.abs(attack.transform_inputs(batch, attack.modalities[0]).astype(float) - batch).mean())


def test_registry_holds_the_query_attacks():
    assert {"jpeg", "blur", "median", "bit-depth", "audio-quantize", "round", "top1", "logit-noise"} <= set(QUERY)
    for name in QUERY:
        attack = parse_attack(name)
        assert attack.kind == "query" and attack.registry_name == name
        assert attack.strength is None or attack.strength in attack.params()


@pytest.mark.parametrize("name", QUERY)
@pytest.mark.parametrize("form", ["rgb", "grey", "audio", "text"])
def test_inputs_keep_their_form(name, form, batches):
    attack, batch = parse_attack(name), batches[form]
    if attack.modalities is not None and MODALITY[form] not in attack.modalities:
        with pytest.raises(ParameterError, match=f"'{name}' attack applies to"):
            attack.transform_inputs(batch, MODALITY[form])
        return
    out = attack.transform_inputs(batch, MODALITY[form])
    if form == "text":
        assert list(out) == batch  # no attack rewrites text yet
        return
    assert type(out) is np.ndarray and out.shape == batch.shape and out.dtype == batch.dtype
    if form == "audio":
        assert np.abs(out).max() <= 1.0


@pytest.mark.parametrize("name", QUERY)
def test_outputs_are_probabilities(name):
    probs = _probs()
    probs[0] = np.eye(10)[4]  # a certain answer, with exact zeros
    out = parse_attack(name).transform_outputs(probs.copy(), np.random.default_rng(0))
    assert out.shape == probs.shape and out.dtype == np.float64
    assert (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0)
    if not parse_attack(name).keeps_probs:
        assert np.array_equal(out.argmax(axis=1), probs.argmax(axis=1))


@pytest.mark.parametrize("name", INPUT_ATTACKS)
def test_input_attacks_change_most_of_a_real_input_one_example_at_a_time(name, batches):
    attack = parse_attack(name)
    batch, modality = batches["rgb" if attack.modalities == ("image",) else "audio"], attack.modalities[0]
    out = attack.transform_inputs(batch, modality)
    assert (out != batch).mean() > 0.25
    assert np.array_equal(out, np.concatenate([attack.transform_inputs(x[None], modality) for x in batch]))


def test_jpeg_q10_changes_every_cifar_image_and_is_deterministic(batches):
    images, jpeg = batches["rgb"], parse_attack("jpeg:quality=10")
    out = jpeg.transform_inputs(images, "image")
    assert all((a != b).any() for a, b in zip(out, images, strict=True))
    assert np.array_equal(out, jpeg.transform_inputs(images, "image"))


def test_jpeg_handles_grey_and_channel_last_grey_alike(batches):
    grey = batches["grey"]
    flat = parse_attack("jpeg:quality=20").transform_inputs(grey, "image")
    last = parse_attack("jpeg:quality=20").transform_inputs(grey[..., None], "image")
    assert last.shape == grey.shape + (1,) and np.array_equal(last[..., 0], flat) and (flat != grey).any()


def test_bit_depth_leaves_2_to_the_bits_levels(batches):
    assert set(np.unique(parse_attack("bit-depth:bits=1").transform_inputs(batches["rgb"], "image"))) == {0, 255}
    assert len(np.unique(parse_attack("bit-depth:bits=3").transform_inputs(batches["rgb"], "image"))) == 8


def test_median_removes_an_isolated_pixel_and_blur_spreads_it():
    image = np.full((1, 9, 9, 1), 100, dtype=np.uint8)
    image[0, 4, 4, 0] = 255
    assert (parse_attack("median").transform_inputs(image, "image") == 100).all()
    blurred = parse_attack("blur:sigma=1").transform_inputs(image, "image")[0, :, :, 0]
    assert 100 < blurred[4, 4] < 255 and blurred[4, 5] > 100 and blurred.sum() >= image.sum() - 81  # mass kept


def test_audio_quantize_leaves_pcm_levels(batches):
    out = parse_attack("audio-quantize:bits=4").transform_inputs(batches["audio"], "audio")
    assert np.allclose(out * 8, np.rint(out * 8)) and len(np.unique(out)) <= 16


@pytest.mark.parametrize("name", [n for n in QUERY if parse_attack(n).strength is not None])
def test_strength_points_the_declared_way(name, batches):
    cls = type(parse_attack(name))
    weak, strong = SWEEPS[name]
    assert (strong > weak) == cls.stronger_when_larger
    weak_attack, strong_attack = cls(**{cls.strength: weak}), cls(**{cls.strength: strong})
    assert _distortion(strong_attack, batches) > _distortion(weak_attack, batches)


def test_round_renormalises_and_names_a_winner_when_all_round_to_zero():
    probs = np.full((2, 25), 0.0396)
    probs[:, 3] = 0.049  # every entry rounds to 0.0 at one decimal
    probs[1] = np.r_[0.72, 0.24, np.full(23, 0.04 / 23)]
    out = parse_attack("round:decimals=1").transform_outputs(probs, np.random.default_rng(0))
    assert np.array_equal(out[0], np.eye(25)[3])
    assert np.allclose(out[1, :2], [0.7 / 0.9, 0.2 / 0.9]) and (out[1, 2:] == 0).all()


def test_logit_noise_zero_is_identity_and_noise_follows_the_generator():
    probs = _probs()
    assert np.allclose(parse_attack("logit-noise:sigma=0").transform_outputs(probs, np.random.default_rng(0)), probs)
    noisy = parse_attack("logit-noise:sigma=1")
    first = noisy.transform_outputs(probs, np.random.default_rng(5))
    assert np.array_equal(first, noisy.transform_outputs(probs, np.random.default_rng(5)))
    assert not np.allclose(first, noisy.transform_outputs(probs, np.random.default_rng(6)))


@pytest.mark.parametrize("name", QUERY)
def test_parse_round_trips(name):
    attack = parse_attack(name)
    spec = name + (":" + ",".join(f"{k}={v}" for k, v in attack.params().items()) if attack.params() else "")
    assert parse_attack(spec) == attack and attack.to_dict() == {"name": name, "kind": "query",
                                                                 "params": attack.params()}
    assert parse_attack("jpeg:quality=50").label == "jpeg(quality=50)"


@pytest.mark.parametrize("spec", ["jpeg:quality=0", "jpeg:quality=96", "jpeg:quality=high", "blur:sigma=0",
                                  "blur:sigma=nan", "median:size=4", "median:size=1", "bit-depth:bits=0",
                                  "bit-depth:bits=8", "audio-quantize:bits=1", "round:decimals=7",
                                  "round:decimals=-1", "logit-noise:sigma=-0.5"])
def test_bad_parameters_name_themselves(spec):
    param, _, value = spec.partition(":")[2].partition("=")
    with pytest.raises(ParameterError, match=f"'{param}'.*{value}"):
        parse_attack(spec)


@pytest.fixture(scope="module")
def image_suspect():
    spec = ModelSpec("tiny", 10, (32, 32, 3), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return LocalSuspect.from_model(build_model(spec, seed=0), spec)


def test_top1_gives_a_labels_only_suspect(image_suspect, batches):
    images = batches["rgb"]
    wrapped = parse_attack("top1").wrap(image_suspect, seed=0)
    assert isinstance(wrapped, PurifiedSuspect) and wrapped.outputs == "labels"
    labels = wrapped.query(images)
    assert labels.shape == (len(images),) and np.array_equal(labels, image_suspect.query(images).argmax(axis=1))
    assert wrapped.describe()["purified_by"] == {"name": "top1", "kind": "query", "params": {}}
    with pytest.raises(ValueError, match="labels only"):
        wrapped.with_outputs("probs")


def test_wrapped_suspect_purifies_queries_and_records_the_attack(image_suspect, batches, global_rng_guard):
    images = batches["rgb"]
    jpeg = parse_attack("jpeg:quality=10").wrap(image_suspect, seed=0)
    expected = image_suspect.query(parse_attack("jpeg:quality=10").transform_inputs(images, "image"))
    assert np.allclose(jpeg.query(images), expected) and jpeg.queries == len(images)
    assert jpeg.describe()["purified_by"]["params"] == {"quality": 10} and jpeg.describe()["outputs"] == "probs"
    noisy = [parse_attack("logit-noise").wrap(image_suspect, seed=s) for s in (3, 3, 4)]
    answers = [suspect.query(images) for suspect in noisy]
    assert np.array_equal(answers[0], answers[1]) and not np.allclose(answers[0], answers[2])


def test_a_modality_mismatch_is_refused_before_the_model_is_queried(image_suspect):
    wrapped, before = parse_attack("jpeg").wrap(image_suspect), image_suspect.queries
    with pytest.raises(ParameterError, match="'jpeg' attack applies to image data, not text"):
        wrapped.query(["a fine film", "dull"])
    assert wrapped.queries == 0 and image_suspect.queries == before
