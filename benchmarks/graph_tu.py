"""DVBW on graph classification (issue 17): TU datasets PROTEINS, NCI1 and IMDB-BINARY, GIN and GraphSAGE suspects,
a keyed sub-graph trigger on gamma = 10 % of the training graphs, judged as Steal, Independent-M and Independent-T in
both black-box modes, with the benign accuracy (BA) of clean and watermarked models as mean +- std over seeds, and a
rate sweep gamma in {0.01, 0.05, 0.1} on one architecture (``--sweep-arch``, GIN by default) with the paper's one-mark
watermark (``--sweep-config``, ``dvbw-1``).

    python benchmarks/graph_tu.py                  # the full grid (the lead runs it on an idle machine)
    python benchmarks/graph_tu.py --smoke          # MUTAG, one seed, 5 epochs: checks the pipeline in < 1 min

Configurations (``--configs``):

* ``dvbw``   -- BadNets with datamark's default key: K = 10 marks of gamma / K each, every mark a keyed sub-graph
  trigger with its own secret target; the exact marks test (randomization on binary tasks) on the triggered probes
  and each mark's released graphs (Independent-T: another owner's key; the Steal row also reports the triggered
  probes alone, the ablation).
* ``dvbw-c5`` -- the default key with 5 candidate sub-graphs per mark (``n_candidates=5``): each mark hides its
  target and which candidate it embedded, 2 x 5 = 10 options on a binary task.
* ``dvbw-1`` -- the paper's watermark: one mark, target class ``--target``, paired t-test (margin 0.2, m = 100)
  with the specificity control of 100 independent sub-graph triggers (Independent-T: another sub-graph).
* ``dvbw-1d`` / ``dvbw-1d2`` -- ``dvbw-1`` with decoys (``decoy_rate``) on gamma / 2 gamma of the rows: other
  owners' sub-graphs of the same family, labels kept.
* ``dvbw-1u`` / ``dvbw-1ud`` -- ``dvbw-1`` / ``dvbw-1d`` with the named trigger ``"uniform-labels"``: the
  sub-graph's node labels drawn uniformly over the labels the data uses (rarer than the data's).
* ``dvbw-1id`` -- ``dvbw-1d`` with the named trigger ``"injected"``: the sub-graph added as new nodes joined by one
  keyed edge, so its nodes look the same in every host.
* ``ubw-p``  -- UBW-P (untargeted, poison-label) with datamark's default key, for comparison.

Only ``dvbw`` and ``dvbw-1`` are in the default grid.

Targets (issue 17): Steal p < 0.01 in both modes; Independent-M and Independent-T not accused; BA drop <= 1 point
(within the seeds' noise); each model trained in well under a minute on 2 cores. The suspects train with the
architectures' presets (``default_graph_config``); each model's training seconds are recorded. Results go to
``benchmarks/results/graph_tu.json/.md`` (``--out`` renames them); a work folder (``--work``) caches finished
cells, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamark import __version__
from datamark._device import device_name
from datamark.data import load_data
from datamark.evaluate.scenarios import evaluate_scenarios
from datamark.models import default_graph_config, fit_graph
from datamark.models.graph import pyg_nn
from datamark.suspects import LocalSuspect
from datamark.verify import Verifier

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ("PROTEINS", "NCI1", "IMDB-BINARY")
ARCHS = ("gin", "graphsage")
CONFIGS = ("dvbw", "dvbw-c5", "dvbw-1", "dvbw-1u", "dvbw-1d", "dvbw-1d2", "dvbw-1ud", "dvbw-1id", "ubw-p")
RATES = (0.01, 0.05, 0.1)


def build(config: str, *, rate: float, seed: int, target: int):
    """The method of one configuration (see the module docstring); triggers: the graph modality's default."""
    from datamark import UBWP, BadNets

    configs = {
        "dvbw": lambda: BadNets(seed=seed, rate=rate),
        "dvbw-c5": lambda: BadNets(seed=seed, rate=rate, n_candidates=5),
        "dvbw-1": lambda: BadNets(seed=seed, rate=rate, n_marks=1, target=target),
        "dvbw-1u": lambda: BadNets(seed=seed, rate=rate, n_marks=1, target=target, trigger_name="uniform-labels"),
        "dvbw-1d": lambda: BadNets(seed=seed, rate=rate, n_marks=1, target=target, decoy_rate=rate),
        "dvbw-1d2": lambda: BadNets(seed=seed, rate=rate, n_marks=1, target=target, decoy_rate=2 * rate),
        "dvbw-1ud": lambda: BadNets(seed=seed, rate=rate, n_marks=1, target=target, trigger_name="uniform-labels",
                                    decoy_rate=rate),
        "dvbw-1id": lambda: BadNets(seed=seed, rate=rate, n_marks=1, target=target, trigger_name="injected",
                                    decoy_rate=rate),
        "ubw-p": lambda: UBWP(seed=seed, rate=rate),
    }
    if config not in configs:
        raise ValueError(f"unknown configuration {config!r}; choose from {CONFIGS}")
    return configs[config]()


def grid_arguments(parser: argparse.ArgumentParser, datasets: list[str], out: str) -> None:
    """The options of a graph benchmark's grid: datasets, models, seeds, torch threads and the results stem."""
    parser.add_argument("--datasets", nargs="+", default=datasets)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=out, help="Results stem under benchmarks/results.")


def write_results(stem: str, payload: Any, markdown_text: str) -> None:
    """``benchmarks/results/<stem>.json`` (``payload``) and ``.md``: what every graph benchmark writes."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=1, default=float) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown_text)


def train(data, arch: str, seed: int, epochs: int | None) -> tuple[Any, float]:
    """A suspect trained with the architecture's preset (the thief's recipe) and the seconds it took."""
    config = default_graph_config(arch, seed=seed, **({"epochs": epochs} if epochs else {}))
    start = time.perf_counter()
    model, spec = fit_graph(data, arch=arch, config=config)
    return LocalSuspect.from_model(model, spec), time.perf_counter() - start


def cell(train_data, test_data, clean, config: str, arch: str, rate: float, seed: int, args) -> dict[str, Any]:
    """Protect -> train the thief's model -> the three scenarios in both modes."""
    start = time.perf_counter()
    marked = build(config, rate=rate, seed=seed, target=args.target).apply(train_data)
    protect_s = time.perf_counter() - start
    stolen, train_s = train(marked.dataset, arch, seed, args.epochs)
    rows = evaluate_scenarios(marked.key, stolen, clean, test_data, seed=seed,
                              verifier=Verifier(released=marked.dataset))
    result = {"marked_rows": len(marked.rows), "protect_s": protect_s, "train_s": train_s,
              "scenarios": {r.scenario: {"ba": r.ba, "wsr": r.wsr, "p_probs": r.probs.outcome.p_value,
                                         "p_labels": r.labels.outcome.p_value, "accused_probs": r.probs.accused,
                                         "accused_labels": r.labels.accused, **_specificity(r)} for r in rows}}
    if marked.key.plan.marked_rows:  # the ablation: the same stolen model judged on the triggered probes alone
        triggers_only = replace(marked.key, verification={k: v for k, v in marked.key.verification.items()
                                                          if k != "marked_rows"})
        for mode in ("probs", "labels"):
            outcome = Verifier(mode=mode).verify(stolen.with_outputs(mode), triggers_only, test_data)
            result["scenarios"]["Steal"][f"p_triggers_only_{mode}"] = outcome.outcome.p_value
            result["scenarios"]["Steal"][f"accused_triggers_only_{mode}"] = outcome.accused
    return result


def _specificity(row) -> dict[str, float]:
    """The p-values of the trigger-specificity control (single-mark keys): a small test p with a control p over
    alpha is a model that reacts to any sub-graph of the kind, not to the key's."""
    return {f"p_specific_{mode}": result.specificity.p_value for mode, result in (("probs", row.probs),
                                                                                  ("labels", row.labels))
            if result.specificity is not None}


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def summarise(runs: dict[str, Any], args) -> dict[str, Any]:
    """Per dataset, arch and config at gamma = 0.1: BA mean +- std over seeds (clean, stolen), the drop, the
    worst Steal p and whether any control was accused; training seconds."""
    out: dict[str, Any] = {}
    for name in args.datasets:
        for arch in args.archs:
            base = [runs[f"{name}/{arch}/{s}"] for s in args.seeds if f"{name}/{arch}/{s}" in runs]
            if not base:
                continue
            for config in args.configs:
                cells = [b["configs"][config] for b in base if config in b["configs"]]
                if not cells:
                    continue
                clean_ba = [b["clean_ba"] for b in base]
                stolen_ba = [c["scenarios"]["Steal"]["ba"] for c in cells]
                scen = [c["scenarios"] for c in cells]
                out[f"{name}/{arch}/{config}"] = {
                    "seeds": len(cells), "clean_ba": _mean_std(clean_ba), "stolen_ba": _mean_std(stolen_ba),
                    "ba_drop_points": _mean_std([100 * (a - b) for a, b in zip(clean_ba, stolen_ba, strict=False)]),
                    "steal_p_max": {m: max(s["Steal"][f"p_{m}"] for s in scen) for m in ("probs", "labels")},
                    "steal_p_specific_max": {m: max(s["Steal"].get(f"p_specific_{m}", float("nan")) for s in scen)
                                             for m in ("probs", "labels")},
                    "steal_accused": all(s["Steal"][f"accused_{m}"] for s in scen for m in ("probs", "labels")),
                    "steal_verdicts": sum(s["Steal"][f"accused_{m}"] for s in scen for m in ("probs", "labels")),
                    "steal_verdicts_triggers_only": (
                        sum(s["Steal"][f"accused_triggers_only_{m}"] for s in scen for m in ("probs", "labels"))
                        if all("accused_triggers_only_probs" in s["Steal"] for s in scen) else None),
                    "false_accusations": sum(s[row][f"accused_{m}"] for s in scen for m in ("probs", "labels")
                                             for row in ("Independent-M", "Independent-T")),
                    "wsr": _mean_std([s["Steal"]["wsr"] for s in scen]),
                    "train_s": _mean_std([b["clean_train_s"] for b in base] + [c["train_s"] for c in cells])}
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# {result['title']}", "", f"Command: `{result['command']}`", "", f"Machine: {result['environment']}",
             "", f"Seeds {result['seeds']}; gamma {result['rate']}; target of dvbw-1: {result['target']}; epochs: "
             f"{result['epochs'] or 'the presets'}; total {result['total_s'] / 60:.1f} min.", "",
             "BA in % (mean ± std over seeds); p: the largest Steal p over seeds (probability / label-only mode); "
             "control p: the largest p of the trigger-specificity control (single-mark keys: the key's sub-graph "
             "against 100 independent ones; accused needs both p and control p below alpha = 0.01); false "
             "accusations: Independent-M and Independent-T verdicts of 'accused' over seeds and both modes; Steal "
             "verdicts: accused of seeds x 2 modes, and (after the slash) with the triggered probes alone, for keys "
             "that also ask their marks' released graphs.", "",
             "| dataset | model | config | clean BA | watermarked BA | drop (pt) | WSR | Steal p max | control p max | "
             "Steal accused | Steal verdicts | false accusations | train s |", "|" + "---|" * 13]
    for name, s in result["summary"].items():
        dataset, arch, config = name.split("/")
        pm = lambda d: f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"  # noqa: E731
        alone = s["steal_verdicts_triggers_only"]
        lines.append(f"| {dataset} | {arch} | {config} | {pm(s['clean_ba'])} | {pm(s['stolen_ba'])} | "
                     f"{s['ba_drop_points']['mean']:+.2f} ± {s['ba_drop_points']['std']:.2f} | "
                     f"{s['wsr']['mean']:.2f} | {s['steal_p_max']['probs']:.2g} / {s['steal_p_max']['labels']:.2g} | "
                     f"{s['steal_p_specific_max']['probs']:.2g} / {s['steal_p_specific_max']['labels']:.2g} | "
                     f"{'yes' if s['steal_accused'] else 'no'} | {s['steal_verdicts']} of {2 * s['seeds']}"
                     f"{'' if alone is None else f' / {alone}'}"
                     f" | {s['false_accusations']} | "
                     f"{s['train_s']['mean']:.1f} |")
    if result["sweep"]:
        lines += ["", f"## Rate sweep ({result['sweep_arch']}, config {result['sweep_config']}, seed "
                  f"{result['seeds'][0]})", "", "| dataset | gamma | marked | BA | WSR | Steal p | Indep-M p | "
                  "Indep-T p | accused (Steal / M / T) |", "|" + "---|" * 9]
        for name, c in result["sweep"].items():
            dataset, rate = name.split("/")
            s = c["scenarios"]
            p = lambda row, s=s: f"{s[row]['p_probs']:.2g} / {s[row]['p_labels']:.2g}"  # noqa: E731
            acc = " / ".join("/".join("y" if s[row][f"accused_{m}"] else "n" for m in ("probs", "labels"))
                             for row in ("Steal", "Independent-M", "Independent-T"))
            lines.append(f"| {dataset} | {rate} | {c['marked_rows']} | {100 * s['Steal']['ba']:.1f} | "
                         f"{s['Steal']['wsr']:.2f} | {p('Steal')} | {p('Independent-M')} | {p('Independent-T')} | "
                         f"{acc} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--configs", nargs="+", default=["dvbw", "dvbw-1"], choices=CONFIGS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--rate", type=float, default=0.1, help="gamma of the main grid.")
    p.add_argument("--rates", nargs="*", type=float, default=list(RATES), help="The sweep's gammas (none: no sweep).")
    p.add_argument("--sweep-arch", default="gin", choices=ARCHS)
    p.add_argument("--sweep-config", default="dvbw-1", choices=CONFIGS,
                   help="The sweep's method (default the paper's one-mark watermark: K = 10 marks of gamma / K "
                        "each leave under one row per mark at gamma = 0.01 on these datasets).")
    p.add_argument("--target", type=int, default=1, help="Target class of the dvbw-1* configurations.")
    p.add_argument("--epochs", type=int, default=None, help="Training epochs (default: the architecture's preset).")
    p.add_argument("--train-rows", type=int, default=None, help="A seeded random subset of the training graphs.")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="MUTAG, seed 0, 5 epochs, one sweep rate: < 1 min.")
    p.add_argument("--work", type=Path, default=None, help="Cache of finished cells (default runs/<out>).")
    p.add_argument("--out", default=None, help="Results stem under benchmarks/results (default graph_tu).")
    args = p.parse_args(argv)
    if args.smoke:
        args.datasets, args.seeds, args.epochs, args.rates = ["MUTAG"], [0], args.epochs or 5, [0.05]
        args.out = args.out or "graph_tu-smoke"
    torch.set_num_threads(args.threads)
    pyg_nn()  # imported once before any timing: the first model's seconds are training, not PyG's import
    stem = args.out or "graph_tu"
    args.work = args.work or Path("runs") / stem
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cells.json"
    runs: dict[str, Any] = json.loads(cache.read_text()) if cache.exists() else {}
    save = lambda: cache.write_text(json.dumps(runs, indent=1, default=float))  # noqa: E731
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    start = time.perf_counter()
    for name in args.datasets:
        train_data, test_data = load_data(f"graphs:{name}:train"), load_data(f"graphs:{name}:test")
        if args.train_rows and args.train_rows < len(train_data):
            rows = np.sort(np.random.default_rng(0).permutation(len(train_data))[:args.train_rows])
            train_data = train_data.subset(rows)
        log(f"{name}: {len(train_data)} training and {len(test_data)} test graphs")
        for arch in args.archs:
            for seed in args.seeds:
                run_key = f"{name}/{arch}/{seed}"
                base = runs.setdefault(run_key, {"configs": {}})
                todo = [c for c in args.configs if c not in base["configs"]]
                sweep = ([(f"{name}/{r}", r) for r in args.rates if f"{name}/{r}" not in runs.get("sweep", {})]
                         if arch == args.sweep_arch and seed == args.seeds[0] else [])
                if not todo and not sweep and "clean_ba" in base:
                    continue  # finished in an earlier run
                clean, clean_s = train(train_data, arch, seed, args.epochs)
                base["clean_ba"] = float((clean.query(test_data.inputs()).argmax(1) == test_data.labels).mean())
                base["clean_train_s"] = clean_s
                log(f"  {arch} seed {seed}: clean BA {100 * base['clean_ba']:.1f} % in {clean_s:.1f} s")
                for config in todo:
                    base["configs"][config] = c = cell(train_data, test_data, clean, config, arch, args.rate, seed,
                                                       args)
                    s = c["scenarios"]
                    log(f"    {config}: BA {100 * s['Steal']['ba']:.1f} %, WSR {s['Steal']['wsr']:.2f}, p(Steal) "
                        f"{s['Steal']['p_probs']:.2g} / {s['Steal']['p_labels']:.2g}, p(Indep-M) "
                        f"{s['Independent-M']['p_probs']:.2g}, p(Indep-T) {s['Independent-T']['p_probs']:.2g} "
                        f"(trained in {c['train_s']:.1f} s)")
                    save()
                for sweep_key, rate in sweep:
                    same = rate == args.rate and base["configs"].get(args.sweep_config)  # the grid's own cell
                    runs.setdefault("sweep", {})[sweep_key] = c = same or cell(
                        train_data, test_data, clean, args.sweep_config, arch, rate, seed, args)
                    log(f"    sweep gamma {rate}: WSR {c['scenarios']['Steal']['wsr']:.2f}, p(Steal) "
                        f"{c['scenarios']['Steal']['p_probs']:.2g} / {c['scenarios']['Steal']['p_labels']:.2g}")
                    save()
    git = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"title": "DVBW on TU graph classification", "kind": "graph_tu", "version": 1,
              "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "environment": f"{platform.platform()}, {device_name()}, {torch.get_num_threads()} torch threads, torch "
                             f"{torch.__version__}, torch_geometric {_pyg_version()}, datamark {__version__} "
                             f"(git {git})",
              "datasets": args.datasets, "archs": args.archs, "configs": args.configs, "seeds": args.seeds,
              "rate": args.rate, "target": args.target, "epochs": args.epochs, "sweep_arch": args.sweep_arch,
              "sweep_config": args.sweep_config, "total_s": time.perf_counter() - start,
              "summary": summarise(runs, args),
              "sweep": {k: v for k, v in runs.get("sweep", {}).items()
                        if k.split("/")[0] in args.datasets and float(k.split("/")[1]) in args.rates},
              "runs": {k: v for k, v in runs.items() if k != "sweep"}}
    write_results(stem, result, markdown(result))
    log(f"results in {RESULTS / stem}.json/.md")
    return 0


def _pyg_version() -> str:
    try:
        import torch_geometric
    except ImportError:
        return "missing"
    return torch_geometric.__version__


if __name__ == "__main__":
    sys.exit(main())
