"""Issue 16: clean-label crafting spread over the sharded engine's workers, against in-memory protect. CIFAR-10's
first ``--rows`` training images in ``--shards`` parquet shards, a FastNet base model trained one epoch on them
(the shared base model), CleanLabel (seed 3) with each ``--pgd-batch-sizes``: in-memory time, sharded time with 1
and 2 workers, and whether the sharded output and key equal in-memory's (the key's timing fields aside). Writes
``results/scale_clean_label.{json,md}`` with the command and the machine.

    flock /tmp/datamark-cpu.lock python benchmarks/scale_clean_label.py --rows 2000 --shards 4
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from calibration_cifar10 import write_atomic
from scale import environment, header

from datamark.data import load_data, shared_data_dir
from datamark.data.output import arrow_table, write_parquet_shards
from datamark.methods import CleanLabel
from datamark.models import default_config, fit, save_checkpoint
from datamark.scale import install, protect_shards

RESULTS = Path(__file__).resolve().parent / "results"
TIMINGS = ("base_model_train_s", "pgd_s", "pgd_images_per_s")  # key fields that differ between runs


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def comparable(key) -> dict:
    """The key without what differs between equal runs: its creation time, the shard manifest, the timings."""
    out = copy.deepcopy(key.to_dict())
    out.pop("created")
    out["extra"].pop("shard_manifest", None)
    for field in TIMINGS:
        out["extra"].pop(field, None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--pgd-batch-sizes", type=int, nargs="+", default=[256, 8])
    parser.add_argument("--work", type=Path, default=Path("/tmp/datamark-scale-clean-label"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    table = arrow_table(load_data(str(shared_data_dir() / "cifar10" / "train.parquet"))).slice(0, args.rows)
    size = math.ceil(table.nbytes / (args.shards - 0.5))
    write_parquet_shards(table, args.work / "in", max_shard_bytes=size)
    data = load_data(str(args.work / "in"))
    start = time.perf_counter()
    model, spec = fit(data, arch="fastnet", config=default_config("fastnet", epochs=1, seed=0))
    save_checkpoint(model, spec, args.work / "base.pt")
    base_s = time.perf_counter() - start
    runs = []
    for batch in args.pgd_batch_sizes:
        method = CleanLabel(seed=3, base_model=str(args.work / "base.pt"), pgd_batch_size=batch)
        start = time.perf_counter()
        marked = method.apply(load_data(str(args.work / "in")))
        write_parquet_shards(arrow_table(marked.dataset), args.work / f"ref{batch}", max_shard_bytes=size)
        run = {"pgd_batch_size": batch, "in_memory_s": time.perf_counter() - start,
               "crafted_rows": marked.key.extra["pgd_images"], "sharded": []}
        for workers in (1, 2):
            out = args.work / f"out{batch}-{workers}"
            start = time.perf_counter()
            result = protect_shards(method, args.work / "in", out, workers=workers)
            install(result, args.work / f"k{batch}-{workers}.json")
            run["sharded"].append({"workers": workers, "s": time.perf_counter() - start,
                                   "same_bytes": digests(out) == digests(args.work / f"ref{batch}"),
                                   "same_key": comparable(result.key) == comparable(marked.key)})
        runs.append(run)
        print(json.dumps(run), flush=True)
    result = {"command": "flock /tmp/datamark-cpu.lock python benchmarks/scale_clean_label.py "
                         + " ".join(sys.argv[1:]),
              "rows": args.rows, "shards": args.shards, "base_model_s": base_s, "runs": runs,
              "environment": environment()}
    write_atomic(args.results / "scale_clean_label.json", json.dumps(result, indent=1) + "\n")
    write_atomic(args.results / "scale_clean_label.md", markdown(result))


def markdown(result: dict) -> str:
    lines = [*header("Sharded clean-label: crafting over workers (issue 16)", result, "one torch thread per process"),
             f"Data: CIFAR-10's first {result['rows']:,} training images in {result['shards']} parquet shards; base "
             f"model FastNet, 1 epoch on them ({result['base_model_s']:.0f} s), shared by every worker. Method: "
             f"CleanLabel(seed=3), datamark's defaults otherwise.\n",
             "| pgd_batch_size | rows crafted | in memory s | sharded, 1 worker s | sharded, 2 workers s | "
             "same bytes and key as in memory |", "|---:|---:|---:|---:|---:|---|"]
    for run in result["runs"]:
        one, two = run["sharded"]
        same = all(s["same_bytes"] and s["same_key"] for s in run["sharded"])
        lines.append(f"| {run['pgd_batch_size']} | {run['crafted_rows']} | {run['in_memory_s']:.1f} | {one['s']:.1f} "
                     f"| {two['s']:.1f} | {same} |")
    lines += ["", "Each shard pads its last PGD batch to the batch size (row-local PGD: every batch the same size), "
              "so with few selected rows per shard a large batch size costs padding.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
