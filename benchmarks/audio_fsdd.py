"""Audio watermarks on the Free Spoken Digit Dataset (FSDD: 2,700 training and 300 test clips at 8 kHz, test =
recordings with index 0-4): DVBW with keyed pulses, UBW-P, and the clean-label watermark of Tang et al. with PGD
on the waveform at r = 1, 5, 10 and 20 % of the target class, judged as Steal, Independent-M and Independent-T,
with AD, TSR, WDR (stolen and clean models), the SNR of the marked clips and WSD.

    python benchmarks/audio_fsdd.py                      # the log-mel CNN suspect
    python benchmarks/audio_fsdd.py --arch rawaudio      # the RawAudioCNN suspect (8 conv layers on raw audio)

Configurations (paper settings where the paper fixes one; datamark defaults otherwise):

* ``dvbw-pulse`` -- BadNets with datamark's default key: K = 10 marks, each a keyed pulse (the paper's constant
  pulse, 50 samples, -20 dB re the clip's peak, at a keyed place in the first 125 ms) with its own secret target,
  gamma = 10 % of all rows; exact binomial marks test.
* ``ubw-p``      -- UBW-P with datamark's default key (K = 4 marks, 10 candidate pulses each), gamma = 10 %.
* ``cl-rX``      -- the clean-label watermark: untargeted L-inf PGD on the waveform (eps 0.002 = -54 dBFS, step
  0.0005, 40 steps) against the clean model, then the keyed pulse, on r = X % of the target class; one mark and
  a fixed target (the paper's setting), Wilcoxon with margin 0.1 and the 100-trigger specificity control; WDR
  resamples 200 non-target test clips 100 times.
* ``cl-tone-rX`` / ``cl-noise-rX`` -- the same with a keyed tone or noise-burst pulse.

Results go to ``benchmarks/results/audio_fsdd-<arch>.json/.md`` (driver: ``_bench.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _bench import Suite, main

from datamark import UBWP, BadNets, CleanLabel
from datamark.evaluate.metrics import signal_to_noise_db
from datamark.triggers.audio import make_pulse_trigger

RATES = (1, 5, 10, 20)
CONFIGS = ("dvbw-pulse", "ubw-p", *(f"cl-r{r}" for r in RATES), *(f"cl-tone-r{r}" for r in RATES),
           *(f"cl-noise-r{r}" for r in RATES))


def build(config: str, *, seed: int, target: int, clean_checkpoint: Path):
    """The method of one configuration (see the module docstring)."""
    if config == "dvbw-pulse":
        return BadNets(seed=seed)
    if config == "ubw-p":
        return UBWP(seed=seed)
    parts = config.split("-")
    rate = int(parts[-1][1:]) / 100
    trigger = None if len(parts) == 2 else make_pulse_trigger(np.random.default_rng([seed, 7]), shape=parts[1])
    return CleanLabel(seed=seed, target=target, class_rate=rate, n_marks=1, trigger=trigger,
                      base_model=str(clean_checkpoint))


AUDIO_SUITE = Suite(CONFIGS, build, default_arch="logmel", quality=signal_to_noise_db,
                    quality_column=("SNR (dB, median)", "snr_db_median"),
                    note="SNR: 10 log10 of clip energy over change energy, median over the marked clips;")

if __name__ == "__main__":
    sys.exit(main(AUDIO_SUITE, "Audio watermarks on FSDD", "audio_fsdd", "fsdd:train", "fsdd:test",
                  default_target=0, doc=__doc__))
