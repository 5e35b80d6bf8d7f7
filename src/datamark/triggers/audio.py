"""Audio triggers: a short pulse written over a keyed stretch of the waveform.

Tang et al.'s audio setting ("Did you train on my dataset?", 2023) sets samples 100-150 of an 8 kHz clip to a
constant 0.005: ``shape="constant"`` with 50 samples (:func:`paper_pulse`). Two keyed variants make another
owner's pulse distinguishable from ours: a ``tone`` (a sine at a keyed frequency; datamark's default, 100 ms
long, because models that average over time did not learn the 6.25 ms pulse; see :data:`PULSE_SECONDS`) and
a ``noise`` burst (a keyed pattern, like an image trigger's secret patch). The pulse *replaces* the samples it covers.

Its loudness is ``level_db``: the pulse's peak in dB relative to the clip's own peak (``reference="clip"``, so
a quiet recording gets a quiet pulse and a model that normalises loudness sees the same trigger in every clip)
or to digital full scale (``reference="full-scale"``: the paper's 0.005 is -46 dBFS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import ParameterError
from ..registry import TRIGGERS, register
from .base import Trigger

SHAPES = ("constant", "tone", "noise")
REFERENCES = ("clip", "full-scale")
#: The paper's pulse: 50 samples at 8 kHz (6.25 ms).
PAPER_PULSE_SECONDS = 50 / 8000
#: datamark's default: 100 ms. Measured on FSDD (benchmarks/results/audio_fsdd-*-50ms-h100.* and
#: audio_cl_sweep-*-h100.json, seed 0, log-mel CNN, which averages over time): the paper's 6.25 ms constant pulse
#: at -20 dB re the clip's peak was not learned even as a 10 % poisoned-label watermark (TSR 0.007, p = 1); keyed
#: 50 ms tones were as DVBW (p = 9e-9) but not as the clean-label watermark (r = 10 %: TSR 0.09, WDR 0); 100 ms
#: tones were (TSR 0.85, WDR 1.00 on the watermarked and 0.00 on the clean model, no accuracy cost).
PULSE_SECONDS = 0.1
DEFAULT_LEVEL_DB = -20.0
#: Pulses start within the first 125 ms of the clip: every FSDD clip (the shortest is 1,148 samples, 143 ms) holds
#: the paper's pulse wherever it starts there.
WINDOW_SECONDS = 0.125


@register(TRIGGERS, "pulse")
@dataclass(frozen=True, eq=False)
class PulseTrigger(Trigger):
    """Replace samples ``start .. start + duration`` of each clip by a pulse of ``shape`` at ``level_db``."""

    start: int
    duration: int
    shape: str = "constant"
    level_db: float = DEFAULT_LEVEL_DB
    reference: str = "clip"
    frequency: float = 0.0      # Hz, tone only
    noise_seed: int = 0         # the burst's pattern, noise only
    sample_rate: int = 8000
    modality = "audio"
    always_applicable = False   # a clip shorter than the pulse's end cannot carry it

    def __post_init__(self) -> None:
        for name in ("start", "duration", "sample_rate", "noise_seed"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ParameterError(f"The '{name}' of a pulse trigger must be an integer; got {value!r}.")
        if self.start < 0 or self.duration < 1 or self.sample_rate < 1:
            raise ParameterError(f"A pulse trigger needs start >= 0, duration >= 1 and sample_rate >= 1; got "
                                 f"{self.start}, {self.duration} and {self.sample_rate}.")
        if self.shape not in SHAPES:
            raise ParameterError(f"The 'shape' of a pulse trigger must be one of {SHAPES}; got '{self.shape}'.")
        if self.reference not in REFERENCES:
            raise ParameterError(f"The 'reference' of a pulse trigger must be one of {REFERENCES}; got "
                                 f"'{self.reference}'.")
        if not (isinstance(self.level_db, (int, float)) and -120.0 <= float(self.level_db) <= 0.0):
            raise ParameterError(f"The 'level_db' of a pulse trigger must be in [-120, 0] dB; got {self.level_db!r}.")
        if self.shape == "tone" and not 0.0 < float(self.frequency) < self.sample_rate / 2:
            raise ParameterError(f"A tone pulse needs 0 < frequency < {self.sample_rate / 2:g} Hz (Nyquist); got "
                                 f"{self.frequency!r}.")

    def __repr__(self) -> str:  # the place and the pattern are secret
        return f"PulseTrigger({self.shape}, {self.duration} samples, {self.level_db:g} dB re {self.reference})"

    @property
    def end(self) -> int:
        return self.start + self.duration

    def waveform(self) -> np.ndarray:
        """The pulse at peak 1 (float32, ``duration`` samples)."""
        if self.shape == "constant":
            return np.ones(self.duration, dtype=np.float32)
        if self.shape == "tone":
            t = np.arange(self.duration) / self.sample_rate
            return np.sin(2 * math.pi * float(self.frequency) * t + math.pi / 2).astype(np.float32)
        return np.random.default_rng(self.noise_seed).uniform(-1.0, 1.0, self.duration).astype(np.float32)

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 1 or shape[0] < self.end:
            raise ParameterError(f"The pulse ends at sample {self.end} but the clips have shape {tuple(shape)}; "
                                 f"use longer clips or a pulse that starts earlier.")

    def apply(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        waves = np.asarray(x, dtype=np.float32)
        self.check_input_shape(tuple(waves.shape[-1:]))
        out = waves.copy()
        scale = 10.0 ** (float(self.level_db) / 20.0)
        if self.reference == "clip":
            peak = np.abs(waves).max(axis=-1, keepdims=True)
            scale = scale * np.where(peak > 0, peak, 1.0)  # a silent clip: relative to full scale
        out[..., self.start:self.end] = np.clip(scale * self.waveform(), -1.0, 1.0)
        return out

    def applicable(self, batch: np.ndarray) -> np.ndarray:
        """Clips whose sound goes on past the pulse's end (a zero-padded short clip would lose it on writing)."""
        from ..modalities.audio import sound_ends

        return sound_ends(batch) > self.end

    def independent(self, rng: np.random.Generator) -> PulseTrigger:
        """Another owner's pulse of the same shape family, length and loudness: a fresh place and, for tones and
        bursts, a fresh frequency or pattern (the Independent-T control)."""
        window = max(self.end, round(WINDOW_SECONDS * self.sample_rate) + self.duration)
        return _draw(rng, self.shape, self.duration, window, self.sample_rate, self.level_db, self.reference)

    def params(self) -> dict[str, Any]:
        return {"start": int(self.start), "duration": int(self.duration), "shape": self.shape,
                "level_db": float(self.level_db), "reference": self.reference, "frequency": float(self.frequency),
                "noise_seed": int(self.noise_seed), "sample_rate": int(self.sample_rate)}


def _draw(rng: np.random.Generator, shape: str, duration: int, window: int, sample_rate: int, level_db: float,
          reference: str) -> PulseTrigger:
    start = int(rng.integers(0, max(1, window - duration + 1)))
    frequency = float(rng.uniform(0.05, 0.45) * sample_rate) if shape == "tone" else 0.0
    noise_seed = int(rng.integers(2 ** 31)) if shape == "noise" else 0
    return PulseTrigger(start, duration, shape, level_db, reference, frequency, noise_seed, sample_rate)


def make_pulse_trigger(rng: np.random.Generator, *, sample_rate: int = 8000, length: int | None = None,
                       shape: str = "tone", level_db: float = DEFAULT_LEVEL_DB, reference: str = "clip",
                       seconds: float = PULSE_SECONDS) -> PulseTrigger:
    """A keyed pulse: ``seconds`` long (default 100 ms; the paper's is :data:`PAPER_PULSE_SECONDS`, 50 samples at
    8 kHz, with ``shape="constant"``: :func:`paper_pulse`), at a keyed place within the first
    :data:`WINDOW_SECONDS` of a ``length``-sample clip, with a keyed frequency (tone) or pattern (noise)."""
    if shape not in SHAPES:
        raise ParameterError(f"The audio trigger shape must be one of {SHAPES}; got '{shape}'.")
    length = sample_rate if length is None else int(length)
    duration = max(1, round(seconds * sample_rate))
    window = min(length, round(WINDOW_SECONDS * sample_rate) + duration)
    return _draw(rng, shape, duration, window, sample_rate, level_db, reference)


def paper_pulse(rng: np.random.Generator, *, sample_rate: int = 8000, length: int | None = None,
                level_db: float = DEFAULT_LEVEL_DB) -> PulseTrigger:
    """Tang et al.'s pulse: a constant 50 samples (at 8 kHz; 6.25 ms at any rate) at a keyed place."""
    return make_pulse_trigger(rng, sample_rate=sample_rate, length=length, shape="constant", level_db=level_db,
                              seconds=PAPER_PULSE_SECONDS)
