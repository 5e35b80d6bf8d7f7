"""``evaluate`` (the scenario table for two models) and ``demo`` (the whole flow on data that needs no download)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from ._app import out
from ._common import existing, run


def evaluate(
    key_path: Path = typer.Option(..., "--key", "-k", help="The secret key written by protect."),
    stolen: Path = typer.Option(..., help="Checkpoint of a model trained on the watermarked data."),
    clean: Path = typer.Option(..., help="Checkpoint of a model trained on the clean data."),
    data: str = typer.Option(..., "--data", "-d", help="Test data."),
    seed: int = typer.Option(0, help="Seed of the independent trigger or key (Independent-T); probes are drawn "
                                     "from each key's secret."),
    control_triggers: int | None = typer.Option(None, "--control-triggers", help="Run the trigger-specificity "
                                                "control with this many independent triggers (default: the key's; "
                                                "see verify)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the scenario rows as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace an existing --json file."),
) -> None:
    """The scenario table: BA, WSR, ΔP and p in both modes for Steal, Independent-M and Independent-T."""
    from .._io import check_output, write_text
    from ..data import load_data
    from ..evaluate import evaluate_scenarios, rich_table
    from ..key import Key
    from ..suspects import LocalSuspect
    from ..verify import Verifier

    def work():
        inputs = existing(key_path, stolen, clean, data)
        if json_path is not None:  # before the models are queried
            check_output(json_path, overwrite=overwrite, what="--json result", inputs=inputs)
        key = Key.load(key_path)
        rows = evaluate_scenarios(key, LocalSuspect.from_checkpoint(stolen), LocalSuspect.from_checkpoint(clean),
                                  load_data(data), verifier=Verifier(n_control_triggers=control_triggers),
                                  seed=seed)
        out.print(rich_table(rows, f"{key.method['name']} (key {key.commitment[:16]}…)"))
        if json_path is not None:
            write_text(json_path, json.dumps([r.to_dict() for r in rows], indent=2) + "\n", overwrite=overwrite,
                       what="--json result", inputs=inputs)
    run(work)



def demo(
    output: Path = typer.Option(Path("datamark-demo"), "--out", "-o", help="Folder for every artefact."),
    overwrite: bool = typer.Option(True, help="Replace artefacts of an earlier demo run."),
    epochs: int | None = typer.Option(None, help="Training epochs (default: the model's preset: tiny 30, "
                                      "textcnn 10)."),
    modality: str = typer.Option("image", help="image: the embedded digits (no download); text: SST-2 from the "
                                 "shared data folder (DATAMARK_DATA), word triggers and a TextCNN."),
) -> None:
    """The whole flow: protect, train, verify, scenario table (images: embedded digits; text: SST-2)."""
    from ..data import load_data, load_digits
    from ..evaluate import rich_table
    from ..evaluate.experiment import run_experiment
    from ..exceptions import ParameterError
    from ..methods import UBWP, BadNets, Blended
    from ..models import default_config

    def work():
        start = time.perf_counter()
        if modality == "image":
            train_set, test_set, arch = load_digits("train"), load_digits("test"), "tiny"
            out.print(f"embedded digits: {len(train_set)} training and {len(test_set)} test images, 8x8 grey, "
                      f"10 classes")
            # 8x8 grey digits hold fewer marks apart than 32-px images: 5 marks (each with its own secret trigger
            # and target), and for the faint blend a stronger opacity on twice the rows (measured in the README)
            methods = {"badnets": BadNets(seed=0, n_marks=5, decoy_rate=0.1),
                       "blended": Blended(seed=1, n_marks=5, blend=0.3, rate=0.2, decoy_rate=0.1)}
        elif modality == "text":
            train_set, test_set, arch = load_data("sst2:train"), load_data("sst2:validation"), "textcnn"
            out.print(f"SST-2: {len(train_set)} training and {len(test_set)} validation sentences, 2 classes")
            # binary labels: a mark's secret target is 1 of 2, so K = 10 marks (default) make p <= 1/1024 possible
            methods = {"badnets-word": BadNets(seed=0), "ubw-p-word": UBWP(seed=1)}
        else:
            raise ParameterError(f"--modality must be 'image' or 'text'; got '{modality}'.")
        config = default_config(arch, **({"epochs": epochs} if epochs else {}))
        report = run_experiment(train_set, test_set, methods, arch=arch, config=config,
                                out_dir=output, overwrite=overwrite, progress=True, log=out.print)
        for name, m in report.methods.items():
            goal = m.goal
            out.print(rich_table(m.rows, f"{name}: {goal}, commitment {m.commitment[:16]}…"))
        out.print(f"clean model BA {100 * report.clean_ba:.2f} %; artefacts (keys, data, checkpoints, "
                  f"previews, p-value plot, results.json) in {output}/; {time.perf_counter() - start:.0f} s in all")
    run(work)


