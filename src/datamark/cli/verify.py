"""``verify``: was this model trained on my dataset? One test, its numbers and a plain verdict."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ..exceptions import DatamarkError
from ..verify.marks_test import RANDOMIZATION_TEST_NAME
from ._app import err
from ._common import (
    ACCUSED,
    INCONCLUSIVE,
    NOT_ACCUSED,
    Datatype,
    Layout,
    Mode,
    check_json_output,
    emit_json,
    existing,
    fail,
    human,
    json_option,
    run,
)
from ._suspects import ModelOutputs, endpoint_suspect, local_suspect, parse_headers


def exit_status(result) -> int:
    """ACCUSED, NOT_ACCUSED, or INCONCLUSIVE when a sequential test ran out of budget before it could decide."""
    if result.accused:
        return ACCUSED
    stopped = (result.sequential or {}).get("stopped")
    return INCONCLUSIVE if stopped == "budget" else NOT_ACCUSED


def print_result(result, evidence: Path | None, out: Console) -> None:
    """The whole result in words: test, hypotheses, n, tau, alpha, p, effect, controls, then the verdict."""
    o = result.outcome
    out.print(f"key commitment: {result.commitment}")
    out.print(f"test: {o.test}, one-sided ({o.alternative}), mode {result.mode}, score: {result.score}")
    out.print(f"H0: {result.h0}\nH1: {result.h1}")
    null_rate = "p0" if result.marks is not None else "tau"
    out.print(f"n = {o.n} (excluded {result.n_excluded}), {null_rate} = {o.margin:g}, alpha = {result.alpha:g}, "
              f"probes: {result.probe_seed}, queries = {result.queries}")
    marks_test = result.channels["marks"]["test"] if result.channels else o.test
    randomized = marks_test == RANDOMIZATION_TEST_NAME
    effect = ("mean excess share of the secret choices" if randomized else "hit rate") if result.marks is not None \
        else ("ΔP" if result.mode == "probs" else "flip rate")
    out.print(f"statistic = {o.statistic:.4g}, p = {o.p_value:.4g} (log10 p = {o.log10_p:.2f}), "
              f"{effect} = {o.effect:.4f}")
    if result.marks is not None:
        m = result.marks
        out.print(f"marks: {m['hits']} of {m['marks_asked']} asked (of {m['n_marks']}) revealed their secret choice "
                  f"(1 in {m['options_per_mark']} by chance); {m['probes_per_mark']} probe(s) per mark"
                  f"{' (the same probes for every mark)' if randomized else ''}; triggered "
                  f"probes that went the watermark's way: {100 * m['probe_success_rate']:.1f} %")
    for name, c in (result.channels or {}).items():
        out.print(f"channel {name} ({c['test']}, each channel at alpha/2 = {result.alpha / 2:g}): n = {c['n']}, "
                  f"statistic = {c['statistic']:.4g}, p = {c['p_value']:.4g}, effect = {c['effect']:.4f}"
                  + (f"; {c['note']}" if c["note"] and name == "confusion" else ""))
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
        if "confusion_channel" in seq:
            out.print(f"confusion channel: {seq['confusion_channel']}")
    for d in result.deviations:
        err.print(f"[yellow]deviation:[/] {d['setting']} = {d['used']} (the key's plan: {d['key']}); an auditor "
                  f"will ask why")
    if evidence is not None:
        from ..verify.evidence import check_evidence

        report = check_evidence(evidence)
        out.print(f"evidence: {evidence} ({report.queries} recorded queries; last hash {report.last_hash})")
    out.print(f"[bold]{result.verdict}[/]")


def verify(
    key_path: Path = typer.Option(..., "--key", "-k", help="The secret key written by protect."),
    data: str = typer.Option(..., "--data", "-d", help="Held-out probe data (e.g. the test split)."),
    released: str | None = typer.Option(None, "--released", help="The watermarked dataset protect wrote (kept by "
                                        "the owner): graph keys also ask each mark's released rows."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Local suspect: a datamark checkpoint, an ONNX "
                                      "file (declare --layout, --datatype, --model-outputs, and --scale, --mean, "
                                      "--std as its author preprocessed) or a transformers save_pretrained folder "
                                      "(text or image classifier; it carries its own preprocessing)."),
    endpoint: str | None = typer.Option(None, help="Suspect server URL speaking the Open Inference Protocol "
                                           "(KServe V2), e.g. http://127.0.0.1:8080."),
    model_name: str = typer.Option("model", help="Endpoint: the model's name (/v2/models/NAME)."),
    template: Path | None = typer.Option(None, help="Endpoint: a JSON template file describing a non-V2 JSON API "
                                         "(request with \"$inputs\", response_path, outputs, path)."),
    input_name: str | None = typer.Option(None, help="Endpoint or ONNX: input tensor name (default: the only one; "
                                          "needed where a server's metadata is silent)."),
    output_name: str | None = typer.Option(None, help="Endpoint or ONNX: output tensor name (default: the only "
                                           "one)."),
    datatype: Datatype | None = typer.Option(None, help="Endpoint or ONNX: input datatype: UINT8 or FP32 images, "
                                             "BYTES text (endpoint default: the server's metadata, else BYTES for "
                                             "a text key, FP32 waveforms [N, L] at the key's sample rate for an "
                                             "audio key, UINT8 images)."),
    layout: Layout | None = typer.Option(None, help="Endpoint or ONNX: input layout (endpoint default NHWC; audio "
                                         "is NL)."),
    scale: float | None = typer.Option(None, help="Endpoint or ONNX: value of a white pixel for FP32 inputs (255 or "
                                       "1; endpoint default 255)."),
    mean: str | None = typer.Option(None, help="ONNX: per-channel mean subtracted before the model, on the "
                                    "--scale scale, comma-separated (e.g. 0.485,0.456,0.406 with --scale 1)."),
    std: str | None = typer.Option(None, help="ONNX: per-channel standard deviation, comma-separated."),
    model_outputs: ModelOutputs | None = typer.Option(None, help="ONNX: what the graph outputs: logits (softmax "
                                                      "applied), probs or labels."),
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
    header: list[str] | None = typer.Option(None, "--header", help="Endpoint: an extra HTTP header NAME:VALUE "
                                            "(repeatable; values are never printed or recorded)."),
    ca_cert: Path | None = typer.Option(None, help="Endpoint (https): verify the server against this CA bundle "
                                        "(PEM)."),
    insecure: bool = typer.Option(False, help="Endpoint (https): do not verify the server's certificate (warns; "
                                  "anyone on the path could answer in its place)."),
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
    accept_owner_trigger: bool = typer.Option(False, "--accept-owner-trigger", help="Let a single-mark key whose "
                                              "trigger was made by hand (not drawn from its secret) accuse. Only "
                                              "if its commitment was published before the suspect existed: a "
                                              "trigger crafted on a clean suspect passes the test."),
    commitment: str | None = typer.Option(None, help="Refuse the key unless it has this published commitment."),
    evidence: Path | None = typer.Option(None, help="Record every query batch in this new hash-chained "
                                            "evidence file (JSON Lines)."),
    resume: Path | None = typer.Option(None, help="Continue the interrupted run recorded in this evidence file "
                                          "(same key, data and settings); answered probes are not asked again."),
    json_path: Path | None = json_option("the full result"),
    overwrite: bool = typer.Option(False, help="Replace an existing --json file."),
) -> None:
    """Was this model trained on my dataset? Test, n, tau, p-value, effect and a plain verdict.

    Exit status, like grep's: 0 accused; 1 not accused; 2 error (bad input, a failing suspect); 3 inconclusive:
    the query budget ran out, or cannot fit the test, before the test could decide (an --evidence file keeps
    what was asked; continue with --resume).
    """
    from ..data import load_data
    from ..exceptions import QueryBudgetError
    from ..key import Key
    from ..verify import Verifier
    from ..verify.evidence import check_evidence, verify_with_evidence
    from ..verify.sequential import SequentialVerifier

    def work():
        if (model is None) == (endpoint is None):
            raise DatamarkError("Pass exactly one suspect: --model CHECKPOINT or --endpoint URL.")
        if evidence is not None and resume is not None:
            raise DatamarkError("Pass --evidence FILE for a new run or --resume FILE to continue one, not both.")
        if budget is not None and endpoint is None:
            raise DatamarkError("--budget caps the queries sent to an endpoint; it needs --endpoint.")
        inputs = [*existing(key_path, data, model, template, resume, released), evidence]
        check_json_output(json_path, overwrite=overwrite, inputs=inputs)  # before a single query is spent
        key = Key.load(key_path, commitment=commitment)
        if commitment is None:
            err.print("[yellow]warning:[/] no --commitment given: the key is not checked against the hash published "
                      "at release, so this result does not show the key existed before the suspect did.")
        probes = load_data(data)
        settings = dict(mode=mode.value, n_probe=n_probe, margin=margin, alpha=alpha, seed=seed,
                        n_control_triggers=control_triggers, accept_owner_trigger=accept_owner_trigger,
                        released=load_data(released) if released else None)
        verifier = SequentialVerifier(**settings, batch_size=round_size) if sequential else Verifier(**settings)
        wire = dict(input_name=input_name, output_name=output_name, layout=layout, datatype=datatype, scale=scale,
                    num_classes=num_classes, batch_size=batch_size)
        if endpoint is not None:
            spent = check_evidence(resume).queries if resume is not None else 0
            suspect = endpoint_suspect(
                key, endpoint, model_name=model_name, template=template, **wire, timeout=timeout, retries=retries,
                rate_limit=rate_limit, budget=None if budget is None else max(0, budget - spent), token=token,
                headers=parse_headers(header), ca_cert=ca_cert, insecure=insecure)
        else:
            suspect = local_suspect(key, model, outputs=mode.value, **wire, mean=mean, std=std,
                                    model_outputs=model_outputs)
        record = evidence or resume
        try:
            if record is not None:
                result = verify_with_evidence(verifier, suspect, key, probes, record, resume=resume is not None,
                                              batch_size=batch_size)
            else:
                result = verifier.verify(suspect, key, probes)
        except QueryBudgetError as error:
            kept = f"; the evidence so far is in {record} (continue with --resume {record})" if record else ""
            fail(f"inconclusive: {error}{kept}", INCONCLUSIVE)
        print_result(result, record, human(json_path))
        emit_json(result.to_dict(), "verify-result", json_path, overwrite=overwrite, inputs=inputs)
        return exit_status(result)
    raise typer.Exit(run(work))


