"""Audio classifiers: a raw-waveform 1-d CNN (AudioNet style) and a log-mel 2-d CNN, both differentiable from the
waveform to the logits (the clean-label watermark runs PGD on the samples through them).

Every datamark audio classifier is an ``nn.Module`` taking a float N x L batch of mono waveforms in [-1, 1] and
returning N x num_classes logits, with the class attribute ``modality = "audio"``, the instance attributes
``sample_rate`` (Hz) and ``length`` (samples it reads), and two class methods for checkpoints: ``params_for``
turns the data's sample rate and the user's sizes into a spec's ``params``, and ``from_spec(spec)`` rebuilds the
model from a :class:`~datamark.models.checkpoint.ModelSpec` (``input_shape == (length,)``, ``mean == std == ()``).

Inside ``forward`` a batch is first brought to ``length`` samples (zero-padded at the end or cropped to its first
``length`` samples, the audio modality's own policy for files), then each clip is divided by its RMS, so the
gain of a recording never decides its class: the model is invariant to loudness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..exceptions import ParameterError
from ..registry import MODELS, register

#: Added to the mean square before the square root: clips quieter than RMS 1e-4 (-80 dBFS, below the noise floor
#: of 16-bit audio) are not amplified to full level, and an all-zero clip stays zero (no division by zero).
RMS_EPS = 1e-8
#: Added to the mel energies before the logarithm (a floor of -13.8 for digital silence).
LOG_EPS = 1e-6


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
                   ) -> np.ndarray:
    """Triangular mel filters (HTK scale, ``mel = 2595 log10(1 + f / 700)``, peak 1) as an n_mels x (n_fft // 2 + 1)
    float32 matrix that maps an STFT power spectrum to mel band energies.

    Filter edges are equally spaced in mel between ``fmin`` and ``fmax`` (default: Nyquist); weights are the
    triangles evaluated at the FFT bin frequencies. Refuses settings where a band would cover no bin.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2 or n_mels < 1 or n_fft < 2:
        raise ParameterError(f"mel_filterbank needs 0 <= fmin < fmax <= sample_rate / 2, n_mels >= 1 and n_fft >= 2;"
                             f" got fmin={fmin}, fmax={fmax}, sample_rate={sample_rate}, n_mels={n_mels}, "
                             f"n_fft={n_fft}.")
    to_mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)  # noqa: E731
    edges = 700.0 * (10.0 ** (np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    empty = np.flatnonzero(weights.max(axis=1) <= 0)
    if len(empty):
        raise ParameterError(f"{len(empty)} of {n_mels} mel bands cover no FFT bin at n_fft={n_fft} and {sample_rate} "
                             f"Hz (the lowest bands are narrower than a bin); use fewer mel bands or a larger n_fft.")
    return weights.astype(np.float32)


class _AudioClassifier(nn.Module):
    """Shared length policy, loudness normalisation and spec handling of the audio models."""

    #: Spec params that the training data set, not the architecture (the data's sample rate): see architecture_params.
    data_params = ("sample_rate",)

    modality = "audio"

    def __init__(self, num_classes: int, sample_rate: int, length: int) -> None:
        super().__init__()
        if num_classes < 2 or sample_rate < 1 or length < 1:
            raise ParameterError(f"{type(self).__name__} needs num_classes >= 2, sample_rate >= 1 and length >= 1; "
                                 f"got {num_classes}, {sample_rate} and {length}.")
        self.num_classes, self.sample_rate, self.length = int(num_classes), int(sample_rate), int(length)

    @classmethod
    def params_for(cls, *, sample_rate: int, **params: Any) -> dict[str, Any]:
        """Spec params: the sample rate plus the given sizes (tuples as lists, so a spec equals itself after a
        checkpoint round trip). The clip length goes into the spec's ``input_shape``, not here."""
        return {"sample_rate": int(sample_rate), **{k: list(v) if isinstance(v, tuple) else v
                                                    for k, v in params.items()}}

    @classmethod
    def from_spec(cls, spec: Any) -> _AudioClassifier:
        return cls(num_classes=spec.num_classes, length=spec.input_shape[0], **spec.params)

    def prepare(self, waves: torch.Tensor) -> torch.Tensor:
        """N x L waveforms -> float32 N x ``length``: zero-padded at the end or cropped to the first ``length``
        samples, then each clip divided by its RMS over those ``length`` samples (not its peak: one click or a short
        loud trigger would set the peak and rescale the whole clip, while the RMS reflects its overall level)."""
        if waves.ndim != 2:
            raise ParameterError(f"{type(self).__name__} takes an N x L batch of mono waveforms; got a tensor of "
                                 f"shape {tuple(waves.shape)}.")
        x = waves.float()
        if x.shape[1] != self.length:
            x = F.pad(x, (0, self.length - x.shape[1])) if x.shape[1] < self.length else x[:, :self.length]
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + RMS_EPS)


@register(MODELS, "rawaudio")
class RawAudioCNN(_AudioClassifier):
    """A raw-waveform CNN in the style of the RawAudioCNN Tang et al. (2023, "Did You Train on My Dataset?") use
    on AudioMNIST: the AudioNet of Becker et al. (2018, arXiv:1807.03418) as adapted in the Adversarial Robustness
    Toolbox -- 8000 samples in, eight 1-d conv layers each with batch norm, ReLU and max-pooling by 2, then dense
    layers on the flattened features.

    Made CPU-trainable: the first layer is strided (``first_kernel`` samples, ``stride`` 4: a learned filterbank
    at 2 kHz frame rate) and the channel counts are modest (the adaptation uses 100, 64, then 128s at stride 1).
    Pooling rounds up (``ceil_mode``), so short clips keep at least one step after eight halvings. 238 k
    parameters at the default sizes; about 9 s per epoch of FSDD (2,700 clips) on 2 CPU cores.
    """

    def __init__(self, num_classes: int, sample_rate: int = 8000, length: int = 8000,
                 channels: Sequence[int] = (32, 32, 64, 64, 128, 128, 128, 64), first_kernel: int = 16,
                 stride: int = 4, hidden: int = 128, dropout: float = 0.3) -> None:
        super().__init__(num_classes, sample_rate, length)
        channels = [int(c) for c in channels]
        if len(channels) != 8 or min(channels) < 1 or first_kernel < 1 or stride < 1 or hidden < 1 \
                or not 0 <= dropout < 1:
            raise ParameterError(f"RawAudioCNN needs 8 channel counts >= 1, first_kernel, stride and hidden >= 1 and "
                                 f"dropout in [0, 1); got {channels}, {first_kernel}, {stride}, {hidden}, {dropout}.")
        if length < first_kernel:
            raise ParameterError(f"RawAudioCNN needs length >= first_kernel; got {length} < {first_kernel}.")
        pad = max(first_kernel - stride, 0) // 2
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([1, *channels[:-1]], channels, strict=True)):
            conv = nn.Conv1d(c_in, c_out, first_kernel, stride=stride, padding=pad,
                             bias=False) if i == 0 else nn.Conv1d(c_in, c_out, 3, padding=1, bias=False)
            layers += [conv, nn.BatchNorm1d(c_out), nn.ReLU(inplace=True), nn.MaxPool1d(2, ceil_mode=True)]
        self.features = nn.Sequential(*layers)
        steps = (length + 2 * pad - first_kernel) // stride + 1
        for _ in channels:
            steps = math.ceil(steps / 2)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels[-1] * steps, hidden),
                                  nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.prepare(waves).unsqueeze(1)))


@register(MODELS, "logmel")
class LogMelCNN(_AudioClassifier):
    """A log-mel spectrogram front end and a small 2-d CNN, the usual keyword-spotting baseline.

    Front end (float32, outside autocast, differentiable): ``torch.stft`` with a Hann window of ``n_fft`` samples
    (256 = 32 ms at 8 kHz; the signal zero-padded by ``n_fft / 2`` at both ends), hop ``hop_length`` (80 = 10 ms),
    the power spectrum divided by the window's energy, ``n_mels`` HTK mel bands (40, 0 Hz to Nyquist) and
    ``log(mel + 1e-6)``. The mel matrix and the window are non-persistent buffers: rebuilt from the spec, never
    stored in checkpoints. Then batch norm on the log-mel image, four blocks of 3x3 conv, batch norm, ReLU and 2x2
    max-pooling, global average pooling, dropout and a linear head (25 k parameters at the default sizes).
    """

    def __init__(self, num_classes: int, sample_rate: int = 8000, length: int = 8000, n_fft: int = 256,
                 hop_length: int = 80, n_mels: int = 40, channels: Sequence[int] = (8, 16, 32, 64),
                 dropout: float = 0.2) -> None:
        super().__init__(num_classes, sample_rate, length)
        channels = [int(c) for c in channels]
        if len(channels) != 4 or min(channels) < 1 or hop_length < 1 or not 0 <= dropout < 1:
            raise ParameterError(f"LogMelCNN needs 4 channel counts >= 1, hop_length >= 1 and dropout in [0, 1); got "
                                 f"{channels}, {hop_length} and {dropout}.")
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(self.sample_rate, self.n_fft, n_mels)),
                             persistent=False)
        blocks: list[nn.Module] = [nn.BatchNorm2d(1)]
        for c_in, c_out in zip([1, *channels[:-1]], channels, strict=True):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels[-1], num_classes))

    def log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """N x L waveforms -> N x n_mels x frames log-mel energies of the prepared (padded, RMS-normalised) clips."""
        x = self.prepare(waves)
        with torch.autocast(x.device.type, enabled=False):  # bf16 would lose the small energies before the log
            spec = torch.stft(x, self.n_fft, self.hop_length, window=self.window, center=True, pad_mode="constant",
                              return_complex=True)
            # |X|^2 / sum(w^2): white noise of unit variance has energy 1 per bin, so the floor sits 60 dB below the
            # clip's normalised level (without the scaling it would sit 80 dB lower, and digital silence in the
            # zero-padded tail would differ wildly from any recorded noise). Not abs(): its gradient at 0 is NaN.
            power = torch.view_as_real(spec).pow(2).sum(-1) / self.window.pow(2).sum()
            return torch.log(torch.matmul(self.mel, power) + LOG_EPS)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        h = self.features(self.log_mel(waves).unsqueeze(1))
        return self.head(h.mean(dim=(2, 3)))
