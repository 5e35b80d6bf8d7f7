"""Sequential vs fixed-n verification on the embedded digits: queries spent and verdicts, stolen vs clean.

For each seed: BadNets (target 5) protects the digits training split; a tiny model is trained on the watermarked
data (stolen) and another on the clean data (independent). Both are verified in both modes with the fixed-n
test (the key's m = 100 probes, 200 queries) and with the anytime-valid betting test (rounds of 10 probes, at
most 200 probes), at the key's alpha = 0.01 and tau = 0.2. Writes ``benchmarks/results/sequential_digits.json``
and ``.md``.

With ``--n-marks K`` (K > 1) the key is datamark's default kind instead: K marks with secret triggers and
targets, decoys 0.1, verified with the verifiers' defaults (exact binomial over marks, 10 probes per mark;
sequentially one probe per mark), written as ``sequential_digits_marks.*``.

    python benchmarks/sequential_digits.py              # about a minute on 2 CPU cores
    python benchmarks/sequential_digits.py --n-marks 5  # the multi-mark key (5 marks on 8x8 digits)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from datamark import BadNets, Verifier
from datamark.evaluate.experiment import environment
from datamark.testing import digits_split, train_tiny
from datamark.verify import SequentialVerifier

RESULTS = Path(__file__).resolve().parent / "results"


def run_seed(seed: int, epochs: int, n_marks: int = 1) -> list[dict]:
    train, test = digits_split()
    marks = n_marks > 1
    marked = BadNets(seed=seed, n_marks=n_marks, decoy_rate=0.1).apply(train) if marks else BadNets(
        seed=seed, target=5).apply(train)
    models = {"stolen": train_tiny(marked.dataset, seed=seed, epochs=epochs),
              "clean": train_tiny(train, seed=1000 + seed, epochs=epochs)}
    rows = []
    for who, model in models.items():
        for mode in ("probs", "labels"):
            suspect = model.with_outputs(mode)
            if marks:  # the defaults: probes drawn from the key's secret
                fixed = Verifier(mode=mode).verify(suspect, marked.key, test)
                seq = SequentialVerifier(mode=mode).verify(suspect, marked.key, test)
            else:  # the published rows: the paper's test alone
                fixed = Verifier(mode=mode, seed=seed, n_control_triggers=0).verify(suspect, marked.key, test)
                seq = SequentialVerifier(mode=mode, seed=seed, n_probe=200, batch_size=10,
                                         n_control_triggers=0).verify(suspect, marked.key, test)
            rows.append({"seed": seed, "model": who, "mode": mode, "fixed_queries": fixed.queries,
                         "fixed_p": fixed.outcome.p_value, "fixed_accused": fixed.accused,
                         "seq_queries": seq.queries, "seq_p": seq.outcome.p_value, "seq_accused": seq.accused,
                         "seq_stopped": seq.sequential["stopped"]})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for who in ("stolen", "clean"):
        for mode in ("probs", "labels"):
            sel = [r for r in rows if r["model"] == who and r["mode"] == mode]
            q = np.array([r["seq_queries"] for r in sel])
            out.append({"model": who, "mode": mode, "runs": len(sel),
                        "fixed_accused": sum(r["fixed_accused"] for r in sel),
                        "seq_accused": sum(r["seq_accused"] for r in sel),
                        "fixed_queries": sel[0]["fixed_queries"], "seq_queries_mean": float(q.mean()),
                        "seq_queries_min": int(q.min()), "seq_queries_max": int(q.max()),
                        "stops": {s: sum(r["seq_stopped"] == s for r in sel) for s in
                                  sorted({r["seq_stopped"] for r in sel})}})
    return out


def markdown(report: dict) -> str:
    key = (f"BadNets with {report['n_marks']} marks (secret targets), decoys 0.1: exact binomial over marks"
           if report.get("n_marks", 1) > 1 else "BadNets target 5, the paper's paired tests: tau = 0.2")
    lines = ["# Sequential (betting e-process) vs fixed-n verification, embedded digits, tiny models", "",
             f"{report['date']}; seeds {report['seeds']}; {report['epochs']} epochs; {report['threads']} torch "
             f"thread(s); {key}; alpha = 0.01; {report['seconds']:.0f} s in all.",
             f"Command: `{report['command']}`.", "",
             "| model | mode | runs | accused (fixed) | accused (sequential) | queries fixed | queries sequential "
             "mean [min, max] | stops |", "|---|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {s['model']} | {s['mode']} | {s['runs']} | {s['fixed_accused']} | {s['seq_accused']} | "
              f"{s['fixed_queries']} | {s['seq_queries_mean']:.0f} [{s['seq_queries_min']}, {s['seq_queries_max']}] | "
              f"{', '.join(f'{k}: {v}' for k, v in s['stops'].items())} |" for s in report["summary"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: tiny models train fastest on a "
                        "shared 2-core machine; contention makes 2 threads many times slower)")
    parser.add_argument("--n-marks", type=int, default=1, help="1: the paper's key (the published rows); K > 1: "
                        "datamark's default kind of key with K marks")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = [r for seed in range(args.seeds) for r in run_seed(seed, args.epochs, args.n_marks)]
    report = {"command": " ".join(["python", *sys.argv]),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seeds": list(range(args.seeds)),
              "epochs": args.epochs, "threads": args.threads, "n_marks": args.n_marks,
              "seconds": time.perf_counter() - start,
              "environment": environment(), "summary": summarise(rows), "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "sequential_digits" if args.n_marks == 1 else "sequential_digits_marks"
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
