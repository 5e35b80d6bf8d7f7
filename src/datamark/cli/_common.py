"""What every command module shares: choices, exit codes, and the runner that turns failures into one line."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .._io import check_output, write_text
from ..exceptions import DatamarkError
from ._app import err, out


def _method_names() -> dict[str, str]:
    from .. import methods  # noqa: F401 -- importing the package registers every method
    from ..registry import METHODS

    return {name.replace("-", "_"): name for name in sorted(METHODS)}


MethodName = Enum("MethodName", _method_names(), type=str)  # every registered method, by its key-file name


class OutputFormat(str, Enum):
    hf_disk = "hf-disk"
    parquet_shards = "parquet-shards"
    parquet = "parquet"


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
    GRAPH = "GRAPH"


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


# Exit statuses. verify reads like grep (0: found, 1: not found, 2: trouble), so `datamark verify ... && notify`
# runs only on an accusation; every other command exits 0 on success. A test that could not finish inside its
# query budget has a status of its own: it is neither a verdict nor a mistake in the command line.
ACCUSED = 0
NOT_ACCUSED = 1
ERROR = 2  # bad input, a failing suspect, a full disk; also click's own usage errors
INCONCLUSIVE = 3  # the query budget ran out (or cannot fit the test) before the test could decide
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
TERMINATED = 143  # SIGTERM

JSON_SCHEMA_VERSION = 1  # of every --json document; bump when a field changes meaning or disappears


def json_option(what: str) -> Any:
    """The ``--json PATH`` option of a command whose result is ``what``; ``-`` means standard output."""
    return typer.Option(None, "--json", help=f"Write {what} as JSON to this file, or to standard output with "
                        f"'-' (the human-readable lines then go to standard error, so the output pipes cleanly).")


def to_stdout(json_path: Path | None) -> bool:
    return json_path is not None and str(json_path) == "-"


def human(json_path: Path | None) -> Console:
    """Where a command prints for people: stdout, unless stdout carries its JSON document."""
    return err if to_stdout(json_path) else out


def emit_json(document: dict[str, Any], kind: str, json_path: Path | None, *, overwrite: bool,
              inputs: Iterable[Path | None] = ()) -> None:
    """Write a command's result as one JSON document stamped with its ``schema``: ``datamark.KIND/VERSION``.

    To stdout for ``-`` (one document, nothing else on stdout), else atomically to the file; nothing without
    ``--json``.
    """
    if json_path is None:
        return
    text = json.dumps({"schema": f"datamark.{kind}/{JSON_SCHEMA_VERSION}", **document}, indent=2,
                      default=_plain) + "\n"
    if to_stdout(json_path):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_text(json_path, text, overwrite=overwrite, what="--json result", inputs=inputs)


def check_json_output(json_path: Path | None, *, overwrite: bool, inputs: Iterable[Path | None] = ()) -> None:
    """Refuse a ``--json`` file that would lose data, before any work is done."""
    if json_path is not None and not to_stdout(json_path):
        check_output(json_path, overwrite=overwrite, what="--json result", inputs=inputs)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, paths: what json cannot write on its own."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def fail(error: object, code: int = ERROR) -> NoReturn:
    """Print ``error`` as one line on stderr (no markup, no wrapping) and exit with ``code``."""
    text = " ".join(str(error).split()) or type(error).__name__
    err.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def run(fn: Callable[[], T], *, trap_sigterm: bool = True) -> T:
    """Run a command body; user mistakes, bad input files and system errors become one line and exit code 2 (ERROR).

    DatamarkError and OSError (disk full, read-only folder, permission denied) print their message; a
    ValueError, TypeError, IndexError or KeyError (a bad value in a key file or checkpoint the checks missed)
    prints its type and message (DATAMARK_DEBUG=1 re-raises it for the traceback). Ctrl-C and SIGTERM exit
    130 and 143 after the command's own clean-up ran. Anything else is a bug: a plain traceback, no locals.
    """
    try:
        with _sigterm_raises() if trap_sigterm else contextlib.nullcontext():
            return fn()
    except KeyboardInterrupt:
        fail("interrupted (Ctrl-C)", INTERRUPTED)
    except _Terminated:
        fail("terminated (SIGTERM)", TERMINATED)
    except (DatamarkError, OSError) as error:
        fail(error)
    except (ValueError, TypeError, IndexError, KeyError) as error:
        if os.environ.get("DATAMARK_DEBUG"):
            raise
        fail(f"{type(error).__name__}: {error} (a malformed value in an input file?; set DATAMARK_DEBUG=1 "
              f"for the traceback)")


def existing(*paths: str | Path | None) -> list[Path]:
    """The given paths that exist: a command's inputs, which no output may replace."""
    return [Path(p) for p in paths if p is not None and os.path.lexists(p)]

