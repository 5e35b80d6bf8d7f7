"""``protect`` (watermark a dataset) and ``preview`` (look at what it changed)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import typer

from ._app import out
from ._common import MethodName, OutputFormat, check_json_output, emit_json, existing, human, json_option, run


def protect(
    data: str = typer.Argument(..., help="Dataset: .parquet, Arrow folder, parquet shards, WebDataset .tar folder, "
                               "image folder, .tsv/.csv (text), .npz, "
                               "'digits', NAME:SPLIT (cifar10:train, sst2:train, ag_news:train)."),
    output: Path = typer.Option(..., "--out", "-o", help="Where to write the watermarked dataset (same format)."),
    key_path: Path = typer.Option(..., "--key", "-k", help="Where to write the secret key (JSON, mode 0600)."),
    method: MethodName = typer.Option(MethodName.badnets, help="Watermark method."),
    preset_name: str | None = typer.Option(None, "--preset", help="Named settings measured together: 'robust' "
                                           "(BadNets on images of 32 px or more: --pattern blocks --trigger-size "
                                           "8 --decoy-rate 0.1 --confusion-rate 0.1, the README's choice against "
                                           "thieves who compress, filter or distil). Options you give win."),
    rate: float | None = typer.Option(None, help="gamma: fraction of ALL training rows to mark (default: the "
                                      "method's paper, 0.1 for most)."),
    target: int | None = typer.Option(None, help="Target class index (default: drawn from the secret)."),
    pattern: str | None = typer.Option(None, help="Trigger pattern: random (secret; the default), checkerboard, "
                                       "white, mosaic, blocks (2 x 2 flat tiles; with --trigger-size 8 one JPEG "
                                       "block) (clean-label default: by trigger kind)."),
    trigger_size: int | None = typer.Option(None, help="Trigger side in pixels (BadNets default: 3 at 32 px)."),
    blend: float | None = typer.Option(None, help="Blended, clean-label blend: opacity of the pattern (default 0.2)."),
    trigger: str | None = typer.Option(None, "--trigger", help="Text: 'word' (a keyed rare word at a keyed place; "
                                       "the default) or 'style' (future perfect continuous rewrite; one public "
                                       "trigger, so one mark). Audio: 'tone' (keyed 100 ms tones, a keyed "
                                       "place; the default), or one 'pulse' (the paper's constant 6.25 ms pulse) or "
                                       "'noise' burst (one mark). Graphs: 'subgraph' (keyed sub-graphs; the "
                                       "default), or one 'uniform-labels', 'injected', 'complete' or 'star' "
                                       "sub-graph (one mark)."),
    decoy_rate: float | None = typer.Option(None, help="Fraction of rows stamped with other random triggers, labels "
                                            "kept (default 0, WaNet 0.2; 0.1 recommended for DVBW and UBW-P)."),
    confusion_rate: float | None = typer.Option(None, help="BadNets/Blended, 5+ classes: fraction of each class "
                                                "relabelled to the class's secret partner, images unchanged: a "
                                                "trigger-free second channel that survives distillation, verified "
                                                "beside the marks at alpha/2 each (default 0 = off; 0.05 and 0.1 "
                                                "measured, 0.1 recommended against filtering thieves)."),
    confusion_choice: str | None = typer.Option(None, help="With --confusion-rate: which rows of each class are "
                                                "relabelled: 'keyed' (keyed hash, default) or 'partner-like' (the "
                                                "rows a clean base model finds most like the class's partner; "
                                                "--base-model, else one is trained on DATA first). Partner-like "
                                                "rows survived the adaptive filtering thief where keyed rows did "
                                                "not (full-width CIFAR-10)."),
    n_marks: int | None = typer.Option(None, "--n-marks", help="K, marks with their own secret trigger and target "
                                       "(untargeted: embedded candidate), verified by an exact test (default: 10 "
                                       "DVBW/WaNet, 5 clean-label, 4 UBW-P; 1 = the paper's single watermark, "
                                       "verified with the specificity control)."),
    n_candidates: int | None = typer.Option(None, "--n-candidates", help="Candidate triggers per mark among "
                                            "which the embedded one is secretly drawn. UBW-P: default 10 (1 = the "
                                            "paper). BadNets/Blended: default 1; M + 1 > 1 gives each mark C x "
                                            "(M + 1) secret options, for tasks with few classes."),
    random_labels: str | None = typer.Option(None, help="UBW-P: draw each marked row's label from all K classes "
                                             "('uniform', the paper) or from the K - 1 others ('other', "
                                             "recommended: a short training learns it)."),
    class_rate: float | None = typer.Option(None, help="Clean-label: fraction of the TARGET CLASS to mark "
                                            "(default 0.1)."),
    trigger_kind: str | None = typer.Option(None, help="Clean-label: patch (default), blend (mosaic texture) or "
                                            "corners (label-consistent default)."),
    eps: float | None = typer.Option(None, help="Clean-label: PGD budget on the [0, 1] scale (16/255 = 0.0627)."),
    base_model: Path | None = typer.Option(None, help="Clean-label, UBW-C, Sleeper Agent: checkpoint of a model "
                                           "trained on DATA to craft against; BadNets/Blended with "
                                           "--confusion-choice partner-like: the model that ranks the rows "
                                           "(default: train one, part of the cost)."),
    craft_steps: int | None = typer.Option(None, help="UBW-C, Sleeper Agent: gradient-matching steps (paper: 250)."),
    pgd_batch_size: int | None = typer.Option(None, help="Clean-label: rows per PGD batch (default 256; every batch "
                                              "is padded to it, so with --engine and few rows per shard lower it, "
                                              "e.g. 8)."),
    seed: int | None = typer.Option(None, help="Derive the secret from this seed (default: a fresh random secret)."),
    preview: Path | None = typer.Option(None, help="Also write a PNG of original vs watermarked samples."),
    input_column: str | None = typer.Option(None, help="Image or text column of a table (default: detected)."),
    label_column: str = typer.Option("label", help="Label column of a table."),
    output_format: OutputFormat | None = typer.Option(None, "--format", help="Write the dataset in a Hugging Face "
                                                      "layout instead of its own format: hf-disk (save_to_disk), "
                                                      "parquet-shards (data/train-0000i-of-0000N.parquet, ready for "
                                                      "push_to_hub), parquet (one file)."),
    split: str | None = typer.Option(None, help="Read this split of a Hugging Face dataset (a DatasetDict folder "
                                     "or hf:ID); with --format parquet-shards, also the shards' split name."),
    card: Path | None = typer.Option(None, help="Also write a dataset-card snippet (README.md Markdown) that "
                                     "publishes the commitment, and nothing secret."),
    overwrite: bool = typer.Option(False, help="Replace existing outputs."),
    engine: str | None = typer.Option(None, "--engine", help="Protect a parquet-shard folder or a folder of "
                                      "WebDataset .tar shards shard by shard, never "
                                      "holding it whole: 'local' (worker processes) or 'ray' (Ray tasks; the "
                                      "cluster of RAY_ADDRESS, else a local one). Resumable: run the same command "
                                      "again after an interruption. BadNets, Blended, UBW-P and clean-label (with "
                                      "--base-model); image, text or audio data."),
    workers: int = typer.Option(1, "--workers", help="--engine local: worker processes; --engine ray without "
                                "RAY_ADDRESS: CPUs of the local Ray cluster."),
    json_path: Path | None = json_option("what was written (paths, counts, the commitment; never the secret)"),
) -> None:
    """Watermark DATA; write the watermarked dataset and the secret key; print the commitment to publish.

    All or nothing: the key is written (and flushed to disk) first, then the dataset, then the preview; if any
    step fails or the run is interrupted, what this run wrote is removed and what it replaced is put back.
    With --engine, the dataset is built beside the output (OUT.datamark-partial) and a rerun resumes it.
    """
    from .._io import Journal, check_outputs, write_text
    from ..data import load_data
    from ..data.card import dataset_card
    from ..data.output import resolve_format, writes_directory
    from ..evaluate.preview import watermark_stages
    from ..exceptions import ParameterError
    from ..methods import build_method
    from ..methods.presets import preset

    def build(records):
        """The method the options (and the preset) ask for, on ``records``."""
        modality = records.modality.name
        options: dict = dict(seed=seed)
        from ..modalities import GraphModality

        kinds = {"word": "text", "style": "text", "pulse": "audio", "tone": "audio", "noise": "audio",
                 "subgraph": "graph", **dict.fromkeys(GraphModality.NAMED_TRIGGERS, "graph")}
        if trigger is not None and trigger not in kinds:
            graph = ", ".join(f"'{name}'" for name, kind in kinds.items() if kind == "graph")
            raise ParameterError(f"--trigger must be 'word' or 'style' (text data), 'pulse', 'tone' or 'noise' "
                                 f"(audio data), or one of {graph} (graph data); got '{trigger}'.")
        if trigger is not None and modality != kinds[trigger]:
            raise ParameterError(f"--trigger {trigger} is for {kinds[trigger]} data but {data} holds "
                                 f"{modality}; image triggers are chosen by --method, --pattern and "
                                 f"--trigger-size.")
        if preview is not None and modality == "text":
            raise ParameterError("--preview draws images and audio; for text data, compare the datasets' marked rows "
                                 "(the key lists their ids) instead.")
        if trigger not in (None, "word", "tone", "subgraph"):  # not the default: a named trigger, drawn from the
            options["trigger_name"] = trigger                 # secret and recorded, so the key can re-draw it
        optional = dict(target=target, trigger_size=trigger_size, blend=blend,
                        rate=rate, decoy_rate=decoy_rate, confusion_rate=confusion_rate,
                        confusion_choice=confusion_choice, pattern=pattern,
                        labels=random_labels, class_rate=class_rate,
                        n_marks=n_marks, n_candidates=n_candidates,
                        trigger_kind=trigger_kind, eps=eps, craft_steps=craft_steps, pgd_batch_size=pgd_batch_size,
                        base_model=None if base_model is None else str(base_model))
        if preset_name is not None:
            chosen = preset(preset_name)
            chosen.check_records(method.value, records)
            optional, overridden = chosen.fill(optional)
            settings = ", ".join(f"{k}={v}" for k, v in chosen.options.items())
            replaced = "".join(f"; your {k}={v} replaces it" for k, v in overridden.items())
            human(json_path).print(f"preset {chosen.name}: {settings}{replaced}")
        options.update({k: v for k, v in optional.items() if v is not None})  # unset: the method's default
        return build_method(method.value, options, strict=True)

    def work():
        if preset_name is not None:
            preset(preset_name)  # an unknown name is refused before the data is read
        fmt = None if output_format is None else output_format.value
        if engine is not None:
            return sharded(fmt)
        start = time.perf_counter()
        records = load_data(data, split=split, input_column=input_column, label_column=label_column)
        folder = writes_directory(records, resolve_format(records, output, fmt))  # a wrong suffix: refused now
        check_outputs([("dataset", output, folder), ("key", key_path, False), ("preview", preview, False),
                       ("card", card, False)], inputs=existing(data, base_model), overwrite=overwrite)
        check_json_output(json_path, overwrite=overwrite, inputs=[*existing(data, base_model), output, key_path,
                                                                  preview, card])
        chosen = build(records)
        marked = chosen.apply(records, progress=True)
        with Journal() as journal:  # never a watermarked dataset without its key
            marked.key.save(key_path, overwrite=overwrite, journal=journal)
            marked.dataset.save(output, format=fmt, split=split if fmt == "parquet-shards" else None,
                                overwrite=overwrite, journal=journal)
            if card is not None:
                write_text(card, dataset_card(marked.key, dataset_name=output.name), overwrite=overwrite,
                           what="dataset card", journal=journal)
            if preview is not None:
                watermark_stages(marked.key, records, marked.dataset, preview, overwrite=overwrite, journal=journal)
        announce(marked.key, len(marked.rows), len(records), time.perf_counter() - start,
                 fmt=fmt or records.source_format, preview=preview)

    def sharded(fmt: str | None) -> None:
        from ..scale import check_supported, install, protect_shards
        from ..scale.shards import open_source

        if engine not in ("local", "ray"):
            raise ParameterError(f"--engine must be 'local' (worker processes on this machine) or 'ray' (Ray tasks: "
                                 f"the cluster of RAY_ADDRESS, else a local one; pip install \"datamark[ray]\"); "
                                 f"got '{engine}'.")
        source = open_source(data, split=split, input_column=input_column, label_column=label_column)
        if fmt not in (None, source.format):  # parquet shards stay parquet shards, tars stay tars
            raise ParameterError(f"--engine writes the input's shards ({source.format}) under their own names; drop "
                                 f"--format {fmt} or protect without --engine.")
        if preview is not None:
            raise ParameterError("--preview reads the whole dataset; with --engine, run `datamark preview` on the "
                                 "output afterwards.")
        start = time.perf_counter()
        check_outputs([("dataset", output, True), ("key", key_path, False), ("card", card, False)],
                      inputs=existing(data, base_model), overwrite=overwrite)
        check_json_output(json_path, overwrite=overwrite, inputs=[*existing(data, base_model), output, key_path,
                                                                  card])
        chosen = build(source.open(0))
        check_supported(chosen)
        result = protect_shards(chosen, source, output, workers=workers, overwrite=overwrite, engine=engine,
                                progress=True)
        with Journal() as journal:  # never a watermarked dataset without its key
            install(result, key_path, overwrite=overwrite, journal=journal)
            if card is not None:
                write_text(card, dataset_card(result.key, dataset_name=output.name), overwrite=overwrite,
                           what="dataset card", journal=journal)
        announce(result.key, result.n_marked, result.n_rows, time.perf_counter() - start, fmt=source.format,
                 preview=None, where=f" in {result.n_shards} shards", how=f" on {workers} worker(s)",
                 engine=engine, workers=workers, shards=result.n_shards)

    def announce(key, marked_rows: int, rows: int, elapsed: float, *, fmt: str, preview: Path | None,
                 where: str = "", how: str = "", **fields) -> None:
        """What a run wrote, for people (the commitment to publish) and for ``--json`` (never the secret)."""
        goal, out = key.goal, human(json_path)
        decoys = len(key.extra.get("decoy_ids", ()))  # rows with other owners' triggers, labels kept
        confused = len(key.extra.get("confusion_ids", ()))  # rows relabelled to their class's secret partner
        out.print(f"marked {marked_rows} of {rows} rows{where} with {method.value}{how} in {elapsed:.1f} s ({goal})"
                  + (f"; {decoys} more rows carry decoy triggers and keep their labels" if decoys else "")
                  + (f"; {confused} more rows keep their image and take their class's secret partner's label "
                     f"(the confusion channel)" if confused else ""))
        out.print(f"watermarked dataset: {output}\nsecret key (keep private): {key_path}")
        out.print(f"commitment (publish with the release): [bold]{key.commitment}[/]")
        emit_json({"commitment": key.commitment, "method": method.value, "preset": preset_name, "goal": goal,
                   "rows": rows, "marked_rows": marked_rows, "decoy_rows": decoys, "confusion_rows": confused,
                   "elapsed_s": elapsed,
                   "dataset": output, "format": fmt, "key": key_path, "preview": preview, "card": card, **fields},
                  "protect", json_path, overwrite=overwrite)
    run(work)


def preview(
    key_path: Path = typer.Option(..., "--key", "-k", help="The secret key written by protect."),
    watermarked: str = typer.Option(..., "--watermarked", "-w", help="The watermarked dataset protect wrote."),
    original: str = typer.Option(..., "--original", help="The original dataset the key was made from."),
    output: Path = typer.Option(..., "--out", "-o", help="PNG to write."),
    n: int = typer.Option(8, help="How many marked images to show."),
    magnify: float = typer.Option(5.0, help="Magnification of the change, drawn around mid-grey."),
    overwrite: bool = typer.Option(False, help="Replace an existing PNG."),
) -> None:
    """Show marked images side by side: original, perturbed only (if the method perturbs), watermarked, change."""
    from .._io import check_output
    from ..data import load_data
    from ..evaluate.preview import watermark_stages
    from ..key import Key

    def work():
        check_output(output, overwrite=overwrite, what="preview", inputs=existing(key_path, watermarked, original))
        shown = watermark_stages(Key.load(key_path), load_data(original), load_data(watermarked), output, n=n,
                                 magnify=magnify, overwrite=overwrite)
        out.print(f"{shown} marked images -> {output}")
    run(work)




def card(
    key_path: Path = typer.Option(..., "--key", "-k", help="The key protect wrote (only its public summary is read)."),
    name: str | None = typer.Option(None, help="The dataset's name in the card (default: none)."),
    output: Path | None = typer.Option(None, "--out", "-o", help="Write the snippet here (default: print it)."),
    overwrite: bool = typer.Option(False, help="Replace an existing file."),
) -> None:
    """A dataset-card snippet (Markdown with Hub front matter) that publishes the commitment and how an auditor
    verifies; never the secret, the trigger, the target or which rows are marked."""
    from .._io import write_text
    from ..data.card import dataset_card
    from ..key import Key

    def work():
        text = dataset_card(Key.load(key_path), dataset_name=name)
        if output is None:
            sys.stdout.write(text)
        else:
            write_text(output, text, overwrite=overwrite, what="dataset card", inputs=[key_path])
            out.print(f"dataset card -> {output}")
    run(work)
