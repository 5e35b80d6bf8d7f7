"""Forgery on CIFAR-10 (issue 15): can someone without the owner's key make an innocent model "pass"?

Threat model (see :mod:`datamark.verify.consistency`). The forger holds a clean model M (never trained on
anybody's watermarked data) and wants datamark to accuse it. It writes its own key file: it picks a secret (so
the honestly drawn targets and probes), then replaces each mark's trigger by a pattern crafted on M -- projected
signed-gradient ascent (PGD) on the pattern's pixels, over ``--craft-rows`` clean training images, toward that
mark's target, at the key's own trigger size, place and opacity (a universal adversarial patch / blend) -- and
lets ``Key.save`` write a valid checksum. Measured here, on M:

* (a) how often the forged multi-mark key (BadNets, Blended: the default 10 marks) accuses M when nothing checks
  the key (the verifier called with the in-memory key), in both modes;
* (b) whether ``Key.load`` refuses the forged key file (the consistency check: the triggers are not the ones the
  secret draws);
* (c) a forged single-mark key (``n_marks=1``): a single-mark key's trigger may be the owner's own choice, which
  the key cannot show, so the check lets it through as "chosen by the owner"; what is left is the paper's test
  and the trigger-specificity control (k = 100 random triggers of the same kind). Does the forged trigger pass?
* (d) the rate at which honestly drawn default keys from ``--secrets`` random secrets accuse M (<= alpha by the
  calibration guarantee): the price of a secret search, which only a commitment published before M existed
  rules out.

M is ``--model`` (default: the robustness benchmark's clean fastnet, ``runs/robustness_cifar10/clean.pt``, when it
exists), else a fastnet trained here on ``--train-rows`` rows for ``--epochs`` epochs (cached under ``--work``).

    flock /tmp/datamark-cpu.lock python benchmarks/forgery_cifar10.py            # ~10-20 min on 2 CPU cores
    python benchmarks/forgery_cifar10.py --secrets 10 --craft-steps 10 --name forgery_smoke   # a smoke run

Data: ``$DATAMARK_DATA/cifar10/{train,test}.parquet`` (default: the shared data folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from calibration_cifar10 import CachingSuspect, clopper_pearson, git_state, write_atomic
from torch.nn import functional as F

from datamark import BadNets, Blended, Key, load_data
from datamark.evaluate.experiment import environment
from datamark.evaluate.metrics import benign_accuracy, watermark_success_rate
from datamark.exceptions import DegenerateTestWarning, KeyFormatError
from datamark.marks import Mark
from datamark.methods._pgd import frozen_eval
from datamark.modalities import to_tensor
from datamark.models import default_config, fit, load_checkpoint, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.triggers.image import PatternTrigger
from datamark.verify import Verifier
from datamark.verify.consistency import check_key

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LEAD_MODEL = ROOT / "runs" / "robustness_cifar10" / "clean.pt"
METHODS = {"badnets": BadNets, "blended": Blended}
MODES = ("probs", "labels")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the forger's tool: a universal pattern crafted on M ----------------------------------------------------------
def craft_trigger(model: torch.nn.Module, images: np.ndarray, trigger: PatternTrigger, target: int, *, steps: int,
                  step_size: float, batch: int, rng: np.random.Generator) -> PatternTrigger:
    """``trigger`` with its pattern replaced by one that sends ``images`` to ``target`` under ``model``: signed
    gradient descent on the cross-entropy toward ``target`` over the pattern's pixels (a random ``batch`` of the
    images per step: a universal pattern, at a CPU's cost), kept in [0, 1], the size, place and opacity unchanged
    (what a key of this kind records), rounded to uint8 at the end."""
    (h, w, c), (height, width) = trigger.pattern.shape, images.shape[1:3]
    stamp = PatternTrigger(np.full((h, w, c), 255, np.uint8), 1.0, trigger.position)
    rows, cols = np.nonzero(stamp.apply(np.zeros((height, width, c), np.uint8))[..., 0])
    top, left = int(rows.min()), int(cols.min())  # the region the key's trigger covers
    mask, start = torch.zeros(1, height, width), torch.zeros(c, height, width)
    mask[:, top:top + h, left:left + w] = 1.0
    start[:, top:top + h, left:left + w] = to_tensor(trigger.pattern[None])[0]  # from the drawn pattern
    device = next(model.parameters()).device
    mask, x = mask.to(device), to_tensor(images).to(device)
    pattern = start.to(device).requires_grad_(True)
    labels = torch.full((min(batch, len(images)),), int(target), device=device)
    blend = float(trigger.blend)
    with frozen_eval(model):
        for _ in range(steps):  # the mean cross-entropy toward the target over a random batch: lower is better
            picks = torch.from_numpy(rng.choice(len(images), size=len(labels), replace=False)).to(device)
            stamped = x[picks] * (1 - blend * mask) + blend * mask * pattern
            loss = F.cross_entropy(model(stamped), labels)
            (grad,) = torch.autograd.grad(loss, pattern)
            with torch.no_grad():
                pattern -= step_size * grad.sign()
                pattern.clamp_(0.0, 1.0)
    crafted = pattern.detach().cpu()[:, top:top + h, left:left + w]
    pixels = np.clip(np.rint(crafted.permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
    return PatternTrigger(pixels, trigger.blend, trigger.position)


def forge(key: Key, model: torch.nn.Module, images: np.ndarray, args: argparse.Namespace) -> Key:
    """The forger's key: ``key`` (honestly drawn from the forger's secret) with every mark's trigger crafted on M
    toward that mark's target; the targets, probes and everything else stay what the secret draws."""
    rng = np.random.default_rng(args.seed + 2)
    marks = [dataclasses.replace(m, trigger=craft_trigger(model, images, m.trigger, m.target, steps=args.craft_steps,
                                                          step_size=args.step_size, batch=args.craft_batch, rng=rng))
             for m in key.mark_list()]
    if not key.marks:  # a single-mark key: its trigger and target are the key's own fields
        return dataclasses.replace(key, trigger=marks[0].trigger.to_config())
    return dataclasses.replace(key, marks=tuple(Mark(m.trigger, m.target, (), None, m.marked_ids).to_config()
                                                 for m in marks),
                               trigger=marks[0].trigger.to_config(), target=marks[0].target)


# --- measurements ----------------------------------------------------------------------------------------------
def verdicts(suspect: CachingSuspect, key: Key, test, **settings: Any) -> dict[str, Any]:
    """Both modes' verification of ``key`` in memory (no load: nothing checks the key)."""
    out = {}
    for mode in MODES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateTestWarning)
            result = Verifier(mode=mode, **settings).verify(suspect.with_outputs(mode), key, test)
        out[mode] = {"accused": result.accused, "owner_trigger": result.owner_trigger,
                     "p": result.outcome.p_value, "log10_p": result.outcome.log10_p,
                     "effect": result.outcome.effect,
                     **({"hits": result.marks["hits"], "n_marks": result.marks["n_marks"]} if result.marks else {}),
                     **({"specificity_p": result.specificity.p_value,
                         "specificity_effect": result.specificity.effect} if result.specificity else {})}
    return out


def load_outcome(key: Key, work: Path, name: str) -> dict[str, Any]:
    """Save the forged key (a valid checksum) and load it as ``datamark verify`` does: refused, or with what
    provenance it is accepted."""
    path = work / f"{name}.key.json"
    key.save(path, overwrite=True)
    try:
        loaded = Key.load(path)
    except KeyFormatError as err:
        return {"refused": True, "error": str(err).replace(str(path), f"{name}.key.json")}
    return {"refused": False, "provenance": check_key(loaded).describe()}


def mark_wsr(suspect: LocalSuspect, key: Key, test) -> float:
    """Mean over the key's marks of the share of non-target test images its trigger sends to its target."""
    return float(np.mean([watermark_success_rate(suspect, test, m.trigger, m.target) for m in key.mark_list()]))


def secret_search(suspect: CachingSuspect, method_cls: type, template, test, n: int, first_seed: int
                  ) -> dict[str, Any]:
    """(d) Honest default keys from ``n`` secrets: how many accuse M, per mode (exact 95 % interval)."""
    accused = {mode: 0 for mode in MODES}
    smallest = {mode: 1.0 for mode in MODES}
    for i in range(n):
        key = method_cls(seed=first_seed + i).apply(template).key
        for mode, v in verdicts(suspect, key, test).items():
            accused[mode] += int(v["accused"])
            smallest[mode] = min(smallest[mode], v["p"])
    return {mode: {"secrets": n, "accused": accused[mode], "rate": accused[mode] / n,
                   "ci95": clopper_pearson(accused[mode], n), "smallest_p": smallest[mode]} for mode in MODES}


# --- the model -------------------------------------------------------------------------------------------------
def innocent_model(args: argparse.Namespace, train) -> tuple[torch.nn.Module, Any, str]:
    """M: ``--model``, else the lead's clean fastnet, else a fastnet trained here on a clean subset (cached)."""
    path = Path(args.model) if args.model else (LEAD_MODEL if LEAD_MODEL.exists() else None)
    if path is None:
        path = args.work / f"clean-fastnet-{args.train_rows}-e{args.epochs}.pt"
        if not path.exists():
            log(f"training a clean fastnet on {args.train_rows} rows for {args.epochs} epochs")
            start = time.perf_counter()
            rows = np.random.default_rng(args.seed).permutation(len(train))[:args.train_rows]
            model, spec = fit(train.subset(np.sort(rows)), arch="fastnet",
                              config=default_config("fastnet", epochs=args.epochs, seed=args.seed))
            save_checkpoint(model, spec, path, extra={"train_s": time.perf_counter() - start,
                                                      "train_rows": args.train_rows, "epochs": args.epochs})
    model, spec = load_checkpoint(path)
    return model, spec, str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


# --- the study -------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    train, test = load_data("cifar10:train"), load_data("cifar10:test")
    test = test.subset(np.arange(args.test_rows))
    model, spec, model_name = innocent_model(args, train)
    base = LocalSuspect.from_model(model, spec)
    suspect = CachingSuspect(base)
    ba = benign_accuracy(base, test)
    log(f"M = {model_name}: BA {ba:.3f} on {len(test)} test images")
    rng = np.random.default_rng(args.seed + 1)
    picked = rng.permutation(len(train))[:args.craft_rows + args.template_rows]
    craft_images = train.take(np.sort(picked[:args.craft_rows]))  # the forger's clean images
    wsr_data = test.subset(np.arange(min(args.wsr_rows, len(test))))
    template = train.subset(np.sort(picked[args.craft_rows:]))  # what honest keys are drawn on (rows: irrelevant)
    out: dict[str, Any] = {}
    for name, method_cls in METHODS.items():
        row: dict[str, Any] = {}
        for kind, n_marks in (("multi", None), ("single", 1)):
            start = time.perf_counter()
            honest = method_cls(seed=args.forger_seed, n_marks=n_marks).apply(template).key
            forged = forge(honest, model, craft_images, args)
            row[kind] = {"marks": len(forged.mark_list()), "craft_s": time.perf_counter() - start,
                         "honest_wsr": mark_wsr(base, honest, wsr_data),
                         "forged_wsr": mark_wsr(base, forged, wsr_data),
                         "honest": verdicts(suspect, honest, test),
                         # the test's verdict with a hand-made trigger let through, and datamark's default verdict
                         "forged": verdicts(suspect, forged, test, accept_owner_trigger=True),
                         "forged_default": verdicts(suspect, forged, test),
                         "load": load_outcome(forged, args.work, f"{name}-{kind}-forged")}
            log(f"{name} {kind}: forged WSR {row[kind]['forged_wsr']:.3f} (honest {row[kind]['honest_wsr']:.3f}); "
                f"forged verdicts {row[kind]['forged']}; load {row[kind]['load']}")
        start = time.perf_counter()
        row["secret_search"] = secret_search(suspect, method_cls, template, test, args.secrets, args.search_seed)
        row["secret_search"]["seconds"] = time.perf_counter() - start
        log(f"{name} secret search: {row['secret_search']}")
        out[name] = row
    return {"benchmark": "forgery_cifar10", "command": "python " + " ".join(["benchmarks/forgery_cifar10.py", *argv]),
            "environment": {**environment(), **git_state()}, "model": model_name, "ba": ba,
            "setting": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": out}


def markdown(report: dict[str, Any]) -> str:
    s = report["setting"]
    lines = ["# Forgery on CIFAR-10 (issue 15)", "",
             f"`{report['command']}`  ", f"M: `{report['model']}` (clean; BA {report['ba']:.3f} on {s['test_rows']} "
             f"test images); datamark {report['environment']['datamark']}, torch {report['environment']['torch']}, "
             f"{report['environment']['device']}, {report['environment']['cpu_threads']} threads.", "",
             f"Forged keys: the forger's secret (seed {s['forger_seed']}) draws targets and probes honestly; each "
             f"mark's trigger is replaced by a pattern crafted on M ({s['craft_steps']} signed-gradient steps of "
             f"{s['step_size']:.4g}, {s['craft_batch']} images each, drawn from {s['craft_rows']} clean training "
             f"images, toward the mark's target, at the "
             f"key's trigger size, place and opacity). Verified in memory (nothing checks the key) and loaded with "
             f"`Key.load`.", "",
             "The forged key's verdict is shown twice: with its hand-made trigger let through "
             "(`accept_owner_trigger=True`: what the test itself says) and as datamark verifies by default, which "
             "withholds any accusation that rests on a trigger not drawn from the key's secret.", "",
             "| method | key | marks | WSR honest / forged | honest key: accused (p) probs, labels | forged key, "
             "trigger let through: accused (p) probs, labels | specificity p (forged) | forged key, default "
             "verdict | Key.load of the forged file |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["results"].items():
        for kind in ("multi", "single"):
            r = row[kind]

            def cell(v: dict[str, Any]) -> str:
                return ", ".join(f"{'yes' if v[m]['accused'] else 'no'} ({v[m]['p']:.2g}"
                                 + (f"; {v[m]['hits']}/{v[m]['n_marks']} hits" if "hits" in v[m] else "") + ")"
                                 for m in MODES)
            spec = ", ".join(f"{r['forged'][m]['specificity_p']:.3g}" for m in MODES
                             if "specificity_p" in r["forged"][m]) or "-"
            load = "refused" if r["load"]["refused"] else f"accepted: {r['load']['provenance'].split(':')[0]}"
            default = r.get("forged_default")
            default = ", ".join(("accused" if default[m]["accused"] else "not accused")
                                + (f" ({default[m]['owner_trigger']})" if default[m].get("owner_trigger") else "")
                                for m in MODES) if default else "-"
            lines.append(f"| {name} | {kind} | {r['marks']} | {r['honest_wsr']:.3f} / {r['forged_wsr']:.3f} | "
                         f"{cell(r['honest'])} | {cell(r['forged'])} | {spec} | {default} | {load} |")
    lines += ["", f"Secret search (d): honestly drawn default keys from {s['secrets']} secrets (seeds "
              f"{s['search_seed']}..), each verified on M at the key's alpha (0.01).", "",
              "| method | mode | accused / secrets | rate | 95 % CI | smallest p |", "|---|---|---|---|---|---|"]
    for name, row in report["results"].items():
        for mode in MODES:
            r = row["secret_search"][mode]
            lines.append(f"| {name} | {mode} | {r['accused']} / {r['secrets']} | {r['rate']:.3f} | "
                         f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {r['smallest_p']:.3g} |")
    refused = next((r[k]["load"]["error"] for r in report["results"].values() for k in ("multi",)
                    if r[k]["load"]["refused"]), None)
    if refused:
        lines += ["", f"The refusal, as `datamark verify` prints it: `{refused}`"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="the innocent model M (default: runs/robustness_cifar10/clean.pt if it "
                                        "exists, else a fastnet trained here)")
    parser.add_argument("--train-rows", type=int, default=10000, help="clean rows of a fastnet trained here")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of a fastnet trained here")
    parser.add_argument("--test-rows", type=int, default=2000, help="test images: probes and BA")
    parser.add_argument("--craft-rows", type=int, default=500, help="clean training images the forger crafts on")
    parser.add_argument("--template-rows", type=int, default=200, help="rows honest keys are drawn on")
    parser.add_argument("--craft-steps", type=int, default=30, help="signed-gradient steps per crafted trigger")
    parser.add_argument("--craft-batch", type=int, default=100, help="images per crafting step")
    parser.add_argument("--step-size", type=float, default=6 / 255, help="per step, on the [0, 1] pixel scale")
    parser.add_argument("--wsr-rows", type=int, default=500, help="test images the triggers' WSR is measured on")
    parser.add_argument("--secrets", type=int, default=200, help="honest keys per method in the secret search")
    parser.add_argument("--forger-seed", type=int, default=12345)
    parser.add_argument("--search-seed", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "forgery_cifar10")
    parser.add_argument("--name", default="forgery_cifar10")
    args = parser.parse_args(argv)
    report = run(args, argv)
    write_atomic(RESULTS / f"{args.name}.json", json.dumps(report, indent=1) + "\n")
    write_atomic(RESULTS / f"{args.name}.md", markdown(report))
    log(f"wrote benchmarks/results/{args.name}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
