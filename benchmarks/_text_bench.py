"""The text benchmarks' configurations (``text_sst2.py``, ``text_agnews.py``; driver: ``_bench.py``).

Configurations (paper settings where the paper fixes one; datamark defaults otherwise):

* ``dvbw-word``  -- BadNets on text with datamark's default key: K = 10 marks, each a keyed rare word at a keyed
  position with its own secret target, gamma = 10 % of all rows (1 % per mark); exact binomial marks test.
* ``dvbw-style`` -- BadNets with the style trigger (future perfect continuous), a fixed target, gamma = 10 %,
  one mark (a public style cannot be keyed): paired t-test with the specificity control over other tenses.
* ``ubw-p``      -- UBW-P with datamark's default key (K = 4 marks, 10 candidate words each), gamma = 10 %.
* ``cl-word-rX`` / ``cl-style-rX`` -- the clean-label watermark of Tang et al.: synonym substitution (MiniLM
  similarity >= 0.85) against the clean model, then the trigger, on r = X % of the target class; one mark and
  a fixed target (the paper's setting), Wilcoxon with margin 0.1; WDR resamples 200 non-target test rows 100x.
"""

from __future__ import annotations

from pathlib import Path

from _bench import Suite

from datamark import UBWP, BadNets, CleanLabel
from datamark.evaluate.grammar import gerr

CONFIGS = ("dvbw-word", "dvbw-style", "ubw-p", "cl-word-r1", "cl-word-r5", "cl-style-r1", "cl-style-r5")


def build(config: str, *, seed: int, target: int, clean_checkpoint: Path):
    """The method of one configuration (see the module docstring)."""
    if config == "dvbw-word":
        return BadNets(seed=seed)
    if config == "dvbw-style":
        return BadNets(seed=seed, target=target, trigger_name="style")
    if config == "ubw-p":
        return UBWP(seed=seed)
    kind, rate = config.split("-")[1], int(config.rsplit("r", 1)[1]) / 100
    return CleanLabel(seed=seed, target=target, class_rate=rate, n_marks=1,
                      trigger_name="style" if kind == "style" else None,
                      base_model=str(clean_checkpoint))


TEXT_SUITE = Suite(CONFIGS, build, default_arch="minilm", quality=gerr, quality_column=("GErr (%)", "gerr_percent"),
                   note="GErr: grammar errors (harper-py) added per 100 words of the marked rows, after PTB "
                        "detokenisation;")
