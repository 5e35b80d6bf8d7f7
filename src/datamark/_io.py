"""Safe outputs: every output appears whole or not at all, and nothing but the one output being replaced is lost.

The rules, enforced for every file datamark writes:

* a file output replaces only the file at its path, atomically (a temporary sibling renamed over it with
  :func:`os.replace`), and only with ``overwrite``;
* a path that is an existing directory, ``.`` or an ancestor of the working directory, a device, pipe or socket,
  or the same file as one of the command's inputs (or an ancestor of one) is refused, ``overwrite`` or not;
* a directory output (Arrow folder, image folder) carries a marker file (:data:`MARKER`); only a directory with
  that marker may be replaced, by renaming the old one aside, the new one in, then removing the old one;
* outputs get the permissions of a normal file (``0o666`` less the umask; ``0o777`` for directories), unless a
  ``mode`` is given (``0o600`` for the key), set before a byte is written;
* a :class:`Journal` collects what one command wrote so that a failure removes exactly that and puts back what
  it replaced (``datamark protect`` is all or nothing).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .exceptions import OutputExistsError, ParameterError

log = logging.getLogger(__name__)

MARKER = ".datamark-output"  # written into every directory output; only such a directory is ever replaced

PathLike = str | os.PathLike


def _umask() -> int:
    """The process umask: read from /proc on Linux; elsewhere reading it means setting it, so it is set, for that
    instant, to the most private value (a file another thread creates meanwhile is only more private)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The permissions a normal new file (or directory) gets under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _same_file(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name the same file: same inode when both exist, else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return _resolved(a) == _resolved(b)


def _refuse_protected(path: Path, what: str, inputs: Sequence[Path]) -> None:
    """Refuse ``.``, the working directory or an ancestor of it, an input, or an ancestor of an input."""
    target = _resolved(path)
    if target == _resolved(Path.cwd()) or target in _resolved(Path.cwd()).parents:
        raise ParameterError(f"The {what} path '{path}' is the working directory or one of its parents; datamark "
                             f"never replaces a directory it did not write. Give a new file or folder name.")
    for source in inputs:
        if _same_file(path, source) or target in _resolved(source).parents:
            raise ParameterError(f"The {what} path '{path}' is the input '{source}' (or holds it); writing there "
                                 f"would destroy the input. Choose another {what} path.")


def is_datamark_output(path: PathLike) -> bool:
    """True if ``path`` is a directory that datamark wrote (it holds the :data:`MARKER` file)."""
    marker = Path(path) / MARKER
    return Path(path).is_dir() and not Path(path).is_symlink() and marker.is_file() and not marker.is_symlink()


def _check_existing(path: Path, what: str, directory: bool | None) -> None:
    """Refuse an existing ``path`` that is not the kind of output about to replace it (``None``: either kind)."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        if directory is False:
            raise ParameterError(f"The {what} path '{path}' is an existing directory, but the {what} is a file; "
                                 f"datamark never deletes a directory to make room. Give a file path, e.g. "
                                 f"'{path / ('out' + (path.suffix or '.json'))}'.")
        if not is_datamark_output(path):
            raise ParameterError(f"The {what} path '{path}' is an existing directory that datamark did not write "
                                 f"(no '{MARKER}' marker), so it is never replaced, even with --overwrite. Choose "
                                 f"a new path, or move that directory away yourself.")
    elif not stat.S_ISREG(mode):
        raise ParameterError(f"The {what} path '{path}' is a device, pipe or socket, not a regular file; give the "
                             f"path of a file to write.")
    elif directory is True:
        raise ParameterError(f"The {what} path '{path}' is an existing file, but this {what} is written as a "
                             f"folder; choose a folder path that does not exist yet.")


def check_output(path: PathLike, *, overwrite: bool, what: str = "output", inputs: Iterable[PathLike | None] = (),
                 directory: bool | None = False) -> Path:
    """Refuse an output ``path`` that would lose data (see the module docstring); return it as a Path.

    ``directory`` says whether the output is a file (False), a directory (True) or not known yet (None: checks
    that hold for both). ``inputs`` are the paths the command reads; the output may be none of them.
    """
    path = Path(path)
    _refuse_protected(path, what, [Path(p) for p in inputs if p is not None])
    if not path.exists():
        return path
    _check_existing(path, what, directory)
    if not overwrite:
        raise OutputExistsError(f"The {what} path '{path}' already exists; choose another path or pass "
                                f"overwrite=True (--overwrite on the command line).")
    return path


def check_outputs(outputs: Sequence[tuple[str, PathLike | None, bool | None]], *, overwrite: bool,
                  inputs: Iterable[PathLike | None] = ()) -> None:
    """Check all outputs of one command before any work: each as :func:`check_output`, and no two the same.

    ``outputs`` holds ``(what, path, directory)`` triples; a None path is an output not asked for.
    """
    inputs = [p for p in inputs if p is not None]
    given = [(what, Path(path), directory) for what, path, directory in outputs if path is not None]
    for i, (what, path, directory) in enumerate(given):
        others = [p for j, (_, p, _) in enumerate(given) if j != i]
        check_output(path, overwrite=overwrite, what=what, inputs=[*inputs, *others], directory=directory)


def _sibling(path: Path, tag: str) -> Path:
    """A fresh hidden name beside ``path`` (same directory, so renames stay atomic)."""
    return path.parent / f".{path.name}.{secrets.token_hex(4)}.{tag}"


def _temporary(path: Path, directory: bool, mode: int | None) -> Path:
    """An empty temporary sibling of ``path`` with its final permissions already set."""
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    os.chmod(tmp, mode if mode is not None else default_mode(directory))
    return tmp


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a directory entry list) to disk; a filesystem that cannot is not an error."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if not path.is_dir():
            raise
        log.debug("cannot fsync directory %s: %s", path, err)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a file, or a directory datamark wrote; refuse any other directory (never rmtree a stranger's)."""
    if path.is_dir() and not path.is_symlink():
        if not is_datamark_output(path):
            raise ParameterError(f"Refusing to remove '{path}': it is not a directory datamark wrote.")
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _discard(tmp: Path) -> None:
    """Remove a temporary output that was never installed (it is ours even without a marker)."""
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def _keep_file(path: Path) -> Path:
    """A hard link (else a private copy) of the file ``path`` under a hidden sibling name, for a rollback."""
    backup = _sibling(path, "old")
    try:
        os.link(path, backup)
    except OSError:
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as dst, open(path, "rb") as src:
            shutil.copyfileobj(src, dst)
        shutil.copymode(path, backup)
    return backup


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for a few system calls that must happen together (rename, then record it)."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, ValueError, OSError):  # no pthread_sigmask (Windows): best effort
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _install_file(tmp: Path, path: Path, journal: Journal | None) -> None:
    """Rename the finished file ``tmp`` over ``path`` (keeping the old one for the journal, if any)."""
    _fsync(tmp)
    with _signals_deferred():
        backup = _keep_file(path) if journal is not None and path.is_file() else None
        try:
            os.replace(tmp, path)
        except BaseException:
            if backup is not None:
                backup.unlink(missing_ok=True)
            raise
        if journal is not None:
            journal.record(path, backup)
    _fsync(path.parent)


def _install_directory(tmp: Path, path: Path, what: str, journal: Journal | None) -> None:
    """Swap the finished directory ``tmp`` in: the old datamark output aside, the new one in, the old one out."""
    (tmp / MARKER).write_text(json.dumps({"format": "datamark-output", "what": what}) + "\n")
    aside = None
    with _signals_deferred():
        if path.exists():
            _check_existing(path, what, directory=True)  # checked again: it may have changed while we wrote
            aside = _sibling(path, "old")
            os.rename(path, aside)
        try:
            os.rename(tmp, path)
        except BaseException:
            if aside is not None:
                os.rename(aside, path)
            raise
        if journal is not None:
            journal.record(path, aside)
    _fsync(path.parent)
    if journal is None and aside is not None:
        _try(_remove, aside)


def file_sha256(path: PathLike) -> str:
    """SHA-256 of the file at ``path``, read in 1 MiB blocks (a shard or a model of any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: PathLike, *, overwrite: bool = False, directory: bool = False, what: str = "output",
                mode: int | None = None, inputs: Iterable[PathLike | None] = (),
                journal: Journal | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; install it at ``path`` only if the block succeeds.

    ``path`` is checked with :func:`check_output` first. ``directory`` makes the temporary path an empty
    directory (installed with a :data:`MARKER`); ``mode`` sets the permissions before anything is written
    (0o600 for secrets, so the file is never readable by others, not even for a moment), else a normal file's.
    With a ``journal``, what the output replaces is kept until the journal commits, so it can be put back.
    """
    path = check_output(path, overwrite=overwrite, what=what, inputs=inputs, directory=directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, directory, mode)
    try:
        yield tmp
        if directory:
            _install_directory(tmp, path, what, journal)
        else:
            _install_file(tmp, path, journal)
    except BaseException:
        _discard(tmp)
        raise


def write_text(path: PathLike, text: str, *, overwrite: bool = False, what: str = "output",
               inputs: Iterable[PathLike | None] = (), journal: Journal | None = None) -> None:
    """Write ``text`` to ``path`` atomically under the rules of :func:`atomic_path` (``journal``: see there)."""
    with atomic_path(path, overwrite=overwrite, what=what, inputs=inputs, journal=journal) as tmp:
        tmp.write_text(text)


class Journal:
    """The outputs one command wrote, so that a failure removes exactly them and puts back what they replaced.

    Pass it to :func:`atomic_path` (``journal=``) for each output; use it as a context manager: it commits
    (drops the kept old versions) when the block succeeds and rolls back on any exception, KeyboardInterrupt
    included, then re-raises.
    """

    def __init__(self) -> None:
        self._written: list[tuple[Path, Path | None]] = []

    def record(self, path: Path, replaced: Path | None) -> None:
        """Note that ``path`` was written; ``replaced`` holds its previous version (None: there was none)."""
        self._written.append((path, replaced))

    def commit(self) -> None:
        """Keep the new outputs; remove the old versions they replaced."""
        written, self._written = self._written, []
        for _, replaced in written:
            if replaced is not None:
                _try(_remove, replaced)

    def rollback(self) -> None:
        """Remove every output written so far (newest first) and put back what each replaced."""
        with _signals_deferred():  # a second Ctrl-C must not stop the clean-up halfway
            written, self._written = self._written, []
            for path, replaced in reversed(written):
                if _try(_remove, path) and replaced is not None:
                    _try(os.replace, replaced, path)
                _fsync(path.parent)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()


def _try(action, *args: Path) -> bool:
    """Run a clean-up step; log (never raise) a failure so the remaining steps still run."""
    try:
        action(*args)
        return True
    except (OSError, ParameterError) as err:
        log.warning("clean-up step %s%s failed: %s", action.__name__, tuple(map(str, args)), err)
        return False
