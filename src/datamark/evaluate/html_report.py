"""One self-contained HTML page per verification result or experiment (``datamark report RESULTS --out FILE``).

The page puts the verdict first, in words, with the test behind it (H0 and H1, test, sidedness, tau, n, alpha, p,
effect, controls); then the figures, inlined as PNG data URIs so the file makes no request; then the settings,
the key's commitment and the evidence's last hash. What a result file alone cannot show is named on the page with
the input that supplies it: per-probe scores, the specificity control's effects and the sequential e-value path
come from replaying the evidence (``evidence`` plus ``key`` and ``data``: the recorded answers, checked against
the recorded result as :func:`datamark.verify.evidence.reverify` does); examples need ``key`` and ``data``.

The key's secret never reaches the page: it shows the commitment and :meth:`Key.summary`. Triggered examples do
show the trigger, so the page says so when it holds them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .._io import check_output, write_text
from .._version import __version__
from ..data.records import Records
from ..exceptions import EvidenceError, KeyMismatchError, ParameterError, ResultsFormatError
from ..key import Key
from ..verify.evidence import EvidenceReport, check_evidence, reverify
from ..verify.marks_test import e_process
from ..verify.result import VerificationResult
from ..verify.sequential import betting_log_wealth
from ..verify.stats import TestOutcome
from ..verify.verifier import Objective, Verifier
from . import report_figures as figures
from .plots import pvalue_plot
from .report import _cells, _controlled, _header
from .report_figures import image, released_examples, trigger_examples
from .scenarios import ScenarioRow

log = logging.getLogger(__name__)
SCHEMAS = ("datamark.verify-result/1", "datamark.experiment/1")  # the result documents' kinds this page reads


def result_from_dict(record: dict[str, Any], where: str) -> VerificationResult:
    """The :class:`VerificationResult` that ``to_dict`` wrote; refuse one whose stored verdict its numbers contradict.

    The recomputed ``accused`` is what the page shows, so an edited verdict cannot reach it unnoticed.
    """
    names = {f.name for f in fields(VerificationResult)}
    try:
        values = {k: v for k, v in record.items() if k in names}
        for name in ("outcome", "specificity", "effect"):
            if values.get(name) is not None:
                values[name] = TestOutcome(**values[name])
        result = VerificationResult(**values)
    except (TypeError, ValueError) as err:
        raise ResultsFormatError(f"The results file '{where}' looks like a verification result but does not read as "
                                 f"one ({err}); pass the JSON written by 'datamark verify --json'.") from err
    if "accused" in record and record["accused"] != result.accused:
        raise ResultsFormatError(f"The results file '{where}' says accused={record['accused']} but its own p-values "
                                 f"give accused={result.accused}; the file was edited. Use the file verify wrote.")
    return result


def load_results(path: str | os.PathLike) -> tuple[str, Any]:
    """Read RESULTS: ``("verification", VerificationResult)`` for ``verify --json`` output, ``("experiment",
    dict)`` for an experiment's ``results.json``; :class:`ResultsFormatError` for anything else."""
    expected = "the JSON of 'datamark verify --json' or an experiment's results.json ('datamark demo')"
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ResultsFormatError(f"The results file '{path}' cannot be read as JSON ({err}); expected {expected}.") \
            from err
    schema = record.get("schema") if isinstance(record, dict) else None
    if schema is not None and schema not in SCHEMAS:  # files before schemas were written have none
        raise ResultsFormatError(f"The results file '{path}' has schema {schema!r}, which this datamark "
                                 f"({__version__}) does not read ({', '.join(SCHEMAS)}); expected {expected}.")
    if isinstance(record, dict) and {"commitment", "outcome", "h0", "h1", "alpha"} <= record.keys():
        return "verification", result_from_dict(record, str(path))
    if isinstance(record, dict) and {"settings", "clean_ba", "methods"} <= record.keys() and record["methods"]:
        return "experiment", record
    raise ResultsFormatError(f"The results file '{path}' is neither kind datamark writes; expected {expected}.")


@dataclass
class _Seen:
    """What a replayed verification computed: paired scores per query, control-trigger scores, mark hits."""

    scores: list[Any] = field(default_factory=list)
    controls: list[np.ndarray] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    in_control: bool = False


def _recording(verifier: Verifier, seen: _Seen) -> Verifier:
    """The same verifier (same class, same settings) that also notes what it scores in ``seen``."""

    class Recording(type(verifier)):  # type: ignore[misc,valid-type]
        def _scores(self, *args):
            scores = super()._scores(*args)
            seen.scores.append(scores)
            return scores

        def _score(self, out, true, objective):
            score = super()._score(out, true, objective)
            if seen.in_control:
                seen.controls.append(score)
            return score

        def _specificity(self, *args):
            seen.in_control = True
            try:
                return super()._specificity(*args)
            finally:
                seen.in_control = False

        def ask_mark(self, *args, **kwargs):
            answer = super().ask_mark(*args, **kwargs)
            seen.hits.append(bool(answer[0]))
            return answer

    return Recording(**{f.name: getattr(verifier, f.name) for f in fields(verifier)})


@dataclass
class Replay:
    """Per-probe numbers replayed from evidence (None where the run did not compute them)."""

    treated: np.ndarray | None = None
    control: np.ndarray | None = None
    control_effects: list[float] | None = None
    key_effect: float | None = None
    log10_e: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def replay_evidence(evidence: str | os.PathLike, key: Key, data: Records, result: VerificationResult,
                    released: Records | None = None) -> Replay:
    """Re-run the recorded verification from ``evidence`` (no suspect), checked against its recorded result, and
    return the per-probe scores, the control triggers' effects and the e-value path it computed (``released``:
    the watermarked dataset, for a run that asked the key's released rows)."""
    seen, holder = _Seen(), {}

    def wrap(verifier: Verifier) -> Verifier:
        holder["verifier"] = _recording(verifier, seen)
        return holder["verifier"]

    reverify(evidence, key, data, released=released, wrap=wrap)
    verifier, objective, replay = holder["verifier"], Objective.of(key), Replay()
    kept = seen.scores
    if kept and result.mode == "probs":
        replay.treated = np.concatenate([s.treated[s.kept] for s in kept])
        replay.control = np.concatenate([s.control[s.kept] for s in kept])
    if seen.controls and result.specificity is not None:
        def strength(score: np.ndarray) -> float:  # as the verifier ranks triggers: larger = more watermark-like
            return float(score.mean() if objective.targeted or result.mode == "labels" else -score.mean())

        effects = [strength(s) for s in seen.controls]
        key_effect = strength(np.concatenate([s.treated[s.kept] for s in kept]))
        if sum(e >= key_effect for e in effects) == result.specificity.statistic:
            replay.control_effects, replay.key_effect = effects, key_effect
        else:
            replay.notes.append("The replayed control effects do not reproduce the recorded rank; not drawn.")
    if result.sequential is not None:
        if result.marks is not None:
            path = e_process(seen.hits, int(result.marks["options_per_mark"]))
        else:
            x = np.concatenate([verifier._observations(s, objective) for s in kept]) if kept else np.zeros(0)
            path = betting_log_wealth(x, margin=result.outcome.margin, lower=-1.0 if result.mode == "probs" else 0.0,
                                      bet_cap=float(result.sequential.get("bet_cap", 0.5)))
        log10_e = np.asarray(path) / math.log(10.0)
        if len(log10_e) and math.isclose(log10_e[-1], result.sequential["e_value_log10"], rel_tol=1e-6, abs_tol=1e-9):
            replay.log10_e = log10_e
        else:
            replay.notes.append("The replayed e-value path does not end at the recorded e-value; not drawn.")
    return replay


def _same_run(report: EvidenceReport, result: VerificationResult, path: str | os.PathLike) -> None:
    """Refuse evidence of another run than RESULTS (compared as the JSON both were written from)."""
    recorded = report.result
    if recorded is None:
        raise EvidenceError(f"The evidence file '{path}' records no result (an unfinished run); finish it with "
                            f"'datamark verify ... --resume {path}' or leave --evidence out.")
    if json.dumps(recorded.get("outcome"), sort_keys=True) != json.dumps(result.to_dict()["outcome"], sort_keys=True) \
            or recorded.get("commitment") != result.commitment:
        raise EvidenceError(f"The evidence file '{path}' records another run than the results file (commitment "
                            f"{str(recorded.get('commitment'))[:16]}…, p = {recorded.get('outcome', {}).get('p_value')}"
                            f"); pass the evidence written by the run whose result you report.")


def _settings_rows(result: VerificationResult, header: dict[str, Any] | None) -> list[tuple[str, str]]:
    rows = [("mode", result.mode), ("score", result.score), ("probes requested (m)", str(result.n_probe_requested)),
            ("probes set aside", str(result.n_excluded)), ("queries", str(result.queries)),
            ("probe seed", result.probe_seed), ("trigger queried", result.trigger)]
    if header is not None:
        rows += [(f"recorded setting: {k}", json.dumps(v)) for k, v in sorted(header.get("test", {}).items())]
    rows += [(f"deviation: {d['setting']}", f"used {d['used']} (key: {d['key']})") for d in result.deviations]
    return rows


def _verification_context(result: VerificationResult, key: Key | None, data: Records | None,
                          evidence: Path | None, released: tuple[Records, Records] | None) -> dict[str, Any]:
    if key is not None and key.commitment != result.commitment:
        raise KeyMismatchError(f"The key's commitment {key.commitment[:16]}… is not the result's "
                               f"{result.commitment[:16]}…; pass the key the verification used.")
    report = check_evidence(evidence) if evidence is not None else None
    if report is not None:
        _same_run(report, result, evidence)
    replay = (replay_evidence(evidence, key, data, result, released[1] if released else None)
              if report and key and data else None)
    missing = "pass --evidence FILE (the run's evidence) with --key and --data (its probe data)"
    figs, notes = [], list(replay.notes if replay else [])
    tests = [("main test", result.outcome.log10_p)]
    if result.specificity is not None:
        tests.append(("specificity control", result.specificity.log10_p))
    figs.append(image(figures.pvalue_figure(tests, result.alpha), "p against alpha (log scale)"))
    if replay is not None and replay.treated is not None:
        paired = result.effect or result.outcome  # a marks key's paired test is its effect
        figs.append(image(figures.score_figure(replay.treated, replay.control, score=result.score,
                                                margin=paired.margin, alternative=paired.alternative),
                           f"per-probe scores ({len(replay.treated)} probes) without and with the trigger"))
    elif result.mode == "labels":
        notes.append("Score distributions: a label-only suspect answers labels, not scores; the test counts the "
                     "probes the trigger flips.")
    else:
        notes.append(f"Score distributions: the result file holds no per-probe scores; {missing}.")
    if result.specificity is not None:
        spec = result.specificity
        figs.append(image(figures.rank_figure(int(spec.statistic), spec.n, result.alpha,
                                               replay.control_effects if replay else None,
                                               replay.key_effect if replay else None),
                           f"specificity control: {spec.note}"))
        if replay is None or replay.control_effects is None:
            notes.append(f"Specificity control: only the rank is drawn; the control triggers' effects need {missing}.")
    if result.sequential is not None:
        if replay is not None and replay.log10_e is not None:
            unit = "marks asked" if result.marks is not None else "probes"
            figs.append(image(figures.evalue_figure(replay.log10_e, result.alpha, unit=unit),
                               f"sequential e-value path (stopped: {result.sequential['stopped']})"))
        else:
            notes.append(f"Sequential e-value path: the result holds only its end; {missing}.")
    examples = []
    if key is not None and data is not None:
        examples.append(trigger_examples(key, data))
    if key is not None and released is not None:
        examples.append(released_examples(key, *released))
    evidence_info = None if report is None else {
        "path": str(evidence), "last_hash": report.last_hash, "queries": report.queries,
        "entries": len(report.entries), "datamark_version": report.header.get("datamark_version")}
    return {"kind": "verification", "result": result, "accused": result.accused, "figures": figs, "notes": notes,
            "reject_at": -math.log10(result.alpha),
            "examples": examples, "settings": _settings_rows(result, report.header if report else None),
            "evidence": evidence_info, "key_summary": key.summary() if key is not None else
            (report.header.get("key") if report is not None else None)}


def _experiment_context(record: dict[str, Any], key: Key | None, data: Records | None,
                        released: tuple[Records, Records] | None) -> dict[str, Any]:
    methods, rows = [], {}
    for name, method in record["methods"].items():
        scenario_rows = [ScenarioRow(s["scenario"], s["ba"], s["wsr"],
                                     result_from_dict(s["probs"], f"results.json: {name} {s['scenario']}"),
                                     result_from_dict(s["labels"], f"results.json: {name} {s['scenario']}"),
                                     {k: v for k, v in s.items() if k not in ("scenario", "ba", "wsr", "probs",
                                                                                "labels")})
                         for s in method["scenarios"]]
        rows[name] = scenario_rows
        failed = [f"{r.scenario} ({mode}) {'not accused' if r.scenario == 'Steal' else 'accused'}"
                  for r in scenario_rows for mode in ("probs", "labels")
                  if getattr(r, mode).accused != (r.scenario == "Steal")]
        controlled = _controlled(scenario_rows)
        methods.append({"name": name, "method": method, "ok": not failed, "failed": failed,
                        "header": _header(scenario_rows), "cells": [_cells(r, controlled) for r in scenario_rows]})
    alpha = next(iter(rows.values()))[0].probs.alpha
    png = figures.rendered(lambda p: pvalue_plot(rows, p, alpha_probs=alpha, alpha_labels=alpha))
    examples = []
    if key is not None:
        if key.commitment not in {m["commitment"] for m in record["methods"].values()}:
            raise KeyMismatchError(f"The key's commitment {key.commitment[:16]}… is none of the experiment's "
                                   f"methods'; pass the key one of its methods wrote (NAME.key.json).")
        if data is not None:
            examples.append(trigger_examples(key, data))
        if released is not None:
            examples.append(released_examples(key, *released))
    settings = [(k, json.dumps(v) if isinstance(v, (dict, list)) else str(v)) for k, v in record["settings"].items()]
    return {"kind": "experiment", "methods": methods, "accused": all(m["ok"] for m in methods),
            "figures": [image(png, "-log10 p per scenario and mode (capped at 50); dashed: alpha")], "notes": [],
            "examples": examples, "settings": settings, "clean_ba": record["clean_ba"], "evidence": None,
            "key_summary": key.summary() if key is not None else None}


def render_html(context: dict[str, Any]) -> str:
    """The page for ``context`` through the packaged Jinja2 template, autoescaped; ASCII-only (entities)."""
    try:
        import jinja2
    except ImportError as err:
        raise ImportError('The HTML report needs Jinja2: pip install "datamark[report]"') from err
    source = (resources.files("datamark.evaluate") / "templates" / "report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    page = env.from_string(source).render(**context, version=__version__)
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")


def write_html_report(results: str | os.PathLike, out: str | os.PathLike, *, key: Key | None = None,
                      data: Records | None = None, evidence: str | os.PathLike | None = None,
                      released: tuple[Records, Records] | None = None, overwrite: bool = False) -> Path:
    """Write one self-contained HTML page for ``results`` (a ``verify --json`` result or an experiment's
    ``results.json``) at ``out``, atomically; return ``out``.

    Args:
        results: the result JSON; its kind is detected, anything else is refused.
        out: the page to write; an existing file is replaced only with ``overwrite``.
        key: the key of the run (checked against the result's commitment): with ``data`` it adds triggered
            examples, with ``evidence`` and ``data`` the replayed per-probe figures. Only its summary is shown.
        data: the probe data of the run.
        evidence: the run's evidence file (verification results only): its chain is checked, its last hash shown.
        released: (original training data, watermarked training data), for the key's marked rows as released.
        overwrite: replace an existing ``out``.
    """
    out = check_output(out, overwrite=overwrite, what="HTML report", inputs=[results, evidence])
    kind, loaded = load_results(results)
    if kind == "experiment" and evidence is not None:
        raise ParameterError(f"Evidence records one verification; the results file '{results}' is an experiment. "
                             f"Leave --evidence out, or report the verification result that evidence belongs to.")
    if kind == "verification":
        context = _verification_context(loaded, key, data, Path(evidence) if evidence else None, released)
    else:
        context = _experiment_context(loaded, key, data, released)
    context["source"] = Path(results).name
    write_text(out, render_html(context), overwrite=overwrite, what="HTML report", inputs=[results, evidence])
    log.info("wrote the %s report %s", kind, out)
    return out
