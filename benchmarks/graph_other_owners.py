"""How often does another owner's key accuse a model it did not watermark? The false-accusation rate of the
randomization marks test measured on one stolen graph model (issue 17).

The thief's model is trained on one owner's watermarked TU training graphs (the default 10-mark key, or a mark
design of ``graph_mark_designs.py``); then ``--keys`` other owners' keys of the same method
(:func:`datamark.evaluate.scenarios.independent_key`: fresh secret targets, fresh sub-graphs of the same sizes and
family) are verified against it. None of them watermarked the data, so each verdict is innocent; the test is exact,
so the share of p-values at or below any level a should be at most a.

    python benchmarks/graph_other_owners.py --dataset PROTEINS --arch gin --seed 1 --design sized-er --keys 300
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph_mark_designs import DESIGNS  # noqa: E402
from graph_tu import train, write_results  # noqa: E402

from datamark import BadNets, Verifier  # noqa: E402
from datamark.data import load_data  # noqa: E402
from datamark.evaluate.scenarios import independent_key  # noqa: E402

LEVELS = (0.01, 0.05, 0.1, 0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="PROTEINS")
    p.add_argument("--arch", default="gin")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--design", default="sized", choices=list(DESIGNS))
    p.add_argument("--keys", type=int, default=300)
    p.add_argument("--mode", default="probs", choices=["probs", "labels"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="graph_other_owners")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train_data, test_data = load_data(f"graphs:{args.dataset}:train"), load_data(f"graphs:{args.dataset}:test")
    train_data.modality.mark_sizes, train_data.modality.MARK_OPTIONS = DESIGNS[args.design]
    marked = BadNets(seed=args.seed, rate=0.1).apply(train_data)
    stolen, _ = train(marked.dataset, args.arch, args.seed, None)
    suspect, verifier = stolen.with_outputs(args.mode), Verifier(mode=args.mode, released=marked.dataset)
    own = verifier.verify(suspect, marked.key, test_data).outcome.p_value
    others = np.array([verifier.verify(suspect, independent_key(marked.key, 100 + i), test_data).outcome.p_value
                       for i in range(args.keys)])
    result = {"command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "own_key_p": own, "other_keys": args.keys,
              "share_at_or_below": {str(a): float(np.mean(others <= a)) for a in LEVELS},
              "smallest_p": [float(v) for v in np.sort(others)[:5]], "minutes": (time.perf_counter() - start) / 60}
    lines = ["# Other owners' keys against one stolen graph model (randomization marks test)", "",
             f"Command: `{result['command']}`; {result['minutes']:.1f} min.", "",
             f"The owner's own key: p = {own:.3g}. {args.keys} other owners' keys (innocent verdicts):", "",
             "| level a | share of p <= a |", "|---|---|"]
    lines += [f"| {a} | {result['share_at_or_below'][str(a)]:.4f} |" for a in LEVELS]
    lines += ["", f"Smallest p-values: {', '.join(f'{v:.3g}' for v in result['smallest_p'])}."]
    write_results(args.out, result, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
