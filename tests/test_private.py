"""DP-SGD, the thief's private training: clipped per-example gradients plus noise, its accountant, and the attack."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from datamark.evaluate.attacks import TrainingAttack, parse_attack
from datamark.exceptions import ParameterError
from datamark.models import ModelSpec, build_model, default_config, train_model
from datamark.models.private import epsilon, private_gradients
from datamark.testing import digits_split

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    train, _ = digits_split(n_train=128)
    return train.inputs(), np.asarray(train.labels)


def tiny(norm: str = "group") -> ModelSpec:
    return ModelSpec(arch="tiny", num_classes=10, input_shape=(8, 8, 1), mean=(0.5,), std=(0.3,),
                     params={"width": 4, "norm": norm})


def batch(digits, n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = digits
    return torch.from_numpy(images[:n]).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(labels[:n]).long()


def loss_of_one(logits, label):
    return F.cross_entropy(logits, label)


@pytest.mark.parametrize("q, noise, steps, expected", [
    # Reference values: opacus 1.6.0, compute_rdp + get_privacy_spent, orders 2..256, delta 1e-5.
    (256 / 60000, 1.1, 60 * 235, 2.6007181389429386),  # the MNIST DP-SGD tutorial setting
    (512 / 50000, 1.0, 980, 2.144279897507802),  # fastnet's batches on CIFAR-10, 10 epochs
    (0.01, 0.5, 100, 10.661181335284862),
    (0.05, 2.0, 5000, 10.204115276440117),
])
def test_epsilon_matches_opacus_accountant(q, noise, steps, expected):
    eps, _ = epsilon(sample_rate=q, noise=noise, steps=steps, delta=1e-5)
    assert eps == pytest.approx(expected, rel=1e-9)


def test_epsilon_grows_with_steps_and_shrinks_with_noise():
    base = epsilon(sample_rate=0.01, noise=1.0, steps=1000, delta=1e-5)[0]
    assert epsilon(sample_rate=0.01, noise=1.0, steps=4000, delta=1e-5)[0] > base
    assert epsilon(sample_rate=0.01, noise=2.0, steps=1000, delta=1e-5)[0] < base
    with pytest.raises(ParameterError, match="delta"):
        epsilon(sample_rate=0.01, noise=1.0, steps=10, delta=0)


def test_private_gradient_without_noise_or_clipping_is_the_mean_gradient(digits):
    model = build_model(tiny(), seed=0).train()
    x, y = batch(digits)
    private_gradients(model, loss_of_one, x, y, clip=1e6, noise=0.0, gen=torch.Generator().manual_seed(0))
    private = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(private[name], p.grad, rtol=1e-4, atol=1e-6)


def test_each_example_moves_the_gradient_at_most_clip(digits):
    model = build_model(tiny(), seed=0).train()
    x, y = batch(digits)
    clip = 1e-3  # far below any example's gradient norm: every example is clipped to exactly this

    def grad_norm(rows: slice) -> float:
        private_gradients(model, loss_of_one, x[rows], y[rows], clip=clip, noise=0.0, gen=torch.Generator())
        total = torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters()))
        return float(total) * len(x[rows])  # the sum of clipped gradients, before the division by B

    assert grad_norm(slice(0, 1)) == pytest.approx(clip, rel=1e-3)
    assert grad_norm(slice(0, 24)) <= 24 * clip * (1 + 1e-3)


def test_noise_is_seeded_and_scaled(digits):
    model = build_model(tiny(), seed=0).train()
    x, y = batch(digits)

    def grads(noise: float, seed: int) -> torch.Tensor:
        private_gradients(model, loss_of_one, x, y, clip=1.0, noise=noise, gen=torch.Generator().manual_seed(seed))
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    quiet = grads(0.0, 0)
    torch.testing.assert_close(grads(2.0, 1), grads(2.0, 1))
    noise = grads(2.0, 1) - quiet
    assert not torch.allclose(grads(2.0, 1), grads(2.0, 2))
    assert float(noise.std()) * len(x) == pytest.approx(2.0, rel=0.1)  # N(0, (noise * clip)^2) / B per coordinate


def test_private_training_is_deterministic_and_refuses_batch_norm(digits):
    images, labels = digits
    config = default_config("tiny", epochs=2, dp_noise=1.0, bf16=False)
    first = train_model(build_model(tiny(), seed=0), images, labels, config)
    again = train_model(build_model(tiny(), seed=0), images, labels, config)
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    plain = train_model(build_model(tiny(), seed=0), images, labels, dataclasses.replace(config, dp_noise=0.0))
    assert not torch.equal(plain.head.weight, first.head.weight)
    with pytest.raises(ParameterError, match="batch norm.*norm='group'"):
        train_model(build_model(tiny("batch"), seed=0), images, labels, config)
    for field in ({"dp_noise": -1.0}, {"dp_clip": 0.0}, {"dp_noise": 1.0, "mixup": 1.0}):
        with pytest.raises(ParameterError, match="DP-SGD"):
            default_config("tiny", **field)


def test_dp_sgd_attack_builds_group_norm_and_reports_epsilon():
    attack = parse_attack("dp-sgd:noise=1.0,clip=0.5")
    assert isinstance(attack, TrainingAttack) and attack.kind == "training"
    base = default_config("fastnet")
    assert attack.recipe(base) == dataclasses.replace(base, dp_noise=1.0, dp_clip=0.5)
    narrow = ModelSpec(arch="fastnet", num_classes=10, input_shape=(32, 32, 3), mean=(0.5,) * 3, std=(0.25,) * 3,
                       params={"widths": [32, 64, 128]})
    assert attack.architecture(narrow) == {"widths": [32, 64, 128], "norm": "group"}
    details = attack.details(attack.recipe(base), 50000)
    assert details["epsilon"] == pytest.approx(2.144, abs=1e-3) and details["delta"] == 1e-5
    vgg = dataclasses.replace(narrow, arch="vgg11", params={})
    with pytest.raises(ParameterError, match="group norm.*vgg11"):
        attack.architecture(vgg)
    for text in ("dp-sgd:noise=0", "dp-sgd:clip=-1"):
        with pytest.raises(ParameterError, match="dp-sgd"):
            parse_attack(text)
