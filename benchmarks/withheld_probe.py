"""Does a thief's model still remember the release's own items after it fine-tunes and distils? (issue 15)

A feasibility probe for a trigger-free channel that no datamark key has yet: the owner withholds a secret, coin-
chosen half of some pairs of items from the release, and later asks whether the suspect is more at home on the
released item of each pair than on the withheld one. Under H0 (the suspect never trained on the release) the coin
is independent of the suspect, so "the released item has the lower loss" is a fair coin per pair and the binomial
p-value is an exact bound on false accusation, whatever the model. Huang, Gong and Reiter (CCS 2024) publish
x + delta or x - delta instead (nothing withheld); that prototype found no signal at this scale
(``benchmarks/audit_prototype.py``: ±8/255 copies are too alike for a 10-epoch model to tell apart). Withholding
whole items asks for the plain generalisation gap instead, which is large in the stolen model; the question is how
much of it a student distilled on *other* images inherits (Jagielski et al., "Students Parrot Their Teachers",
NeurIPS 2023, for membership through distillation).

No key is changed and nothing is withheld here: the probe stands in for it with the release's unchanged training
rows that the thief's rows do not hold ("members": the thief never had them, so whatever the student knows of them
came through the teacher) against the CIFAR-10 test split ("non-members", drawn from the same distribution by the
dataset's own random split). The random pairing of members with non-members plays the owner's coin. So it measures
the *signal* such a channel would test; the channel's exactness rests on the coin, which a real key would draw.
The stand-in is not exchangeable: the test split is harder than the training rows even for a model that never saw
either (the own-data row, 2026-11-30: AUC 0.531, p 0.0024 at 2,500 pairs), so read every row against that innocent
control, never against 0.5. A real channel's coin would cancel that bias exactly.

Models: the stolen model of ``--work`` and, for each ``--attacks`` entry, the stolen model through it (the suite's
thief rows and seed, so the same models as ``benchmarks/robustness_cifar10.py``; saved in ``--work/withheld``).
``own-data`` (a fresh model on the thief's rows alone) is the innocent control: it never saw a member.

    python benchmarks/withheld_probe.py --work runs/robust_full_s1 --seed 1
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
from scipy.stats import binomtest

from datamark import __version__
from datamark._device import device_name
from datamark.evaluate.attacks import parse_attack
from datamark.key import Key
from datamark.models import load_checkpoint, save_checkpoint
from datamark.suspects import LocalSuspect

RESULTS = Path(__file__).resolve().parent / "results"
ATTACKS = ("fine-tune:lr=0.05,rows=5000+distill:rows=20000,labels=true", "own-data:rows=20000")


def attacked(model, spec, attack: str, thief, path: Path, seed: int, progress: bool):
    """The stolen model through ``attack`` (loaded from ``path`` when an earlier run saved it)."""
    if path.exists():
        return load_checkpoint(path)
    model, spec = parse_attack(attack).apply(model, spec, thief, seed=seed, progress=progress)
    save_checkpoint(model, spec, path, overwrite=True)
    return model, spec


def losses(suspect: LocalSuspect, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each item's loss (-log of the true class's probability) and whether the suspect's top answer is right."""
    probs = suspect.query(images)
    true = probs[np.arange(len(labels)), labels]
    return -np.log(np.clip(true, 1e-12, 1.0)), probs.argmax(1) == labels


def audit(member_loss, member_right, other_loss, other_right, pairs: int, rng: np.random.Generator) -> dict:
    """``pairs`` random (member, non-member) pairs: how often the member has the lower loss (probabilities) or is
    the one answered right where exactly one is (labels), with the one-sided exact binomial p-value of each."""
    m = rng.choice(len(member_loss), pairs, replace=False)
    o = rng.choice(len(other_loss), pairs, replace=False)
    wins = int((member_loss[m] < other_loss[o]).sum())
    split = member_right[m] != other_right[o]
    label_wins = int((member_right[m] & split).sum())
    return {"pairs": pairs, "loss_wins": wins,
            "p_probs": binomtest(wins, pairs, 0.5, alternative="greater").pvalue,
            "label_pairs": int(split.sum()), "label_wins": label_wins,
            "p_labels": binomtest(label_wins, int(split.sum()), 0.5, alternative="greater").pvalue
            if split.any() else 1.0}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--method", default="badnets-blocks-confusion10-ambiguous")
    parser.add_argument("--seed", type=int, default=0, help="the suite's seed (thief rows, attacks)")
    parser.add_argument("--thief-rows", type=int, default=20000)
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    parser.add_argument("--pairs", type=int, nargs="+", default=[500, 1000, 2500],
                        help="audit sizes: how many pairs an owner would withhold one item of")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", default="withheld_probe")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON and Markdown results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    key = Key.load(args.work / f"{args.method}.key.json")
    train, test = load_split("train", None), load_split("test", None)
    rng = np.random.default_rng(args.seed)  # the suite's thief rows (benchmarks/robustness_cifar10.py)
    thief_rows = np.sort(rng.choice(len(train), size=min(args.thief_rows, len(train)), replace=False))
    thief = train.subset(thief_rows)
    changed = {i for field in ("marked_ids", "decoy_ids", "confusion_ids")
               for i in (getattr(key, field, None) or key.extra.get(field) or [])}
    members = np.array([i for i, row_id in enumerate(train.ids) if row_id not in changed])
    members = np.setdiff1d(members, thief_rows)
    log(f"{len(changed)} changed rows left out; {len(members)} members (unchanged, not in the thief's rows), "
        f"{len(test)} non-members")
    member_images, member_labels = train.take(members), np.asarray(train.labels)[members]
    other_images, other_labels = test.inputs(), np.asarray(test.labels)
    stolen, spec = load_checkpoint(args.work / f"{args.method}-stolen.pt")
    work = args.work / "withheld"
    work.mkdir(exist_ok=True)
    models = [("stolen", stolen, spec)]
    for i, attack in enumerate(args.attacks):
        model, model_spec = attacked(stolen, spec, attack, thief, work / f"{args.method}-{i}.pt", args.seed,
                                     args.progress)
        models.append((attack, model, model_spec))
        log(f"{attack}: ready")
    rows = []
    for name, model, model_spec in models:
        suspect = LocalSuspect.from_model(model, model_spec)
        m_loss, m_right = losses(suspect, member_images, member_labels)
        o_loss, o_right = losses(suspect, other_images, other_labels)
        order = np.concatenate([m_loss, o_loss]).argsort().argsort()  # AUC by ranks (Mann-Whitney)
        auc = (order[:len(m_loss)].sum() - len(m_loss) * (len(m_loss) - 1) / 2) / (len(m_loss) * len(o_loss))
        row = {"model": name, "ba": float(o_right.mean()), "member_accuracy": float(m_right.mean()),
               "member_loss": float(m_loss.mean()), "nonmember_loss": float(o_loss.mean()),
               "auc_lower_loss_member": float(1 - auc),
               "audits": [audit(m_loss, m_right, o_loss, o_right, n, np.random.default_rng([args.seed, n]))
                          for n in args.pairs]}
        rows.append(row)
        log(f"{name}: BA {100 * row['ba']:.2f} %, members {100 * row['member_accuracy']:.2f} %, loss "
            f"{row['member_loss']:.3f} vs {row['nonmember_loss']:.3f}, AUC {row['auc_lower_loss_member']:.3f}, "
            + ", ".join(f"{a['pairs']} pairs p {a['p_probs']:.2g} / {a['p_labels']:.2g}" for a in row["audits"]))
    result = {"title": "Membership of the release's items through the thief's countermeasures (a probe)",
              "command": "python benchmarks/withheld_probe.py " + " ".join(argv),
              "environment": f"{platform.platform()}, {device_name()}, {torch.get_num_threads()} torch threads, "
                             f"torch {torch.__version__}, datamark {__version__}",
              "key": key.commitment, "members": len(members), "nonmembers": len(test),
              "total_s": time.perf_counter() - start, "rows": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    write_atomic(args.results / f"{args.out}.json", json.dumps(result, indent=2) + "\n")
    lines = markdown_head(result, f"Key `{key.commitment[:16]}…` (its release's unchanged rows); {len(members)} "
                          f"members (not in the thief's {len(thief_rows)} rows), {len(test)} non-members (the test "
                          f"split); seed {args.seed}. {result['total_s'] / 60:.1f} min.",
                          "AUC: the chance that a random member has a lower loss than a random non-member. The "
                          "stand-in is biased (the test split is harder), so the innocent own-data row, not 0.5, is "
                          "what no memory looks like. Audits: n random member / non-member pairs, one-sided exact "
                          "binomial p that the member wins (probabilities: the lower loss; labels: answered right "
                          "where only one is).")
    lines += ["| model | BA % | members' accuracy % | loss members / non-members | AUC | "
              + " | ".join(f"{n} pairs: p (probs / labels)" for n in args.pairs) + " |",
              "|---" * (5 + len(args.pairs)) + "|"]
    for r in rows:
        lines.append(f"| {r['model']} | {100 * r['ba']:.2f} | {100 * r['member_accuracy']:.2f} | "
                     f"{r['member_loss']:.3f} / {r['nonmember_loss']:.3f} | {r['auc_lower_loss_member']:.3f} | "
                     + " | ".join(f"{a['p_probs']:.2g} / {a['p_labels']:.2g}" for a in r["audits"]) + " |")
    write_atomic(args.results / f"{args.out}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
