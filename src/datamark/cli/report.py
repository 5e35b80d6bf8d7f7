"""``report``: one self-contained HTML page for a verification or an experiment."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import out
from ._common import existing, run


def report(
    results: Path = typer.Argument(..., help="A 'verify --json' result or an experiment's results.json."),
    output: Path = typer.Option(..., "--out", "-o", help="The HTML page to write (one file, no external requests)."),
    key_path: Path | None = typer.Option(None, "--key", "-k", help="The run's key (checked against the result's "
                                         "commitment): with --data, triggered examples; never shows the secret."),
    data: str | None = typer.Option(None, "--data", "-d", help="The run's probe data."),
    evidence: Path | None = typer.Option(None, help="The run's evidence file: its last hash, and with --key and "
                                         "--data the per-probe scores, control ranks and e-value path replayed."),
    original: str | None = typer.Option(None, help="With --watermarked: the original training data, to show "
                                        "marked rows as released."),
    watermarked: str | None = typer.Option(None, help="The watermarked training data protect wrote."),
    overwrite: bool = typer.Option(False, help="Replace an existing page."),
) -> None:
    """Write an HTML report: the verdict first, then the plots (p against alpha, scores with and without the
    trigger, the control's ranks, the e-value path), examples, settings, commitment and evidence hash.

    With --key and --data the page shows the trigger on examples: share it only with people who may see the
    watermark.
    """
    from ..data import load_data
    from ..evaluate.html_report import write_html_report
    from ..exceptions import ParameterError
    from ..key import Key

    def work():
        if (original is None) != (watermarked is None):
            raise ParameterError("Pass both --original and --watermarked (the training data before and after "
                                 "protect), or neither.")
        key = Key.load(key_path) if key_path is not None else None
        released = (load_data(original), load_data(watermarked)) if original is not None else None
        page = write_html_report(results, output, key=key, data=load_data(data) if data else None,
                                 evidence=evidence, released=released, overwrite=overwrite)
        out.print(f"report: {page} (open it in a browser; inputs: "
                  f"{', '.join(map(str, existing(results, key_path, data, evidence)))})")
    run(work)
