"""Audio: a batch is a float32 N x L array of mono waveforms in [-1, 1] at one sample rate, stored as WAV.

The pad/crop policy: every clip is read as its first ``length`` samples (default: one second at the dataset's
sample rate), zero-padded at the end when shorter. Models see exactly that. A marked clip is written back with
the file's own length -- only its first ``length`` samples change, the tail beyond them is kept -- in the
file's own sample format (16-bit PCM stays 16-bit), mono, at the dataset's sample rate. Stereo files are mixed
down and files at another sample rate resampled on reading, each with an :class:`AudioFormatWarning`.

The sample rate is a property of the dataset, so an :class:`AudioModality` is an instance per sample rate and
clip length; the key records both (``describe``), and models carry theirs (``model.sample_rate``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..exceptions import AudioFormatWarning, DataError
from ..registry import MODALITIES, register
from .base import Modality, sha256_hex, stored_bytes, value_names

DEFAULT_SAMPLE_RATE = 8000


@register(MODALITIES, "audio")
class AudioModality(Modality):
    """Mono float waveforms; perturbation budgets are L-infinity in amplitude units (full scale = 1)."""

    name = "audio"
    feature_type = "Audio"
    budget_metric = "L-infinity distance in amplitude units (digital full scale = 1.0)"
    #: The clean-label PGD budget and step when a method's ``eps`` is not given: 0.002 is -54 dBFS, below the
    #: background noise of most FSDD recordings (median |x| 0.004 in the first 20 ms).
    pgd_eps, pgd_step = 0.002, 0.0005

    def __init__(self, sample_rate: int = DEFAULT_SAMPLE_RATE, length: int | None = None) -> None:
        if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate < 1:
            raise DataError(f"An audio sample rate must be a positive integer (Hz); got {sample_rate!r}.")
        self.sample_rate = int(sample_rate)
        self.length = int(length) if length is not None else self.sample_rate  # one second by default
        if self.length < 1:
            raise DataError(f"An audio clip length must be >= 1 sample; got {length!r}.")

    def __repr__(self) -> str:
        return f"AudioModality(sample_rate={self.sample_rate}, length={self.length})"

    def with_length(self, length: int) -> AudioModality:
        return self if int(length) == self.length else AudioModality(self.sample_rate, length)

    def for_batch(self, batch: np.ndarray) -> AudioModality:
        return self.with_length(batch.shape[1])

    # --- the batch ------------------------------------------------------------------------------------------
    def batch(self, examples: Any, where: str = "") -> np.ndarray:
        waves = np.asarray(examples)
        if waves.dtype.kind in "iu":
            raise DataError(f"Audio {where} must be float waveforms in [-1, 1]; got {waves.dtype}. Divide 16-bit "
                            f"samples by 32768.")
        if waves.dtype.kind != "f" or waves.ndim != 2:
            raise DataError(f"Audio {where} must be a float N x L array of mono waveforms; got {waves.dtype} of "
                            f"shape {waves.shape}. Stack clips of one length (pad or crop them) first.")
        waves = waves.astype(np.float32, copy=False)
        if not np.isfinite(waves).all():
            raise DataError(f"Audio {where} holds NaN or infinite samples; fix or drop those clips.")
        if waves.size and float(np.abs(waves).max()) > 1.0 + 1e-6:
            raise DataError(f"Audio {where} has samples outside [-1, 1] (max |x| = {float(np.abs(waves).max()):.3g});"
                            f" scale the waveforms to full scale 1.0.")
        return waves

    def empty(self, n: int, example_shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros((n, *example_shape), dtype=np.float32)

    def example_shape_of(self, example: Any) -> tuple[int, ...]:
        return tuple(np.asarray(example).shape)

    def content_id(self, example: Any) -> str:
        wave = np.ascontiguousarray(example, dtype=np.float32)
        return sha256_hex(f"audio:{self.sample_rate}:{wave.shape[-1]}:".encode() + wave.tobytes())

    def describe(self, data: Any) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "clip_samples": self.length}

    def default_trigger(self, rng: np.random.Generator) -> Any:
        """A keyed 100 ms tone (keyed frequency) at a keyed place in the first 125 ms, -20 dB re the clip's peak
        (see :mod:`datamark.triggers.audio` for why not the paper's 6.25 ms pulse)."""
        from ..triggers.audio import make_pulse_trigger

        return make_pulse_trigger(rng, sample_rate=self.sample_rate, length=self.length)

    def named_trigger(self, name: str, rng: np.random.Generator) -> Any:
        """``"pulse"``: the paper's 6.25 ms pulse; ``"noise"``: a keyed burst of noise; both at keyed places."""
        from ..triggers.audio import make_pulse_trigger, paper_pulse

        if name == "pulse":
            return paper_pulse(rng, sample_rate=self.sample_rate, length=self.length)
        if name == "noise":
            return make_pulse_trigger(rng, shape="noise", sample_rate=self.sample_rate, length=self.length)
        return super().named_trigger(name, rng)

    # --- storage: WAV bytes ------------------------------------------------------------------------------------
    def decode_stored(self, values: list[Any], where: str, names: Sequence[str] | None = None) -> np.ndarray:
        out = np.zeros((len(values), self.length), dtype=np.float32)
        converted: dict[str, int] = {}
        for i, (value, label) in enumerate(zip(values, value_names(len(values), where, names), strict=True)):
            out[i] = self.decode_clip(_wav_bytes(value, i, where), label, converted)
        for what, count in converted.items():
            warnings.warn(f"{count} clip(s) of {where} were {what}.", AudioFormatWarning, stacklevel=3)
        return out

    def decode_clip(self, data: bytes, where: str, converted: dict[str, int] | None = None) -> np.ndarray:
        """One WAV file's bytes -> its first ``length`` samples, mono, at this sample rate."""
        from ..data.wav import fit_length, read_wav, resample

        converted = {} if converted is None else converted
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AudioFormatWarning)
            wave, info = read_wav(data, where)
        if caught:
            converted["mixed down to mono"] = converted.get("mixed down to mono", 0) + 1
        if info.sample_rate != self.sample_rate:
            wave = resample(wave, info.sample_rate, self.sample_rate)
            key = f"resampled to {self.sample_rate} Hz"
            converted[key] = converted.get(key, 0) + 1
        return fit_length(np.clip(wave, -1.0, 1.0), self.length)

    def stored_id(self, value: Any) -> str:
        return sha256_hex(_wav_bytes(value, -1, ""))

    def encode_file(self, example: Any, original: bytes | None = None) -> bytes:
        """A marked clip as WAV bytes: the original file's format and length, its first ``length`` samples
        replaced (mono, at this sample rate); 16-bit PCM when there is no original."""
        from ..data.wav import WavInfo, read_wav, resample, splice, write_wav

        wave = np.asarray(example, dtype=np.float32)
        if original is None:
            return write_wav(wave, WavInfo(self.sample_rate, 2, 1, len(wave)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AudioFormatWarning)  # warned about when the dataset was read
            base, info = read_wav(original, "the original clip")
        if info.sample_rate != self.sample_rate:
            base = resample(base, info.sample_rate, self.sample_rate)
        out = splice(base, wave)
        return write_wav(out, WavInfo(self.sample_rate, info.sample_width, 1, len(out), info.float_format))

    file_suffixes = frozenset({".wav", ".wave"})
    lossless_storage = False  # 16-bit PCM quantises; the tail beyond ``length`` is the file's own

    def written_suffix(self, original_suffix: str) -> str:
        return original_suffix  # a marked clip stays a WAV file of its own format

    def configured(self, values: list[Any], feature: dict[str, Any] | None = None,
                   names: Sequence[str] | None = None) -> AudioModality:
        """This modality at the sample rate of a stored dataset: the Hugging Face ``Audio`` feature's
        ``sampling_rate`` if it declares one, else the first clip's (other clips are resampled to it)."""
        from ..data.wav import read_wav

        rate = (feature or {}).get("sampling_rate")
        if not rate and values:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AudioFormatWarning)
                label = value_names(1, "the dataset", names[:1] if names else None)[0]
                rate = read_wav(_wav_bytes(values[0], 0, "the dataset"), label)[1].sample_rate
        rate = int(rate or self.sample_rate)
        return self if rate == self.sample_rate else AudioModality(rate)

    def looks_like_column(self, field_type: Any, feature: dict[str, Any]) -> bool:
        return feature.get("_type") == "Audio"

    preview_suffix = ".png"
    preview_writer = "evaluate.audio_preview:audio_preview"
    default_arch = "logmel"
    trainer = "models.audio_train:fit_audio"
    config_factory = "models.audio_train:default_audio_config"

    def preview_options(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate}

    # --- the model side ----------------------------------------------------------------------------------------
    bounds = (-1.0, 1.0)

    def to_model_input(self, batch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))

    def from_model_input(self, tensor: torch.Tensor, original: np.ndarray, eps: float) -> np.ndarray:
        """Clipped to the ball and to full scale; the zero padding after a clip's last sample stays zero (it is
        not written back to the file, so a change there would be a change the released data does not hold)."""
        out = tensor.detach().cpu().numpy().astype(np.float32)
        out = np.clip(np.clip(out, original - eps, original + eps), -1.0, 1.0)
        out[np.arange(original.shape[1])[None, :] >= sound_ends(original)[:, None]] = 0.0
        return out

    def logits(self, model: torch.nn.Module, batch: np.ndarray, device: torch.device) -> torch.Tensor:
        rate = getattr(model, "sample_rate", None)
        if rate is not None and int(rate) != self.sample_rate:
            raise DataError(f"The model expects audio at {int(rate)} Hz but the clips are at {self.sample_rate} Hz; "
                            f"resample the data or use a model trained at {self.sample_rate} Hz.")
        return super().logits(model, batch, device)


def sound_ends(waves: np.ndarray) -> np.ndarray:
    """Per clip of an N x L batch, the index after its last non-zero sample: where the zero padding that
    :func:`~datamark.data.wav.fit_length` added begins (L for a clip that fills its length, 0 for silence)."""
    nonzero = np.asarray(waves) != 0
    return np.where(nonzero.any(axis=1), nonzero.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)


def _wav_bytes(value: Any, row: int, where: str) -> bytes:
    return stored_bytes(value, row, where, "audio", "embed the audio in the table (Hugging Face: cast_column with "
                        "Audio(decode=False) keeps the file bytes) first.")
