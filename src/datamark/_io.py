"""Atomic writes: outputs appear whole or not at all, and existing paths are never clobbered by accident."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .exceptions import OutputExistsError


def check_output(path: str | os.PathLike, *, overwrite: bool, what: str = "output") -> Path:
    """Refuse an existing ``path`` unless ``overwrite``; return it as a Path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"The {what} path '{path}' already exists; choose another path or pass "
                                f"overwrite=True (--overwrite on the command line).")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False, directory: bool = False,
                what: str = "output", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; rename it onto ``path`` only if the block succeeds.

    ``directory`` makes the temporary path an empty directory; ``mode`` sets permissions before the rename
    (0o600 for secrets, so the file is never readable by others, not even for a moment).
    """
    path = check_output(path, overwrite=overwrite, what=what)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        if path.exists() and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
