"""``train``: a reference model, trained the way a thief would."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from ._app import err
from ._common import check_json_output, emit_json, existing, human, json_option, run


def train(
    data: str = typer.Argument(..., help="Training dataset (any format protect reads)."),
    output: Path = typer.Option(..., "--out", "-o", help="Checkpoint path to write."),
    arch: str | None = typer.Option(None, help="Model: fastnet (images, the default; CPU, CIFAR-size), resnet18 "
                                    "(paper), tiny (tests); textcnn (text, the default), bag (text, fastest), "
                                    "minilm (text, a fine-tuned MiniLM BERT)."),
    epochs: int | None = typer.Option(None, help="Epochs (default: the architecture's preset)."),
    seed: int = typer.Option(0, help="Seed of initialisation, shuffling and augmentation."),
    test: str | None = typer.Option(None, help="A test set to report clean accuracy on."),
    limit: int | None = typer.Option(None, min=2, help="Train on a seeded random subset of this many rows (a quick "
                                     "try; the same rows for the same --seed)."),
    overwrite: bool = typer.Option(False, help="Replace an existing checkpoint."),
    json_path: Path | None = json_option("what was trained (architecture, rows, time, test accuracy)"),
) -> None:
    """Train a reference model the way a thief would (augmentation after the watermark); save a checkpoint."""
    from .._io import check_output
    from ..data import load_data
    from ..evaluate.metrics import benign_accuracy
    from ..models import default_config, fit, save_checkpoint
    from ..suspects import LocalSuspect

    def work():
        check_output(output, overwrite=overwrite, what="checkpoint", inputs=existing(data, test))
        check_json_output(json_path, overwrite=overwrite, inputs=[*existing(data, test), output])
        out = human(json_path)
        records = load_data(data)
        if limit is not None and limit < len(records):
            import numpy as np

            records = records.subset(np.sort(np.random.default_rng(seed).permutation(len(records))[:limit]))
        chosen = arch or records.modality.default_arch
        overrides = {"seed": seed} | ({"epochs": epochs} if epochs else {})
        start = time.perf_counter()
        model, spec = fit(records, arch=chosen, config=default_config(chosen, **overrides), progress=True)
        elapsed = time.perf_counter() - start
        save_checkpoint(model, spec, output, overwrite=overwrite, extra={"train_s": elapsed, "data": data})
        out.print(f"trained {chosen} on {len(records)} {records.modality.name} rows in {elapsed:.0f} s -> {output}")
        acc = near_chance = None
        if test:
            acc = benign_accuracy(LocalSuspect.from_model(model, spec), load_data(test))
            out.print(f"clean test accuracy: {100 * acc:.2f} %")
            chance = 1.0 / records.num_classes
            near_chance = acc < chance + 0.1 * (1.0 - chance)  # within a tenth of the way from chance to perfect
            if near_chance:
                err.print(f"[yellow]warning:[/] the model is near chance ({100 * acc:.1f} % with "
                          f"{records.num_classes} classes): it has not learned the task, and a model that has not "
                          f"learned it can verify nothing. Train longer (--epochs) or on more rows.", soft_wrap=True)
        emit_json({"arch": chosen, "modality": records.modality.name, "rows": len(records), "seed": seed,
                   "elapsed_s": elapsed, "checkpoint": output, "test": test, "test_accuracy": acc,
                   "near_chance": near_chance}, "train", json_path, overwrite=overwrite)
    run(work)


