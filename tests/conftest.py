from pathlib import Path

import numpy as np
import pytest
import torch

from datamark.data import shared_data_dir
from datamark.exceptions import DataError
from datamark.testing import digits_split


def pytest_configure(config):
    """Under pytest-xdist (the README's ``-n 2``) each worker has a core of its own: one torch thread each, so the
    workers' thread pools do not fight over 2 cores (the 20x slowdown of issue 14)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
        os.environ.setdefault("DATAMARK_THREADS", "1")  # CLI invocations in the worker keep to its one thread


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Without the shared data folder (``$DATAMARK_DATA``, default ``../shared/data``) a test that reads from it is
    skipped and says why, instead of failing; with the folder present, the same error fails the test as usual."""
    outcome = yield
    report = outcome.get_result()
    if call.excinfo is None or not isinstance(call.excinfo.value, DataError):
        return
    message = str(call.excinfo.value)
    if "DATAMARK_DATA" in message and not (shared_data_dir() / "README.md").is_file():
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"the shared data folder is absent: {message}")


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("scale")`` imports ``benchmarks/scale.py`` as a module, as when it runs as a script: its
    sibling modules (``from calibration_cifar10 import ...``) import, and ``sys.path`` is left as it was."""
    import importlib.util
    import sys

    folder = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(stem: str):
        spec = importlib.util.spec_from_file_location(f"benchmark_{stem}", folder / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(folder))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(folder))
        return module

    return load


@pytest.fixture(scope="session")
def digits():
    """The embedded digits (train, test): real data, no download."""
    return digits_split()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models and PGD on one thread: on a busy 2-core machine thread contention makes them 100x slower.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")`` so it is set before module fixtures train."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def global_rng_guard():
    """Fail if the code under test touched numpy's or torch's global RNG."""
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    yield
    assert np.array_equal(np.random.get_state()[1], np_state), "numpy's global RNG was used"
    assert torch.equal(torch.get_rng_state(), torch_state), "torch's global RNG was used"


# The tiny digits models the session fixtures share: name -> (how the training data is made, seed, epochs).
_TINY_MODELS = {
    "marks": (lambda train: _tiny_marks_method().apply(train).dataset, 0, 30),  # first: the longest to train
    "clean": (lambda train: train, 1, 15),
    "pair": (lambda train: _tiny_pair_method().apply(train).dataset, 0, 15),
}


def _tiny_pair_method():
    from datamark import BadNets

    return BadNets(seed=0, target=5)


def _tiny_marks_method():
    from datamark import BadNets

    return BadNets(seed=0, n_marks=5, decoy_rate=0.1)


def _train_tiny_model(name, train):
    """One of ``_TINY_MODELS`` (a LocalSuspect), trained with one thread: on a busy 2-core machine thread
    contention makes tiny models 100x slower."""
    from datamark.testing import train_tiny

    data, seed, epochs = _TINY_MODELS[name]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_tiny(data(train), seed=seed, epochs=epochs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def _tiny_models(digits, tmp_path_factory):
    """name -> model of ``_TINY_MODELS``, each trained once per run.

    Under pytest-xdist the workers share the work through a folder of the run's temporary directory: a worker
    trains a model no other worker is training (a non-blocking lock per model), saves it, and loads the ones the
    other worker trained, waiting for them only when nothing is left to train. Two workers train the three models
    side by side instead of each training all three. Serially (no xdist), each is trained when first asked for."""
    import fcntl
    import os

    from datamark.suspects import LocalSuspect
    from datamark.testing.servers import save_tiny_checkpoint

    train = digits[0]
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        class Lazy(dict):
            def __missing__(self, name):
                self[name] = _train_tiny_model(name, train)
                return self[name]

        return Lazy()
    root = tmp_path_factory.getbasetemp().parent / "tiny-models"
    root.mkdir(exist_ok=True)
    models, pending = {}, list(_TINY_MODELS)

    def take(name, block):
        with open(root / f"{name}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            except BlockingIOError:
                return False  # another worker is training it
            path = root / f"{name}.pt"  # a datamark checkpoint: loaded with weights_only, never unpickled
            if not path.exists():
                save_tiny_checkpoint(_train_tiny_model(name, train).model, path)  # atomic: all or nothing is seen
            models[name] = LocalSuspect.from_checkpoint(path)
            return True

    while pending:
        taken = [name for name in pending if take(name, block=False)]
        if not taken:  # the other worker is training every one left: wait for the first of them
            take(pending[0], block=True)
            taken = pending[:1]
        pending = [name for name in pending if name not in taken]
    return models


@pytest.fixture(scope="session")
def tiny_clean(_tiny_models):
    """A tiny model trained on the clean digits (seed 1, 15 epochs): the innocent model (Independent-M) of the
    end-to-end tests, shared by them instead of each training the same model again."""
    return _tiny_models["clean"]


@pytest.fixture(scope="session")
def tiny_pair(digits, _tiny_models):
    """(key, stolen, clean, test): BadNets (target 5) on the digits; tiny models on the marked and the clean data
    (the clean one is ``tiny_clean``)."""
    train, test = digits
    return _tiny_pair_method().apply(train).key, _tiny_models["pair"], _tiny_models["clean"], test


@pytest.fixture(scope="session")
def tiny_marks(digits, _tiny_models):
    """(key, stolen, clean, test) with the default kind of key: BadNets with several marks (5 on 8x8 digits,
    which hold fewer marks apart than 32-px images), each with its own secret trigger and target. The clean
    model is tiny_pair's."""
    train, test = digits
    return _tiny_marks_method().apply(train).key, _tiny_models["marks"], _tiny_models["clean"], test


@pytest.fixture
def cli_files(tiny_marks, tmp_path):
    """``tmp_path`` holding tiny_marks as a user has them: key.json, test.npz, stolen.pt and clean.pt; and the key."""
    from datamark.testing.servers import save_tiny_checkpoint

    key, stolen, clean, test = tiny_marks
    key.save(tmp_path / "key.json")
    test.save(tmp_path / "test.npz")
    for name, suspect in (("stolen", stolen), ("clean", clean)):
        save_tiny_checkpoint(suspect.model, tmp_path / f"{name}.pt")
    return tmp_path, key
