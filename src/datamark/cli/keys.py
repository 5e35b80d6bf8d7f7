"""``evidence`` (check a run's hash-chained record) and ``key-info`` (what a key may say in public)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..exceptions import DatamarkError
from ._app import err, out
from ._common import check_json_output, emit_json, existing, human, json_option, run


def evidence_check(
    path: Path = typer.Argument(..., help="An evidence file written by verify --evidence."),
    key_path: Path | None = typer.Option(None, "--key", "-k", help="With --data: re-run the test from the "
                                            "recorded answers and check they imply the recorded result."),
    data: str | None = typer.Option(None, "--data", "-d", help="The probe data of the run."),
    released: str | None = typer.Option(None, "--released", help="The watermarked dataset of a run that asked the "
                                        "key's released rows (graph keys)."),
    json_path: Path | None = json_option("the check's findings"),
    overwrite: bool = typer.Option(False, help="Replace an existing --json file."),
) -> None:
    """Check an evidence file's hash chain (and, with the key and data, that its answers imply its verdict).

    Exit status: 0 the chain is intact and the run finished (and, with --key and --data, its answers imply its
    verdict); 1 the chain is intact but the run is unfinished (no result line, so no verdict: continue it with
    verify --resume FILE); 2 the file is corrupt, tampered with (a line edited, dropped, reordered, or anything
    after the result), or does not belong to the key and data.
    """
    from ..verify.evidence import check_evidence, reverify

    def work():
        if (key_path is None) != (data is None):
            raise DatamarkError("Re-verification needs both --key and --data.")
        check_json_output(json_path, overwrite=overwrite, inputs=existing(path, key_path, data))
        out = human(json_path)
        report = check_evidence(path)
        header, result = report.header, report.result
        findings = {"evidence": path, "entries": len(report.entries), "batches": len(report.batches),
                    "queries": report.queries, "last_hash": report.last_hash, "commitment": header["commitment"],
                    "test": header["test"], "torn_bytes": report.torn_bytes if report.torn_offset is not None else 0,
                    "finished": result is not None, "verdict": None if result is None else result["verdict"],
                    "accused": None if result is None else result.get("accused"), "reverified": None}
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
            emit_json(findings, "evidence-check", json_path, overwrite=overwrite)
            return 1
        out.print(f"result: {result['verdict']}")
        if key_path is not None:
            from ..data import load_data
            from ..key import Key

            again = reverify(path, Key.load(key_path), load_data(data),
                             released=load_data(released) if released else None)
            out.print(f"re-verified from the recorded answers: p = {again.outcome.p_value:.4g}, "
                      f"accused = {again.accused}")
            findings["reverified"] = {"p_value": again.outcome.p_value, "accused": again.accused}
        emit_json(findings, "evidence-check", json_path, overwrite=overwrite)
        return 0
    raise typer.Exit(run(work))



def key_info(key_path: Path = typer.Argument(..., help="A key file.")) -> None:
    """Show what a key may publicly say (commitment, method, counts): never the secret or the trigger."""
    from ..key import Key

    run(lambda: out.print_json(json.dumps(Key.load(key_path).summary())))


