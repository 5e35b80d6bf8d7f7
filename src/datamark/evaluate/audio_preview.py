"""What an audio watermark did to released clips, as one PNG an owner can read at a glance.

One column per example (the first four). Rows: the clean waveform, the watermarked one on the same y-scale, their
difference on its own scale (a trigger or PGD perturbation far below the speech level is still visible), then
the two log-magnitude spectrograms (dB relative to the pair's loudest bin, one colour scale for the pair, so a
tone or pulse shows up as a bright band that is not in the clean one).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .._io import check_output
from ..exceptions import DataError, ParameterError
from .plots import _figure, _save

__all__ = ["audio_preview"]

_MAX_COLUMNS = 4
_DYNAMIC_RANGE_DB = 80.0
_ROW_LABELS = ("clean", "watermarked", "difference\n(marked - clean)", "clean\nfrequency (Hz)",
               "watermarked\nfrequency (Hz)")


def _power_db(wave: np.ndarray) -> np.ndarray:
    """A Hann-windowed short-time power spectrum in dB, frequency x time (32 ms frames at 8 kHz, 75 % overlap)."""
    nfft = int(min(256, 2 ** np.floor(np.log2(max(len(wave), 16)))))
    hop = nfft // 4
    padded = np.pad(wave.astype(np.float64), (0, max(0, nfft - len(wave))))
    frames = np.lib.stride_tricks.sliding_window_view(padded, nfft)[::hop] * np.hanning(nfft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return 10.0 * np.log10(power.T + 1e-20)


def _waveform(ax, t: np.ndarray, wave: np.ndarray, limit: float, color: str, duration: float) -> None:
    ax.plot(t, wave, linewidth=0.5, color=color)
    ax.set_xlim(0, duration)
    ax.set_ylim(-limit, limit)


def audio_preview(originals: np.ndarray, marked: np.ndarray, path: str | os.PathLike, *, titles: Sequence[str] = (),
                  overwrite: bool = False, sample_rate: int = 8000) -> None:
    """Write a PNG comparing clean and watermarked clips (N x L float waveforms at ``sample_rate`` Hz).

    At most the first four examples are drawn; ``titles`` go above the columns. The file is written
    atomically and an existing one is kept unless ``overwrite`` (else :class:`OutputExistsError`)."""
    originals, marked = np.asarray(originals, dtype=np.float64), np.asarray(marked, dtype=np.float64)
    if originals.ndim != 2 or originals.shape != marked.shape:
        raise ParameterError(f"audio_preview needs two N x L waveform batches of one shape, got {originals.shape} "
                             f"and {marked.shape}; pad or crop the clips to one length first.")
    if originals.shape[0] == 0 or originals.shape[1] == 0:
        raise DataError(f"audio_preview got no audio to draw (shape {originals.shape}); pass at least one clip.")
    if int(sample_rate) < 1:
        raise ParameterError(f"audio_preview needs a positive sample_rate, got {sample_rate}.")
    check_output(path, overwrite=overwrite, what="picture")  # refuse before drawing, not after
    cols = min(len(originals), _MAX_COLUMNS)
    length = originals.shape[1]
    t, duration = np.arange(length) / sample_rate, length / sample_rate
    fig, axes = _figure(len(_ROW_LABELS), cols, 2.4)
    fig.set_layout_engine("constrained")  # row labels, ticks and the colour bar without overlaps
    image = None
    for j in range(cols):
        clean, mark = originals[j], marked[j]
        diff = mark - clean
        limit = max(float(np.abs(clean).max()), float(np.abs(mark).max()), 1e-3) * 1.05
        _waveform(axes[0][j], t, clean, limit, "C0", duration)
        _waveform(axes[1][j], t, mark, limit, "C1", duration)
        peak = float(np.abs(diff).max())
        _waveform(axes[2][j], t, diff, max(peak, 1e-6) * 1.05, "C3", duration)
        axes[2][j].text(0.02, 0.95, f"max |diff| = {peak:.2g}" if peak else "identical", transform=axes[2][j].transAxes,
                        fontsize=7, va="top", bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
        spectra = _power_db(clean), _power_db(mark)
        top = max(float(s.max()) for s in spectra)
        extent = (0.0, duration, 0.0, sample_rate / 2)
        for row, spectrum in zip((3, 4), spectra, strict=True):
            image = axes[row][j].imshow(spectrum - top, origin="lower", aspect="auto", extent=extent, cmap="magma",
                                        vmin=-_DYNAMIC_RANGE_DB, vmax=0.0, interpolation="nearest")
        if j < len(titles):
            axes[0][j].set_title(str(titles[j]), fontsize=9)
    for i, label in enumerate(_ROW_LABELS):
        axes[i][0].set_ylabel(label, fontsize=8)
        for ax in axes[i]:
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=8)
    fig.colorbar(image, ax=[ax for row in axes[3:] for ax in row], label="dB re. the pair's loudest bin", shrink=0.8)
    if len(originals) > cols:
        fig.suptitle(f"first {cols} of {len(originals)} clips", fontsize=9)
    _save(fig, path, overwrite)
