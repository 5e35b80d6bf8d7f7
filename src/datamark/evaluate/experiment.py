"""One experiment, used by the demo and the benchmarks: protect the training set with each method, train a
clean model and one model per watermarked set (the thief), evaluate the three scenarios, write artefacts.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._device import device_name, on_device
from .._io import atomic_path
from .._version import __version__
from ..data.records import Records
from ..methods.base import WatermarkMethod
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.train import TrainConfig, fit
from ..suspects.local import LocalSuspect
from ..verify.verifier import Verifier
from .attacks.base import Attack
from .metrics import benign_accuracy
from .plots import pvalue_plot, tradeoff_plot
from .report import markdown_table, survival_table
from .robustness import SurvivalRow, survival
from .scenarios import ScenarioRow, evaluate_scenarios

PUBLIC_DETAILS = ("craft", "base_model", "base_train_seconds")  # key notes that reveal nothing secret


@dataclass
class MethodReport:
    name: str
    rows: list[ScenarioRow]
    commitment: str
    target: int | None  # None for untargeted methods; a multi-mark key's first mark (its targets stay secret)
    marked_rows: int
    protect_s: float
    train_s: float
    details: dict[str, Any] = field(default_factory=dict)  # the key's public cost/quality notes (crafting)
    goal: str = ""  # the key's goal in words (Key.goal)
    robustness: list[SurvivalRow] = field(default_factory=list)  # the thief's countermeasures, if any were asked


@dataclass
class ExperimentReport:
    clean_ba: float
    clean_train_s: float
    methods: dict[str, MethodReport] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "datamark.experiment/1", "settings": self.settings, "clean_ba": self.clean_ba,
                "clean_train_s": self.clean_train_s,
                "methods": {name: {"commitment": m.commitment, "goal": m.goal, "marked_rows": m.marked_rows,
                                   "protect_s": m.protect_s, "train_s": m.train_s, "details": m.details,
                                   "ba_drop_points": 100 * (self.clean_ba - m.rows[-1].ba),
                                   "scenarios": [r.to_dict() for r in m.rows],
                                   **({"robustness": [r.to_dict() for r in m.robustness]} if m.robustness else {})}
                            for name, m in self.methods.items()}}

    def markdown(self) -> str:
        parts = [f"Clean model BA: {100 * self.clean_ba:.2f} %\n"]
        for name, m in self.methods.items():
            parts.append(f"### {name} ({m.goal}, {m.marked_rows} rows marked, key commitment "
                         f"`{m.commitment[:16]}…`)\n\n{markdown_table(m.rows)}\n")
            if m.robustness:
                parts.append(f"#### {name}: the thief's countermeasures\n\n{survival_table(m.robustness)}\n")
        return "\n".join(parts)


def environment() -> dict[str, Any]:
    """Machine and library versions, recorded beside every published number."""
    return {"datamark": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "device": device_name()}


def run_experiment(train: Records, test: Records, methods: Mapping[str, WatermarkMethod], *, arch: str,
                   config: TrainConfig, out_dir: str | Path | None = None, verifier: Verifier | None = None,
                   overwrite: bool = False, progress: bool = False, clean_checkpoint: str | Path | None = None,
                   log=print, experiment: Mapping[str, Any] | None = None, attacks: Sequence[Attack] = (),
                   thief_data: Records | None = None) -> ExperimentReport:
    """Run every method in ``methods`` on ``train``; evaluate on ``test``; write artefacts to ``out_dir``.

    ``clean_checkpoint`` reuses an independent model trained earlier on the clean data (same arch and config)
    instead of training one, so a second configuration of the methods costs no extra clean training.
    ``experiment`` (the experiment file's name, hash and text; see :mod:`.experiment_file`) is recorded in the
    report's settings. ``attacks`` (with ``thief_data`` for model-side ones) are applied to each stolen model
    and to the clean one after the scenarios (:func:`~datamark.evaluate.robustness.survival`).
    """
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    verifier = verifier or Verifier()
    start = time.perf_counter()
    if clean_checkpoint is not None:
        log(f"reusing the clean (independent) model {clean_checkpoint}")
        clean_model, spec = load_checkpoint(clean_checkpoint)
    else:
        log(f"training the clean (independent) model: {arch}, {config.epochs} epochs on {len(train)} rows")
        clean_model, spec = fit(train, arch=arch, config=config, progress=progress)
    report_clean_s = time.perf_counter() - start
    clean = LocalSuspect.from_model(clean_model, spec)
    if out is not None and clean_checkpoint is None:
        save_checkpoint(clean_model, spec, out / "clean.pt", overwrite=overwrite)
    report = ExperimentReport(clean_ba=benign_accuracy(clean, test), clean_train_s=report_clean_s,
                              settings={"arch": arch, "train_config": {k: getattr(config, k) for k in
                                                                       config.__dataclass_fields__},
                                        "verifier": {k: getattr(verifier, k) for k in verifier.__dataclass_fields__
                                                     if k != "released"},
                                        "train_rows": len(train), "test_rows": len(test),
                                        **({"experiment": dict(experiment)} if experiment else {}),
                                        "environment": environment()})
    log(f"clean model BA {100 * report.clean_ba:.2f} % ({report_clean_s:.0f} s)")
    for name, method in methods.items():
        start = time.perf_counter()
        marked = method.apply(train, progress=progress)
        protect_s = time.perf_counter() - start
        log(f"{name}: marked {len(marked.rows)} rows ({marked.key.goal}), commitment "
            f"{marked.key.commitment[:16]}… ({protect_s:.1f} s)")
        start = time.perf_counter()
        stolen_model, stolen_spec = fit(marked.dataset, arch=arch, config=config, progress=progress)
        train_s = time.perf_counter() - start
        if out is not None:  # before the evaluation: a run cut off there keeps its key, data and model
            suffix = {"numpy": ".npz", "tsv": ".tsv", "csv": ".csv", "parquet": ".parquet"}.get(
                marked.dataset.source_format, "")
            marked.key.save(out / f"{name}.key.json", overwrite=overwrite)  # the key first: data never without it
            marked.dataset.save(out / f"{name}-watermarked{suffix}", overwrite=overwrite)
            save_checkpoint(stolen_model, stolen_spec, out / f"{name}-stolen.pt", overwrite=overwrite)
            shown = marked.rows[:6]
            originals = train.take(shown)  # beside what was released (each row carries its own mark's trigger)
            train.modality.preview(originals, marked.dataset.take(shown), out / f"{name}-preview", overwrite=overwrite,
                                   titles=[f"{train.class_names[train.labels[r]]}→"
                                           f"{train.class_names[marked.dataset.labels[r]]}" for r in shown])
        stolen = LocalSuspect.from_model(stolen_model, stolen_spec)
        owner = replace(verifier, released=marked.dataset)  # keys that ask their marked rows find them here
        with on_device(clean_model), on_device(stolen_model):  # queries on the GPU where there is one
            rows = evaluate_scenarios(marked.key, stolen, clean, test, verifier=owner, seed=config.seed)
            robustness = survival(marked.key, attacks, test, stolen=(stolen_model, stolen_spec),
                                  clean=(clean_model, spec), thief_data=thief_data, released=marked.dataset,
                                  verifier=owner, seed=config.seed, progress=progress) if attacks else []
        details = {k: marked.key.extra[k] for k in PUBLIC_DETAILS if k in marked.key.extra}
        report.methods[name] = MethodReport(name, rows, marked.key.commitment, marked.key.target,
                                            len(marked.rows), protect_s, train_s, details, marked.key.goal,
                                            robustness)
    if out is not None:
        results = {name: m.rows for name, m in report.methods.items()}
        pvalue_plot(results, out / "pvalues.png", alpha_probs=verifier.alpha or 0.01,
                    alpha_labels=verifier.alpha or 0.01, overwrite=overwrite)
        if attacks:
            tradeoff_plot({name: [r.to_dict() for r in m.robustness] for name, m in report.methods.items()},
                          out / "robustness.png", alpha=verifier.alpha or 0.01, overwrite=overwrite)
        with atomic_path(out / "results.json", overwrite=True) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        with atomic_path(out / "results.md", overwrite=True) as tmp:
            tmp.write_text(report.markdown())
    return report
