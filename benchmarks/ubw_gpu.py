"""UBW-C at the papers' crafting budget on a GPU, sized to a wall-clock budget; then UBW-P with longer training.

The CPU benchmark (``ubw_cifar10.py``) affords UBW-C only 24 crafting steps without surrogate retraining. On a
GPU this script first *measures* one training epoch and one crafting step, then picks the largest setting that
fits ``--budget-s``: up to the papers' 250 signAdam steps (lr 0.025) with up to 4 retrainings of the surrogate,
gamma = 0.1 (5,000 poisons). Whatever time is left goes to UBW-P with a longer training of the same model
(more epochs: does ASR-A grow with training length?). Both call ``ubw_cifar10.main``, so the results, commands,
machine and settings land in ``benchmarks/results/<name>.json`` / ``.md`` the same way as on the CPU.

    DATAMARK_DATA=/path/to/data python benchmarks/ubw_gpu.py --budget-s 480
    python benchmarks/ubw_gpu.py --smoke          # the same path on a 2,000-row slice, minutes on a CPU
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import ubw_cifar10

from datamark import load_data
from datamark._device import compute_device, device_name
from datamark.methods._gradient_matching import CraftSettings, craft, target_gradient
from datamark.models import default_config, fit

EVAL_OVERHEAD_S = 60.0   # loading, saving the watermarked set, scenario evaluation (measured as ~40-50 s on CPU)


def calibrate(train, poisons: int, batch: int = 128) -> dict[str, float]:
    """Seconds for one training epoch of fastnet on ``train`` and one crafting step over ``poisons`` images."""
    fit(train.subset(range(min(len(train), 2048))), arch="fastnet", config=default_config("fastnet", epochs=1))
    start = time.perf_counter()  # after a warm-up: CUDA start and cuDNN's algorithm search are not an epoch
    model, _ = fit(train, arch="fastnet", config=default_config("fastnet", epochs=1))
    epoch_s = time.perf_counter() - start
    images, labels = train.inputs()[:poisons], np.asarray(train.labels[:poisons])

    def grad_fn(m):
        return target_gradient(m, lambda mm, x, y: -torch.nn.functional.cross_entropy(mm(x).float(), y),
                               images[:256], labels[:256])

    craft(model, images, labels, grad_fn, CraftSettings(steps=1, batch_size=batch), seed=0)  # warm-up
    start = time.perf_counter()
    craft(model, images, labels, grad_fn, CraftSettings(steps=2, batch_size=batch), seed=0)
    step_s = (time.perf_counter() - start) / 2
    return {"epoch_s": epoch_s, "craft_step_s": step_s}


def plan_ubw_c(cal: dict[str, float], budget_s: float, epochs: int) -> tuple[int, int]:
    """(craft steps, retrain rounds): the papers' 250 and 4 if they fit, else fewer retrainings, then fewer steps."""
    for rounds in (4, 2, 1, 0):
        fixed = cal["epoch_s"] * epochs * (3 + rounds) + EVAL_OVERHEAD_S  # clean, surrogate, victim + retrains
        steps = int((budget_s - fixed) / cal["craft_step_s"])
        if steps >= 250 or (rounds == 0 and steps >= 10):
            return min(steps, 250), rounds
        if steps >= 120 and rounds <= 2:
            return steps, rounds
    raise SystemExit(f"UBW-C does not fit {budget_s:.0f} s on this machine (calibration {cal}).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=480.0, help="Wall-clock budget for everything.")
    parser.add_argument("--name", default="ubw_cifar10_gpu", help="Base name of the results files.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ubw_gpu"), help="Models and datasets.")
    parser.add_argument("--smoke", action="store_true", help="2,000 rows, 1 epoch: checks the path, no results.")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    device = compute_device()
    print(f"device: {device} ({device_name(device)}), torch {torch.__version__}", flush=True)
    train = load_data("cifar10:train")
    rows = 2000 if args.smoke else len(train)
    common = ["--work", str(args.work), "--name", args.name + ("_smoke" if args.smoke else "")]
    if args.smoke:
        common += ["--train-rows", str(rows), "--epochs", "1"]
    epochs = 1 if args.smoke else default_config("fastnet").epochs
    poisons = int(0.1 * rows)
    cal = calibrate(train.subset(range(rows)), poisons)
    print(f"calibration: {json.dumps(cal)}", flush=True)
    left = args.budget_s - (time.perf_counter() - start)
    steps, rounds = (2, 1) if args.smoke else plan_ubw_c(cal, 0.62 * left, epochs)
    print(f"UBW-C plan: {steps} steps, {rounds} retrainings, {poisons} poisons ({left:.0f} s left)", flush=True)
    ubw_cifar10.main(["--methods", "ubw-c", "--decoy-rate", "0", *common,
                      "--param", "rate=0.1", "--param", f"craft_steps={steps}", "--param", "lr=0.025",
                      "--param", f"retrain_rounds={rounds}"])
    left = args.budget_s - (time.perf_counter() - start)
    # UBW-P: a clean and a watermarked training at E epochs, plus evaluation.
    affordable = int((left - EVAL_OVERHEAD_S) / (2 * cal["epoch_s"]))
    ubw_p_epochs = 1 if args.smoke else min(40, affordable)
    print(f"UBW-P plan: {ubw_p_epochs} epochs ({left:.0f} s left)", flush=True)
    if ubw_p_epochs >= 2 * epochs or args.smoke:
        ubw_cifar10.main(["--methods", "ubw-p", "--decoy-rate", "0.1", *common[:4],
                          *(common[4:] if args.smoke else ["--epochs", str(ubw_p_epochs)])])
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
