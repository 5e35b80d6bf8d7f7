"""Watermark survival on CIFAR-10: each thief countermeasure against each default watermark, with the thief's
accuracy cost beside the p-value (issue 15).

Stage ``models`` (resumable, checkpoints in ``--work``): protect CIFAR-10 with each method's recommended
default (multi-mark keys, cross-trigger decoys 0.1 where the README recommends them) and train the thief's
fastnet (10 epochs, all 50,000 rows) on it, plus one clean fastnet (Independent-M and the clean-label base).
Stage ``attacks``: every countermeasure of the sweep applied to every stolen model *and* to the clean model (a
countermeasure must not make an innocent model look guilty), re-verified with the owner's key; results JSON +
Markdown + the trade-off plot (thief accuracy cost against log10 p) in ``benchmarks/results/``.

The thief's own clean data (fine-tuning, fine-pruning, distillation) is the unmarked originals of
``--thief-rows`` training rows drawn with ``--seed``: same distribution, never the owner's marked copies.
BA and verification probes come from the CIFAR-10 test split, which no attack trains on.

    python benchmarks/robustness_cifar10.py --stage models --methods badnets   # ~40 min on 2 CPU cores
    python benchmarks/robustness_cifar10.py --stage attacks --methods badnets
    python benchmarks/robustness_cifar10.py --stage report     # the Markdown and the plot again, from the JSON

One process per method may run at once on a GPU (``benchmarks/robustness_gpu.sh``): each merges its own rows
into the shared results JSON under a file lock. ``--train-rows`` / ``--test-rows`` / ``--epochs`` shrink
everything for a smoke run of the code paths (not a result).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from calibration_cifar10 import write_atomic

from datamark import UBWP, BadNets, Blended, CleanLabel, __version__, load_data
from datamark._device import device_name
from datamark.evaluate.report import clean_accused, survival_table
from datamark.key import Key
from datamark.methods.presets import PRESETS
from datamark.models import default_config, fit, load_checkpoint, save_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def build_method(name: str, seed: int, clean_checkpoint: Path):
    """Each method's recommended default (README): multi-mark keys; decoys 0.1 for DVBW and UBW-P."""
    if name == "badnets":
        return BadNets(seed=seed, decoy_rate=0.1)
    if name == "blended":
        return Blended(seed=seed, decoy_rate=0.1)
    if name == "blended-mosaic":  # a keyed texture of 4-px tiles: low-frequency, measured against JPEG and blur
        return Blended(seed=seed, decoy_rate=0.1, pattern="mosaic")
    if name == "badnets-blocks":  # an 8 x 8 patch of 2 x 2 flat tiles, one JPEG block: measured against JPEG
        return BadNets(seed=seed, decoy_rate=0.1, pattern="blocks", trigger_size=8)
    if name == "badnets-blocks-confusion":  # the same, plus the trigger-free confusion channel (5 % of each class)
        return BadNets(seed=seed, decoy_rate=0.1, pattern="blocks", trigger_size=8, confusion_rate=0.05)
    if name == "badnets-blocks-confusion10":  # twice the relabelled rows (more than a 5 % loss filter removes):
        return PRESETS["robust"].build(seed=seed)  # the preset datamark protect --preset robust writes
    if name == "badnets-blocks-confusion10-ambiguous":  # the preset, its relabelled rows the most partner-like
        return PRESETS["robust"].build(seed=seed, confusion_choice="partner-like", base_model=str(clean_checkpoint))
    if name == "ubw-p":
        return UBWP(seed=seed, labels="other", trigger_size=6, decoy_rate=0.1)
    if name == "clean-label":
        return CleanLabel(seed=seed, base_model=str(clean_checkpoint))
    raise SystemExit(f"unknown method '{name}'")


METHODS = ("badnets", "badnets-blocks", "badnets-blocks-confusion", "badnets-blocks-confusion10",
           "badnets-blocks-confusion10-ambiguous", "blended", "blended-mosaic", "ubw-p", "clean-label")

# The strength sweep of each countermeasure (NAME:PARAM=VALUE, parsed by datamark.evaluate.attacks). Groups can be
# chosen with --attacks; "query" and "model" are the default, "data" and "training" retrain the thief's model
# from the released data (one full training each).
SWEEP = {
    "query": ["jpeg:quality=90", "jpeg:quality=75", "jpeg:quality=50", "jpeg:quality=30", "blur:sigma=0.5",
              "blur:sigma=1.0", "median:size=3", "bit-depth:bits=5", "bit-depth:bits=4", "bit-depth:bits=3",
              "round:decimals=2", "round:decimals=1", "top1", "logit-noise:sigma=0.5", "logit-noise:sigma=1.0",
              "logit-noise:sigma=2.0"],
    "model": ["fine-tune:lr=0.001,rows=5000", "fine-tune:lr=0.01,rows=5000", "fine-tune:lr=0.05,rows=5000",
              "fine-prune:prune=0.5", "fine-prune:prune=0.8", "distill:rows=5000",
              "distill:rows=20000", "fine-tune:lr=0.01,rows=5000+distill:rows=20000",
              "fine-tune:lr=0.05,rows=5000+distill:rows=20000",
              "own-data:rows=20000"],  # no theft: the thief's own rows alone, the cost the others are read against
    "data": ["loss-filter:fraction=0.05", "spectral-signatures:eps=0.1", "strip:fraction=0.05"],
    "training": ["mixup:alpha=1.0", "cutmix:alpha=1.0", "label-smoothing:smoothing=0.3", "adversarial-training:eps=8",
                 "dp-sgd:noise=1.0"],
}


def same_release(remade: Key, saved: Key) -> bool:
    """Whether re-protecting with the saved key's seed gave the saved key's release: the same secret, marks, changed
    rows and watermarked dataset (its fingerprint covers every input and label). The rest of the key may differ: the
    time it was made, its verification plan (a later default may ask more probes; verification reads the saved
    key's plan), and what it records about how rows were chosen (a key written before ``confusion_choice`` existed
    does not name it)."""
    ids = ("decoy_ids", "confusion_ids")
    return (remade.secret == saved.secret and remade.marks == saved.marks and remade.marked_ids == saved.marked_ids
            and remade.dataset == saved.dataset and all(remade.extra.get(k) == saved.extra.get(k) for k in ids))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def train_or_load(path: Path, data, args) -> tuple:
    """The checkpoint at ``path``, or the thief's fastnet trained on ``data`` and saved there."""
    if path.exists():
        return load_checkpoint(path)
    start = time.perf_counter()
    config = default_config("fastnet", seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    widths = {"widths": tuple(args.widths)} if args.widths else {}
    model, spec = fit(data, arch="fastnet", config=config, progress=args.progress, **widths)
    seconds = time.perf_counter() - start
    save_checkpoint(model, spec, path, overwrite=True, extra={"train_s": seconds})
    log(f"trained {path.name} in {seconds:.0f} s")
    return model, spec


def load_split(split: str, rows: int | None):
    """``cifar10:<split>``, or its first ``rows`` rows (the parquet rows are shuffled once: a fair prefix)."""
    data = load_data(f"cifar10:{split}")
    return data.subset(range(min(rows, len(data)))) if rows else data


@contextlib.contextmanager
def locked_results(path: Path):
    """The results JSON as a dict, under an exclusive lock held until the block ends; written back atomically.
    Several processes (one per method) merge their rows into one file this way without losing each other's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = json.loads(path.read_text()) if path.exists() else {"methods": {}}
        yield result
        write_atomic(path, json.dumps(result, indent=1, default=str) + "\n")


def stage_models(args) -> dict:
    """Train the clean model and each method's stolen one (skipping saved ones); the released datasets made
    here, by method, so that data- and training-side attacks in the same process need not protect again."""
    released = {}
    train = load_split("train", args.train_rows)
    clean_path = args.work / "clean.pt"
    train_or_load(clean_path, train, args)
    for name in args.methods:
        key_path = args.work / f"{name}.key.json"
        stolen_path = args.work / f"{name}-stolen.pt"
        if stolen_path.exists() and key_path.exists():
            continue
        start = time.perf_counter()
        marked = build_method(name, args.seed, clean_path).apply(train)
        marked.key.save(key_path, overwrite=True)
        released[name] = (marked.dataset, marked.rows)
        log(f"{name}: marked {len(marked.rows)} rows in {time.perf_counter() - start:.0f} s "
            f"(key {Key.load(key_path).commitment[:16]}…)")
        train_or_load(stolen_path, marked.dataset, args)
    return released


def stage_attacks(args, released_by_method: dict | None = None) -> None:
    """Every countermeasure of the chosen groups on every stolen model and the clean control; rows are written
    to the results JSON as they are measured (an interrupted sweep keeps them; a rerun skips finished rows)."""
    from datamark.evaluate.attacks import parse_attack
    from datamark.evaluate.robustness import survival

    out_json = args.results / f"{args.name}.json"
    train = load_split("train", args.train_rows)
    test = load_split("test", args.test_rows)
    rng = np.random.default_rng(args.seed)
    thief = train.subset(np.sort(rng.choice(len(train), size=min(args.thief_rows, len(train)), replace=False)))
    clean = load_checkpoint(args.work / "clean.pt")
    specs = args.only or [spec for group in args.attacks for spec in SWEEP[group]]
    meta = dict(command="python benchmarks/robustness_cifar10.py " + " ".join(sys.argv[1:]),
                environment=f"{platform.platform()}, {device_name()}, {torch.get_num_threads()} torch threads, "
                            f"torch {torch.__version__}, datamark {__version__}",
                seed=args.seed, thief_rows=args.thief_rows, model=model_description(args),
                note="thief data: unmarked originals of --thief-rows training rows; BA and probes: the test split")
    with locked_results(out_json) as result:
        result.update(meta if not result.get("command") else {})
        entries = {name: result["methods"].get(name) for name in args.methods}
    for name in args.methods:
        key = Key.load(args.work / f"{name}.key.json")
        entry = entries[name] or {"commitment": key.commitment, "rows": []}
        entry["command"] = meta["command"]
        done = {(r["label"], r["model"]) for r in entry["rows"]}
        todo = [a for a in (parse_attack(s) for s in specs) if (a.label, "stolen") not in done]
        released, marked_rows = (released_by_method or {}).get(name, (None, None))
        if released is None and any(a.kind in ("data", "training") for a in todo):
            remade = build_method(name, args.seed, args.work / "clean.pt").apply(train)  # protect is seeded
            if not same_release(remade.key, key):
                raise SystemExit(f"{name}: re-protecting with seed {args.seed} gave another key; delete the run")
            released, marked_rows = remade.dataset, remade.rows

        def on_row(row, entry=entry, done=done, name=name) -> None:
            if (row.label, row.model) in done:
                return
            entry["rows"].append(row.to_dict())
            done.add((row.label, row.model))
            with locked_results(out_json) as result:
                result["methods"][name] = entry
            log(f"{name}: {row.label} on {row.model}: BA {100 * row.ba:.2f} % (cost {row.cost_points:+.2f} pt), "
                f"p = {row.verdict.outcome.p_value:.3g}")

        survival(key, todo, test, stolen=load_checkpoint(args.work / f"{name}-stolen.pt"), clean=clean,
                 thief_data=thief, released=released, seed=args.seed, progress=args.progress, on_row=on_row,
                 clean_kinds=args.clean_for, marked_rows=marked_rows)
    stage_report(args)


def model_description(args) -> str:
    """The thief's model in words, for the results: fastnet, its stage widths where narrowed, and its epochs."""
    widths = f" (stage widths {', '.join(map(str, args.widths))})" if args.widths else ""
    return f"fastnet{widths}, {args.epochs or default_config('fastnet').epochs} epochs"


def stage_report(args) -> None:
    """The Markdown table and the trade-off plot, from whatever rows the results JSON holds."""
    from datamark.evaluate.plots import tradeoff_plot

    out_json = args.results / f"{args.name}.json"
    with locked_results(out_json) as result:
        series = {n: m["rows"] for n, m in result["methods"].items()}
        tradeoff_plot(series, args.results / f"{args.name}.png", alpha=0.01, overwrite=True)
        write_atomic(args.results / f"{args.name}.md", markdown(result))


def markdown(result: dict) -> str:
    model = result.get("model", "fastnet, 10 epochs")
    lines = [f"# Watermark survival on CIFAR-10 ({model})", "", f"Command: `{result['command']}`", "",
             f"Machine: {result['environment']}", "", f"Seed {result['seed']}; {result['note']}.", "",
             "A watermark survives a countermeasure when the stolen model is still accused (p < 0.01, probability "
             "mode where the API returns probabilities, else label-only). The clean model must stay not accused "
             "under the same countermeasure. Cost: the thief's benign-accuracy loss in points (on the purified "
             "API for query-side attacks).", ""]
    lines += ["## Survival at a glance", "", summary_table(result), ""]
    for name, entry in result["methods"].items():
        lines += [f"## {name} (key `{entry['commitment'][:16]}…`)", "",
                  f"Command: `{entry.get('command', result['command'])}`", "", survival_table(entry["rows"]), ""]
    return "\n".join(lines) + "\n"


def summary_table(result: dict) -> str:
    """Countermeasures down, methods across: does the stolen model stay accused (p < 0.01), at what cost to the
    thief, and was the clean model under the same countermeasure ever accused (then the cell says so)."""
    methods = list(result["methods"])
    cells: dict[str, dict[str, str]] = {}
    for name in methods:
        rows = {(r["label"], r["model"]): r for r in result["methods"][name]["rows"]}
        for (label, model), row in rows.items():
            if model != "stolen":
                continue
            p = row["p_probs"] if row["p_probs"] is not None else row["p_labels"]
            clean = rows.get((label, "clean"))
            cell = f"{'✔' if row['accused'] else '✘'} {p:.2g} ({row['cost_points']:+.1f})"
            flag = clean_accused(clean) if clean else "no"
            cells.setdefault(label, {})[name] = cell + (f" clean accused: {flag}" if flag != "no" else "")
    lines = ["| countermeasure | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(by.get(n, "–") for n in methods) + " |" for label, by in cells.items()]
    return ("✔ the stolen model is still accused (p < 0.01) / ✘ not; p in probability mode where the API returns "
            "probabilities; in brackets the thief's accuracy cost in points.\n\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("models", "attacks", "all", "report"), default="all")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "robustness_cifar10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thief-rows", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--attacks", nargs="+", choices=tuple(SWEEP), default=["query", "model"])
    parser.add_argument("--name", default="robustness_cifar10", help="results file stem")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the results files")
    parser.add_argument("--train-rows", type=int, help="first N training rows only (a smoke run)")
    parser.add_argument("--test-rows", type=int, help="first N test rows only (a smoke run)")
    parser.add_argument("--epochs", type=int, help="fastnet epochs (default: the preset's 10)")
    parser.add_argument("--widths", type=int, nargs=3, metavar=("W1", "W2", "W3"),
                        help="fastnet stage widths (default: 64 128 256); 32 64 128 trains ~2.7x faster on a CPU")
    parser.add_argument("--only", nargs="+", help="run these NAME:PARAM=VALUE attacks instead of the groups")
    parser.add_argument("--clean-for", nargs="*", default=["query", "model"], choices=("query", "model"),
                        help="kinds of attack also applied to the clean model (the false-accusation control)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    released = stage_models(args) if args.stage in ("models", "all") else {}
    if args.stage in ("attacks", "all"):
        stage_attacks(args, released)
    if args.stage == "report":
        stage_report(args)


if __name__ == "__main__":
    main(sys.argv[1:])
