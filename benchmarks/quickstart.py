"""The README's quick start, timed as a new user meets it: on a fresh clone, idle and beside a busy process.

Clones the repository (the committed HEAD, nothing uncommitted), then times:

1. the README's first command (create a venv, install torch and datamark, run ``datamark demo``), idle;
2. ``datamark demo`` again in that environment, idle (the demo alone, without the install);
3. ``datamark demo`` beside one competing CPU-bound process (a pure-Python busy loop, as another user's job),
   with the CLI's default thread count and with torch's own (one thread per core, ``DATAMARK_THREADS``);
4. unless ``--skip-tests``: the README's test command idle, and the tests beside the competing process.

The commands are read from the README's first code block, so the timings are of what the README says. Writes
``benchmarks/results/quickstart.json`` and ``.md``; the clone goes to ``--work`` (removed only if this script
created it).

    python benchmarks/quickstart.py --skip-tests      # about 3 minutes on 2 idle cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUSY = "while True:\n    pass\n"  # one core's worth of somebody else's work


def readme_commands() -> tuple[str, str]:
    """The README's two quick-start commands: (install and demo, install and test)."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    commands = [line for line in block.splitlines() if line.startswith("python3 -m venv")]
    if len(commands) != 2:
        raise SystemExit(f"expected two 'python3 -m venv ...' lines in the README's first code block; "
                         f"got {len(commands)}")
    return commands[0], commands[1]


def timed(command: str, cwd: Path, env: dict[str, str], log: Path) -> dict:
    """Run ``command`` in bash; its wall time, exit status and where its output went."""
    start = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.call(["bash", "-c", command], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    print(f"  {seconds:7.1f} s  rc {rc}  {command[:90]}", flush=True)
    return {"command": command, "seconds": round(seconds, 1), "rc": rc, "log": str(log)}


def beside_busy_process(command: str, cwd: Path, env: dict[str, str], log: Path) -> dict:
    """``command`` while one CPU-bound process runs beside it."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        time.sleep(1.0)  # let it take its core
        return timed(command, cwd, env, log) | {"competing_processes": 1}
    finally:
        busy.kill()
        busy.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-tests", action="store_true", help="Time the install and the demo only.")
    parser.add_argument("--work", type=Path, default=None, help="Where to clone (default: a temporary folder).")
    parser.add_argument("--name", default="quickstart", help="Base name of the results files.")
    args = parser.parse_args(argv)

    demo_cmd, test_cmd = readme_commands()
    commit = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    work = args.work or Path(tempfile.mkdtemp(prefix="datamark-quickstart-"))
    clone = work / "datamark"
    subprocess.check_call(["git", "clone", "--quiet", str(ROOT), str(clone)])
    # The tests read the shared data next to the checkout; a clone elsewhere points at the same folder.
    data = os.environ.get("DATAMARK_DATA", str((ROOT.parent / "shared" / "data").resolve()))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "DATAMARK_THREADS")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env["DATAMARK_DATA"] = data
    print(f"fresh clone of {commit[:12]} in {clone}; load average before: {os.getloadavg()}", flush=True)
    runs = {"install_and_demo": timed(demo_cmd, clone, env, work / "install_and_demo.log")}
    demo = ". .venv/bin/activate && datamark demo --out demo-again"
    runs["demo_idle"] = timed(demo, clone, env, work / "demo_idle.log")
    runs["demo_busy"] = beside_busy_process(demo.replace("demo-again", "demo-busy"), clone, env,
                                            work / "demo_busy.log")
    cores = f"DATAMARK_THREADS={os.cpu_count() or 1} "  # torch's default: a thread per core, busy or not
    runs["demo_busy_torch_threads"] = beside_busy_process(demo.replace("datamark demo --out demo-again",
                                                                       cores + "datamark demo --out demo-busy-t"),
                                                          clone, env, work / "demo_busy_torch_threads.log")
    if not args.skip_tests:
        runs["install_and_tests"] = timed(test_cmd, clone, env, work / "install_and_tests.log")
        runs["tests_busy"] = beside_busy_process(". .venv/bin/activate && python -m pytest -q -p no:cacheprovider",
                                                 clone, env, work / "tests_busy.log")
    result = {"commit": commit, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                            "python": platform.python_version()},
              "command": "python benchmarks/quickstart.py" + (" --skip-tests" if args.skip_tests else ""),
              "runs": runs, "demo_slowdown_beside_busy": round(runs["demo_busy"]["seconds"]
                                                               / runs["demo_idle"]["seconds"], 2),
              "demo_slowdown_beside_busy_torch_threads": round(runs["demo_busy_torch_threads"]["seconds"]
                                                               / runs["demo_idle"]["seconds"], 2)}
    if not args.skip_tests:
        test_idle = runs["install_and_tests"]["seconds"]
        result["tests_slowdown_beside_busy_upper_bound"] = round(runs["tests_busy"]["seconds"] / test_idle, 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Quick start on a fresh clone ({commit[:12]})\n", f"Command: `{result['command']}`; machine: "
             f"{result['machine']['platform']}, {result['machine']['cpus']} CPUs\n", "| run | seconds | exit |",
             "|---|---|---|"]
    lines += [f"| {name} | {r['seconds']} | {r['rc']} |" for name, r in runs.items()]
    lines.append(f"\nDemo slowdown beside one busy process: {result['demo_slowdown_beside_busy']}× with the CLI's "
                 f"default threads, {result['demo_slowdown_beside_busy_torch_threads']}× with torch's (a thread "
                 f"per core)\n")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(r["rc"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
