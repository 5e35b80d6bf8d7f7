"""Where tensor work runs: the DATAMARK_DEVICE override, its errors, and models handed back on the CPU."""

import numpy as np
import pytest
import torch

from datamark._device import compute_device, device_name, on_device
from datamark.exceptions import ParameterError
from datamark.models import build_model, default_config, train_model
from datamark.models.checkpoint import ModelSpec


def test_default_is_cuda_only_when_visible(monkeypatch):
    monkeypatch.delenv("DATAMARK_DEVICE", raising=False)
    assert compute_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_override_and_its_errors(monkeypatch):
    monkeypatch.setenv("DATAMARK_DEVICE", "cpu")
    assert compute_device() == torch.device("cpu") and device_name() == "cpu"
    monkeypatch.setenv("DATAMARK_DEVICE", "toaster")
    with pytest.raises(ParameterError, match="not a device name"):
        compute_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("DATAMARK_DEVICE", "cuda")
        with pytest.raises(ParameterError, match="sees none"):
            compute_device()


def test_on_device_restores_and_trainer_returns_cpu_model(monkeypatch):
    monkeypatch.setenv("DATAMARK_DEVICE", "cpu")
    spec = ModelSpec(arch="tiny", num_classes=2, input_shape=(8, 8, 1), mean=(0.5,), std=(0.25,))
    model = build_model(spec, seed=0)
    with on_device(model) as device:
        assert device == torch.device("cpu")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
    trained = train_model(model, images, rng.integers(0, 2, 16), default_config("tiny", epochs=1))
    assert all(p.device.type == "cpu" for p in trained.parameters()) and not trained.training
