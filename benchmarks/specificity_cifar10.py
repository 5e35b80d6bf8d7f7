"""The trigger-specificity control on CIFAR-10 models trained earlier: does it remove the false accusations of
the Independent-T scenario while keeping the stolen models accused?

For each (key, stolen model) pair given, the three scenarios are evaluated with ``Verifier(n_control_triggers=k)``
(k = 100 by default, the least that can reject at alpha = 0.01); each row reports the paper's test and the
control. The clean (independent) model is the same for all. Needs the models and keys of the other CIFAR-10
benchmarks (``runs/``), which are not in the repository: run those first.

    python benchmarks/specificity_cifar10.py --pair badnets=runs/dvbw_cifar10 --pair wanet=runs/ubw_cifar10 \\
        --clean runs/dvbw_cifar10/clean.pt
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from datamark import load_data
from datamark.evaluate import evaluate_scenarios
from datamark.evaluate.experiment import environment
from datamark.evaluate.report import markdown_table
from datamark.key import Key
from datamark.suspects import LocalSuspect
from datamark.verify import Verifier

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", action="append", required=True, metavar="METHOD=RUN_DIR",
                        help="A method whose <RUN_DIR>/<METHOD>.key.json and <METHOD>-stolen.pt exist.")
    parser.add_argument("--clean", type=Path, required=True, help="Checkpoint of the clean (independent) model.")
    parser.add_argument("--control-triggers", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="specificity_cifar10")
    args = parser.parse_args(argv)
    test = load_data("cifar10:test")
    clean = LocalSuspect.from_checkpoint(args.clean)
    verifier = Verifier(seed=args.seed, n_control_triggers=args.control_triggers)
    command = "python " + " ".join(["benchmarks/specificity_cifar10.py", *(argv if argv is not None else sys.argv[1:])])
    results = {"command": command, "environment": environment(), "control_triggers": args.control_triggers,
               "clean": str(args.clean), "runs": {}}
    md = [f"# Trigger-specificity control on CIFAR-10 (k = {args.control_triggers} independent triggers)\n",
          f"Command: `{command}`\n", f"Machine: {results['environment']['platform']}, torch "
          f"{results['environment']['torch']}, device {results['environment']['device']}.\n"]
    for item in args.pair:
        name, _, folder = item.partition("=")
        start = time.perf_counter()
        key = Key.load(Path(folder) / f"{name}.key.json")
        stolen = LocalSuspect.from_checkpoint(Path(folder) / f"{name}-stolen.pt")
        rows = evaluate_scenarios(key, stolen, clean, test, verifier=verifier, seed=args.seed)
        seconds = time.perf_counter() - start
        results["runs"][f"{name}@{folder}"] = {"seconds": seconds, "scenarios": [r.to_dict() for r in rows]}
        md += [f"## {name} ({folder}, key {key.commitment[:16]}…, {seconds:.0f} s)\n", markdown_table(rows), ""]
        print("\n".join(md[-3:]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
