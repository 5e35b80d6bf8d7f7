"""Black-box queries over HTTP on loopback: 1,000 probability queries against ``datamark serve``.

Starts ``datamark serve`` in its own process (as a user would), measures its start-up time, sends 1,000 uint8
images through :class:`~datamark.suspects.http.HTTPSuspect` at several batch sizes, and records throughput and
per-request latency (p50/p95/max), the same queries answered in-process as the baseline, and the shut-down time.
Models are freshly initialised (latency does not depend on training): ``tiny`` on 8x8x1 digits-sized images and
``fastnet`` on 32x32x3 CIFAR-sized images. Writes ``benchmarks/results/http_loopback.json`` and ``.md``.

    python benchmarks/http_loopback.py                          # about a minute on 2 CPU cores
    python benchmarks/http_loopback.py --archs tiny --queries 200   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

from datamark.evaluate.experiment import environment
from datamark.models.checkpoint import ModelSpec, build_model, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.suspects.http import HTTPSuspect
from datamark.suspects.serve import bind

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {"tiny": (8, 8, 1), "fastnet": (32, 32, 3)}


def _start_server(checkpoint: Path) -> tuple[subprocess.Popen, str, float]:
    with bind() as probe:
        port = probe.getsockname()[1]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "datamark.cli", "serve", str(checkpoint), "--port", str(port),
                             "--model-name", "suspect"], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"datamark serve exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1.0).status_code == 200:
                return proc, url, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(0.02)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max())}


def bench_arch(arch: str, queries: int, batch_sizes: list[int], repeats: int, work: Path) -> dict:
    shape = SHAPES[arch]
    spec = ModelSpec(arch=arch, num_classes=10, input_shape=shape, mean=(0.5,) * shape[-1], std=(0.25,) * shape[-1])
    model = build_model(spec, seed=0)
    checkpoint = work / f"{arch}.pt"
    save_checkpoint(model, spec, checkpoint, overwrite=True)
    images = np.random.default_rng(0).integers(0, 256, (queries, *shape), dtype=np.uint8)
    local = LocalSuspect.from_model(model, spec)
    local.query(images[:8])  # warm-up
    start = time.perf_counter()
    expected = local.query(images)
    row = {"arch": arch, "input_shape": list(shape), "queries": queries,
           "in_process_s": time.perf_counter() - start, "batches": []}
    proc, url, row["startup_s"] = _start_server(checkpoint)
    try:
        for b in batch_sizes:
            with HTTPSuspect(url, "suspect", batch_size=b, timeout_s=60.0) as remote:
                remote.query(images[:b])  # warm-up: connection, first-call allocations
                best, latencies = float("inf"), []
                for _ in range(repeats):
                    run_lat, start = [], time.perf_counter()
                    answers = []
                    for s in range(0, queries, b):
                        t0 = time.perf_counter()
                        answers.append(remote.query(images[s:s + b]))
                        run_lat.append(time.perf_counter() - t0)
                    total = time.perf_counter() - start
                    if total < best:
                        best, latencies = total, run_lat
                max_err = float(np.abs(np.concatenate(answers) - expected).max())
            row["batches"].append({"batch_size": b, "requests": len(latencies), "total_s": best,
                                   "queries_per_s": queries / best, **_percentiles(latencies),
                                   "max_abs_diff_vs_local": max_err})
    finally:
        start = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        row["shutdown_s"] = time.perf_counter() - start
    return row


def markdown(report: dict) -> str:
    lines = [f"# HTTP loopback: {report['queries']} probability queries against `datamark serve`", "",
             f"{report['date']}; {report['machine']}; load average at start {report['load_average']}.",
             f"Command: `{report['command']}`; best of {report['repeats']} runs per batch size.", ""]
    for row in report["archs"]:
        lines += [f"## {row['arch']} ({'x'.join(map(str, row['input_shape']))} uint8 images)", "",
                  f"Server start-up (process start to ready) {row['startup_s']:.2f} s; shut-down (SIGTERM) "
                  f"{row['shutdown_s']:.2f} s; the same queries in-process: {row['in_process_s'] * 1000:.1f} ms.", "",
                  "| batch | requests | total s | queries/s | p50 ms/batch | p95 ms/batch | max ms | max abs diff |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {b['batch_size']} | {b['requests']} | {b['total_s']:.3f} | {b['queries_per_s']:.0f} | "
                  f"{b['p50_ms']:.2f} | {b['p95_ms']:.2f} | {b['max_ms']:.2f} | {b['max_abs_diff_vs_local']:.1e} |"
                  for b in row["batches"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--batch-sizes", default="1,10,50,100,500")
    parser.add_argument("--archs", default="tiny,fastnet")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report = {"queries": args.queries, "repeats": args.repeats, "command": " ".join(["python", *sys.argv]),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "load_average": [round(x, 2) for x in os.getloadavg()], "environment": environment(),
              "machine": f"{os.cpu_count()} CPU threads, loopback", "archs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            report["archs"].append(bench_arch(arch, args.queries, [int(b) for b in args.batch_sizes.split(",")],
                                              args.repeats, Path(tmp)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "http_loopback.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "http_loopback.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
