"""The ``datamark`` command line: parse options, build objects, print. No logic lives here.

One module per group of commands; this file is their table of contents, in the order ``datamark --help`` lists
them (the order of the work: protect, train, verify, then the tools around them).
"""

from __future__ import annotations

from . import attack, experiments, keys, protect, report, serve, train, verify
from ._app import app

__all__ = ["app", "main"]

for name, command in [("protect", protect.protect), ("preview", protect.preview), ("card", protect.card),
                      ("train", train.train),
                      ("verify", verify.verify), ("attack", attack.attack), ("serve", serve.serve),
                      ("evaluate", experiments.evaluate),
                      ("demo", experiments.demo), ("run", experiments.run_file),
                      ("report", report.report),
                      ("evidence", keys.evidence_check), ("key-info", keys.key_info)]:
    app.command(name)(command)


def main() -> None:  # pragma: no cover - console entry point (logging is set up by the app's callback)
    app()
