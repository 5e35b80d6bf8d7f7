"""What every command module shares: choices, exit codes, and the runner that turns failures into one line."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from rich.markup import escape

from ..exceptions import DatamarkError
from ._app import err


def _method_names() -> dict[str, str]:
    from .. import methods  # noqa: F401 -- importing the package registers every method
    from ..registry import METHODS

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


def fail(error: object, code: int = 2) -> NoReturn:
    """Print ``error`` as one line on stderr (no markup, no wrapping) and exit with ``code``."""
    text = " ".join(str(error).split()) or type(error).__name__
    err.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def run(fn: Callable[[], T], *, trap_sigterm: bool = True) -> T:
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
        fail("interrupted (Ctrl-C)", 130)
    except _Terminated:
        fail("terminated (SIGTERM)", 143)
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

