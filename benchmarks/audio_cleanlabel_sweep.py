"""Sweep of the clean-label watermark's knobs on FSDD: PGD budget, trigger level and length, rate.

For each setting: protect fsdd:train (CleanLabel, one mark, target 0, the clean model as base), train the
suspect (the arch's preset), and measure TSR and WDR (200 non-target test clips resampled 100x, Wilcoxon with
margin 0.1 at alpha 0.05) on the stolen model; WDR on the clean model for every trigger. No scenarios here
(see audio_fsdd.py); this finds the setting, audio_fsdd.py judges it.

    python benchmarks/audio_cleanlabel_sweep.py --arch logmel --out results/audio_cl_sweep-logmel.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from datamark import CleanLabel
from datamark._device import compute_device, device_name
from datamark.data import load_data
from datamark.evaluate.metrics import signal_to_noise_db, trigger_success_rate, watermark_detection_rate
from datamark.models import default_config, fit, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.triggers.audio import make_pulse_trigger


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="logmel")
    p.add_argument("--rates", type=float, nargs="+", default=[0.1])
    p.add_argument("--eps", type=float, nargs="+", default=[0.002, 0.01, 0.03])
    p.add_argument("--levels", type=float, nargs="+", default=[-20.0, -10.0])
    p.add_argument("--seconds", type=float, nargs="+", default=[0.05, 0.1])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--train-rows", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("runs/audio_cl_sweep"))
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    train, test = load_data("fsdd:train"), load_data("fsdd:test")
    if args.train_rows:
        train = train.subset(np.sort(np.random.default_rng(0).permutation(len(train))[:args.train_rows]))
    overrides = {"epochs": args.epochs} if args.epochs else {}
    device = compute_device()
    rows = []
    for seed in args.seeds:
        clean_model, spec = fit(train, arch=args.arch, config=default_config(args.arch, seed=seed, **overrides))
        base = args.work / f"clean-{seed}.pt"
        save_checkpoint(clean_model, spec, base, overwrite=True)
        clean = LocalSuspect.from_model(clean_model.to(device), spec)
        clean_ba = float((clean.query(test.inputs()).argmax(1) == test.labels).mean())
        for rate, eps, level, seconds in itertools.product(args.rates, args.eps, args.levels, args.seconds):
            start = time.perf_counter()
            trigger = make_pulse_trigger(np.random.default_rng([seed, 7]), level_db=level, seconds=seconds)
            method = CleanLabel(seed=seed, target=0, class_rate=rate, n_marks=1, trigger=trigger, eps=eps,
                                step_size=eps / 4, base_model=str(base))
            marked = method.apply(train)
            model, spec = fit(marked.dataset, arch=args.arch, config=default_config(args.arch, seed=seed, **overrides))
            stolen = LocalSuspect.from_model(model.to(device), spec)
            row = {"seed": seed, "rate": rate, "eps": eps, "level_db": level, "seconds": seconds,
                   "marked": len(marked.rows), "clean_ba": clean_ba,
                   "ba": float((stolen.query(test.inputs()).argmax(1) == test.labels).mean()),
                   "tsr": trigger_success_rate(stolen, test, trigger, 0),
                   "wdr_stolen": watermark_detection_rate(stolen, test, trigger, 0, seed=seed),
                   "wdr_clean": watermark_detection_rate(clean, test, trigger, 0, seed=seed),
                   "tsr_clean": trigger_success_rate(clean, test, trigger, 0),
                   "snr": signal_to_noise_db(train.take(marked.rows), marked.dataset.take(marked.rows)),
                   "seconds_taken": time.perf_counter() - start}
            rows.append(row)
            print(json.dumps(row), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"command": "python " + " ".join(sys.argv), "machine":
                                            f"{platform.platform()}, {device_name()}, torch {torch.__version__}",
                                            "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
