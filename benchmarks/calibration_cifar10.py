"""Calibration of multi-mark verdicts on CIFAR-10: false accusations against models trained on OTHER owners'
watermarks of the same method and against clean models, beside the detection of the real stolen models.

For each method (BadNets, Blended, UBW-P, clean-label) ``--owners`` independent owners protect the same training
subset (different seeds, so different secrets, triggers and secret targets / embedded candidates), and one model
is trained per owner on its watermarked data, alternating ``--archs`` and varying the training seed. ``--clean``
models are trained on the clean subset (same architectures, other seeds). Then every owner's model is verified

* with its OWN key (detection: it should be accused), and
* with the real keys of ``--keys`` OTHER owners of the same method (false-accusation trials, "other-owner"),

and every clean model with ``--keys`` owners' keys of each method ("clean"), in both black-box modes (probs,
labels), with the fixed-n test (``Verifier``) and the sequential one (``SequentialVerifier``), at each alpha of
``--alphas`` (passed as ``alpha=``: a recorded deviation from the key's plan). False-accusation counts get exact
Clopper-Pearson 95 % intervals.

The CPU setting (the default) is sized for about 100 trainings in 60-75 min on 2 shared CPU cores: small models
(``tiny`` and ``vgg11`` at width 8), ``--train-rows`` training images, ``--epochs`` epochs, ``--test-rows`` test
images for probes and BA; see the results' "setting" block for what deviates from the methods' defaults and why.
Models, keys and per-model records are cached under ``--work`` (runs/calibration/<setting hash>/), so a rerun with
the same setting resumes; results are rewritten (atomically) after every model.

    python benchmarks/calibration_cifar10.py                       # the sized setting (~75 min, 2 CPU cores)
    python benchmarks/calibration_cifar10.py --owners 2 --clean 2 --keys 1 --train-rows 1000 --epochs 1 \\
        --test-rows 300 --name calibration_smoke                   # a smoke run (~1 min)

Data: ``$DATAMARK_DATA/cifar10/{train,test}.parquet`` (default: the shared data folder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import beta

from datamark import UBWP, BadNets, Blended, CleanLabel, Key, load_data
from datamark.evaluate.experiment import environment
from datamark.evaluate.metrics import benign_accuracy
from datamark.evaluate.scenarios import mark_success
from datamark.exceptions import DegenerateTestWarning
from datamark.models import default_config, fit, load_checkpoint, save_checkpoint
from datamark.suspects import LocalSuspect
from datamark.verify import Verifier
from datamark.verify.sequential import SequentialVerifier

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("badnets", "blended", "ubw-p", "clean-label")
MODES = ("probs", "labels")
TESTS = ("fixed", "sequential")
SCENARIOS = ("other-owner", "clean")
TARGET_QUERIES = {"labels": 10, "probs": 20}  # the sequential-detection targets on stolen models


# --- small helpers -------------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def markdown_head(result: dict, *lines: str) -> list[str]:
    """The opening lines of a results Markdown file: the title, the command and the machine of ``result``, then
    ``lines`` (the setup in words), each followed by a blank line."""
    head = [f"# {result['title']}", "", f"Command: `{result['command']}`", "", f"Machine: {result['environment']}", ""]
    for line in lines:
        head += [line, ""]
    return head


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact two-sided Clopper-Pearson interval for k successes in n trials."""
    if n == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lower = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    upper = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lower, upper


def parse_arch(text: str) -> tuple[str, dict[str, Any]]:
    """``vgg11:width=8`` -> ("vgg11", {"width": 8})."""
    name, _, rest = text.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        params[key] = int(value)
    return name, params


def git_state() -> dict[str, Any]:
    """The commit the library was imported from, and whether src/ had uncommitted changes (at start)."""
    import subprocess
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": head, "src_uncommitted_changes": bool(dirty)}


class ActiveClock:
    """Wall time this process was running, not stopped (SIGSTOP, suspend): a daemon thread ticks every second,
    and a gap of more than 5 s between ticks counts as paused. The time budget counts active time, so a run that
    another job pauses (e.g. to have the cores for a test suite) keeps its budget."""

    def __init__(self) -> None:
        import threading
        self.start = self.last = time.perf_counter()
        self.paused_s = 0.0
        self.lock = threading.Lock()
        threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while True:
            time.sleep(1.0)
            with self.lock:
                now = time.perf_counter()
                if now - self.last > 5.0:
                    self.paused_s += now - self.last - 1.0
                self.last = now

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def active(self) -> float:
        with self.lock:
            return self.wall() - self.paused_s


class CachingSuspect:
    """A local model that remembers its answer per input image (the answers of an eval-mode model are a function
    of the image), so the 2 modes x 2 tests x 2 alphas of one (model, key) pair run the network once per distinct
    image. It counts every query it is asked, cached or not, like a remote suspect would bill them."""

    def __init__(self, base: LocalSuspect, outputs: str = "probs", cache: dict | None = None) -> None:
        self.base, self.outputs = base, outputs
        self.num_classes, self.input_shape = base.num_classes, base.input_shape
        self.cache = {} if cache is None else cache
        self.queries = 0

    def with_outputs(self, outputs: str) -> CachingSuspect:
        return CachingSuspect(self.base, outputs, self.cache)

    def query(self, inputs: np.ndarray) -> np.ndarray:
        inputs = np.ascontiguousarray(inputs)
        if inputs.ndim != 4:
            return self.base.query(inputs)  # let the model raise its own error
        keys = [hashlib.blake2b(x.tobytes(), digest_size=16).digest() for x in inputs]
        missing, seen = [], set()
        for i, k in enumerate(keys):
            if k not in self.cache and k not in seen:
                missing.append(i)
                seen.add(k)
        if missing:
            for i, row in zip(missing, self.base.query(inputs[missing]), strict=True):
                self.cache[keys[i]] = row
        self.queries += len(inputs)
        probs = np.stack([self.cache[k] for k in keys]) if keys else np.zeros((0, self.num_classes))
        return probs if self.outputs == "probs" else probs.argmax(axis=1).astype(np.int64)


# --- the study -----------------------------------------------------------------------------------------------
class Study:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args, self.argv = args, argv
        self.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise SystemExit(f"--methods: unknown {unknown}; choose from {METHODS}")
        self.archs = [parse_arch(a) for a in args.archs.split(",")]
        self.alphas = [float(a) for a in args.alphas.split(",")]
        if args.keys > args.owners - 1 and args.owners > 1:
            raise SystemExit(f"--keys {args.keys} needs at least {args.keys + 1} owners (--owners).")
        self.setting = {
            "train_rows": args.train_rows, "test_rows": args.test_rows, "epochs": args.epochs,
            "archs": args.archs, "batch_size_max": args.batch_size, "seed": args.seed,
            "rate": args.rate, "trigger_size": args.trigger_size, "ubwp_trigger_size": args.ubwp_trigger_size,
            "cl_class_rate": args.cl_class_rate, "pgd_steps": args.pgd_steps,
        }
        digest = hashlib.sha256(json.dumps(self.setting, sort_keys=True).encode()).hexdigest()[:10]
        self.work = Path(args.work) / digest
        for sub in ("models", "keys", "records"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        write_atomic(self.work / "setting.json", json.dumps(self.setting, indent=2) + "\n")
        self.clock = ActiveClock()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.invocations_path = self.work / "invocations.json"
        self.earlier = (json.loads(self.invocations_path.read_text()) if self.invocations_path.exists() else [])
        self.trained_s: list[float] = []  # wall time per model processed (trained + verified) in this run
        self.keys: dict[str, list[Key]] = {}
        self.records: dict[str, dict] = {}
        self.stopped = None
        self.git = git_state()
        self.command = "python " + " ".join(["benchmarks/calibration_cifar10.py", *argv])
        if os.environ.get("DATAMARK_DATA"):
            self.command = f"DATAMARK_DATA={os.environ['DATAMARK_DATA']} {self.command}"

    # seeds: owner i of method number mi protects with seed S + 1000 (mi + 1) + i and trains with that + 100000;
    # clean model c trains with S + 100000 + c; architectures alternate with the index.
    def protect_seed(self, method: str, i: int) -> int:
        return self.args.seed + 1000 * (METHODS.index(method) + 1) + i

    def train_seed(self, method: str | None, i: int) -> int:
        return self.args.seed + 100_000 + (0 if method is None else 1000 * (METHODS.index(method) + 1)) + i

    def arch_of(self, i: int) -> tuple[str, dict[str, Any]]:
        return self.archs[i % len(self.archs)]

    def config(self, arch: str, seed: int):
        preset = default_config(arch)
        # bf16 off: this CPU has no AVX-512 BF16, where autocast to bf16 measured ~6x slower than float32.
        return default_config(arch, epochs=self.args.epochs, seed=seed, bf16=False,
                              batch_size=min(preset.batch_size, self.args.batch_size))

    def method(self, name: str, seed: int):
        a = self.args
        if name == "badnets":
            return BadNets(seed=seed, rate=a.rate, trigger_size=a.trigger_size)
        if name == "blended":
            return Blended(seed=seed, rate=a.rate)
        if name == "ubw-p":
            return UBWP(seed=seed, rate=a.rate, trigger_size=a.ubwp_trigger_size)
        return CleanLabel(seed=seed, class_rate=a.cl_class_rate, steps=a.pgd_steps, base_model=str(self.base_path))

    # --- data, models ----------------------------------------------------------------------------------------
    def load(self) -> None:
        t = time.perf_counter()
        self.train = load_data("cifar10:train").subset(np.arange(self.args.train_rows))
        self.test = load_data("cifar10:test").subset(np.arange(self.args.test_rows))
        log(f"data: {len(self.train)} training rows, {len(self.test)} test rows ({time.perf_counter() - t:.0f} s)")

    def model(self, name: str, data, arch: str, params: dict, seed: int) -> tuple[Any, Any, float, bool]:
        """(model, spec, train seconds, cached) -- trained on ``data`` or loaded from the work folder."""
        path = self.work / "models" / f"{name}.pt"
        settings = {"arch": arch, "params": params, "seed": seed, "data": data.fingerprint}
        if path.exists():
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("extra", {}).get("settings") == settings:
                model, spec = load_checkpoint(path)
                return model, spec, float(payload["extra"]["train_s"]), True
        t = time.perf_counter()
        model, spec = fit(data, arch=arch, config=self.config(arch, seed), **params)
        train_s = time.perf_counter() - t
        save_checkpoint(model, spec, path, overwrite=True, extra={"settings": settings, "train_s": train_s})
        return model, spec, train_s, False

    @property
    def base_path(self) -> Path:
        return self.work / "models" / "clean-00.pt"

    def protect(self, method: str, i: int):
        """Owner i's watermarked data and key (deterministic in the seed; the key is cached)."""
        seed = self.protect_seed(method, i)
        t = time.perf_counter()
        marked = self.method(method, seed).apply(self.train)
        return marked, time.perf_counter() - t

    def protect_all(self) -> None:
        """Every owner's key up front: the other-owner trials of model j need the keys of owners i != j."""
        for method in self.methods:
            keys = []
            for i in range(self.args.owners):
                path = self.work / "keys" / f"{method}-{i:02d}.json"
                if path.exists():
                    keys.append(Key.load(path))
                    continue
                marked, seconds = self.protect(method, i)
                marked.key.save(path, overwrite=True)
                keys.append(marked.key)
                log(f"protect {method} owner {i}: {len(marked.rows)} rows marked in {seconds:.1f} s")
            self.keys[method] = keys

    # --- verification ----------------------------------------------------------------------------------------
    def trials(self, suspect: CachingSuspect, key: Key, key_name: str, scenario: str) -> list[dict]:
        out = []
        for mode in MODES:
            s = suspect.with_outputs(mode)
            for test in TESTS:
                for alpha in self.alphas:
                    v = (Verifier(mode=mode, alpha=alpha) if test == "fixed"
                         else SequentialVerifier(mode=mode, alpha=alpha))
                    r = v.verify(s, key, self.test)
                    out.append({"key": key_name, "method": str(key.method["name"]), "scenario": scenario,
                                "mode": mode, "test": test, "alpha": alpha, "accused": bool(r.accused),
                                "p": float(r.outcome.p_value), "hits": int(r.marks["hits"]),
                                "asked": int(r.marks["marks_asked"]), "n_marks": int(r.marks["n_marks"]),
                                "queries": int(r.queries), "success": float(r.marks["probe_success_rate"]),
                                "stopped": (r.sequential or {}).get("stopped")})
        return out

    def other_owners(self, j: int) -> list[int]:
        n = self.args.owners
        return [(j + d) % n for d in range(1, min(self.args.keys, n - 1) + 1)]

    def clean_keys(self, c: int) -> list[int]:
        n = self.args.owners
        return [(c + d) % n for d in range(min(self.args.keys, n))]

    # --- one model -------------------------------------------------------------------------------------------
    def run_model(self, name: str, method: str | None, i: int) -> None:
        record_path = self.work / "records" / f"{name}.json"
        if record_path.exists():
            self.records[name] = json.loads(record_path.read_text())
            return
        if self.out_of_time():
            return
        t0 = time.perf_counter()
        arch, params = self.arch_of(i)
        seed = self.train_seed(method, i)
        protect_s = 0.0
        if method is None:
            data = self.train
        else:
            marked, protect_s = self.protect(method, i)
            if marked.key.secret != self.keys[method][i].secret or tuple(marked.rows) and \
                    marked.key.dataset["watermarked_fingerprint"] != self.keys[method][i].dataset[
                        "watermarked_fingerprint"]:
                raise RuntimeError(f"{name}: re-protecting did not reproduce the cached key; delete {self.work}.")
            data = marked.dataset
        model, spec, train_s, cached = self.model(name, data, arch, params, seed)
        base = LocalSuspect.from_model(model, spec)
        t1 = time.perf_counter()
        suspect = CachingSuspect(base)
        record = {"name": name, "kind": "clean" if method is None else "owner", "method": method, "index": i,
                  "arch": arch, "arch_params": params, "train_seed": seed,
                  "protect_seed": None if method is None else self.protect_seed(method, i),
                  "train_s": train_s, "protect_s": protect_s, "ba": benign_accuracy(base, self.test), "trials": []}
        if method is None:
            for m in self.methods:
                for k in self.clean_keys(i):
                    record["trials"] += self.trials(suspect, self.keys[m][k], f"{m}#{k}", "clean")
        else:
            own = self.keys[method][i]
            record["commitment"] = own.commitment
            record["mark_success"] = mark_success(base, self.test, own)  # WSR (targeted) or ASR-A/C, D_p
            record["trials"] += self.trials(suspect, own, f"{method}#{i}", "own")
            for k in self.other_owners(i):
                record["trials"] += self.trials(suspect, self.keys[method][k], f"{method}#{k}", "other-owner")
        record["verify_s"] = time.perf_counter() - t1
        record["wall_s"] = time.perf_counter() - t0
        write_atomic(record_path, json.dumps(record) + "\n")
        self.records[name] = record
        if not cached:
            self.trained_s.append(record["wall_s"])
        self.report_progress(record)

    def planned(self) -> list[tuple[str, str | None, int]]:
        """Round-robin order (clean model 0 first: it is the clean-label base model), so that a run cut short by
        the time budget has about as many models of each kind."""
        order = [("clean-00", None, 0)] if self.args.clean else []
        for i in range(max(self.args.owners, self.args.clean)):
            for m in self.methods:
                if i < self.args.owners:
                    order.append((f"{m}-{i:02d}", m, i))
            if 0 < i < self.args.clean:
                order.append((f"clean-{i:02d}", None, i))
        return order

    def active_total(self) -> float:
        """Active seconds of this setting: earlier (resumed-from) invocations plus this one."""
        return sum(i["active_s"] for i in self.earlier) + self.clock.active()

    def invocation(self, final: bool) -> dict:
        return {"command": self.command, "started": self.started, "wall_s": self.clock.wall(),
                "paused_s": self.clock.paused_s, "active_s": self.clock.active(),
                "models_trained": len(self.trained_s), "finished": final}

    def out_of_time(self) -> bool:
        if self.stopped:
            return True
        budget = self.args.time_budget_min * 60
        per_model = float(np.mean(self.trained_s)) if self.trained_s else 0.0
        if self.active_total() + per_model > budget:
            self.stopped = f"time budget of {self.args.time_budget_min} min reached"
            log(f"stopping: {self.stopped}")
            return True
        return False

    def report_progress(self, record: dict) -> None:
        done = len(self.records)
        total = len(self.planned())
        elapsed = self.active_total()
        per = float(np.mean(self.trained_s)) if self.trained_s else float("nan")
        eta = per * (total - done)
        own = {(t["mode"], t["test"]): t for t in record["trials"] if t["scenario"] == "own" and
               t["alpha"] == self.alphas[0]}
        fa = [t for t in record["trials"] if t["scenario"] != "own"]
        own_text = " ".join(f"{m}/{x}:{'Y' if own[(m, x)]['accused'] else 'n'}{own[(m, x)]['hits']}/"
                            f"{own[(m, x)]['asked']}q{own[(m, x)]['queries']}" for (m, x) in own)
        log(f"[{done}/{total}] {record['name']} ({record['arch']}): train {record['train_s']:.0f} s, verify "
            f"{record['verify_s']:.0f} s, BA {record['ba']:.3f}"
            + (f", own key {own_text}" if own else "")
            + f", false accusations {sum(t['accused'] for t in fa)}/{len(fa)}"
            + f" | {60 / per if per == per else float('nan'):.2f} models/min, active {elapsed / 60:.1f} min "
              f"(all invocations; paused {self.clock.paused_s / 60:.1f} min in this one), ETA {eta / 60:.1f} min")

    # --- run -------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        self.load()
        plan = self.planned()
        if self.args.clean:  # clean model 0 first: it is the clean-label base model (verified in the loop)
            arch, params = self.arch_of(0)
            self.model("clean-00", self.train, arch, params, self.train_seed(None, 0))
        elif "clean-label" in self.methods:
            raise SystemExit("clean-label needs --clean >= 1: clean model 0 is its PGD base model.")
        self.protect_all()
        self.write()
        for name, method, i in plan:
            self.run_model(name, method, i)
            self.write()
            if self.stopped:
                break
        self.write(final=True)
        return self.result

    # --- aggregation -----------------------------------------------------------------------------------------
    def summary(self) -> dict:
        recs = list(self.records.values())
        trials = [t for r in recs for t in r["trials"]]
        false_acc = []
        for method in [*self.methods, "all"]:
            for scenario in SCENARIOS:
                for mode in MODES:
                    for test in TESTS:
                        for alpha in self.alphas:
                            sel = [t for t in trials if t["scenario"] == scenario and t["mode"] == mode and
                                   t["test"] == test and t["alpha"] == alpha and
                                   (method == "all" or t["method"] == method)]
                            k, n = sum(t["accused"] for t in sel), len(sel)
                            lo, hi = clopper_pearson(k, n)
                            models = len({(t.get("model"), t["key"]) for t in sel})
                            false_acc.append({"method": method, "scenario": scenario, "mode": mode, "test": test,
                                              "alpha": alpha, "accused": k, "trials": n, "rate": k / n if n else None,
                                              "cp95_lower": lo, "cp95_upper": hi,
                                              "consistent": bool(n) and lo <= alpha,
                                              "upper_below_alpha": bool(n) and hi <= alpha,
                                              "distinct_key_model_pairs": models})
        detection = []
        for method in self.methods:
            owners = [r for r in recs if r["method"] == method]
            for mode in MODES:
                for test in TESTS:
                    for alpha in self.alphas:
                        sel = [t for r in owners for t in r["trials"] if t["scenario"] == "own" and
                               t["mode"] == mode and t["test"] == test and t["alpha"] == alpha]
                        det = [t for t in sel if t["accused"]]
                        detection.append({
                            "method": method, "mode": mode, "test": test, "alpha": alpha,
                            "detected": len(det), "models": len(sel),
                            "mean_queries": float(np.mean([t["queries"] for t in sel])) if sel else None,
                            "max_queries": max((t["queries"] for t in sel), default=None),
                            "mean_queries_detected": float(np.mean([t["queries"] for t in det])) if det else None,
                            "max_queries_detected": max((t["queries"] for t in det), default=None),
                            "mean_hits": float(np.mean([t["hits"] for t in sel])) if sel else None,
                            "mean_probe_success": float(np.mean([t["success"] for t in sel])) if sel else None})
        models = []
        for method in [*self.methods, None]:
            for arch, _ in self.archs:
                sel = [r for r in recs if r["method"] == method and r["arch"] == arch]
                if not sel:
                    continue
                row = {"method": method or "clean", "arch": arch, "models": len(sel),
                       "ba_mean": float(np.mean([r["ba"] for r in sel])),
                       "ba_min": float(np.min([r["ba"] for r in sel])),
                       "train_s_mean": float(np.mean([r["train_s"] for r in sel]))}
                if method is not None:
                    succ = [r["mark_success"] for r in sel]
                    for name in succ[0]:
                        row[f"{name}_mean"] = float(np.mean([s[name] for s in succ]))
                    own = [t for r in sel for t in r["trials"] if t["scenario"] == "own" and t["test"] == "fixed"
                           and t["alpha"] == self.alphas[0]]
                    for mode in MODES:
                        mt = [t for t in own if t["mode"] == mode]
                        row[f"hits_{mode}_mean"] = float(np.mean([t["hits"] for t in mt]))
                        row[f"probe_success_{mode}_mean"] = float(np.mean([t["success"] for t in mt]))
                        row[f"detected_{mode}"] = sum(t["accused"] for t in mt)
                    row["n_marks"] = own[0]["n_marks"] if own else None
                models.append(row)
        return {"false_accusations": false_acc, "detection": detection, "models": models}

    def write(self, final: bool = False) -> None:
        args = self.args
        env = environment()
        command = self.command
        invocations = [*self.earlier, self.invocation(final)]
        write_atomic(self.invocations_path, json.dumps(invocations, indent=1) + "\n")
        done = len(self.records)
        total = len(self.planned())
        recs = sorted(self.records.values(), key=lambda r: r["name"])
        self.result = {
            "command": command,
            "status": ("complete" if done == total else
                       f"partial ({done}/{total} models{'; ' + self.stopped if self.stopped else ''})"
                       + ("" if final else "; running")),
            "total_s": sum(i["wall_s"] for i in invocations),
            "active_s": sum(i["active_s"] for i in invocations),
            "paused_s": sum(i["paused_s"] for i in invocations),
            "models_compute_s": sum(r["wall_s"] for r in self.records.values()),
            "models_trained_this_run": len(self.trained_s),
            "invocations": invocations,
            "environment": {**env, "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                            "cpu_count": os.cpu_count(), **self.git},
            "setting": {**self.setting, "owners": args.owners, "clean": args.clean, "keys": args.keys,
                        "methods": self.methods, "alphas": self.alphas, "work": str(self.work),
                        "test_data": f"first {args.test_rows} rows of cifar10:test (probes and BA)",
                        "train_data": f"first {args.train_rows} rows of cifar10:train",
                        "seeds": {"protect": "seed + 1000 x (method number + 1) + owner (methods numbered "
                                             f"{list(METHODS)} from 0)",
                                  "train_owner": "seed + 100000 + 1000 x (method number + 1) + owner",
                                  "train_clean": "seed + 100000 + clean index",
                                  "arch": "archs[index % len(archs)] (owners and clean models alike)"},
                        "other_owner_keys": "model of owner j verified with the keys of owners j+1..j+keys (mod "
                                            "owners) of the same method",
                        "clean_keys": "clean model c verified with the keys of owners c..c+keys-1 (mod owners) of "
                                      "each method",
                        "clean_label_base_model": "clean model 0 (clean-00) is the PGD base model of every "
                                                  "clean-label owner",
                        "deviations": self.deviations()},
            "summary": self.summary(),
            "models": [{k: v for k, v in r.items() if k != "trials"} | {
                "own": {f"{t['mode']}/{t['test']}/{t['alpha']}": {x: t[x] for x in ("accused", "p", "hits", "asked",
                                                                                    "queries", "success")}
                        for t in r["trials"] if t["scenario"] == "own"},
                "false_accusations": sum(t["accused"] for t in r["trials"] if t["scenario"] != "own"),
                "false_accusation_trials": sum(t["scenario"] != "own" for t in r["trials"])} for r in recs],
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        write_atomic(RESULTS / f"{args.name}.json", json.dumps(self.result, indent=1) + "\n")
        write_atomic(RESULTS / f"{args.name}.md", self.markdown())

    def deviations(self) -> list[str]:
        a = self.args
        out = [f"training subset: {a.train_rows} rows; probes and BA: {a.test_rows} test rows",
               f"models: {a.archs} (small CPU models), {a.epochs} epochs, batch <= {a.batch_size}, bf16 off, "
               f"torch threads {a.threads}",
               "alpha passed to the verifier (the keys' plans say 0.01 / 0.05): recorded as a deviation per result",
               "sequential verifier at its defaults (1 probe per mark)"]
        if "badnets" in self.methods or "blended" in self.methods or "ubw-p" in self.methods:
            out.append(f"BadNets / Blended / UBW-P rate {a.rate} (default 0.1)")
        if "badnets" in self.methods:
            out.append(f"BadNets trigger_size {a.trigger_size} (default 3x3)")
        if "ubw-p" in self.methods:
            out.append(f"UBW-P trigger_size {a.ubwp_trigger_size or 3} (default 3x3)")
        if "clean-label" in self.methods:
            out.append(f"clean-label class_rate {a.cl_class_rate} (default 0.1), PGD steps {a.pgd_steps} "
                       f"(default 40), base model = clean-00")
        return out

    def markdown(self) -> str:
        r, s = self.result, self.result["summary"]
        env = r["environment"]
        lines = [f"# Calibration of multi-mark verdicts on CIFAR-10 ({r['status']})", "",
                 f"Command: `{r['command']}`", "",
                 f"Machine: {env['platform']}, {env['cpu_count']} CPUs, torch threads {env['torch_threads']}, "
                 f"torch {env['torch']}, datamark {env['datamark']} (git {env.get('git_commit', '?')[:10]}"
                 f"{', src with uncommitted changes' if env.get('src_uncommitted_changes') else ''}).", "",
                 f"Time: {r['total_s'] / 60:.1f} min wall in {len(r['invocations'])} invocation(s), of which "
                 f"{r['active_s'] / 60:.1f} min active and {r['paused_s'] / 60:.1f} min paused by other jobs; "
                 f"{r['models_compute_s'] / 60:.1f} min in the models themselves (protect + train + verify); "
                 f"mean training {np.mean([x['train_s'] for x in self.records.values()] or [0]):.0f} s per model."
                 + "".join(f" Invocation {k + 1}: `{i['command']}` at {i['started']}, {i['wall_s'] / 60:.1f} min "
                           f"wall, {i['active_s'] / 60:.1f} active, {i['models_trained']} models trained"
                           + (f" ({i['note']})" if i.get("note") else "") + "."
                           for k, i in enumerate(r["invocations"])), "",
                 "Setting (deviations from the methods' defaults): " + "; ".join(r["setting"]["deviations"]) + ".",
                 "", f"Owners per method: {self.args.owners}; clean models: {self.args.clean}; keys per model: "
                 f"{self.args.keys} (other owners of the same method / owners of each method for clean models). "
                 "Seeds: " + "; ".join(f"{k}: {v}" for k, v in r["setting"]["seeds"].items()) + ".", "",
                 "## False accusations", "",
                 "A trial is one (model, key) pair: other-owner = a model trained on owner j's watermark verified "
                 "with owner i's key (i != j, same method); clean = a model trained on the clean subset verified "
                 "with an owner's key. CP 95 % = exact two-sided Clopper-Pearson interval. *Consistent* = the "
                 "lower bound is <= alpha (the data do not show a rate above alpha); *shown* = the upper bound is "
                 "<= alpha. Trials sharing a model or a key are not independent, so the intervals are a guide, "
                 "not exact. 'all' pools the methods.", "",
                 "| method | scenario | mode | test | alpha | false accusations / trials | CP 95 % upper bound | "
                 "consistent with <= alpha? | shown <= alpha? |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for row in s["false_accusations"]:
            if not row["trials"]:
                continue
            lines.append(f"| {row['method']} | {row['scenario']} | {row['mode']} | {row['test']} | {row['alpha']:g} | "
                         f"{row['accused']} / {row['trials']} | {row['cp95_upper']:.4f} | "
                         f"{'yes' if row['consistent'] else '**no**'} | "
                         f"{'yes' if row['upper_below_alpha'] else 'no'} |")
        lines += ["", "## Detection of the stolen models (each owner's model, its own key)", "",
                  f"Targets of the issue for the sequential test: labels verdict in <= {TARGET_QUERIES['labels']} "
                  f"queries, probs in <= {TARGET_QUERIES['probs']}. Queries are per verification (all models; "
                  "in brackets: detected models only).", "",
                  "| method | mode | test | alpha | detected / models | mean queries | max queries | mean hits | "
                  "mean per-probe success |", "|---|---|---|---|---|---|---|---|---|"]
        for row in s["detection"]:
            if not row["models"]:
                continue
            det = (f" ({row['mean_queries_detected']:.1f})" if row["mean_queries_detected"] is not None else "")
            detmax = f" ({row['max_queries_detected']})" if row["max_queries_detected"] is not None else ""
            lines.append(f"| {row['method']} | {row['mode']} | {row['test']} | {row['alpha']:g} | "
                         f"{row['detected']} / {row['models']} | {row['mean_queries']:.1f}{det} | "
                         f"{row['max_queries']}{detmax} | {row['mean_hits']:.2f} | {row['mean_probe_success']:.3f} |")
        lines += ["", "## Models", "",
                  "BA on the test rows; WSR (targeted: triggered non-target images sent to the mark's target, "
                  "averaged over marks) or ASR-A (UBW-P: triggered images off their true label); hits = marks "
                  f"whose secret choice the fixed-n test recovered (alpha {self.alphas[0]:g}).", "",
                  "| method | arch | models | BA mean (min) | train s mean | WSR / ASR-A mean | hits probs / labels "
                  "(of K) | detected probs / labels (fixed) |", "|---|---|---|---|---|---|---|---|"]
        for row in s["models"]:
            succ = row.get("wsr_mean", row.get("asr_a_mean"))
            hits = (f"{row['hits_probs_mean']:.1f} / {row['hits_labels_mean']:.1f} (of {row['n_marks']})"
                    if "hits_probs_mean" in row else "-")
            det = (f"{row['detected_probs']} / {row['detected_labels']}" if "detected_probs" in row else "-")
            lines.append(f"| {row['method']} | {row['arch']} | {row['models']} | {row['ba_mean']:.3f} "
                         f"({row['ba_min']:.3f}) | {row['train_s_mean']:.0f} | "
                         f"{'-' if succ is None else f'{succ:.3f}'} | {hits} | {det} |")
        return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--owners", type=int, default=20, help="Independent owners (and models) per method.")
    parser.add_argument("--clean", type=int, default=20, help="Clean models.")
    parser.add_argument("--keys", type=int, default=10, help="Other owners' keys per owner model; keys per method "
                        "per clean model.")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-rows", type=int, default=10_000, help="First N rows of cifar10:train.")
    parser.add_argument("--test-rows", type=int, default=2_000, help="First N rows of cifar10:test (probes, BA).")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--archs", default="tiny:width=8,vgg11:width=8", help="Alternated architectures.")
    parser.add_argument("--batch-size", type=int, default=128, help="Upper bound on the presets' batch size.")
    parser.add_argument("--rate", type=float, default=0.2, help="BadNets / Blended / UBW-P rate (default 0.1).")
    parser.add_argument("--trigger-size", type=int, default=8, help="BadNets patch side (default 3).")
    parser.add_argument("--ubwp-trigger-size", type=int, default=8, help="UBW-P patch side (default 3).")
    parser.add_argument("--cl-class-rate", type=float, default=0.3, help="Clean-label class_rate (default 0.1).")
    parser.add_argument("--pgd-steps", type=int, default=10, help="Clean-label PGD steps (default 40).")
    parser.add_argument("--alphas", default="0.01,0.05")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on 2 cores shared with other jobs, 2 threads measured 3-5x slower).")
    parser.add_argument("--time-budget-min", type=float, default=85.0,
                        help="Stop starting new models when this much active time (wall time not paused by "
                        "other jobs, summed over the invocations that resumed this setting) would be exceeded.")
    parser.add_argument("--work", default="runs/calibration", help="Cache of models, keys and records.")
    parser.add_argument("--name", default="calibration_cifar10", help="Base name of the results files.")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DegenerateTestWarning)  # the effect size of a 1-probe round
    study = Study(args, list(argv if argv is not None else sys.argv[1:]))
    result = study.run()
    log(f"done: {result['status']}, {result['active_s'] / 60:.1f} min active; results in "
        f"{RESULTS / args.name}.json/.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
