"""Shared driver of the modality benchmarks (text: ``text_sst2.py``, ``text_agnews.py``; audio:
``audio_fsdd.py``): one clean model, then per configuration protect -> train the thief's model -> the three
scenarios, with the clean-label metrics (AD, TSR, WDR), the modality's own quality metric (GErr for text) and
the confidence-outlier detector (WSD). Resumable: models and results are cached in ``--work``.

A :class:`Suite` names the configurations and how to build each one's method; see ``_text_bench.py`` and
``audio_fsdd.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamark import __version__
from datamark._device import compute_device, device_name
from datamark.data import load_data
from datamark.evaluate.detectors import confidence_outliers
from datamark.evaluate.metrics import accuracy_drop, trigger_success_rate, watermark_detection_rate
from datamark.evaluate.scenarios import evaluate_scenarios
from datamark.key import Key
from datamark.models import default_config, fit, load_checkpoint, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.triggers import Trigger
from datamark.verify import Verifier

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Suite:
    """One benchmark's configurations: ``build(name, seed=, target=, clean_checkpoint=)`` makes a config's
    method; ``quality(before, after)`` measures the marked rows' quality (GErr for text; None: nothing)."""

    configs: tuple[str, ...]
    build: Callable[..., Any]
    default_arch: str
    quality: Callable[[np.ndarray, np.ndarray], dict[str, Any]] | None = None
    quality_column: tuple[str, str] | None = None  # (header, key) of the quality metric in quality()'s dict
    note: str = ""


def _model(path: Path, data, args: argparse.Namespace, log) -> tuple[Any, Any, float]:
    """Load the checkpoint at ``path`` or train it (the thief's recipe: the arch's preset) and save it."""
    if path.exists():
        model, spec = load_checkpoint(path)
        return model.to(compute_device()), spec, float("nan")
    start = time.perf_counter()
    config = default_config(args.arch, seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    model, spec = fit(data, arch=args.arch, config=config, progress=args.progress)
    seconds = time.perf_counter() - start
    save_checkpoint(model, spec, path, overwrite=True, extra={"train_s": seconds})
    log(f"  trained {args.arch} on {len(data)} rows in {seconds:.0f} s")
    return model.to(compute_device()), spec, seconds  # queries run where training did (a GPU if there is one)


def _scenarios(rows) -> dict[str, Any]:
    return {r.scenario: {"ba": r.ba, "wsr": r.wsr, **r.extra,
                         "p_probs": r.probs.outcome.p_value, "p_labels": r.labels.outcome.p_value,
                         "accused_probs": r.probs.accused, "accused_labels": r.labels.accused}
            for r in rows}


def run_config(suite: Suite, name: str, train, test, clean, clean_ba: float, args: argparse.Namespace, log
               ) -> dict[str, Any]:
    work = args.work
    key_path = work / f"{name}.key.json"
    start = time.perf_counter()
    method = suite.build(name, seed=args.seed, target=args.target, clean_checkpoint=work / "clean.pt")
    marked = method.apply(train)
    protect_s = time.perf_counter() - start
    marked.key.save(key_path, overwrite=True)
    key = Key.load(key_path)
    log(f"{name}: marked {len(marked.rows)} of {len(train)} rows in {protect_s:.0f} s ({key.goal})")
    quality = suite.quality(train.take(marked.rows), marked.dataset.take(marked.rows)) if suite.quality else None
    model, spec, train_s = _model(work / f"{name}-stolen.pt", marked.dataset, args, log)
    stolen = LocalSuspect.from_model(model, spec)
    verifier = Verifier(n_control_triggers=args.control_triggers) if not key.plan.uses_marks else Verifier()
    rows = evaluate_scenarios(key, stolen, clean, test, seed=args.seed, verifier=verifier)
    scen = _scenarios(rows)
    out: dict[str, Any] = {"goal": key.goal, "commitment": key.commitment, "marked_rows": len(marked.rows),
                           "protect_s": protect_s, "train_s": train_s, "quality": quality,
                           "ad_points": accuracy_drop(clean_ba, scen["Steal"]["ba"]), "scenarios": scen,
                           "unmarkable_rows": key.extra.get("unmarkable_rows", 0),
                           "synonyms": key.extra.get("synonyms"), "pgd_eps": key.extra.get("pgd_eps")}
    probs = stolen.query(marked.dataset.inputs())
    own = probs[np.arange(len(train)), marked.dataset.labels]
    out["wsd_confidence"] = confidence_outliers(own, fraction=0.01).score(marked.rows)
    if key.target is not None and not key.plan.uses_marks:
        trigger = Trigger.from_config(key.trigger)
        out["tsr"] = trigger_success_rate(stolen, test, trigger, key.target)
        out["wdr_stolen"] = watermark_detection_rate(stolen, test, trigger, key.target, draws=args.wdr_draws,
                                                     seed=args.seed)
        out["wdr_clean"] = watermark_detection_rate(clean, test, trigger, key.target, draws=args.wdr_draws,
                                                    seed=args.seed)
    log(f"  AD {out['ad_points']:+.2f} pt; p(Steal) {scen['Steal']['p_probs']:.2g} / {scen['Steal']['p_labels']:.2g}; "
        f"p(Indep-M) {scen['Independent-M']['p_probs']:.2g}; p(Indep-T) {scen['Independent-T']['p_probs']:.2g}"
        + (f"; TSR {out['tsr']:.3f} WDR {out['wdr_stolen']:.2f}/{out['wdr_clean']:.2f}" if "tsr" in out else ""))
    return out


def markdown(result: dict[str, Any], suite: Suite) -> str:
    lines = [f"# {result['title']}", "", f"Command: `{result['command']}`", "",
             f"Machine: {result['environment']}", "",
             f"Suspect model: {result['arch']} ({result['epochs']} epochs); clean BA {100 * result['clean_ba']:.2f} % "
             f"(trained in {result['clean_train_s']:.0f} s); train rows {result['train_rows']}, test rows "
             f"{result['test_rows']}; seed {result['seed']}; target of fixed-target configurations "
             f"{result['target']}; control triggers of single-mark keys: "
             f"{result.get('control_triggers') or 'the key (100)'}. Total {result['total_s'] / 60:.1f} min.", "",
             "p-values: probability mode / label-only mode of the key's test, then the verdicts (accused: yes/no); "
             "a single-mark key accuses only if its trigger also outranks the key's control triggers (the "
             "specificity control), so a small p with 'no' is a model that reacts to any trigger of the kind. "
             "Independent-T is another owner's key of the same method (multi-mark keys) or another trigger of the "
             "same kind (single mark).",
             "", "| config | goal | marked | AD (pt) | Steal p | Indep-M p | Indep-T p | WSR/ASR | TSR | WDR stolen | "
             f"WDR clean | {suite.quality_column[0] if suite.quality_column else 'quality'} | WSD conf. recall | "
             "protect s |", "|" + "---|" * 14]
    for name, m in result["configs"].items():
        s = m["scenarios"]

        def p(row: str, s: dict = s) -> str:
            verdicts = "/".join("yes" if s[row][f"accused_{mode}"] else "no" for mode in ("probs", "labels"))
            return f"{s[row]['p_probs']:.2g} / {s[row]['p_labels']:.2g} ({verdicts})"

        def opt(k: str, f: str, m: dict = m) -> str:
            return f.format(m[k]) if k in m else "–"

        column = suite.quality_column
        quality = f"{m['quality'][column[1]]:.2f}" if column and m.get("quality") else "–"
        lines.append(f"| {name} | {m['goal']} | {m['marked_rows']} | {m['ad_points']:+.2f} | {p('Steal')} | "
                     f"{p('Independent-M')} | {p('Independent-T')} | {s['Steal']['wsr']:.3f} | "
                     f"{opt('tsr', '{:.3f}')} | {opt('wdr_stolen', '{:.2f}')} | {opt('wdr_clean', '{:.2f}')} | "
                     f"{quality} | {m['wsd_confidence']['recall']:.2f} | {m['protect_s']:.0f} |")
    lines += ["", (suite.note + " " if suite.note else "") + "WSD: recall of the 1 % lowest-confidence training rows "
              "against the marked rows."]
    return "\n".join(lines) + "\n"


def main(suite: Suite, title: str, stem: str, train_name: str, test_name: str, default_target: int,
         argv: list[str] | None = None, doc: str | None = None) -> int:
    p = argparse.ArgumentParser(description=doc or __doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default=suite.default_arch, help="Suspect architecture.")
    p.add_argument("--epochs", type=int, default=None, help="Training epochs (default: the arch's preset).")
    p.add_argument("--configs", nargs="+", default=list(suite.configs), choices=suite.configs)
    p.add_argument("--train-rows", type=int, default=None, help="Use only the first N training rows.")
    p.add_argument("--test-rows", type=int, default=None, help="Use only the first N test rows.")
    p.add_argument("--target", type=int, default=default_target)
    p.add_argument("--wdr-draws", type=int, default=100)
    p.add_argument("--control-triggers", type=int, default=None,
                   help="k of the specificity control of single-mark keys (default: the key's, 100); fewer is "
                        "recorded as a deviation in every result (a slow suspect's budget).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=None, help="Models and keys (default runs/<stem>-<arch>).")
    p.add_argument("--out", default=None, help="Results stem under benchmarks/results (default <stem>-<arch>).")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    stem = args.out or f"{stem}-{args.arch}"
    args.work = args.work or Path("runs") / stem
    args.work.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    start = time.perf_counter()
    train, test = load_data(train_name), load_data(test_name)
    # The staged SST-2 files are sorted by label: a subset is a seeded random sample, never a prefix.
    if args.train_rows:
        train = train.subset(np.sort(np.random.default_rng(args.seed).permutation(len(train))[:args.train_rows]))
    if args.test_rows:
        test = test.subset(np.sort(np.random.default_rng(args.seed + 1).permutation(len(test))[:args.test_rows]))
    clean_model, clean_spec, clean_s = _model(args.work / "clean.pt", train, args, log)
    clean = LocalSuspect.from_model(clean_model, clean_spec)
    clean_ba = float((clean.query(test.inputs()).argmax(1) == test.labels).mean())
    log(f"clean {args.arch}: BA {100 * clean_ba:.2f} %")
    cache = args.work / "configs.json"
    done = json.loads(cache.read_text()) if cache.exists() else {}
    for name in args.configs:
        if name not in done:
            done[name] = run_config(suite, name, train, test, clean, clean_ba, args, log)
            cache.write_text(json.dumps(done, indent=2, default=float))
    git = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = {"title": title, "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
              "environment": f"{platform.platform()}, {device_name()}, {torch.get_num_threads()} torch threads, torch "
                             f"{torch.__version__}, datamark {__version__} (git {git})",
              "arch": args.arch, "epochs": args.epochs or default_config(args.arch).epochs, "seed": args.seed,
              "target": args.target, "control_triggers": args.control_triggers,
              "train_rows": len(train), "test_rows": len(test), "clean_ba": clean_ba,
              "clean_train_s": clean_s, "total_s": time.perf_counter() - start,
              "configs": {k: done[k] for k in args.configs if k in done}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(result, suite))
    log(f"results in {RESULTS / stem}.json/.md")
    return 0
