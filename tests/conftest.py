import numpy as np
import pytest
import torch

from datamark.testing import digits_split


@pytest.fixture(scope="session")
def digits():
    """The embedded digits (train, test): real data, no download."""
    return digits_split()


@pytest.fixture
def global_rng_guard():
    """Fail if the code under test touched numpy's or torch's global RNG."""
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    yield
    assert np.array_equal(np.random.get_state()[1], np_state), "numpy's global RNG was used"
    assert torch.equal(torch.get_rng_state(), torch_state), "torch's global RNG was used"
