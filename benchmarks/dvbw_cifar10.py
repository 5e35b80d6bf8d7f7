"""DVBW on CIFAR-10 (BadNets and Blended): the scenario table, the BA drop and the protection speed.

Every setting of a row lives in an experiment file (``benchmarks/experiments/``): the paper's setting on the fast
CPU model (``dvbw-cifar10.toml``, the default: `fastnet`, 10 epochs, all 50,000 training images from
``$DATAMARK_DATA/cifar10``), with cross-trigger decoys (``dvbw-cifar10-decoys.toml``), or the paper's ResNet-18
for 200 epochs (``dvbw-cifar10-paper.toml``, needs a GPU). This script adds the protection speed and the checks
against the issue's targets. Writes ``benchmarks/results/NAME.json`` and ``.md``; models and datasets go to
``--work`` (not the repo).

    python benchmarks/dvbw_cifar10.py                 # about 30 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from datamark import BadNets, load_data
from datamark.evaluate.experiment_file import ExperimentFile, run_experiment_file

RESULTS = Path(__file__).resolve().parent / "results"
EXPERIMENTS = Path(__file__).resolve().parent / "experiments"
TARGETS = {"ba_drop_points_max": 1.5, "wsr_min": {"badnets": 0.95, "blended": 0.90}, "steal_p_probs_max": 1e-3,
           "steal_p_labels_max": 0.01, "independent_p_min": 0.05}


def protect_speed(seed: int) -> dict:
    """Wall time to protect all 50,000 training images with BadNets: read, mark, write (Parquet)."""
    start = time.perf_counter()
    records = load_data("cifar10:train")
    marked = BadNets(seed=seed, target=5).apply(records)
    with tempfile.TemporaryDirectory() as tmp:
        marked.dataset.save(Path(tmp) / "wm.parquet")
    return {"rows": len(records), "marked": len(marked.rows), "seconds": time.perf_counter() - start}


def check(report: dict) -> dict:
    """Each target of the issue, measured against this run."""
    out = {}
    for name, m in report["methods"].items():
        rows = {r["scenario"]: r for r in m["scenarios"]}
        out[name] = {
            "ba_drop_ok": m["ba_drop_points"] <= TARGETS["ba_drop_points_max"],
            "wsr_ok": rows["Steal"]["wsr"] >= TARGETS["wsr_min"][name],
            "steal_probs_ok": rows["Steal"]["probs"]["outcome"]["p_value"] < TARGETS["steal_p_probs_max"],
            "steal_labels_ok": rows["Steal"]["labels"]["outcome"]["p_value"] < TARGETS["steal_p_labels_max"],
            "independent_ok": all(rows[s][mode]["outcome"]["p_value"] >= TARGETS["independent_p_min"]
                                  for s in ("Independent-M", "Independent-T") for mode in ("probs", "labels")),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", type=Path, default=EXPERIMENTS / "dvbw-cifar10.toml",
                        help="The experiment file of the row (default: the paper's setting on the CPU model).")
    parser.add_argument("--epochs", type=int, default=None, help="Override the file's epochs (a deviation).")
    parser.add_argument("--clean-checkpoint", type=Path, default=None,
                        help="Reuse this clean model (same arch/config) instead of training one.")
    parser.add_argument("--skip-speed", action="store_true", help="Skip the protection-speed measurement.")
    parser.add_argument("--work", type=Path, default=None, help="Models and datasets (default: runs/NAME).")
    parser.add_argument("--name", default=None, help="Base name of the results files (default: the file's name "
                        "with '-' as '_').")
    args = parser.parse_args(argv)

    spec = ExperimentFile.load(args.experiment)
    if args.epochs:
        spec = replace(spec, training={**spec.training, "epochs": args.epochs})
    name = args.name or spec.name.replace("-", "_")
    config = spec.train_config()
    speed = {"rows": 0, "marked": 0, "seconds": float("nan")} if args.skip_speed else protect_speed(spec.seed)
    print(f"protect speed: {speed['rows']} images ({speed['marked']} marked) in {speed['seconds']:.1f} s", flush=True)
    report = run_experiment_file(spec, out_dir=args.work or Path("runs") / name, overwrite=True,
                                 log=lambda m: print(m, flush=True), clean_checkpoint=args.clean_checkpoint)
    result = report.to_dict()
    result["protect_speed"] = speed
    result["targets"] = TARGETS
    result["checks"] = check(result)
    args_text = argv if argv is not None else sys.argv[1:]
    result["command"] = "python " + " ".join(["benchmarks/dvbw_cifar10.py", *args_text])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# {spec.description} ({spec.arch}, {config.epochs} epochs)\n", f"Experiment file: "
          f"`{args.experiment.name}` (sha256 {spec.sha256[:16]}…)\n", f"Command: `{result['command']}`\n",
          "Machine: {platform}, {cpu_threads} threads, torch {torch}\n".format(**result["settings"]["environment"]),
          f"Protect speed (BadNets, all {speed['rows']} images, read + mark + write): {speed['seconds']:.1f} s\n",
          f"Training time: clean model {report.clean_train_s:.0f} s"
          + "".join(f", {n} {m.train_s:.0f} s" for n, m in report.methods.items()) + "\n", report.markdown(),
          "\nChecks against the issue's targets: " + json.dumps(result["checks"]) + "\n"]
    (RESULTS / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
