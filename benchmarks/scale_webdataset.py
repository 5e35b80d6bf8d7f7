"""Issue 16: the same generated images as WebDataset tar shards and as parquet shards, protected by the sharded
engine on one worker: how long describing the input takes (``open_source``: parquet metadata, or tar shard 0; the
tars' class names come from the hash pass), and the hash and mark passes' rows per second. Writes
``results/scale_webdataset.{json,md}`` with the command and the machine.

    flock /tmp/datamark-cpu.lock python benchmarks/scale_webdataset.py --rows 20000 --shards 20
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from calibration_cifar10 import write_atomic
from scale import environment, header

from datamark.data.arrays import ArrayRecords
from datamark.data.output import arrow_table, write_parquet_shards
from datamark.methods import BadNets
from datamark.scale import install, protect_shards
from datamark.scale.shards import open_source

RESULTS = Path(__file__).resolve().parent / "results"


def generate(root: Path, rows: int, shards: int) -> None:
    """``rows`` noise images with labels, as parquet shards (``root/parquet``) and as tars (``root/webdataset``)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(rows, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=rows)
    table = arrow_table(ArrayRecords(images, labels, [str(c) for c in range(10)], where="generated"))
    write_parquet_shards(table, root / "parquet", max_shard_bytes=math.ceil(table.nbytes / (shards - 0.5)))
    pngs = table.column("image").combine_chunks().field("bytes").to_pylist()
    (root / "webdataset").mkdir()
    bounds = np.linspace(0, rows, shards + 1).astype(int)
    for s in range(shards):
        with tarfile.open(root / "webdataset" / f"shard-{s:06d}.tar", "w") as tar:
            for i in range(bounds[s], bounds[s + 1]):
                for name, data in ((f"{i:08d}.png", pngs[i]), (f"{i:08d}.cls", str(labels[i]).encode())):
                    info = tarfile.TarInfo(name)
                    info.size, info.mtime = len(data), 0
                    tar.addfile(info, io.BytesIO(data))


def measure(root: Path, kind: str, rows: int) -> dict:
    start = time.perf_counter()
    open_source(root / kind)
    scan = time.perf_counter() - start
    start = time.perf_counter()
    result = protect_shards(BadNets(seed=1, decoy_rate=0.1), root / kind, root / f"{kind}-out", workers=1)
    total = time.perf_counter() - start
    install(result, root / f"{kind}.json")
    t = result.timings
    return {"format": kind, "open_source_s": scan, "total_s": total, "timings_s": t,
            "scan_rows_per_s": rows / scan, "hash_rows_per_s": rows / t["hash"], "mark_rows_per_s": rows / t["mark"],
            "peak_worker_rss_mib": result.worker_peak_rss_mib}


def markdown(result: dict) -> str:
    lines = [*header("Sharded protect: WebDataset tars against parquet shards (issue 16)", result, "one worker"),
             f"Data: {result['rows']:,} generated 32x32 noise images (PNG) with labels, in {result['shards']} shards "
             f"of each format. Method: BadNets, 10 marks at rate 0.1, decoy_rate 0.1.\n",
             "| format | open_source s (rows/s) | hash pass rows/s | mark pass rows/s | total s | "
             "peak RSS of the process so far MiB (generation included) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| {r['format']} | {r['open_source_s']:.2f} ({r['scan_rows_per_s']:,.0f}) | "
                     f"{r['hash_rows_per_s']:,.0f} | {r['mark_rows_per_s']:,.0f} | {r['total_s']:.1f} | "
                     f"{r['peak_worker_rss_mib']:.0f} |")
    lines += ["", "Tars carry no class list: the hash pass finds the largest label (in parallel over the shards); "
              "open_source reads only shard 0, for the input field and modality.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("/tmp/datamark-scale-webdataset"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    generate(args.work, args.rows, args.shards)
    runs = [measure(args.work, kind, args.rows) for kind in ("parquet", "webdataset")]
    result = {"command": "flock /tmp/datamark-cpu.lock python benchmarks/scale_webdataset.py " + " ".join(sys.argv[1:]),
              "rows": args.rows, "shards": args.shards, "runs": runs, "environment": environment()}
    write_atomic(args.results / "scale_webdataset.json", json.dumps(result, indent=1) + "\n")
    write_atomic(args.results / "scale_webdataset.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
