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


@pytest.fixture(scope="session")
def tiny_pair(digits):
    """(key, stolen, clean, test): BadNets (target 5) on the digits; tiny models on the marked and the clean data.

    Trained with one thread: on a busy 2-core machine thread contention makes tiny models 100x slower.
    """
    from datamark import BadNets
    from datamark.testing import train_tiny

    train, test = digits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        marked = BadNets(seed=0, target=5).apply(train)
        stolen, clean = train_tiny(marked.dataset, seed=0, epochs=15), train_tiny(train, seed=1, epochs=15)
    finally:
        torch.set_num_threads(threads)
    return marked.key, stolen, clean, test


@pytest.fixture(scope="session")
def tiny_marks(digits, tiny_pair):
    """(key, stolen, clean, test) with the default kind of key: BadNets with several marks (5 on 8x8 digits,
    which hold fewer marks apart than 32-px images), each with its own secret trigger and target. The clean
    model is tiny_pair's."""
    from datamark import BadNets
    from datamark.testing import train_tiny

    train, test = digits
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        marked = BadNets(seed=0, n_marks=5, decoy_rate=0.1).apply(train)
        stolen = train_tiny(marked.dataset, seed=0, epochs=30)
    finally:
        torch.set_num_threads(threads)
    return marked.key, stolen, tiny_pair[2], test


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
