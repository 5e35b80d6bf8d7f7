"""How many clean probes per class the confusion channel should ask: its power against the probes, both modes.

The confusion test ranks each class's secret partner among the other classes by the suspect's answers on clean
probes of the class (``datamark.verify.confusion_test``); its level is exact whatever the number of probes, so the
number is a cost (queries) against power. With probabilities the stolen model is at the test's floor from 100 probes
a class; with labels only the score is a share of answers, whose noise falls as 1 / sqrt(probes). This script
re-scores saved models of ``robustness_cifar10.py`` / ``confusion_cifar10.py`` in ``--work`` at several probe counts
(the key's keyed probe order, its first N of each class, exactly as ``Verifier.confusion_probes``) and reports
the confusion p and the verdict's union p (the marks test's p, at the key's own plan, is the same for every N).
No training: about a minute per model on 2 cores.

    python benchmarks/confusion_probes.py --work runs/robust_narrow --out confusion_probes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch
from calibration_cifar10 import write_atomic
from robustness_cifar10 import load_split, log

from datamark import __version__
from datamark._device import device_name
from datamark.key import Key
from datamark.suspects import LocalSuspect
from datamark.verify.confusion_test import union_outcome
from datamark.verify.stats import TestOutcome
from datamark.verify.verifier import Verifier

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("badnets-blocks-confusion", "badnets-blocks-confusion10")
# name -> the checkpoint's file name in --work ({method}: the key's method; missing files are skipped)
MODELS = {"stolen": "{method}-stolen.pt", "clean": "clean.pt",
          "stolen's student (20,000 unchanged rows)": "{method}-stolen-student-unchanged-rows.pt",
          "5 % loss-filtered retrain's student": "{method}-loss-filtered-student.pt",
          "20 % loss-filtered retrain's student": "{method}-loss-filtered20-student.pt",
          "another owner's stolen model (seed 1)": "other-owner-1/{method}-stolen.pt"}


def with_probes(key: Key, per_class: int) -> Key:
    """``key`` whose plan asks ``per_class`` confusion probes a class (everything else, the secret included, kept)."""
    return dataclasses.replace(key, verification={**key.verification, "confusion_probes": per_class})


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--probes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="confusion_probes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    test = load_split("test", None)
    rows = []
    for method in args.methods:
        key = Key.load(args.work / f"{method}.key.json")
        for name, pattern in MODELS.items():
            path = args.work / pattern.format(method=method)
            if not path.exists():
                continue
            suspect = LocalSuspect.from_checkpoint(path)
            every = suspect.query(test.inputs())  # each probe count asks a subset of these answers
            for mode in ("probs", "labels"):
                verifier = Verifier(mode=mode)
                marks = TestOutcome(**verifier.verify(suspect.with_outputs(mode), key, test).channels["marks"])
                for per_class in args.probes:
                    sized = with_probes(key, per_class)
                    probes = verifier.confusion_probes(sized, test)
                    answers = every[probes] if mode == "probs" else every[probes].argmax(1)
                    confusion = verifier.confusion_test(sized, answers, test.labels[probes])
                    p_union = union_outcome(marks, confusion).p_value  # the verdict's rule: each channel at alpha/2
                    p_confusion = confusion.p_value
                    rows.append({"method": method, "model": name, "mode": mode, "probes_per_class": per_class,
                                 "queries": int(len(probes)), "p_marks": marks.p_value, "p_confusion": p_confusion,
                                 "p": p_union, "accused": p_union < key.plan.alpha})
                    log(f"{method} {name} ({mode}, {per_class}/class): confusion p {p_confusion:.3g}, "
                        f"union {p_union:.3g}")
    result = {"title": "The confusion channel's power against its clean probes per class",
              "command": "python benchmarks/confusion_probes.py " + " ".join(argv),
              "environment": f"{platform.platform()}, {device_name()}, torch {torch.__version__}, datamark "
                             f"{__version__}", "total_s": time.perf_counter() - start, "rows": rows}
    write_atomic(RESULTS / f"{args.out}.json", json.dumps(result, indent=2) + "\n")
    counts = args.probes
    lines = [f"# {result['title']}", "", f"Command: `{result['command']}`", "", f"Machine: {result['environment']}",
             "", f"Confusion p (verdict's union p in brackets; accused when it is < alpha = 0.01) at each number of "
             f"clean probes per class; {result['total_s'] / 60:.1f} min.", "",
             "| key | model | mode | " + " | ".join(f"{n} / class" for n in counts) + " |",
             "|---|---|---|" + "---|" * len(counts)]
    for i in range(0, len(rows), len(counts)):
        group = rows[i:i + len(counts)]
        first = group[0]
        cells = " | ".join(f"{r['p_confusion']:.2g} ({r['p']:.2g}{', accused' if r['accused'] else ''})"
                           for r in group)
        lines.append(f"| {first['method']} | {first['model']} | {first['mode']} | {cells} |")
    write_atomic(RESULTS / f"{args.out}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
