"""The ``datamark`` application object, its consoles and the options every command shares."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

# Tracebacks are plain and never show local variables: a key's secret lives in some frame's locals while it is
# written, and typer 0.12's pretty tracebacks printed locals by default.
app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  pretty_exceptions_show_locals=False,
                  help="Watermark a dataset before release; prove from black-box queries whether a model used it.")
out = Console(soft_wrap=True)  # a line is never broken by rich: hashes and paths stay whole in pipes and logs
err = Console(stderr=True, soft_wrap=True)


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
        from .._version import __version__

        out.print(f"datamark {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log messages (-v info, -vv debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors in the log."),
    threads: int | None = typer.Option(None, "--threads", envvar="DATAMARK_THREADS", min=1,
                                       help="CPU threads torch may use (default: one per core that is idle when "
                                       "the command starts, at least one)."),
) -> None:
    """Options of every command: logging through the ``logging`` module, and torch's thread count."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logger = logging.getLogger("datamark")  # datamark's own messages; other libraries' logging is left alone
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    import torch

    from .._device import default_threads

    chosen = threads if threads is not None else default_threads()
    torch.set_num_threads(chosen)
    logger.debug("torch uses %d CPU thread(s)%s", chosen, "" if threads is not None else " (cores idle at start)")


