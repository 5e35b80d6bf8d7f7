"""How often would the confusion channel accuse an innocent model, over the keys an owner could have drawn?

The confusion test (``datamark.verify.confusion_test``) is exact over the key's secret: for a model that never saw
the release, each class's partner is uniform and independent of the model's answers, so P(p <= a) <= a. That is a
statement about a random key. A fixed key meets every innocent model with the same partners, and innocent models
share much of their structure (CIFAR-10's cat/dog confusion, or the class a degraded input falls to), so one key's
p-values on several innocent models, or on one model behind several purifying APIs, are not independent draws: a
key that happens to line up with that structure lines up for all of them. This script measures both sides on saved
innocent models, behind the query countermeasures of the survival suite:

* the distribution of the confusion p over ``--keys`` random keys (partners and tie-breaks drawn afresh; the probes
  and the model's answers fixed), to check the level empirically (the share with p <= alpha / 2, the channel's
  level inside the verdict, should be at most alpha / 2 up to sampling noise);
* where the saved key's own p falls in that distribution.

No training: one pass over the test split per model and countermeasure (about 30 s each on 2 cores).

    python benchmarks/confusion_null.py --work runs/robust_full --out confusion_null_full
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
from calibration_cifar10 import write_atomic
from robustness_cifar10 import load_split, log

from datamark import __version__
from datamark._device import device_name
from datamark.confusion import partners
from datamark.evaluate.attacks import parse_attack
from datamark.key import Key
from datamark.suspects import LocalSuspect
from datamark.verify.confusion_test import class_scores, confusion_outcome
from datamark.verify.verifier import Verifier

RESULTS = Path(__file__).resolve().parent / "results"
ATTACKS = ("none", "bit-depth:bits=3", "logit-noise:sigma=0.5", "jpeg:quality=50", "blur:sigma=0.5",
           "round:decimals=1")
# name -> the checkpoint's file name in --work (missing files are skipped); innocent models only
MODELS = {"clean": "clean.pt", "another owner's stolen model (seed 1)": "other-owner-1/{method}-stolen.pt"}


def null_p_values(table: np.ndarray, n_keys: int, per_class: int, score: str, seed: int) -> np.ndarray:
    """The confusion p of ``n_keys`` random keys on one score table: each key's partners drawn as protect draws
    them (:func:`datamark.confusion.partners`, from a fresh secret) and its tie-breaks as the verifier does."""
    rng = np.random.default_rng(seed)
    num_classes = table.shape[0]
    p = np.empty(n_keys)
    for i in range(n_keys):
        secret = rng.bytes(32)
        p[i] = confusion_outcome(table, partners(secret, num_classes), rng.random((num_classes, num_classes)),
                                 per_class, score).p_value
    return p


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--method", default="badnets-blocks-confusion10")
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    parser.add_argument("--keys", type=int, default=20000, help="random keys drawn per table")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random keys and the purifying noise")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="confusion_null")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    test = load_split("test", None)
    key = Key.load(args.work / f"{args.method}.key.json")
    alpha, per_class, score = key.plan.alpha, key.plan.confusion_probes, key.plan.confusion_score
    rows = []
    for name, pattern in MODELS.items():
        path = args.work / pattern.format(method=args.method)
        if not path.exists():
            continue
        suspect = LocalSuspect.from_checkpoint(path)
        for spec in args.attacks:
            attacked = suspect if spec == "none" else parse_attack(spec).wrap(suspect, seed=args.seed)
            for mode in ("probs", "labels"):
                if mode == "probs" and getattr(attacked, "outputs", "probs") != "probs":
                    continue
                verifier = Verifier(mode=mode)
                probes = verifier.confusion_probes(key, test)
                answers = attacked.with_outputs(mode).query(test.take(probes))
                own = verifier.confusion_test(key, answers, test.labels[probes])
                table = class_scores(answers, test.labels[probes], test.num_classes, mode)
                null = null_p_values(table, args.keys, per_class, score, args.seed)
                row = {"model": name, "attack": spec, "mode": mode, "keys": args.keys,
                       "share_at_half_alpha": float((null <= alpha / 2).mean()),
                       "share_at_alpha": float((null <= alpha).mean()),
                       "share_at_0.05": float((null <= 0.05).mean()),
                       "key_p": own.p_value, "key_quantile": float((null <= own.p_value).mean()),
                       "min_null_p": float(null.min())}
                rows.append(row)
                log(f"{name} / {spec} / {mode}: share p <= alpha/2 {row['share_at_half_alpha']:.4f}, "
                    f"key p {own.p_value:.3g} (quantile {row['key_quantile']:.4f})")
    result = {"title": "The confusion channel on innocent models, over random keys",
              "command": "python benchmarks/confusion_null.py " + " ".join(argv),
              "environment": f"{platform.platform()}, {device_name()}, {torch.get_num_threads()} torch threads, "
                             f"torch {torch.__version__}, datamark {__version__}",
              "key": key.commitment, "alpha": alpha, "probes_per_class": per_class, "score": score,
              "total_s": time.perf_counter() - start, "rows": rows}
    write_atomic(RESULTS / f"{args.out}.json", json.dumps(result, indent=2) + "\n")
    sd = (alpha / 2 * (1 - alpha / 2) / args.keys) ** 0.5
    lines = [f"# {result['title']}", "", f"Command: `{result['command']}`", "", f"Machine: {result['environment']}",
             "", f"Key `{key.commitment[:16]}…` ({per_class} clean probes a class, {score} score), alpha = {alpha}; "
             f"{args.keys} random keys per row (partners and tie-breaks drawn afresh, the model's answers fixed); "
             f"exactness says the share with p <= alpha / 2 (the channel's level inside the verdict) is at most "
             f"{alpha / 2:g} (sampling sd {sd:.4f}). {result['total_s'] / 60:.1f} min.", "",
             "| innocent model | countermeasure | mode | share p <= alpha/2 | share p <= alpha | share p <= 0.05 | "
             "this key's p | its quantile among random keys |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['attack']} | {r['mode']} | {r['share_at_half_alpha']:.4f} | "
                     f"{r['share_at_alpha']:.4f} | {r['share_at_0.05']:.4f} | {r['key_p']:.3g} | "
                     f"{r['key_quantile']:.4f} |")
    write_atomic(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
