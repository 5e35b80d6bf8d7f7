"""The confusion channel on CIFAR-10: its level on innocent models, and another owner's key (issue 15).

Uses the models of ``robustness_cifar10.py --stage models --methods badnets-blocks-confusion`` in ``--work`` (the
owner's key and stolen model, and the clean model), and trains one more: **another owner's stolen model**, a
model of the same architecture trained on a release protected with the same method and settings but another
secret (``--other-seed``), so its marks and its classes' partners are another owner's (Independent-T for both
channels); and distils the stolen model (T = 4, 10 epochs, as ``distill:rows=20000``) on 20,000 training rows
the release left **unchanged** (no marked, decoy or relabelled row): a thief whose own data holds none of the
owner's changed rows, so whatever the student keeps came through the teacher's answers on clean images.

Then, per model, in both modes:

* the owner's verdict (the Bonferroni union of the marks test and the confusion test, each at alpha / 2), with
  each channel's p;
* the confusion channel's **level in simulation**: the suspect's class-score table is computed once, then ranked
  against the partners of ``--keys`` random secrets (other owners' keys: the null the test's exactness rests on);
  the share of them with p < alpha / 2 must stay at or below alpha / 2 on every model (the stolen one included:
  to another owner's key it is innocent).

    python benchmarks/confusion_cifar10.py --work runs/robust_narrow --widths 32 64 128 --filter-then-distill
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from calibration_cifar10 import markdown_head, write_atomic
from robustness_cifar10 import build_method, load_split, log, same_release, train_or_load

from datamark import __version__
from datamark._device import device_name
from datamark._rng import resolve_secret
from datamark.confusion import partners
from datamark.evaluate.attacks import parse_attack
from datamark.key import Key
from datamark.models import load_checkpoint, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.verify.confusion_test import class_scores, confusion_outcome
from datamark.verify.verifier import Verifier

RESULTS = Path(__file__).resolve().parent / "results"
METHOD = "badnets-blocks-confusion"  # the default of --method


def level(table: np.ndarray, keys: int, alpha: float, score: str) -> dict:
    """The share of ``keys`` random secrets whose partners the table 'confirms' at alpha / 2 (and at alpha), the
    partners scored as the key's plan says (``score``)."""
    num_classes = table.shape[0]
    rng = np.random.default_rng(12345)
    ps = []
    for i in range(keys):
        secret = resolve_secret(10**9 + i)  # secrets no owner in this run drew
        tie_break = rng.random((num_classes, num_classes))
        ps.append(confusion_outcome(table, partners(secret, num_classes), tie_break, 0, score).p_value)
    ps = np.asarray(ps)
    return {"keys": keys, "rejected_half_alpha": float(np.mean(ps < alpha / 2)),
            "rejected_alpha": float(np.mean(ps < alpha)), "smallest_p": float(ps.min())}


def distil_once(teacher_path: Path, thief, student_path: Path, args) -> None:
    """The teacher's student (``distill:rows=20000``: T = 4, 10 epochs) on ``thief``, trained once and saved."""
    if student_path.exists():
        return
    teacher, spec = load_checkpoint(teacher_path)
    begin = time.perf_counter()
    student, student_spec = parse_attack("distill:rows=20000").apply(teacher, spec, thief, seed=args.seed,
                                                                     progress=args.progress)
    save_checkpoint(student, student_spec, student_path, overwrite=True)
    log(f"distilled {student_path.name} in {time.perf_counter() - begin:.0f} s")


def filter_then_distill(args, key: Key, train) -> dict[str, Path]:
    """A thief who knows both channels: drop the ``--filter-fraction`` (5 %) of released rows with the highest loss
    under the stolen model (``loss-filter``, which finds relabelled rows), retrain on the rest, then distil that
    model on the thief's 20,000 clean rows (drawn as robustness_cifar10.py draws them). Returns both models'
    paths (named by the fraction where it is not 5 %)."""
    method, fraction = args.method, args.filter_fraction
    tag = "" if fraction == 0.05 else f"{round(100 * fraction)}"
    filtered_path = args.work / f"{method}-loss-filtered{tag}.pt"
    student_path = args.work / f"{method}-loss-filtered{tag}-student.pt"
    if not filtered_path.exists():
        released = build_method(method, args.seed, args.work / "clean.pt").apply(train)
        if not same_release(released.key, key):
            raise SystemExit("re-protecting gave another key; use the --work of robustness_cifar10.py")
        model, spec = load_checkpoint(args.work / f"{method}-stolen.pt")
        flagged = parse_attack(f"loss-filter:fraction={fraction}").flag(model, spec, released.dataset, seed=args.seed)
        position = {row_id: i for i, row_id in enumerate(train.ids)}
        relabelled = {position[i] for i in key.extra["confusion_ids"]}
        log(f"loss-filter flagged {len(flagged)} rows, {len(relabelled & set(flagged.tolist()))} of the "
            f"{len(relabelled)} relabelled ones")
        kept = np.setdiff1d(np.arange(len(train)), flagged)
        train_or_load(filtered_path, released.dataset.subset(kept), args)
    thief = train.subset(np.sort(np.random.default_rng(args.seed).choice(len(train), 20000, replace=False)))
    distil_once(filtered_path, thief, student_path, args)
    share = f"{100 * fraction:g} %"
    return {f"loss-filtered retrain ({share})": filtered_path,
            f"loss-filtered retrain's student ({share})": student_path}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--widths", type=int, nargs=3, help="fastnet stage widths (as the models were trained)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int, default=0, help="the owner's seed (as robustness_cifar10.py)")
    parser.add_argument("--method", default=METHOD, help="a confusion key of robustness_cifar10.py's methods")
    parser.add_argument("--other-seed", type=int, default=1, help="the other owner's seed (0: no other owner)")
    parser.add_argument("--keys", type=int, default=10000, help="random secrets per model for the level")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--filter-then-distill", action="store_true",
                        help="also the thief who loss-filters the release, retrains, then distils (2 trainings)")
    parser.add_argument("--filter-fraction", type=float, default=0.05,
                        help="the share of the release the --filter-then-distill thief drops by loss")
    parser.add_argument("--out", default="confusion_cifar10")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.perf_counter()
    method = args.method
    key = Key.load(args.work / f"{method}.key.json")
    train, test = load_split("train", None), load_split("test", None)
    other_dir = args.work / f"other-owner-{args.other_seed}"
    other_path = other_dir / f"{method}-stolen.pt"
    if args.other_seed and not other_path.exists():
        other_dir.mkdir(exist_ok=True)
        marked = build_method(method, args.other_seed, args.work / "clean.pt").apply(train)
        marked.key.save(other_dir / f"{method}.key.json", overwrite=True)
        train_or_load(other_path, marked.dataset, args)
    student_path = args.work / f"{method}-stolen-student-unchanged-rows.pt"
    changed = set(key.marked_ids) | set(key.extra.get("decoy_ids", ())) | set(key.extra["confusion_ids"])
    unchanged = np.flatnonzero([row_id not in changed for row_id in train.ids])  # the thief's rows: none changed
    thief = train.subset(np.sort(np.random.default_rng(args.seed).choice(unchanged, 20000, replace=False)))
    distil_once(args.work / f"{method}-stolen.pt", thief, student_path, args)
    models = {"stolen": args.work / f"{method}-stolen.pt", "clean": args.work / "clean.pt",
              **({"other owner's stolen": other_path} if args.other_seed else {}),
              "stolen's student (distilled on 20,000 unchanged rows)": student_path}
    if args.filter_then_distill:
        models.update(filter_then_distill(args, key, train))
    probes = Verifier().confusion_probes(key, test)
    rows = []
    for name, path in models.items():
        suspect = LocalSuspect.from_checkpoint(path)
        every = suspect.query(test.inputs())
        ba = float((every.argmax(1) == test.labels).mean())
        probs = every[probes]
        for mode in ("probs", "labels"):
            result = Verifier(mode=mode).verify(suspect.with_outputs(mode), key, test)
            answers = probs if mode == "probs" else probs.argmax(1)
            table = class_scores(answers, test.labels[probes], test.num_classes, mode)
            rows.append({"model": name, "mode": mode, "ba": ba, "accused": result.accused, "p": result.outcome.p_value,
                         "p_marks": result.channels["marks"]["p_value"],
                         "p_confusion": result.channels["confusion"]["p_value"],
                         "confusion_note": result.channels["confusion"]["note"],
                         "level": level(table, args.keys, key.plan.alpha, key.plan.confusion_score)})
            log(f"{name} ({mode}): p {result.outcome.p_value:.3g} (marks {rows[-1]['p_marks']:.3g}, confusion "
                f"{rows[-1]['p_confusion']:.3g}); level {rows[-1]['level']}")
    result = {"title": "The confusion channel on CIFAR-10: level and another owner's key",
              "command": "python benchmarks/confusion_cifar10.py " + " ".join(argv),
              "environment": f"{platform.platform()}, {device_name()}, torch {torch.__version__}, datamark "
                             f"{__version__}", "key": key.commitment, "alpha": key.plan.alpha,
              "total_s": time.perf_counter() - start, "rows": rows}
    write_atomic(RESULTS / f"{args.out}.json", json.dumps(result, indent=2) + "\n")
    lines = markdown_head(result, f"Key {key.commitment[:16]}…, alpha {key.plan.alpha}; level: share of {args.keys} "
                          f"random secrets' partners with confusion p < alpha/2 (and < alpha) on the model's clean "
                          f"answers; {result['total_s'] / 60:.1f} min.")
    lines += ["| model | BA % | mode | accused | p (union) | p marks | p confusion | level at alpha/2 | "
              "level at alpha | smallest p |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lv = r["level"]
        lines.append(f"| {r['model']} | {100 * r['ba']:.2f} | {r['mode']} | {'yes' if r['accused'] else 'no'} | "
                     f"{r['p']:.3g} | "
                     f"{r['p_marks']:.3g} | {r['p_confusion']:.3g} | {lv['rejected_half_alpha']:.4f} | "
                     f"{lv['rejected_alpha']:.4f} | {lv['smallest_p']:.2g} |")
    write_atomic(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
