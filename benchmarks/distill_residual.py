"""Does a distilled student keep a trace of the watermark that counting hits misses? (issue 15, distillation)

The multi-mark key's default test counts the marks whose secret target the suspect singles out (the exact
binomial over 10 marks: p = 0.65 for one hit, 0.26 for two). A student distilled from the stolen model on the
thief's clean images may move its answers toward the marks' secret targets without making any of them the top
class. The exact randomization test over the marks' secret choices (``marks-randomization``, the default on
binary tasks) weighs how far each mark moves the answers: T sums each mark's share of its secret target minus
the key's mean share of that class, and p is the share of the 10^10 target vectors whose T is at least as large,
enumerated exactly. Its level is exact under H0 for any model, so it may be applied to any key; which test a key
uses is fixed at protect time (its plan), so a verifier cannot pick the better-looking one after the fact. This
script measures both on the same key (an experiment, not a verdict).

Models (from ``--work`` of ``robustness_cifar10.py``): the stolen model, its student distilled on the thief's
clean data (``distill:rows=...``; saved in ``--work``), the clean model, the clean model's student and, if
present, another owner's stolen model (``--other``: a model trained on another key of the same kind, the
Independent-T control). Every model is verified with the key as protected (binomial, its plan's probes) and with
the key's plan switched to the randomization test at 50 and 100 shared probes per mark, in both modes.

    python benchmarks/distill_residual.py --work runs/robust_narrow --method badnets-blocks \\
        --other runs/robust_narrow_owner2/badnets-blocks-stolen.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from calibration_cifar10 import write_atomic
from robustness_cifar10 import load_split, log

from datamark import __version__
from datamark._device import device_name
from datamark.evaluate.attacks import parse_attack
from datamark.evaluate.metrics import benign_accuracy
from datamark.key import Key
from datamark.models import load_checkpoint, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.verify.plan import MARKS_RANDOMIZATION
from datamark.verify.verifier import Verifier

RESULTS = Path(__file__).resolve().parent / "results"


def student_of(teacher_path: Path, attack_spec: str, thief, seed: int, progress: bool) -> tuple:
    """The teacher's student under ``attack_spec`` (a distillation), trained once and kept beside the teacher."""
    path = teacher_path.with_name(teacher_path.stem + "-student.pt")
    if path.exists():
        return load_checkpoint(path)
    model, spec = load_checkpoint(teacher_path)
    start = time.perf_counter()
    student, student_spec = parse_attack(attack_spec).apply(model, spec, thief, seed=seed, progress=progress)
    save_checkpoint(student, student_spec, path, overwrite=True, extra={"train_s": time.perf_counter() - start})
    log(f"distilled {path.name} in {time.perf_counter() - start:.0f} s")
    return student, student_spec


def variants(key: Key) -> dict[str, Key]:
    """The key as protected, and its plan switched to the randomization test at 50 and 100 probes per mark."""
    marks = len(key.mark_list())
    out = {f"{key.plan.test} ({key.plan.n_probe // marks}/mark)": key}
    for per_mark in (50, 100):
        plan = {**key.verification, "test": MARKS_RANDOMIZATION, "n_probe": marks * per_mark}
        out[f"{MARKS_RANDOMIZATION} ({per_mark}/mark, shared)"] = dataclasses.replace(key, verification=plan)
    return out


def measure(name: str, model_spec: tuple, key: Key, test) -> list[dict]:
    """Every test variant in both modes on one model: p, log10 p, hits, the statistic."""
    suspect = LocalSuspect.from_model(*model_spec)
    ba = benign_accuracy(suspect, test)
    rows = []
    for label, variant in variants(key).items():
        for mode in ("probs", "labels"):
            asked = suspect if mode == "probs" else suspect.with_outputs("labels")
            result = Verifier(mode=mode).verify(asked, variant, test)
            rows.append(dict(model=name, test=label, mode=mode, p=result.outcome.p_value,
                             log10_p=result.outcome.log10_p, statistic=result.outcome.statistic,
                             hits=(result.marks or {}).get("hits"), accused=bool(result.accused),
                             queries=result.queries, ba=ba))
            log(f"{name}: {label}, {mode}: p = {result.outcome.p_value:.3g} ({result.outcome.note})")
    return rows


def markdown(result: dict) -> str:
    lines = [f"# {result['title']}", "", f"Command: `{result['command']}`", "", f"Machine: {result['environment']}",
             "", result["note"], "", "| model | BA % | test | mode | p | statistic | hits | accused |",
             "|---" * 8 + "|"]
    for r in result["rows"]:
        ba = f"{100 * r['ba']:.2f}" if r.get("ba") is not None else "–"  # runs before BA was recorded: "–"
        lines.append(f"| {r['model']} | {ba} | {r['test']} | {r['mode']} | {r['p']:.3g} | {r['statistic']:.3g} | "
                     f"{r['hits']} | {'yes' if r['accused'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="robustness_cifar10.py's --work folder")
    parser.add_argument("--method", default="badnets-blocks")
    parser.add_argument("--attack", default="distill:rows=20000", help="the thief's distillation")
    parser.add_argument("--other", type=Path, help="another owner's stolen model (Independent-T control)")
    parser.add_argument("--thief-rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-clean-student", action="store_true", help="skip the clean model's student")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--name", default="distill_residual")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    key = Key.load(args.work / f"{args.method}.key.json")
    train, test = load_split("train", None), load_split("test", None)
    rng = np.random.default_rng(args.seed)  # the thief's rows exactly as robustness_cifar10.py draws them
    thief = train.subset(np.sort(rng.choice(len(train), size=min(args.thief_rows, len(train)), replace=False)))
    stolen_path, clean_path = args.work / f"{args.method}-stolen.pt", args.work / "clean.pt"
    models = [("stolen", lambda: load_checkpoint(stolen_path)),
              ("student", lambda: student_of(stolen_path, args.attack, thief, args.seed, args.progress)),
              ("clean", lambda: load_checkpoint(clean_path))]
    if args.other:
        models.append(("other owner's stolen", lambda: load_checkpoint(args.other)))
    if not args.no_clean_student:
        models.append(("clean student", lambda: student_of(clean_path, args.attack, thief, args.seed, args.progress)))
    out = RESULTS / f"{args.name}.json"
    result = dict(title=f"Distillation residue of the {args.method} watermark (key {key.commitment[:16]}…)",
                  command="python benchmarks/distill_residual.py " + " ".join(argv),
                  environment=f"{platform.platform()}, {device_name()}, {torch.get_num_threads()} torch threads, "
                              f"torch {torch.__version__}, datamark {__version__}",
                  note=(f"Seed {args.seed}; student: {args.attack} on the unmarked originals of {args.thief_rows} "
                        f"training rows; probes: the CIFAR-10 test split. The first test is the key's own plan; "
                        f"the randomization rows switch the plan's test (exact under H0 for any model). Accused: "
                        f"p < {key.plan.alpha}."), rows=[])
    for name, load in models:
        result["rows"] += measure(name, load(), key, test)
        write_atomic(out, json.dumps(result, indent=1) + "\n")
        write_atomic(out.with_suffix(".md"), markdown(result))


if __name__ == "__main__":
    main(sys.argv[1:])
