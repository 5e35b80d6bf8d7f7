"""``evaluate`` (the scenario table for two models) and ``demo`` (the whole flow on data that needs no download)."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..evaluate.experiment_file import ExperimentFile, run_experiment_file
from ._common import check_json_output, emit_json, existing, human, json_option, run


class TableFormat(str, Enum):
    table = "table"
    md = "md"


def table_option() -> Any:
    return typer.Option(TableFormat.table, "--format", help="table: for the terminal (short names, fits 80 "
                        "columns); md: a GitHub Markdown table with the full names, for reports and issues.")


def print_table(rows, title: str, table_format: TableFormat, console: Console) -> None:
    """One scenario table, for the terminal or as Markdown (``soft_wrap``: a Markdown row is never broken)."""
    from ..evaluate import markdown_table, rich_table
    from ..evaluate.report import LEGEND

    if table_format is TableFormat.md:
        console.print(f"**{title}**\n\n{markdown_table(rows)}\n", soft_wrap=True, highlight=False, markup=False)
    else:
        console.print(rich_table(rows, title))
        console.print(LEGEND, style="dim", highlight=False)


def evaluate(
    key_path: Path = typer.Option(..., "--key", "-k", help="The secret key written by protect."),
    stolen: Path = typer.Option(..., help="Checkpoint of a model trained on the watermarked data."),
    clean: Path = typer.Option(..., help="Checkpoint of a model trained on the clean data."),
    data: str = typer.Option(..., "--data", "-d", help="Test data."),
    released: str | None = typer.Option(None, "--released", help="The watermarked dataset protect wrote: graph keys "
                                        "also ask each mark's released rows."),
    seed: int = typer.Option(0, help="Seed of the independent trigger or key (Independent-T); probes are drawn "
                                     "from each key's secret."),
    control_triggers: int | None = typer.Option(None, "--control-triggers", help="Run the trigger-specificity "
                                                "control with this many independent triggers (default: the key's; "
                                                "see verify)."),
    table_format: TableFormat = table_option(),
    json_path: Path | None = json_option("the scenario rows"),
    overwrite: bool = typer.Option(False, help="Replace an existing --json file."),
) -> None:
    """The scenario table: BA, WSR, ΔP and p in both modes for Steal, Independent-M and Independent-T."""
    from ..data import load_data
    from ..evaluate import evaluate_scenarios
    from ..key import Key
    from ..suspects import LocalSuspect
    from ..verify import Verifier

    def work():
        inputs = existing(key_path, stolen, clean, data, released)
        check_json_output(json_path, overwrite=overwrite, inputs=inputs)  # before the models are queried
        key = Key.load(key_path)
        rows = evaluate_scenarios(key, LocalSuspect.from_checkpoint(stolen), LocalSuspect.from_checkpoint(clean),
                                  load_data(data), verifier=Verifier(n_control_triggers=control_triggers,
                                                                    released=load_data(released) if released else None),
                                  seed=seed)
        print_table(rows, f"{key.method['name']} (key {key.commitment[:16]}…)", table_format, human(json_path))
        emit_json({"commitment": key.commitment, "method": key.method["name"], "rows": [r.to_dict() for r in rows]},
                  "scenarios", json_path, overwrite=overwrite, inputs=inputs)
    run(work)



def demo(
    output: Path = typer.Option(Path("datamark-demo"), "--out", "-o", help="Folder for every artefact."),
    overwrite: bool = typer.Option(True, help="Replace artefacts of an earlier demo run."),
    epochs: int | None = typer.Option(None, help="Training epochs (default: the model's preset: tiny 30, "
                                      "textcnn 10)."),
    modality: str = typer.Option("image", help="image: the embedded digits (no download); text: SST-2 from the "
                                 "shared data folder (DATAMARK_DATA), word triggers and a TextCNN."),
    table_format: TableFormat = table_option(),
    json_path: Path | None = json_option("the experiment's report (what results.json holds)"),
) -> None:
    """The whole flow: protect, train, verify, scenario table (images: embedded digits; text: SST-2).

    It runs a packaged experiment file (datamark/experiments/demo-MODALITY.toml) exactly as 'datamark run' would.
    """
    from importlib.resources import files

    from ..exceptions import ParameterError

    def work():
        if modality not in ("image", "text"):
            raise ParameterError(f"--modality must be 'image' or 'text'; got '{modality}'.")
        packaged = files("datamark") / "experiments" / f"demo-{modality}.toml"
        _run_file(ExperimentFile.parse(packaged.read_text(encoding="utf-8"), where=f"demo-{modality}.toml"),
                  output, overwrite, epochs, table_format, json_path)
    run(work)


def run_file(
    path: Path = typer.Argument(..., help="An experiment file (TOML): [experiment], [data], [model], [verify] and "
                                "one [methods.NAME] table per watermark; see datamark/experiments/demo-image.toml."),
    output: Path | None = typer.Option(None, "--out", "-o", help="Folder for every artefact (default: "
                                       "datamark-runs/NAME, NAME from [experiment] name)."),
    overwrite: bool = typer.Option(False, help="Replace artefacts of an earlier run in that folder."),
    check: bool = typer.Option(False, "--check", help="Only validate the file (every setting, every method) and "
                               "print what it would run."),
    table_format: TableFormat = table_option(),
    json_path: Path | None = json_option("the experiment's report (what results.json holds)"),
) -> None:
    """Run an experiment file: train a clean model, then per watermark protect, train the thief's model and
    evaluate Steal, Independent-M and Independent-T. A benchmark row is one file."""

    def work():
        spec = ExperimentFile.load(path)
        if check:
            human(json_path).print(f"{path}: valid; {spec.name}: {spec.arch} on {spec.train} "
                                   f"(test {spec.test}); methods {', '.join(spec.methods)}; sha256 {spec.sha256}")
            return
        _run_file(spec, output or Path("datamark-runs") / spec.name, overwrite, None, table_format, json_path)
    run(work)


def _run_file(spec: ExperimentFile, output: Path, overwrite: bool, epochs: int | None, table_format: TableFormat,
              json_path: Path | None) -> None:
    """One experiment, its tables and its JSON document: the body of demo and run."""
    from dataclasses import replace

    from ..exceptions import OutputExistsError

    out = human(json_path)
    if not overwrite and output.is_dir() and any(output.iterdir()):
        raise OutputExistsError(f"The run folder '{output}' already holds artefacts; pass --overwrite to replace "
                                f"them (files of the same names only) or choose another --out.")
    check_json_output(json_path, overwrite=overwrite, inputs=[output])
    if epochs:
        spec = replace(spec, training={**spec.training, "epochs": epochs})
    start = time.perf_counter()
    report = run_experiment_file(spec, out_dir=output, overwrite=overwrite, progress=True, log=out.print)
    for name, m in report.methods.items():
        print_table(m.rows, f"{name}: {m.goal}, commitment {m.commitment[:16]}…", table_format, out)
    out.print(f"clean model BA {100 * report.clean_ba:.2f} %; artefacts (keys, data, checkpoints, previews, "
              f"p-value plot, results.json) in {output}/; {time.perf_counter() - start:.0f} s in all")
    emit_json(report.to_dict(), "experiment", json_path, overwrite=overwrite)
