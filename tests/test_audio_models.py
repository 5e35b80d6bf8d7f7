"""Audio classifiers on tiny synthetic tones: shapes, the length policy, loudness invariance, gradients to the
waveform, seeded training, learning, and checkpoints."""

import types

import numpy as np
import pytest
import torch

from datamark.exceptions import DataFormatError, ParameterError
from datamark.models import ModelSpec, load_checkpoint, save_checkpoint
from datamark.models.audio import LogMelCNN, RawAudioCNN, mel_filterbank
from datamark.models.audio_train import AudioTrainConfig, default_audio_config, fit_audio

pytestmark = pytest.mark.usefixtures("one_thread")

RATE = LENGTH = 800  # one second at 800 Hz keeps everything tiny
SIZES = {"logmel": dict(n_fft=64, hop_length=16, n_mels=16, channels=(4, 8, 8, 8)),
         "rawaudio": dict(channels=(4, 4, 8, 8, 8, 8, 8, 8), first_kernel=8, hidden=16)}
ARCHS = sorted(SIZES)


def tones(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: a 60 Hz tone, class 1: 160 Hz; random phase, loudness, onset and background noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    t = np.arange(LENGTH) / RATE
    waves = np.zeros((n, LENGTH), dtype=np.float32)
    for i, y in enumerate(labels):
        start = rng.integers(0, LENGTH // 4)
        tone = np.sin(2 * np.pi * (60, 160)[y] * t + rng.uniform(0, 2 * np.pi))[:LENGTH - start]
        waves[i, start:] = rng.uniform(0.05, 0.5) * tone
    waves += rng.normal(0, 0.01, waves.shape).astype(np.float32)
    return np.clip(waves, -1, 1), labels


def dataset(waves: np.ndarray, labels: np.ndarray) -> types.SimpleNamespace:
    """The part of an audio Records that fit_audio reads."""
    return types.SimpleNamespace(inputs=lambda: waves, labels=labels, num_classes=2, class_names=("low", "high"),
                                 modality=types.SimpleNamespace(sample_rate=RATE))


def fit(arch: str, **overrides):
    config = default_audio_config(arch, **{"epochs": 6, "batch_size": 16, "lr": 1e-2, "shift": 20, **overrides})
    return fit_audio(dataset(*tones(64, 0)), arch=arch, config=config, **SIZES[arch])


@pytest.fixture(scope="module")
def trained():
    return {arch: fit(arch) for arch in ARCHS}


def fresh(arch: str) -> torch.nn.Module:
    cls = {"logmel": LogMelCNN, "rawaudio": RawAudioCNN}[arch]
    torch.manual_seed(0)
    return cls(num_classes=2, sample_rate=RATE, length=LENGTH, **SIZES[arch]).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_length_policy_loudness_and_silence(arch):
    model = fresh(arch)
    assert model.modality == "audio" and (model.sample_rate, model.length) == (RATE, LENGTH)
    waves = torch.from_numpy(tones(3, 1)[0])
    with torch.no_grad():
        logits = model(waves)
        assert logits.shape == (3, 2)
        short = waves[:, :700]
        assert torch.allclose(model(short), model(torch.nn.functional.pad(short, (0, 100))), atol=1e-5)
        assert torch.allclose(model(torch.cat([waves, waves[:, :50]], dim=1)), logits, atol=1e-5)  # cropped
        assert torch.allclose(model(0.1 * waves), logits, atol=1e-4)  # RMS-normalised: loudness does not count
        assert torch.isfinite(model(torch.zeros(2, LENGTH))).all()
    with pytest.raises(ParameterError, match="N x L"):
        model(waves[0])


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_reaches_the_waveform(arch):
    model = fresh(arch)
    waves = torch.cat([torch.from_numpy(tones(2, 2)[0]), torch.zeros(1, LENGTH)]).requires_grad_(True)
    model(waves)[:, 1].sum().backward()
    assert torch.isfinite(waves.grad).all() and waves.grad[:2].abs().sum(dim=1).min() > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_learns_tones_and_round_trips_checkpoints(arch, trained, tmp_path):
    model, spec = trained[arch]
    assert spec.input_shape == (LENGTH,) and spec.params["sample_rate"] == RATE and spec.mean == spec.std == ()
    waves, labels = tones(64, 3)
    with torch.no_grad():
        logits = model(torch.from_numpy(waves))
    assert (logits.argmax(1).numpy() == labels).mean() > 0.9
    save_checkpoint(model, spec, tmp_path / "m.pt")
    loaded, loaded_spec = load_checkpoint(tmp_path / "m.pt")
    assert loaded_spec == spec and type(loaded) is type(model) and loaded.sample_rate == RATE
    with torch.no_grad():
        assert torch.equal(loaded(torch.from_numpy(waves)), logits)


def test_training_is_deterministic_and_leaves_global_rng(global_rng_guard):
    first, second, other = (fit("logmel", epochs=2, seed=s)[0].state_dict() for s in (0, 0, 1))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_mel_filterbank():
    bank = mel_filterbank(8000, 256, 40)
    assert bank.shape == (40, 129) and bank.dtype == np.float32
    assert np.all(bank.max(axis=1) > 0.5) and bank[:, -1].max() < 1e-6  # every band sees a bin; none at Nyquist
    with pytest.raises(ParameterError, match="cover no FFT bin"):
        mel_filterbank(8000, 32, 64)


def test_refusals(tmp_path):
    with pytest.raises(ParameterError, match="audio architecture"):
        fit_audio(dataset(*tones(4, 0)), arch="tiny")
    with pytest.raises(ParameterError, match="sampled at 800 Hz"):
        fit_audio(dataset(*tones(4, 0)), arch="logmel", sample_rate=8000)
    with pytest.raises(ParameterError, match="shift"):
        AudioTrainConfig(shift=-1)
    with pytest.raises(ParameterError, match="batch_size >= 2"):
        AudioTrainConfig(batch_size=1)
    model = fresh("logmel")
    spec = ModelSpec(arch="logmel", num_classes=2, input_shape=(8, LENGTH), mean=(), std=(),
                     params={"sample_rate": RATE})
    save_checkpoint(model, spec, tmp_path / "bad.pt")
    with pytest.raises(DataFormatError, match=r"input_shape \(L,\) samples"):
        load_checkpoint(tmp_path / "bad.pt")
