"""Outputs are never lost and never leak: what a command may replace, protect's all-or-nothing release, the
permissions of what it writes, and one-line errors that never print the key's secret.

Everything runs the real CLI (typer's CliRunner) on the embedded digits; nothing is trained.
"""

import errno
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from datamark import BadNets
from datamark._io import MARKER, Journal, atomic_path, check_output, is_datamark_output
from datamark._rng import resolve_secret
from datamark.cli import app
from datamark.data import ArrayRecords, FolderRecords, load_data
from datamark.exceptions import DataFormatError, OutputExistsError, ParameterError
from datamark.key import Key
from datamark.models.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

SEED = 7
SECRET = resolve_secret(SEED).hex()  # the secret protect --seed 7 writes into its key


def _invoke(*args):
    """Run the CLI; ``res.text`` is stdout and stderr with rich's line wrapping undone."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    res.text = " ".join(res.output.split())
    return res


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones included) with its bytes (None for folders)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def _one_line_error(res, code=2):
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output and SECRET not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and sum(line.startswith("error:") for line in lines) == 1, \
        res.output


@pytest.fixture
def src(tmp_path, monkeypatch):
    """A working folder holding a small input dataset (``in.npz``) and a file the user cares about."""
    monkeypatch.chdir(tmp_path)
    load_data("digits").subset(np.arange(300)).save(tmp_path / "in.npz")
    (tmp_path / "notes.txt").write_text("precious")
    return tmp_path


def _protect(*extra):
    return _invoke("protect", "in.npz", "--seed", SEED, *extra)


# -- what may be replaced ------------------------------------------------------------------------------------------

def test_out_dot_with_overwrite_leaves_the_working_directory_alone(src):
    before = _snapshot(src)
    for out in (".", "..", str(src), "/"):
        _one_line_error(_protect("--out", out, "--key", "k.json", "--overwrite"))
    assert _snapshot(src) == before


def test_an_existing_directory_is_never_deleted_for_a_file_output(src):
    (src / "keep").mkdir()
    (src / "keep" / "a.txt").write_text("mine")
    before = _snapshot(src)
    _one_line_error(_protect("--out", "keep", "--key", "k.json", "--overwrite"))
    _one_line_error(_protect("--out", "wm.npz", "--key", "keep", "--overwrite"))
    _one_line_error(_invoke("verify", "--key", "k.json", "--data", "in.npz", "--model", "m.pt", "--json", "keep"))
    _one_line_error(_invoke("evaluate", "--key", "k.json", "--stolen", "s.pt", "--clean", "c.pt", "--data", "in.npz",
                            "--json", "keep", "--overwrite"))
    assert _snapshot(src) == before
    with pytest.raises(ParameterError, match="directory"):
        with atomic_path(src / "keep", overwrite=True) as tmp:
            tmp.write_text("x")
    assert _snapshot(src) == before


def test_json_outputs_of_verify_and_evaluate_need_overwrite(src):
    before = _snapshot(src)
    res = _invoke("verify", "--key", "k.json", "--data", "in.npz", "--model", "m.pt", "--json", "notes.txt")
    _one_line_error(res)
    assert "--overwrite" in res.text
    res = _invoke("evaluate", "--key", "k.json", "--stolen", "s.pt", "--clean", "c.pt", "--data", "in.npz",
                  "--json", "notes.txt")
    _one_line_error(res)
    assert "--overwrite" in res.text
    assert _snapshot(src) == before


def test_special_files_are_refused(src):
    os.mkfifo(src / "pipe")
    for out in ("/dev/null", "pipe"):
        res = _protect("--out", out, "--key", "k.json", "--overwrite")
        _one_line_error(res)
        assert "device, pipe or socket" in res.text
    assert not (src / "k.json").exists()
    with pytest.raises(ParameterError, match="pipe"):
        check_output(src / "pipe", overwrite=True)


def test_an_output_may_not_be_an_input_or_another_output(src):
    os.symlink(src / "in.npz", src / "alias.npz")
    os.link(src / "in.npz", src / "hard.npz")
    before = _snapshot(src)
    for out in ("in.npz", "alias.npz", "hard.npz"):
        res = _protect("--out", out, "--key", "k.json", "--overwrite")
        _one_line_error(res)
        assert "input" in res.text
    _one_line_error(_protect("--out", "wm.npz", "--key", "in.npz", "--overwrite"))
    _one_line_error(_protect("--out", "same", "--key", "same", "--overwrite"))
    _one_line_error(_protect("--out", "wm.npz", "--key", "k.json", "--preview", "wm.npz", "--overwrite"))
    _one_line_error(_invoke("preview", "--key", "k.json", "--watermarked", "in.npz", "--original", "in.npz",
                            "--out", "in.npz", "--overwrite"))
    _one_line_error(_invoke("train", "in.npz", "--out", "hard.npz", "--overwrite"))
    assert _snapshot(src) == before


def _image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_directory_outputs_replace_only_a_folder_datamark_wrote(tmp_path):
    records = load_data(_image_folder(tmp_path / "images"))
    marked = BadNets(seed=0, rate=0.2, target=1).apply(records)
    theirs = _image_folder(tmp_path / "theirs")  # a dataset folder datamark did not write
    before = _snapshot(tmp_path)
    with pytest.raises(ParameterError, match="did not write"):
        marked.dataset.save(theirs, overwrite=True)
    with pytest.raises(ParameterError, match="input"):
        marked.dataset.save(tmp_path / "images", overwrite=True)  # its own source
    with pytest.raises(ParameterError, match="input"):
        marked.dataset.save(tmp_path, overwrite=True)  # holds the source
    assert _snapshot(tmp_path) == before
    out = tmp_path / "out"
    marked.dataset.save(out)
    assert is_datamark_output(out) and isinstance(load_data(out), FolderRecords)
    (out / "cat" / "stale.png").write_bytes((out / "cat" / "0.png").read_bytes())
    with pytest.raises(OutputExistsError):
        marked.dataset.save(out)
    marked.dataset.save(out, overwrite=True)  # its own earlier output: swapped whole
    assert not (out / "cat" / "stale.png").exists() and len(load_data(out)) == len(records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out", "theirs"]  # no aside copy left
    with pytest.raises(ParameterError, match="folder"):
        marked.dataset.save(tmp_path / "images" / "cat" / "0.png", overwrite=True)


def test_arrow_folders_replace_only_their_own_output(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    images = [Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)) for _ in range(20)]
    datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(20)]}, features=features
                               ).save_to_disk(str(tmp_path / "hf"))  # a Hugging Face folder datamark did not write
    marked = BadNets(seed=0, rate=0.2, target=1).apply(load_data(tmp_path / "hf"))
    before = _snapshot(tmp_path)
    with pytest.raises(ParameterError, match="did not write"):
        marked.dataset.save(tmp_path / "hf", overwrite=True)
    assert _snapshot(tmp_path) == before
    marked.dataset.save(tmp_path / "out")
    marked.dataset.save(tmp_path / "out", overwrite=True)
    assert is_datamark_output(tmp_path / "out") and sorted(p.name for p in tmp_path.iterdir()) == ["hf", "out"]
    assert np.array_equal(load_data(tmp_path / "out").inputs(), marked.dataset.inputs())


def test_journal_rollback_restores_what_was_replaced(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    with pytest.raises(RuntimeError):
        with Journal() as journal:
            with atomic_path(tmp_path / "a.txt", overwrite=True, journal=journal) as tmp:
                tmp.write_text("new a")
            with atomic_path(tmp_path / "b.txt", journal=journal) as tmp:
                tmp.write_text("new b")
            assert (tmp_path / "a.txt").read_text() == "new a"
            raise RuntimeError("disk on fire")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"] and (tmp_path / "a.txt").read_text() == "old a"


# -- protect is all or nothing ---------------------------------------------------------------------------------------

def _failing(error):
    """A dataset save that fails halfway through writing (disk full, Ctrl-C)."""
    def save(self, path, *, overwrite=False, journal=None, **options):
        with atomic_path(path, overwrite=overwrite, what="dataset", journal=journal) as tmp:
            tmp.write_bytes(b"half a dataset")
            raise error
    return save


@pytest.mark.parametrize("error, code", [(OSError(errno.ENOSPC, "No space left on device"), 2),
                                         (KeyboardInterrupt(), 130)])
def test_a_failed_dataset_write_leaves_nothing_new(src, monkeypatch, error, code):
    before = _snapshot(src)
    monkeypatch.setattr(ArrayRecords, "save", _failing(error))
    res = _protect("--out", "wm.npz", "--key", "k.json")
    _one_line_error(res, code)
    assert _snapshot(src) == before


def test_a_failure_after_overwrite_puts_the_old_release_back(src, monkeypatch):
    assert _protect("--out", "wm.npz", "--key", "k.json", "--seed", 1).exit_code == 0
    (src / "wm.npz").chmod(0o640)
    before = _snapshot(src)
    modes = {p: stat.S_IMODE(os.stat(src / p).st_mode) for p in ("wm.npz", "k.json")}
    import datamark.evaluate.preview as preview

    def broken_preview(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(preview, "watermark_stages", broken_preview)  # fails after the key and the dataset
    res = _protect("--out", "wm.npz", "--key", "k.json", "--preview", "p.png", "--overwrite")
    _one_line_error(res)
    assert "No space left" in res.text
    assert _snapshot(src) == before
    assert {p: stat.S_IMODE(os.stat(src / p).st_mode) for p in modes} == modes


def test_sigterm_during_protect_rolls_back(src, monkeypatch):
    before = _snapshot(src)

    def killed(self, path, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(ArrayRecords, "save", killed)
    _one_line_error(_protect("--out", "wm.npz", "--key", "k.json"), 143)
    assert _snapshot(src) == before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_key_is_on_disk_before_the_dataset_is_written(src, monkeypatch):
    seen = []
    original = ArrayRecords.save

    def save(self, path, **kwargs):
        seen.append((src / "k.json").is_file())
        original(self, path, **kwargs)
    monkeypatch.setattr(ArrayRecords, "save", save)
    assert _protect("--out", "wm.npz", "--key", "k.json").exit_code == 0
    assert seen == [True]


# -- permissions -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_release_and_preview_get_normal_permissions_and_only_the_key_is_private(src, umask):
    old = os.umask(umask)
    try:
        res = _protect("--out", "wm.npz", "--key", "k.json", "--preview", "p.png")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    mode = lambda name: stat.S_IMODE(os.stat(src / name).st_mode)  # noqa: E731
    assert mode("wm.npz") == mode("p.png") == 0o666 & ~umask
    assert mode("k.json") == 0o600


def test_directory_outputs_get_normal_permissions(tmp_path):
    marked = BadNets(seed=0, rate=0.2, target=1).apply(load_data(_image_folder(tmp_path / "images")))
    old = os.umask(0o022)
    try:
        marked.dataset.save(tmp_path / "out")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "out" / MARKER).st_mode) == 0o644


# -- one-line errors, and the secret never shows -----------------------------------------------------------------------

def test_a_key_write_error_is_one_line_without_the_secret(src, monkeypatch):
    def full(self, file):
        file.write('{"secret": "')  # a part was written, then the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Key, "_dump", full)
    res = _protect("--out", "wm.npz", "--key", "k.json")
    _one_line_error(res)
    assert "key file" in res.text and "No space left" in res.text
    assert sorted(p.name for p in src.iterdir()) == ["in.npz", "notes.txt"]


def test_unwritable_key_folder_is_one_line(src):
    (src / "afile").write_text("x")
    res = _protect("--out", "wm.npz", "--key", "afile/k.json")
    _one_line_error(res)
    assert not (src / "wm.npz").exists()


def test_a_crash_while_the_key_is_written_prints_no_locals(tmp_path):
    """An unexpected bug (not a user error) still gets a traceback, but never the locals that hold the secret."""
    assert app.pretty_exceptions_show_locals is False
    code = ("import sys; from datamark.key import Key\n"
            "def bug(self, tmp, path):\n"
            "    secret_copy = self.secret  # a bug with the secret in a local variable\n"
            "    raise RuntimeError('boom')\n"
            "Key._write_file = bug\n"
            "from datamark.cli import main\n"
            f"sys.argv = ['datamark', 'protect', 'digits', '--out', 'wm.npz', '--key', 'k.json', '--seed', '{SEED}']\n"
            "main()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode != 0 and "RuntimeError: boom" in out.stderr
    assert SECRET not in out.stdout + out.stderr and "secret_copy =" not in out.stderr.replace("secret_copy = self", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the crash rolled the release back


def test_bad_checkpoint_specs_are_one_line(tmp_path):
    spec = {"arch": "tiny", "num_classes": 10, "input_shape": [8, 8, 1], "mean": [0.0], "std": [1.0],
            "class_names": [], "params": {}}
    for bad in ({"num_classes": "ten"}, {"input_shape": 8}, {"arch": ["tiny"]}, {"params": {"width": -3}},
                {"input_shape": [8, 8]}, {"mean": None}):
        path = tmp_path / "bad.pt"
        torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "spec": {**spec, **bad}, "state_dict": {}}, path)
        with pytest.raises(DataFormatError, match="bad.pt"):
            load_checkpoint(path)
        _one_line_error(_invoke("serve", path))
    torch.save({"format": CHECKPOINT_FORMAT, "version": "1", "spec": spec, "state_dict": {}}, path)
    _one_line_error(_invoke("serve", path))


def test_value_errors_from_input_files_are_one_line(tmp_path, monkeypatch):
    from datamark.key import Key

    def bad_value(*args, **kwargs):
        raise KeyError("secret")
    monkeypatch.setattr(Key, "load", bad_value)
    res = _invoke("key-info", tmp_path / "k.json")
    _one_line_error(res)
    assert "KeyError" in res.text
