"""Exploration (issue 17): how much would a randomization test over the marks' secret targets gain over the exact
binomial count of hits, on the default 10-mark graph keys of binary TU tasks?

The binomial marks test counts a mark as a hit when the suspect singles out its secret target; on a binary task
K = 10 marks accuse (p < 0.01) only when all 10 hit (p = 1/1024), and 9 hits give p = 11/1024 = 0.0107. The
randomization test here keeps every mark's evidence instead: per mark, the share of the triggered probes'
probability (or votes, label-only) on each class, the same per-class scores the binomial test ranks
(:func:`datamark.verify.marks_test.option_scores`); its statistic is the sum over marks of the secret target's
share. Under H0 (the suspect did not train on this key's data) the secret targets are uniform and independent of
the shares (every class is scored on the same probes, drawn without looking at the targets), so enumerating all
C^K target vectors gives the exact null distribution: p = #{vectors whose statistic >= the observed} / C^K. Its
floor is the same 1 / C^K, but a weak miss costs it little where the count loses a whole hit.

Nothing here changes verification: it trains the suspects of ``benchmarks/graph_tu.py`` (the default key,
``dvbw``), asks each mark's probes as the verifier does, and reports both p-values side by side.

    python benchmarks/graph_marks_randomization.py --datasets PROTEINS NCI1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph_tu import build, grid_arguments, train, write_results  # noqa: E402  (the benchmark's own recipe)

from datamark.data import load_data  # noqa: E402
from datamark.verify.marks_test import marks_outcome, option_scores, single_out  # noqa: E402
from datamark.verify.verifier import Verifier  # noqa: E402


def randomization_p(shares: np.ndarray, choices: np.ndarray) -> float:
    """Exact p of sum_k shares[k, choice_k] over all option vectors (shares: K x O; O^K must be small)."""
    observed = shares[np.arange(len(choices)), choices].sum()
    totals = np.zeros(1)
    for row in shares:  # every partial sum over the marks so far, for every choice vector
        totals = (totals[:, None] + row[None, :]).ravel()
    return float(np.mean(totals >= observed - 1e-12))


def judge(suspect, key, data, mode: str) -> dict[str, float]:
    """Both tests on one suspect, from the same answers."""
    verifier = Verifier(mode=mode)
    suspect = suspect.with_outputs(mode)
    marks = key.mark_list()
    _, slices = verifier.mark_probes(suspect, key, data)
    inputs, num_classes = data.inputs(), int(key.dataset["num_classes"])
    shares, choices, hits = [], [], 0
    for mark, rows in zip(marks, slices, strict=True):
        answers = [verifier._answers(suspect, t.apply(inputs[rows])) for t in mark.triggers]
        scores = option_scores(mark, answers, mode, data.labels[rows], num_classes)
        choice = mark.choice(num_classes)
        hits += single_out(scores) == choice
        shares.append(scores / scores.sum() if scores.sum() > 0 else np.full(len(scores), 1 / len(scores)))
        choices.append(choice)
    options = marks[0].options(num_classes)
    return {"hits": int(hits), "p_binomial": marks_outcome(int(hits), len(marks), options).p_value,
            "p_randomization": randomization_p(np.array(shares), np.array(choices))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    grid_arguments(p, ["PROTEINS", "NCI1"], "graph_marks_randomization")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, start = [], time.perf_counter()
    for name in args.datasets:
        train_data, test_data = load_data(f"graphs:{name}:train"), load_data(f"graphs:{name}:test")
        for arch, seed in itertools.product(args.archs, args.seeds):
            marked = build("dvbw", rate=0.1, seed=seed, target=1).apply(train_data)
            stolen, _ = train(marked.dataset, arch, seed, None)
            clean, _ = train(train_data, arch, seed, None)
            for scenario, suspect in (("Steal", stolen), ("Independent-M", clean)):
                for mode in ("probs", "labels"):
                    r = {"dataset": name, "arch": arch, "seed": seed, "scenario": scenario, "mode": mode,
                         **judge(suspect, marked.key, test_data, mode)}
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    lines = ["# Randomization vs binomial marks test on graph keys (exploration)", "",
             f"Command: `python {' '.join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])}`; "
             f"{time.perf_counter() - start:.0f} s; default key (K = 10 marks, gamma 0.1), graph_tu.py's suspects.",
             "", "| dataset | model | seed | scenario | mode | hits | binomial p | randomization p |",
             "|" + "---|" * 8]
    lines += [f"| {r['dataset']} | {r['arch']} | {r['seed']} | {r['scenario']} | {r['mode']} | {r['hits']} | "
              f"{r['p_binomial']:.3g} | {r['p_randomization']:.3g} |" for r in rows]
    write_results(args.out, rows, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
