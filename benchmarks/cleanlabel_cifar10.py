"""Clean-label watermark (Tang et al. 2023) on CIFAR-10: AD, TSR, WDR, WSD, transferability and cost.

The run plan, three parts at three prices (each clearly labelled in the output):

* **main** (the full setting): class_rate r = 10 % of the target class, both triggers (colourful patch, mosaic
  blend); FastNet at its preset (10 epochs) on all 50,000 training images. The base model that PGD crafts against
  and the AD / clean-model reference is ``--clean-checkpoint`` (e.g. ``runs/dvbw_cifar10/clean.pt``). 2 trainings.
* **sweep** (cheaper): r in ``--rates`` for both triggers, FastNet for ``--sweep-epochs`` (4) on all rows, against
  a clean FastNet trained the same way (AD and WDR reference). 1 + 2 x len(rates) trainings.
* **transfer** (cheaper): perturb with architecture A (a clean A is the base model), train the suspect with B, for
  A, B in ``--transfer-archs`` (fastnet, vgg11, resnet20); patch trigger, r = 10 %, ``--transfer-rows`` (20,000)
  rows, ``--transfer-epochs`` (4). The clean A models double as the clean references. n + n^2 trainings.

Plus PGD images/s and the protect wall time (base model loaded) for r = 10 % of one class. Trained models are
cached in ``--work`` (keyed by data fingerprint and settings), so an interrupted run resumes.

    python benchmarks/cleanlabel_cifar10.py --clean-checkpoint runs/dvbw_cifar10/clean.pt   # ~75-110 min, 2 cores
    python benchmarks/cleanlabel_cifar10.py --smoke                                          # < 1 min

The matrix can be measured a few cells at a time (``--transfer-cells A:B ...``, on whatever machine is free) and
composed afterwards, training nothing and refusing cells of another setting:

    python benchmarks/cleanlabel_cifar10.py --transfer-rows 50000 --transfer-epochs 15 --name MATRIX \\
        --merge benchmarks/results/RUN1.json benchmarks/results/RUN2.transfer-partial.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from calibration_cifar10 import write_atomic

from datamark import CleanLabel, load_data
from datamark.data.records import Records
from datamark.evaluate.detectors import run_detectors
from datamark.evaluate.experiment import environment
from datamark.evaluate.metrics import (
    accuracy_drop,
    benign_accuracy,
    trigger_success_rate,
    watermark_detection_rate,
)
from datamark.evaluate.scenarios import evaluate_scenarios
from datamark.models import default_config, fit, load_checkpoint, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.triggers import Trigger
from datamark.verify import Verifier

RESULTS = Path(__file__).resolve().parent / "results"
TRIGGERS = ("patch", "blend")
ARCHS = ("fastnet", "vgg11", "resnet20")  # the transferability matrix's architectures
# Tang et al. 2023 (arXiv 2303.11470): the abstract's claim is that 1 % watermarking samples suffice to inject a
# traceable watermark with a small accuracy impact; their per-setting CIFAR-10 table was not available offline
# when this script was written, so its cells are left empty rather than quoted from memory.
PAPER = {"source": "Tang et al., SIGKDD Explorations 2023 (arXiv 2303.11470)",
         "claim": "1 % watermarking samples suffice for a traceable watermark; small accuracy impact",
         "table": None}


class Runner:
    """Trains (or loads from the cache in ``work``) and evaluates; every number goes through the library."""

    def __init__(self, args: argparse.Namespace, test: Records) -> None:
        self.args, self.test, self.work = args, test, Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)

    def log(self, message: str) -> None:
        print(message, flush=True)

    def model(self, name: str, data: Records, arch: str, epochs: int | None) -> tuple[Any, Any, float]:
        """(model, spec, train seconds) of ``arch`` trained on ``data``; cached by fingerprint and settings."""
        config = default_config(arch, seed=self.args.seed, **({"epochs": epochs} if epochs else {}))
        settings = {"arch": arch, "epochs": config.epochs, "rows": len(data), "seed": self.args.seed,
                    "data": data.fingerprint}
        path = self.work / f"{name}.pt"
        if path.exists():
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("extra", {}).get("settings") == settings:
                model, spec = load_checkpoint(path)
                self.log(f"  {name}: cached ({payload['extra']['train_s']:.0f} s when trained)")
                return model, spec, float(payload["extra"]["train_s"])
        self.log(f"  {name}: training {arch}, {config.epochs} epochs on {len(data)} images")
        start = time.perf_counter()
        model, spec = fit(data, arch=arch, config=config, progress=self.args.progress)
        train_s = time.perf_counter() - start
        save_checkpoint(model, spec, path, overwrite=True, extra={"settings": settings, "train_s": train_s})
        self.log(f"  {name}: trained in {train_s:.0f} s")
        return model, spec, train_s

    def watermark_metrics(self, suspect: LocalSuspect, trigger: Trigger, target: int) -> dict[str, float]:
        return {"tsr": trigger_success_rate(suspect, self.test, trigger, target),
                "wdr": watermark_detection_rate(suspect, self.test, trigger, target, draws=self.args.wdr_draws,
                                                seed=self.args.seed)}

    def setting(self, label: str, train: Records, method: CleanLabel, *, arch: str, epochs: int | None,
                clean: LocalSuspect, clean_ba: float, detectors: bool, scenarios: bool = False) -> dict[str, Any]:
        """Protect ``train`` with ``method``, train ``arch`` on it, and measure everything against ``clean``."""
        start = time.perf_counter()
        marked = method.apply(train)
        protect_s = time.perf_counter() - start
        key, trigger = marked.key, Trigger.from_config(marked.key.trigger)
        model, spec, train_s = self.model(label, marked.dataset, arch, epochs)
        suspect = LocalSuspect.from_model(model, spec)
        ba = benign_accuracy(suspect, self.test)
        row = {"setting": label, "class_rate": method.class_rate, "trigger": method.trigger_kind, "arch": arch,
               "base_model": key.extra["base_model"], "target": key.target, "marked_rows": len(marked.rows),
               "target_class_rows": key.extra["target_class_rows"], "protect_s": protect_s,
               "pgd_images_per_s": key.extra["pgd_images_per_s"], "train_s": train_s, "ba": ba, "clean_ba": clean_ba,
               "ad_points": accuracy_drop(clean_ba, ba), **self.watermark_metrics(suspect, trigger, key.target),
               "clean_model": self.watermark_metrics(clean, trigger, key.target)}
        if detectors:
            data = marked.dataset
            row["wsd"] = run_detectors(model, data.inputs(), data.labels, marked.rows,
                                       poison_fraction=len(marked.rows) / key.extra["target_class_rows"],
                                       ae_epochs=self.args.ae_epochs, seed=self.args.seed)
        if scenarios:
            row["scenarios"] = [r.to_dict() for r in evaluate_scenarios(
                key, suspect, clean, self.test, seed=self.args.seed,
                verifier=Verifier(seed=self.args.seed, n_control_triggers=0))]  # published rows: the paper's test
        self.log(f"  {label}: BA {100 * ba:.2f} % (AD {row['ad_points']:+.2f}), TSR {100 * row['tsr']:.1f} %, "
                 f"WDR {100 * row['wdr']:.0f} % (clean model: TSR {100 * row['clean_model']['tsr']:.1f} %, "
                 f"WDR {100 * row['clean_model']['wdr']:.0f} %)")
        return row


def method(args: argparse.Namespace, rate: float, trigger: str, base: str) -> CleanLabel:
    return CleanLabel(seed=args.seed, target=args.target, class_rate=rate, trigger_kind=trigger, base_model=base,
                      decoy_rate=args.decoy_rate)


def suffix(args: argparse.Namespace) -> str:
    """Setting-name suffix of runs with decoys (kept apart from the paper's setting in the results)."""
    return f"-decoys{args.decoy_rate:g}" if args.decoy_rate else ""


def main_part(runner: Runner, train: Records, args: argparse.Namespace) -> tuple[list[dict], str]:
    """r = 10 %, both triggers, the full setting; the clean checkpoint is base model and reference."""
    runner.log("main: the full setting")
    clean_path = args.clean_checkpoint
    if clean_path is None:
        runner.model("clean-main", train, "fastnet", args.epochs)
        clean_path = runner.work / "clean-main.pt"
    model, spec = load_checkpoint(clean_path)
    clean = LocalSuspect.from_model(model, spec)
    clean_ba = benign_accuracy(clean, runner.test)
    rows = [runner.setting(f"main-{t}-r{args.main_rate:g}{suffix(args)}", train,
                           method(args, args.main_rate, t, str(clean_path)), arch="fastnet", epochs=args.epochs,
                           clean=clean, clean_ba=clean_ba, detectors=True,
                           scenarios=True) for t in args.triggers]
    return rows, str(clean_path)


def sweep_part(runner: Runner, train: Records, args: argparse.Namespace, base: str) -> list[dict]:
    runner.log(f"sweep: {args.sweep_epochs} epochs (cheaper than the main setting)")
    model, spec, _ = runner.model("clean-sweep", train, "fastnet", args.sweep_epochs)
    clean = LocalSuspect.from_model(model, spec)
    clean_ba = benign_accuracy(clean, runner.test)
    return [runner.setting(f"sweep-{t}-r{r:g}{suffix(args)}", train, method(args, r, t, base), arch="fastnet",
                           epochs=args.sweep_epochs, clean=clean, clean_ba=clean_ba, detectors=True)
            for r in args.rates for t in args.triggers]


def transfer_part(runner: Runner, train: Records, args: argparse.Namespace) -> list[dict]:
    subset = train.subset(range(min(args.transfer_rows, len(train))))
    cells = transfer_cells(args)
    runner.log(f"transfer: {len(subset)} rows, {args.transfer_epochs} epochs, cells "
               f"{', '.join(f'{a}->{b}' for a, b in cells)}")
    bases = {}
    for arch in dict.fromkeys(arch for cell in cells for arch in cell):
        model, spec, _ = runner.model(f"clean-transfer-{arch}", subset, arch, args.transfer_epochs)
        suspect = LocalSuspect.from_model(model, spec)
        bases[arch] = (str(runner.work / f"clean-transfer-{arch}.pt"), suspect, benign_accuracy(suspect, runner.test))
    rows = []
    for a, b in cells:
        _, clean_b, ba_b = bases[b]
        rows.append(runner.setting(f"transfer-{a}-to-{b}{suffix(args)}", subset,
                                   method(args, args.main_rate, "patch", bases[a][0]),
                                   arch=b, epochs=args.transfer_epochs, clean=clean_b, clean_ba=ba_b,
                                   detectors=False) | {"perturb_arch": a, "suspect_arch": b, **transfer_setting(args)})
        # Each cell as it is measured: an interrupted matrix keeps the cells it has (merged at the end).
        write_atomic(args.results / f"{args.name}.transfer-partial.json", json.dumps(rows, indent=2, default=float))
    return rows


def transfer_cells(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (perturbing, suspect) architecture pairs to measure: ``--transfer-cells`` (``A:B`` each), or every pair
    of ``--transfer-archs``; a malformed or unknown pair is refused in one line."""
    if not args.transfer_cells:
        return [(a, b) for a in args.transfer_archs for b in args.transfer_archs]
    cells = []
    for text in args.transfer_cells:
        a, sep, b = text.partition(":")
        if not sep or a not in ARCHS or b not in ARCHS:
            raise SystemExit(f"--transfer-cells: {text!r} is not PERTURB:SUSPECT with both in {', '.join(ARCHS)}; "
                             f"for example fastnet:resnet20.")
        cells.append((a, b))
    return cells


def pct(value: float) -> str:
    """A fraction as a percentage with one decimal, as every table of this script shows it."""
    return f"{100 * value:.1f}"


def markdown(result: dict[str, Any]) -> str:
    where = "SMOKE RUN: not a result" if result["smoke"] else result["environment"].get("device", "cpu")
    lines = [f"# Clean-label watermark on CIFAR-10 ({where})\n",
             "Commands: " + "; ".join(f"{part}: `{cmd}`" for part, cmd in result.get(
                 "commands", {"all": result["command"]}).items()) + "\n",
             "Machine: {platform}, {cpu_threads} threads, torch {torch}\n".format(
                 **result["environment"]),
             "r = class_rate, a fraction of the target class (10 % of 5,000 = 500 images = 1 % of the training set). "
             "TSR and WDR on the watermarked model, and in brackets on a clean model of the same setting "
             "(it must stay near 0). WDR: 100 draws of 200 non-target test images, Wilcoxon, tau 0.1, alpha 0.05.\n"]
    head = ("| setting | r | trigger | marked | BA % | AD pts | TSR % | WDR % | " + " | ".join(
        f"{d} R/P %" for d in ("confidence", "autoencoder", "spectral-signatures", "activation-clustering")) + " |")
    for part, title in (("main", "Main (full setting: FastNet, preset epochs, all rows)"),
                        ("main_decoys", "Main with decoys (other random triggers on 10 % of rows, labels kept)"),
                        ("sweep", "Rate sweep (cheaper setting: fewer epochs)"),
                        ("sweep_decoys", "Rate sweep with decoys (cheaper setting)")):
        if not result.get(part):
            continue
        lines += [f"## {title}\n", head, "|" + "---|" * 12]
        for r in result[part]:
            wsd = " | ".join(f"{pct(r['wsd'][d]['recall'])}/{pct(r['wsd'][d]['precision'])}" for d in
                             ("confidence", "autoencoder", "spectral-signatures", "activation-clustering"))
            lines.append(f"| {r['setting']} | {pct(r['class_rate'])} | {r['trigger']} | {r['marked_rows']} | "
                         f"{pct(r['ba'])} | {r['ad_points']:+.2f} | {pct(r['tsr'])} ({pct(r['clean_model']['tsr'])}) | "
                         f"{pct(r['wdr'])} ({pct(r['clean_model']['wdr'])}) | {wsd} |")
        lines.append("")
        with_scenarios = [r for r in result[part] if r.get("scenarios")]
        if with_scenarios:
            lines += ["Scenarios (p-values, probs: Wilcoxon with margin 0.1; labels: exact binomial, tau 0.1):\n",
                      "| setting | Steal | Independent-M | Independent-T |", "|---|---|---|---|"]
            for r in with_scenarios:
                cells = {s["scenario"]: f"{s['probs']['outcome']['p_value']:.3g} / "
                                        f"{s['labels']['outcome']['p_value']:.3g}" for s in r["scenarios"]}
                lines.append(f"| {r['setting']} | {cells['Steal']} | {cells['Independent-M']} | "
                             f"{cells['Independent-T']} |")
            lines.append("")
    if result.get("transfer"):
        setting = result["settings"]
        lines += transfer_table(result["transfer"], f"## Transferability ({setting['transfer_rows']} rows, "
                                f"{setting['transfer_epochs']} epochs)")
    cost = result.get("cost")
    if cost:
        lines.append(f"## Cost\n\nProtect r = {pct(cost['class_rate'])} % of one class ({cost['marked_rows']} images, "
                     f"base model loaded from a checkpoint): {cost['protect_s']:.1f} s wall, PGD "
                     f"{cost['pgd_images_per_s']:.1f} images/s (40 steps). Training the base model is part of the "
                     f"cost when none is given: {cost['base_model_train_s']}.\n")
    lines.append(f"Paper: {json.dumps(PAPER)}. The issue quotes the paper's image TSR as near 50 % at r = 10 %.\n")
    return "\n".join(lines)


def transfer_table(rows: list[dict[str, Any]], title: str) -> list[str]:
    """The transferability matrix as Markdown lines: rows perturb with A, columns train the suspect with B."""
    cell = {(r["perturb_arch"], r["suspect_arch"]): r for r in rows}
    archs = [a for a in ARCHS if any(a in pair for pair in cell)]
    lines = [f"{title}: rows perturb with A, columns train the suspect with B; TSR % / WDR % (clean B: TSR / WDR), "
             "the suspect's BA %; – not measured\n", "| A \\ B | " + " | ".join(archs) + " |",
             "|---|" + "---|" * len(archs)]
    for a in archs:
        lines.append(f"| {a} | " + " | ".join(
            f"{pct(cell[a, b]['tsr'])} / {pct(cell[a, b]['wdr'])} ({pct(cell[a, b]['clean_model']['tsr'])} / "
            f"{pct(cell[a, b]['clean_model']['wdr'])}), BA {pct(cell[a, b]['ba'])}" if (a, b) in cell else "–"
            for b in archs) + " |")
    lines.append("")
    return lines


def transfer_setting(args: argparse.Namespace) -> dict[str, Any]:
    """What makes two transfer cells comparable: rows, epochs, seed, rate, target, decoys (recorded in each row)."""
    return {"rows": min(args.transfer_rows, args.train_rows or args.transfer_rows), "epochs": args.transfer_epochs,
            "seed": args.seed, "class_rate": args.main_rate, "target": args.target, "decoy_rate": args.decoy_rate}


def merge_transfer(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Compose one transferability matrix from cells measured by earlier runs (``--merge``), trains nothing.

    Each source is a run's results JSON or a ``.transfer-partial.json`` (cells written as measured). Cells record
    their setting since 2026-11-30; for older cells it is the results file's settings (those of the run that wrote
    it last), or, in an older partial file, this command's flags, and the table says so. Cells of another setting,
    or the same cell twice, are refused in one line: a matrix may mix machines, never settings.
    """
    want = transfer_setting(args)
    rows: list[dict[str, Any]] = []
    sources = []
    for path in args.merge:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--merge: cannot read {path} ({exc.__class__.__name__}); give a results JSON of "
                             f"this script or its .transfer-partial.json.") from None
        full = isinstance(data, dict)
        cells = data.get("transfer" + ("_decoys" if args.decoy_rate else ""), []) if full else data
        if not cells or (full and not {"settings", "environment"} <= data.keys()) or not all(
                isinstance(r, dict) and {"perturb_arch", "suspect_arch", "tsr", "wdr", "ba", "clean_model"} <= r.keys()
                for r in cells):
            raise SystemExit(f"--merge: {path} holds no transfer cells of this script; give a results JSON of "
                             f"a --parts transfer run or its .transfer-partial.json.")
        if full:
            s = data["settings"]
            recorded = {"rows": min(s["transfer_rows"], s.get("train_rows") or s["transfer_rows"]),
                        "epochs": s["transfer_epochs"], "seed": s["seed"], "class_rate": s["main_rate"],
                        "target": s["target"], "decoy_rate": s.get("decoy_rate", 0.0)}
            env = data["environment"]
            machine = (f"{env.get('device', 'cpu')}, {env['cpu_threads']} threads, {env['platform']}, "
                       f"torch {env['torch']}")
        else:
            recorded, machine = None, "machine not recorded in a partial file"
        for row in cells:
            have = {k: row.get(k, 0.0) for k in want} if "rows" in row and "epochs" in row else recorded
            stated = have is None
            if not stated and have != want:
                raise SystemExit(f"--merge: {path} was measured in another setting ({have}) than this command's "
                                 f"({want}); give the flags it was run with.")
            pair = (row["perturb_arch"], row["suspect_arch"])
            if any((r["perturb_arch"], r["suspect_arch"]) == pair for r in rows):
                raise SystemExit(f"--merge: the cell {pair[0]}:{pair[1]} is in two sources ({path} and an earlier "
                                 f"one); keep one.")
            rows.append(row | {"source": Path(path).name, "machine": machine, "setting_stated": stated})
        sources.append({"file": Path(path).name, "machine": machine, "full_result": full,
                        "setting_stated": any(r["setting_stated"] for r in rows[-len(cells):]),
                        "cells": [f"{r['perturb_arch']}:{r['suspect_arch']}" for r in cells]})
    command = "python " + " ".join(["benchmarks/cleanlabel_cifar10.py", *(argv if argv is not None else sys.argv[1:])])
    result = {"command": command, "setting": want, "sources": sources, "transfer": rows, "paper": PAPER}
    measured = len(rows)
    total = len({a for r in rows for a in (r["perturb_arch"], r["suspect_arch"])}) ** 2
    lines = ["# Transferability of the clean-label watermark on CIFAR-10, composed from several runs\n",
             f"Command (trains nothing; reads the runs below): `{command}`\n",
             f"Setting of every cell: {want['rows']} rows, {want['epochs']} epochs, seed {want['seed']}, r = "
             f"{100 * want['class_rate']:g} % of class {want['target']}, patch trigger, decoys {want['decoy_rate']:g}. "
             "TSR and WDR on the suspect, in brackets on a clean model of the suspect's architecture (it must stay "
             "near 0). WDR: 100 draws of 200 non-target test images, Wilcoxon, tau 0.1, alpha 0.05.\n",
             *transfer_table(rows, f"## {measured} of {total} cells"), "## Sources\n"]
    for source in sources:
        note = "; setting not recorded in the file, stated by this command's flags" if source["setting_stated"] else ""
        lines.append(f"- `{source['file']}` ({source['machine']}{note}): {', '.join(source['cells'])}")
    text = "\n".join(lines) + "\n"
    args.results.mkdir(parents=True, exist_ok=True)
    write_atomic(args.results / f"{args.name}.json", json.dumps(result, indent=2, default=float) + "\n")
    write_atomic(args.results / f"{args.name}.md", text)
    print(text)
    return 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clean-checkpoint", type=Path, default=None, help="Clean FastNet on all rows: base + reference.")
    p.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.2], help="Sweep class rates.")
    p.add_argument("--triggers", nargs="+", default=list(TRIGGERS), choices=TRIGGERS)
    p.add_argument("--parts", nargs="+", default=["main", "sweep", "transfer"], choices=["main", "sweep", "transfer"])
    p.add_argument("--main-rate", type=float, default=0.1, help="Class rate of the main and transfer parts.")
    p.add_argument("--epochs", type=int, default=None, help="Main setting epochs (default: the FastNet preset).")
    p.add_argument("--sweep-epochs", type=int, default=4)
    p.add_argument("--train-rows", type=int, default=None, help="Use only the first N training rows.")
    p.add_argument("--transfer-archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--transfer-cells", nargs="+", default=None, metavar="A:B",
                   help="Only these cells of the matrix (perturb with A, train the suspect with B), e.g. the ones "
                        "another run left out; default: every pair of --transfer-archs.")
    p.add_argument("--transfer-epochs", type=int, default=4)
    p.add_argument("--transfer-rows", type=int, default=20000)
    p.add_argument("--test-rows", type=int, default=None)
    p.add_argument("--wdr-draws", type=int, default=100)
    p.add_argument("--ae-epochs", type=int, default=2, help="Autoencoder detector epochs.")
    p.add_argument("--target", type=int, default=5, help="Target class (K/2, as in the DVBW benchmark).")
    p.add_argument("--decoy-rate", type=float, default=0.0,
                   help="Decoys: other random triggers on this fraction of rows, labels kept (0 = the paper).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path("runs/cleanlabel_cifar10"))
    p.add_argument("--results", type=Path, default=RESULTS, help="Folder of the JSON and Markdown results.")
    p.add_argument("--name", default="cleanlabel_cifar10", help="Results file stem (runs elsewhere keep theirs apart).")
    p.add_argument("--progress", action="store_true", help="Each training's progress (rate and ETA) on stderr.")
    p.add_argument("--smoke", action="store_true", help="A < 1 minute run on a tiny subset (tests the script).")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="RESULTS.json",
                   help="Train nothing: compose one transferability matrix from these runs' results (JSON or "
                        ".transfer-partial.json), measured in the setting of this command's transfer flags.")
    args = p.parse_args(argv)
    transfer_cells(args)  # a malformed cell is refused before anything loads or trains
    if args.smoke:
        args.train_rows, args.test_rows, args.epochs, args.sweep_epochs, args.transfer_epochs = 200, 100, 1, 1, 1
        args.rates, args.transfer_rows, args.wdr_draws, args.ae_epochs = [0.2], 100, 5, 1
        args.triggers, args.transfer_archs = args.triggers[:1], args.transfer_archs[:2]  # the code paths, not a table
        args.work = args.work.with_name(args.work.name + "_smoke")
        args.name += "_smoke"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.merge:
        return merge_transfer(args, argv)
    if not args.smoke:
        return run(args, argv)
    # Tiny models: thread contention on a shared 2-core machine costs more than threads gain (torch and BLAS).
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return run(args, argv)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    train, test = load_data("cifar10:train"), load_data("cifar10:test")
    if args.train_rows:
        train = train.subset(range(args.train_rows))
    if args.test_rows:
        test = test.subset(range(args.test_rows))
    runner = Runner(args, test)
    command = "python " + " ".join(["benchmarks/cleanlabel_cifar10.py", *(argv if argv is not None else sys.argv[1:])])
    result: dict[str, Any] = {"command": command, "smoke": args.smoke, "environment": environment(), "paper": PAPER,
                              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    start = time.perf_counter()
    base = str(args.clean_checkpoint) if args.clean_checkpoint else None
    tag = "_decoys" if args.decoy_rate else ""  # runs with decoys are kept beside the paper's setting
    if "main" in args.parts:
        result["main" + tag], base = main_part(runner, train, args)
        first = result["main" + tag][0]
        result["cost"] = {k: first[k] for k in ("class_rate", "marked_rows", "protect_s", "pgd_images_per_s")}
        recorded = torch.load(base, map_location="cpu", weights_only=True).get("extra", {}).get("train_s")
        result["cost"]["base_model_train_s"] = (
            f"{recorded:.0f} s" if recorded else f"not recorded in the checkpoint; the same FastNet training on all "
            f"rows took {first['train_s']:.0f} s for the watermarked model of this run")
    if "sweep" in args.parts:
        if base is None:
            runner.model("clean-main", train, "fastnet", args.epochs)
            base = str(runner.work / "clean-main.pt")
        result["sweep" + tag] = sweep_part(runner, train, args, base)
    if "transfer" in args.parts:
        result["transfer" + tag] = transfer_part(runner, train, args)
    result["wall_s"] = time.perf_counter() - start
    name = args.name
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"{name}.json"
    if path.exists() and not args.smoke:  # parts run separately are merged; each keeps the command that made it
        previous = json.loads(path.read_text())
        earlier = previous.get("commands") or {part: previous["command"] for part in ("main", "sweep", "transfer")
                                                if previous.get(part)}
        result["commands"] = {**earlier, **{part + tag: command for part in args.parts}}
        result = {**previous, **result}
    else:
        result["commands"] = {part + tag: command for part in args.parts}
    write_atomic(path, json.dumps(result, indent=2, default=float) + "\n")
    text = markdown(result) + f"\nTotal wall time: {result['wall_s']:.0f} s\n"
    write_atomic(args.results / f"{name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
