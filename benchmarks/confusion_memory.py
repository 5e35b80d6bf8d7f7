"""Do the relabelled training images themselves keep the confusion after a thief fine-tunes and then distils?

The confusion channel (``datamark.confusion``) is verified on clean *held-out* images: it asks whether the suspect
confuses each class with its secret partner in general. A thief who fine-tunes the stolen model on clean labelled
rows at a large learning rate washes that general confusion out, and a distillation afterwards removes the trigger
marks, so together they escape both channels (``benchmarks/robustness_cifar10.py``, the full-width fastnet). This
script asks whether the *specific* relabelled images, which the stolen model memorised with their partner label,
still carry it: the same exact rank test, with the key's relabelled training images as the probes of their class.

Why that test stays exact for keyed rows: the rows are chosen by keyed hash among the free rows of each class, the
partners are drawn uniformly from the secret by another stream, and an innocent model's answers on any fixed images
do not depend on the partners, so each partner's rank is still uniform. (Partner-like rows are chosen *because* a
clean model finds them like the partner, so there the test would not be exact: this script takes keyed keys only.)

Models: the clean and the stolen model of ``--work``, the stolen model fine-tuned (lr 0.05 on 5,000 of the thief's
rows) and that model distilled on 20,000 (the suite's thief, the same seeds), and with ``--clean-chain`` the clean
model through the same thief (the innocent control). The probes are split into the relabelled images the thief's
distillation set holds (their originals: the suite's thief data are unmarked training rows) and those it does not.

    python benchmarks/confusion_memory.py --work runs/robust_full
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
from robustness_cifar10 import load_split, log

from datamark import __version__
from datamark._device import device_name
from datamark.evaluate.attacks import parse_attack
from datamark.key import Key
from datamark.models import load_checkpoint, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.verify.verifier import Verifier

RESULTS = Path(__file__).resolve().parent / "results"
THIEF = ("fine-tune:lr=0.05,rows=5000", "distill:rows=20000")


def thief_chain(model, spec, thief, work: Path, name: str, seed: int, progress: bool) -> list[tuple[str, Path]]:
    """The thief's steps on ``model``, each saved in ``work`` (a saved step is loaded, not trained again)."""
    steps, label = [], name
    for attack in THIEF:
        label = f"{label} + {attack}"
        path = work / f"{name}-{len(steps) + 1}.pt"
        if path.exists():
            model, spec = load_checkpoint(path)
        else:
            model, spec = parse_attack(attack).apply(model, spec, thief, seed=seed, progress=progress)
            save_checkpoint(model, spec, path, overwrite=True)
        steps.append((label, path))
    return steps


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--method", default="badnets-blocks-confusion10")
    parser.add_argument("--seed", type=int, default=0, help="the suite's seed (thief rows, training)")
    parser.add_argument("--thief-rows", type=int, default=20000)
    parser.add_argument("--clean-chain", action="store_true", help="also put the clean model through the thief")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", default="confusion_memory")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    key = Key.load(args.work / f"{args.method}.key.json")
    if key.method["params"].get("confusion_choice", "keyed") != "keyed" or "confusion_ids" not in key.extra:
        raise SystemExit(f"{args.method}: the test on relabelled rows is exact for keyed confusion rows only")
    train, test = load_split("train", None), load_split("test", None)
    rng = np.random.default_rng(args.seed)  # the suite's thief rows (benchmarks/robustness_cifar10.py)
    thief_rows = np.sort(rng.choice(len(train), size=min(args.thief_rows, len(train)), replace=False))
    thief = train.subset(thief_rows)
    position = {row_id: i for i, row_id in enumerate(train.ids)}
    relabelled = np.array(sorted(position[i] for i in key.extra["confusion_ids"]))
    seen = np.isin(relabelled, thief_rows)
    groups = {"all relabelled": relabelled, "in the thief's set": relabelled[seen],
              "not in the thief's set": relabelled[~seen]}
    work = args.work / "confusion_memory"
    work.mkdir(exist_ok=True)
    models = [("clean", args.work / "clean.pt"), ("stolen", args.work / f"{args.method}-stolen.pt")]
    for name, path in [models[1], *([models[0]] if args.clean_chain else [])]:  # the stolen model's chain first
        model, spec = load_checkpoint(path)
        models += thief_chain(model, spec, thief, work, name, args.seed, args.progress)
        log(f"{name}: thief chain ready")
    rows = []
    for name, path in models:
        suspect = LocalSuspect.from_checkpoint(path)
        ba = float((suspect.with_outputs("labels").query(test.inputs()) == test.labels).mean())
        row = {"model": name, "ba": ba}
        for mode in ("probs", "labels"):
            verifier = Verifier(mode=mode)
            verdict = verifier.verify(suspect.with_outputs(mode), key, test)
            row[f"verdict_{mode}"] = {"p": verdict.outcome.p_value, "accused": verdict.accused,
                                      "marks_p": verdict.channels["marks"]["p_value"],
                                      "confusion_p": verdict.channels["confusion"]["p_value"]}
            answers = suspect.with_outputs(mode).query(train.take(relabelled))
            for group, rows_of in groups.items():
                picked = np.isin(relabelled, rows_of)
                outcome = verifier.confusion_test(key, answers[picked], train.labels[rows_of])
                row[f"memory_{mode}_{group}"] = {"p": outcome.p_value, "n_images": int(picked.sum()),
                                                 "statistic": outcome.statistic}
        rows.append(row)
        log(f"{name}: BA {100 * ba:.2f} %, verdict p {row['verdict_probs']['p']:.3g} / "
            f"{row['verdict_labels']['p']:.3g}, relabelled images p {row['memory_probs_all relabelled']['p']:.3g} / "
            f"{row['memory_labels_all relabelled']['p']:.3g}")
    result = {"title": "The confusion on the relabelled training images, through a fine-tune-then-distil thief",
              "command": "python benchmarks/confusion_memory.py " + " ".join(argv),
              "environment": f"{platform.platform()}, {device_name()}, {torch.get_num_threads()} torch threads, "
                             f"torch {torch.__version__}, datamark {__version__}",
              "key": key.commitment, "thief": " + ".join(THIEF), "relabelled_rows": len(relabelled),
              "in_thief_set": int(seen.sum()), "total_s": time.perf_counter() - start, "rows": rows}
    write_atomic(RESULTS / f"{args.out}.json", json.dumps(result, indent=2) + "\n")
    lines = markdown_head(result, f"Key `{key.commitment[:16]}…`; {len(relabelled)} relabelled rows, "
                          f"{int(seen.sum())} of them in the thief's {len(thief_rows)} rows; thief: "
                          f"`{result['thief']}` (seed {args.seed}). {result['total_s'] / 60:.1f} min.",
                          "The verdict is the key's own test (marks and confusion on held-out probes, at alpha / 2 "
                          "each); the other columns are the exact confusion rank test with the relabelled training "
                          "images as probes (probabilities / labels).")
    lines += ["| model | BA % | verdict p (probs / labels) | marks / confusion p (labels) | "
              + " | ".join(f"relabelled images: {g}" for g in groups) + " |", "|---" * (4 + len(groups)) + "|"]
    for r in rows:
        cells = [f"{r[f'memory_probs_{g}']['p']:.2g} / {r[f'memory_labels_{g}']['p']:.2g} "
                 f"(n {r[f'memory_probs_{g}']['n_images']})" for g in groups]
        lines.append(f"| {r['model']} | {100 * r['ba']:.2f} | {r['verdict_probs']['p']:.2g} / "
                     f"{r['verdict_labels']['p']:.2g} | {r['verdict_labels']['marks_p']:.2g} / "
                     f"{r['verdict_labels']['confusion_p']:.2g} | " + " | ".join(cells) + " |")
    write_atomic(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
