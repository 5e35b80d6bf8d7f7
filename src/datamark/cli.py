"""The ``datamark`` command line: parse options, build objects, print. No logic lives here."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from enum import Enum
from functools import partial
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .exceptions import DatamarkError

# Tracebacks are plain and never show local variables: a key's secret lives in some frame's locals while it is
# written, and typer 0.12's pretty tracebacks printed locals by default.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  pretty_exceptions_show_locals=False,
                  help="Watermark a dataset before release; prove from black-box queries whether a model used it.")
out = Console()
err = Console(stderr=True)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (test runners swap it per invocation)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _version(value: bool) -> None:
    if value:
        from ._version import __version__

        out.print(f"datamark {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log messages (-v info, -vv debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors in the log."),
    threads: int | None = typer.Option(None, "--threads", envvar="DATAMARK_THREADS", min=1,
                                       help="CPU threads torch may use (default: torch's, one per core)."),
) -> None:
    """Options of every command: logging through the ``logging`` module, and torch's thread count."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logger = logging.getLogger("datamark")  # datamark's own messages; other libraries' logging is left alone
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _method_names() -> dict[str, str]:
    from . import methods  # noqa: F401 -- importing the package registers every method
    from .registry import METHODS

    return {name.replace("-", "_"): name for name in sorted(METHODS)}


MethodName = Enum("MethodName", _method_names(), type=str)  # every registered method, by its key-file name


class Mode(str, Enum):
    probs = "probs"
    labels = "labels"


class Datatype(str, Enum):
    UINT8 = "UINT8"
    FP32 = "FP32"
    BYTES = "BYTES"


class Layout(str, Enum):
    NHWC = "NHWC"
    NCHW = "NCHW"
    NL = "NL"


T = TypeVar("T")


class _Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that clean-up code (protect's rollback) runs."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`_Terminated` instead of killing the process on the spot."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return

    def handler(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(error: object, code: int = 2) -> NoReturn:
    """Print ``error`` as one line on stderr (no markup, no wrapping) and exit with ``code``."""
    text = " ".join(str(error).split()) or type(error).__name__
    err.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _run(fn: Callable[[], T], *, trap_sigterm: bool = True) -> T:
    """Run a command body; user mistakes, bad input files and system errors become one line and exit code 2.

    DatamarkError and OSError (disk full, read-only folder, permission denied) print their message; a
    ValueError, TypeError, IndexError or KeyError (a bad value in a key file or checkpoint the checks missed)
    prints its type and message (DATAMARK_DEBUG=1 re-raises it for the traceback). Ctrl-C and SIGTERM exit
    130 and 143 after the command's own clean-up ran. Anything else is a bug: a plain traceback, no locals.
    """
    try:
        with _sigterm_raises() if trap_sigterm else contextlib.nullcontext():
            return fn()
    except KeyboardInterrupt:
        _fail("interrupted (Ctrl-C)", 130)
    except _Terminated:
        _fail("terminated (SIGTERM)", 143)
    except (DatamarkError, OSError) as error:
        _fail(error)
    except (ValueError, TypeError, IndexError, KeyError) as error:
        if os.environ.get("DATAMARK_DEBUG"):
            raise
        _fail(f"{type(error).__name__}: {error} (a malformed value in an input file?; set DATAMARK_DEBUG=1 "
              f"for the traceback)")


def _existing(*paths: str | Path | None) -> list[Path]:
    """The given paths that exist: a command's inputs, which no output may replace."""
    return [Path(p) for p in paths if p is not None and os.path.lexists(p)]


@app.command()
def protect(
    data: str = typer.Argument(..., help="Dataset: .parquet, Arrow folder, image folder, .tsv/.csv (text), .npz, "
                               "'digits', NAME:SPLIT (cifar10:train, sst2:train, ag_news:train)."),
    output: Path = typer.Option(..., "--out", "-o", help="Where to write the watermarked dataset (same format)."),
    key_path: Path = typer.Option(..., "--key", "-k", help="Where to write the secret key (JSON, mode 0600)."),
    method: MethodName = typer.Option(MethodName.badnets, help="Watermark method."),
    rate: float | None = typer.Option(None, help="gamma: fraction of ALL training rows to mark (default: the "
                                      "method's paper, 0.1 for most)."),
    target: int | None = typer.Option(None, help="Target class index (default: drawn from the secret)."),
    pattern: str | None = typer.Option(None, help="Trigger pattern: random (secret; the default), checkerboard, "
                                       "white, mosaic (clean-label default: by trigger kind)."),
    trigger_size: int | None = typer.Option(None, help="Trigger side in pixels (BadNets default: 3 at 32 px)."),
    blend: float | None = typer.Option(None, help="Blended, clean-label blend: opacity of the pattern (default 0.2)."),
    trigger: str | None = typer.Option(None, "--trigger", help="Text: 'word' (a keyed rare word at a keyed place; "
                                       "the default) or 'style' (future perfect continuous rewrite; one public "
                                       "trigger, so one mark). Audio: 'tone' (keyed 100 ms tones, a keyed "
                                       "place; the default), or one 'pulse' (the paper's constant 6.25 ms pulse) or "
                                       "'noise' burst (one mark)."),
    decoy_rate: float | None = typer.Option(None, help="Fraction of rows stamped with other random triggers, labels "
                                            "kept (default 0, WaNet 0.2; 0.1 recommended for DVBW and UBW-P)."),
    n_marks: int | None = typer.Option(None, "--n-marks", help="K, marks with their own secret trigger and target "
                                       "(untargeted: embedded candidate), verified by an exact test (default: 10 "
                                       "DVBW/WaNet, 5 clean-label, 4 UBW-P; 1 = the paper's single watermark, "
                                       "verified with the specificity control)."),
    n_candidates: int | None = typer.Option(None, "--n-candidates", help="UBW-P: candidate triggers per mark among "
                                            "which the embedded one is drawn (default 10; 1 = the paper)."),
    random_labels: str | None = typer.Option(None, help="UBW-P: draw each marked row's label from all K classes "
                                             "('uniform', the paper) or from the K - 1 others ('other', "
                                             "recommended: a short training learns it)."),
    class_rate: float | None = typer.Option(None, help="Clean-label: fraction of the TARGET CLASS to mark "
                                            "(default 0.1)."),
    trigger_kind: str | None = typer.Option(None, help="Clean-label: patch (default), blend (mosaic texture) or "
                                            "corners (label-consistent default)."),
    eps: float | None = typer.Option(None, help="Clean-label: PGD budget on the [0, 1] scale (16/255 = 0.0627)."),
    base_model: Path | None = typer.Option(None, help="Clean-label, UBW-C, Sleeper Agent: checkpoint of a model "
                                           "trained on DATA to craft against (default: train one, part of the cost)."),
    craft_steps: int | None = typer.Option(None, help="UBW-C, Sleeper Agent: gradient-matching steps (paper: 250)."),
    seed: int | None = typer.Option(None, help="Derive the secret from this seed (default: a fresh random secret)."),
    preview: Path | None = typer.Option(None, help="Also write a PNG of original vs watermarked samples."),
    input_column: str | None = typer.Option(None, help="Image or text column of a table (default: detected)."),
    label_column: str = typer.Option("label", help="Label column of a table."),
    overwrite: bool = typer.Option(False, help="Replace existing outputs."),
) -> None:
    """Watermark DATA; write the watermarked dataset and the secret key; print the commitment to publish.

    All or nothing: the key is written (and flushed to disk) first, then the dataset, then the preview; if any
    step fails or the run is interrupted, what this run wrote is removed and what it replaced is put back.
    """
    from ._io import Journal, check_outputs
    from .data import load_data
    from .evaluate.preview import watermark_stages
    from .exceptions import ParameterError
    from .methods import build_method

    def work():
        check_outputs([("dataset", output, None), ("key", key_path, False), ("preview", preview, False)],
                      inputs=_existing(data, base_model), overwrite=overwrite)
        start = time.perf_counter()
        records = load_data(data, input_column=input_column, label_column=label_column)
        options: dict = dict(seed=seed)
        kinds = {"word": "text", "style": "text", "pulse": "audio", "tone": "audio", "noise": "audio"}
        if trigger is not None and trigger not in kinds:
            raise ParameterError(f"--trigger must be 'word' or 'style' (text data) or 'pulse', 'tone' or 'noise' "
                                 f"(audio data); got '{trigger}'.")
        if trigger is not None and records.modality.name != kinds[trigger]:
            raise ParameterError(f"--trigger {trigger} is a {kinds[trigger]} trigger but {data} holds "
                                 f"{records.modality.name}; image triggers are chosen by --method, --pattern and "
                                 f"--trigger-size.")
        if preview is not None and records.modality.name == "text":
            raise ParameterError("--preview draws images and audio; for text data, compare the datasets' marked rows "
                                 "(the key lists their ids) instead.")
        if trigger == "style":
            from .triggers.text import StyleTrigger
            options["trigger"] = StyleTrigger()
        if trigger in ("pulse", "noise"):  # one trigger drawn from the seed (or fresh entropy), kept in the key
            import numpy as np

            from .triggers.audio import make_pulse_trigger, paper_pulse
            draw = paper_pulse if trigger == "pulse" else partial(make_pulse_trigger, shape="noise")
            options["trigger"] = draw(np.random.default_rng(seed), sample_rate=records.modality.sample_rate,
                                      length=records.modality.length)
        optional = dict(target=target, trigger_size=trigger_size, blend=blend,
                        rate=rate, decoy_rate=decoy_rate, pattern=pattern, labels=random_labels, class_rate=class_rate,
                        n_marks=n_marks, n_candidates=n_candidates,
                        trigger_kind=trigger_kind, eps=eps, craft_steps=craft_steps,
                        base_model=None if base_model is None else str(base_model))
        options.update({k: v for k, v in optional.items() if v is not None})  # unset: the method's default
        chosen = build_method(method.value, options, strict=True)
        marked = chosen.apply(records, progress=True)
        with Journal() as journal:  # never a watermarked dataset without its key
            marked.key.save(key_path, overwrite=overwrite, journal=journal)
            marked.dataset.save(output, overwrite=overwrite, journal=journal)
            if preview is not None:
                watermark_stages(marked.key, records, marked.dataset, preview, overwrite=overwrite, journal=journal)
        elapsed = time.perf_counter() - start
        goal = marked.key.goal
        out.print(f"marked {len(marked.rows)} of {len(records)} rows with {method.value} in {elapsed:.1f} s ({goal})")
        out.print(f"watermarked dataset: {output}\nsecret key (keep private): {key_path}")
        out.print(f"commitment (publish with the release): [bold]{marked.key.commitment}[/]")
    _run(work)


@app.command()
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
    from ._io import check_output
    from .data import load_data
    from .evaluate.preview import watermark_stages
    from .key import Key

    def work():
        check_output(output, overwrite=overwrite, what="preview", inputs=_existing(key_path, watermarked, original))
        shown = watermark_stages(Key.load(key_path), load_data(original), load_data(watermarked), output, n=n,
                                 magnify=magnify, overwrite=overwrite)
        out.print(f"{shown} marked images -> {output}")
    _run(work)


@app.command()
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
) -> None:
    """Train a reference model the way a thief would (augmentation after the watermark); save a checkpoint."""
    from ._io import check_output
    from .data import load_data
    from .evaluate.metrics import benign_accuracy
    from .models import default_config, fit, save_checkpoint
    from .suspects import LocalSuspect

    def work():
        check_output(output, overwrite=overwrite, what="checkpoint", inputs=_existing(data, test))
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
        if test:
            acc = benign_accuracy(LocalSuspect.from_model(model, spec), load_data(test))
            out.print(f"clean test accuracy: {100 * acc:.2f} %")
            chance = 1.0 / records.num_classes
            if acc < chance + 0.1 * (1.0 - chance):  # within a tenth of the way from chance to perfect
                err.print(f"[yellow]warning:[/] the model is near chance ({100 * acc:.1f} % with "
                          f"{records.num_classes} classes): it has not learned the task, and a model that has not "
                          f"learned it can verify nothing. Train longer (--epochs) or on more rows.", soft_wrap=True)
    _run(work)


def _print_result(result, evidence: Path | None) -> None:
    o = result.outcome
    out.print(f"key commitment: {result.commitment}")
    out.print(f"test: {o.test}, one-sided ({o.alternative}), mode {result.mode}, score: {result.score}")
    out.print(f"H0: {result.h0}\nH1: {result.h1}")
    null_rate = "p0" if result.marks is not None else "tau"
    out.print(f"n = {o.n} (excluded {result.n_excluded}), {null_rate} = {o.margin:g}, alpha = {result.alpha:g}, "
              f"probes: {result.probe_seed}, queries = {result.queries}")
    effect = "hit rate" if result.marks is not None else ("ΔP" if result.mode == "probs" else "flip rate")
    out.print(f"statistic = {o.statistic:.4g}, p = {o.p_value:.4g} (log10 p = {o.log10_p:.2f}), "
              f"{effect} = {o.effect:.4f}")
    if result.marks is not None:
        m = result.marks
        out.print(f"marks: {m['hits']} of {m['marks_asked']} asked (of {m['n_marks']}) revealed their secret choice "
                  f"(1 in {m['options_per_mark']} by chance); {m['probes_per_mark']} probe(s) per mark; triggered "
                  f"probes that went the watermark's way: {100 * m['probe_success_rate']:.1f} %")
    if result.effect is not None:
        e = result.effect
        out.print(f"effect size ({e.test}, tau = {e.margin:g}, n = {e.n}; reported, not the verdict): "
                  f"ΔP = {e.effect:.4f}, p = {e.p_value:.4g}")
    if result.specificity is not None:
        spec = result.specificity
        out.print(f"specificity control ({spec.test}, H0: {spec.null_hypothesis}, the key's trigger vs independent "
                  f"ones): n = {spec.n}, p = {spec.p_value:.4g}, effect = {spec.effect:.4f}")
    if result.sequential is not None:
        seq = result.sequential
        futility = seq.get("futility_e_value_log10")
        out.print(f"sequential: stopped on {seq['stopped']} after {seq['probes_used']} probes in {seq['rounds']} "
                  f"rounds (max e-value 10^{seq['max_e_value_log10']:.2f}"
                  + (f"; futility e-value 10^{futility:.2f})" if futility is not None else ")"))
    for d in result.deviations:
        err.print(f"[yellow]deviation:[/] {d['setting']} = {d['used']} (the key's plan: {d['key']}); an auditor "
                  f"will ask why")
    if evidence is not None:
        from .verify.evidence import check_evidence

        report = check_evidence(evidence)
        out.print(f"evidence: {evidence} ({report.queries} recorded queries; last hash {report.last_hash})")
    out.print(f"[bold]{result.verdict}[/]")


@app.command()
def verify(
    key_path: Path = typer.Option(..., "--key", "-k", help="The secret key written by protect."),
    data: str = typer.Option(..., "--data", "-d", help="Held-out probe data (e.g. the test split)."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Suspect model checkpoint (local)."),
    endpoint: str | None = typer.Option(None, help="Suspect server URL speaking the Open Inference Protocol "
                                           "(KServe V2), e.g. http://127.0.0.1:8080."),
    model_name: str = typer.Option("model", help="Endpoint: the model's name (/v2/models/NAME)."),
    template: Path | None = typer.Option(None, help="Endpoint: a JSON template file describing a non-V2 JSON API "
                                         "(request with \"$inputs\", response_path, outputs, path)."),
    input_name: str | None = typer.Option(None, help="Endpoint: input tensor name (default: the only one)."),
    output_name: str | None = typer.Option(None, help="Endpoint: output tensor name (default: the only one)."),
    datatype: Datatype | None = typer.Option(None, help="Endpoint: input datatype: UINT8 or FP32 images, BYTES text "
                                             "(default: BYTES for a text key, FP32 waveforms [N, L] with the "
                                             "key's sample rate for an audio key, else UINT8)."),
    layout: Layout = typer.Option(Layout.NHWC, help="Endpoint: input layout (images; audio is always NL)."),
    scale: float = typer.Option(255.0, help="Endpoint: value of a white pixel for FP32 inputs (255 or 1)."),
    num_classes: int | None = typer.Option(None, help="Endpoint: class count (default: the key's)."),
    batch_size: int = typer.Option(64, help="Examples per request (and per evidence entry)."),
    timeout: float = typer.Option(10.0, help="Endpoint: seconds per request before it counts as failed."),
    retries: int = typer.Option(3, help="Endpoint: retries of a timed-out, 429 or 5xx request (backoff doubles)."),
    rate_limit: float | None = typer.Option(None, help="Endpoint: most requests per second."),
    budget: int | None = typer.Option(None, help="Endpoint: hard cap on examples sent (a resumed run counts "
                                         "the queries already in its evidence file)."),
    token: str | None = typer.Option(None, envvar="DATAMARK_ENDPOINT_TOKEN", help="Endpoint: bearer token sent "
                                     "as 'Authorization: Bearer TOKEN' (prefer the environment variable: command "
                                     "lines are visible to other users)."),
    mode: Mode = typer.Option(Mode.probs, help="probs: probability access; labels: label-only access."),
    sequential: bool = typer.Option(False, help="Anytime-valid sequential test: query in rounds, stop as soon as "
                                    "the evidence is conclusive (--n-probe is then the maximum)."),
    round_size: int = typer.Option(10, help="Sequential, single-mark keys: probes per round (a multi-mark key "
                                   "asks one mark per round)."),
    n_probe: int | None = typer.Option(None, help="m, number of probes (default: the key's, 100 for DVBW)."),
    margin: float | None = typer.Option(None, help="tau, the margin of H0 (default: the key's, 0.2 for DVBW)."),
    alpha: float | None = typer.Option(None, help="Significance level (default: the key's, 0.01 for DVBW)."),
    seed: int | None = typer.Option(None, help="Seed of the probe draw (default: derived from the key's secret, "
                                    "which its commitment fixes; any other seed is reported as a deviation)."),
    control_triggers: int | None = typer.Option(None, "--control-triggers", help="Also query this many "
                                                "independent random triggers and accuse only if the key's trigger "
                                                "outranks them (exact rank test; needs at least 1/alpha, e.g. "
                                                "100 at alpha 0.01). Default: 100 for single-mark keys (the papers' "
                                                "watermark), 0 for multi-mark keys, whose own test is exact."),
    commitment: str | None = typer.Option(None, help="Refuse the key unless it has this published commitment."),
    evidence: Path | None = typer.Option(None, help="Record every query batch in this new hash-chained "
                                            "evidence file (JSON Lines)."),
    resume: Path | None = typer.Option(None, help="Continue the interrupted run recorded in this evidence file "
                                          "(same key, data and settings); answered probes are not asked again."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the full result as JSON here."),
    overwrite: bool = typer.Option(False, help="Replace an existing --json file."),
) -> None:
    """Was this model trained on my dataset? Test, n, tau, p-value, effect and a plain verdict."""
    from ._io import check_output
    from .data import load_data
    from .key import Key
    from .suspects import LocalSuspect
    from .verify import Verifier
    from .verify.evidence import check_evidence, verify_with_evidence
    from .verify.sequential import SequentialVerifier

    def work():
        if (model is None) == (endpoint is None):
            raise DatamarkError("Pass exactly one suspect: --model CHECKPOINT or --endpoint URL.")
        if evidence is not None and resume is not None:
            raise DatamarkError("Pass --evidence FILE for a new run or --resume FILE to continue one, not both.")
        if budget is not None and endpoint is None:
            raise DatamarkError("--budget caps the queries sent to an endpoint; it needs --endpoint.")
        if json_path is not None:  # before a single query is spent
            check_output(json_path, overwrite=overwrite, what="--json result",
                         inputs=[*_existing(key_path, data, model, template, resume), evidence])
        key = Key.load(key_path, commitment=commitment)
        if commitment is None:
            err.print("[yellow]warning:[/] no --commitment given: the key is not checked against the hash published "
                      "at release, so this result does not show the key existed before the suspect did.")
        probes = load_data(data)
        settings = dict(mode=mode.value, n_probe=n_probe, margin=margin, alpha=alpha, seed=seed,
                        n_control_triggers=control_triggers)
        verifier = SequentialVerifier(**settings, batch_size=round_size) if sequential else Verifier(**settings)
        if endpoint is not None:
            from .suspects import HTTPSuspect, JSONSuspect, JSONTemplate

            spent = check_evidence(resume).queries if resume is not None else 0
            common = dict(num_classes=num_classes or key.dataset.get("num_classes"), batch_size=batch_size,
                          budget=None if budget is None else max(0, budget - spent), timeout_s=timeout,
                          retries=retries, rate_limit_per_s=rate_limit,
                          headers={"Authorization": f"Bearer {token}"} if token else None)
            if template is not None:
                rate = {"sample_rate": key.dataset.get("sample_rate")} if key.dataset.get("sample_rate") else {}
                suspect = JSONSuspect(endpoint, JSONTemplate.load(template), **common, **rate)
            else:
                kind = key.dataset.get("modality", "image")
                wire = {"text": dict(datatype="BYTES", layout=layout.value, scale=scale),
                        "audio": dict(datatype="FP32", layout="NL", scale=1.0,
                                      sample_rate=key.dataset.get("sample_rate"))
                        }.get(kind, dict(datatype="UINT8", layout=layout.value, scale=scale))
                if datatype is not None:
                    wire["datatype"] = datatype.value
                suspect = HTTPSuspect(endpoint, model_name, input_name=input_name, output_name=output_name,
                                      **wire, **common)
        else:
            suspect = LocalSuspect.from_checkpoint(model, outputs=mode.value)
        record = evidence or resume
        if record is not None:
            result = verify_with_evidence(verifier, suspect, key, probes, record, resume=resume is not None,
                                          batch_size=batch_size)
        else:
            result = verifier.verify(suspect, key, probes)
        _print_result(result, record)
        if json_path is not None:
            result.save(json_path, overwrite=overwrite)
    _run(work)


@app.command()
def serve(
    checkpoint: Path = typer.Argument(..., help="Model checkpoint to serve."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8080, help="TCP port."),
    outputs: Mode = typer.Option(Mode.probs, "--outputs", help="Answer probabilities or labels only."),
    model_name: str = typer.Option("model", help="Name under /v2/models/."),
    datatype: Datatype = typer.Option(Datatype.UINT8, help="Input datatype the server declares."),
    layout: Layout = typer.Option(Layout.NHWC, help="Input layout the server declares."),
    scale: float = typer.Option(255.0, help="Value of a white pixel for FP32 inputs (255 or 1)."),
    token: str | None = typer.Option(None, envvar="DATAMARK_SERVE_TOKEN", help="Require 'Authorization: Bearer "
                                     "TOKEN' on every route but the health checks (prefer the environment "
                                     "variable: command lines are visible to other users)."),
    max_request_mb: float = typer.Option(64.0, help="Refuse (HTTP 413) inference requests larger than this many "
                                         "MiB."),
) -> None:
    """Serve a checkpoint over the Open Inference Protocol (KServe V2) until interrupted."""
    from .suspects._v2 import TensorFormat
    from .suspects.serve import serve as run_server

    def work():
        fmt = TensorFormat(datatype.value, layout.value, scale)
        access = "bearer token required" if token else "no token: anyone who reaches it may query it"
        err.print(f"serving {checkpoint} as '{model_name}' ({outputs.value}) on http://{host}:{port}/v2 ({access}); "
                  f"Ctrl-C stops")
        run_server(checkpoint, host=host, port=port, model_name=model_name, outputs=outputs.value, fmt=fmt,
                   max_request_bytes=max(1, int(max_request_mb * 2**20)), token=token)
    _run(work, trap_sigterm=False)  # uvicorn handles SIGINT/SIGTERM itself and shuts down gracefully


@app.command("evidence")
def evidence_check(
    path: Path = typer.Argument(..., help="An evidence file written by verify --evidence."),
    key_path: Path | None = typer.Option(None, "--key", "-k", help="With --data: re-run the test from the "
                                            "recorded answers and check they imply the recorded result."),
    data: str | None = typer.Option(None, "--data", "-d", help="The probe data of the run."),
) -> None:
    """Check an evidence file's hash chain (and, with the key and data, that its answers imply its verdict).

    Exit status: 0 the chain is intact and the run finished (and, with --key and --data, its answers imply its
    verdict); 1 the chain is intact but the run is unfinished (no result line, so no verdict: continue it with
    verify --resume FILE); 2 the file is corrupt, tampered with (a line edited, dropped, reordered, or anything
    after the result), or does not belong to the key and data.
    """
    from .verify.evidence import check_evidence, reverify

    def work():
        if (key_path is None) != (data is None):
            raise DatamarkError("Re-verification needs both --key and --data.")
        report = check_evidence(path)
        header, result = report.header, report.result
        if report.torn_offset is not None:
            err.print(f"[yellow]warning:[/] '{path}' ends in an unterminated line at byte {report.torn_offset} "
                      f"({report.torn_bytes} bytes): a write torn by a crash, not part of the chain; "
                      f"verify --resume cuts it off and records that it did.")
        out.print(f"chain intact: {len(report.entries)} entries, {len(report.batches)} query batches, "
                  f"{report.queries} queries; last hash {report.last_hash}")
        out.print(f"key commitment: {header['commitment']}; test: {json.dumps(header['test'])}")
        if result is None:
            out.print(f"result: NONE. The run is UNFINISHED (no result line), so this file holds no verdict; "
                      f"continue it with 'datamark verify ... --resume {path}'.")
            raise typer.Exit(1)
        out.print(f"result: {result['verdict']}")
        if key_path is not None:
            from .data import load_data
            from .key import Key

            again = reverify(path, Key.load(key_path), load_data(data))
            out.print(f"re-verified from the recorded answers: p = {again.outcome.p_value:.4g}, "
                      f"accused = {again.accused}")
    _run(work)


@app.command()
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
    from ._io import check_output, write_text
    from .data import load_data
    from .evaluate import evaluate_scenarios, rich_table
    from .key import Key
    from .suspects import LocalSuspect
    from .verify import Verifier

    def work():
        inputs = _existing(key_path, stolen, clean, data)
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
    _run(work)


@app.command("key-info")
def key_info(key_path: Path = typer.Argument(..., help="A key file.")) -> None:
    """Show what a key may publicly say (commitment, method, counts): never the secret or the trigger."""
    from .key import Key

    _run(lambda: out.print_json(json.dumps(Key.load(key_path).summary())))


@app.command()
def demo(
    output: Path = typer.Option(Path("datamark-demo"), "--out", "-o", help="Folder for every artefact."),
    overwrite: bool = typer.Option(True, help="Replace artefacts of an earlier demo run."),
    epochs: int | None = typer.Option(None, help="Training epochs (default: the model's preset: tiny 30, "
                                      "textcnn 10)."),
    modality: str = typer.Option("image", help="image: the embedded digits (no download); text: SST-2 from the "
                                 "shared data folder (DATAMARK_DATA), word triggers and a TextCNN."),
) -> None:
    """The whole flow: protect, train, verify, scenario table (images: embedded digits; text: SST-2)."""
    from .data import load_data, load_digits
    from .evaluate import rich_table
    from .evaluate.experiment import run_experiment
    from .exceptions import ParameterError
    from .methods import UBWP, BadNets, Blended
    from .models import default_config

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
    _run(work)


def main() -> None:  # pragma: no cover - console entry point (logging is set up by the app's callback)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
