"""DP-SGD, the thief's differentially private training (Abadi et al., "Deep Learning with Differential Privacy",
CCS 2016): each example's gradient is clipped to L2 norm ``clip``, the clipped gradients are summed, Gaussian
noise of standard deviation ``noise * clip`` is added, and the sum is divided by the batch size.

Why a thief would: a model that may not depend much on any single example cannot memorise a few marked rows, so
DP training is the principled way to forget a watermark that lives in rare examples (issue 15, training side).
Its price is accuracy, which the survival table reports beside the p-value.

Per-example gradients come from ``torch.func`` (``vmap`` of ``grad`` over a functional call of the model), in
chunks that bound memory. Batch norm mixes a batch's examples, so a private model must normalise each example on
its own: image architectures with a ``norm`` parameter are built with ``norm="group"`` for it.

:func:`epsilon` is the privacy the run would claim: the Renyi-DP accountant of the sampled Gaussian mechanism
(Mironov, Talwar and Zhang 2019, integer orders) with the conversion to (epsilon, delta) of Balle et al. (2020),
as Opacus reports it. Like Opacus's default, it assumes Poisson sampling at rate batch / N, while the trainer
shuffles into fixed-size batches; the figure describes the thief's setting, it is not a guarantee datamark makes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..exceptions import ParameterError

#: Examples per vmap chunk of per-example gradients (memory: chunk x parameters floats).
CHUNK = 128
#: The Renyi orders the accountant minimises over.
ORDERS = tuple(range(2, 257))


def check_private_model(model: nn.Module) -> None:
    """Refuse, in one line, a model whose batch norm would mix the examples whose gradients DP-SGD clips apart."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ParameterError(f"DP-SGD needs per-example gradients, which the batch norm of this "
                             f"{type(model).__name__} mixes; build it with norm='group' (fastnet, tiny).")


def private_gradients(model: nn.Module, loss_of_one: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      x: torch.Tensor, y: torch.Tensor, *, clip: float, noise: float, gen: torch.Generator
                      ) -> torch.Tensor:
    """Set each parameter's ``.grad`` to the DP-SGD gradient of the batch ``(x, y)``: the mean over examples of
    their gradients clipped to L2 norm ``clip`` (over all parameters together), plus N(0, (noise * clip)^2) / B;
    returns the batch's mean loss (from the same forward passes, for progress lines). ``loss_of_one(logits,
    label)`` is the loss of one example (logits 1 x K). Noise is drawn from ``gen`` on the CPU, so a run is
    reproducible on any device."""
    from torch.func import functional_call, grad_and_value, vmap

    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss(p: dict, x1: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        return loss_of_one(functional_call(model, (p, buffers), (x1.unsqueeze(0),)).float(), y1.unsqueeze(0))

    per_example = vmap(grad_and_value(loss), in_dims=(None, 0, 0))
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    loss_sum = torch.zeros(())
    for start in range(0, len(x), CHUNK):
        grads, losses = per_example(params, x[start:start + CHUNK], y[start:start + CHUNK])
        loss_sum = loss_sum + losses.detach().sum().cpu()
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))
        scale = (clip / (norms + 1e-6)).clamp(max=1.0)
        for name, g in grads.items():
            total[name] += torch.einsum("i,i...->...", scale, g)
    for name, p in model.named_parameters():
        if name in total:
            drawn = torch.randn(p.shape, generator=gen).to(p.device)
            p.grad = (total[name] + noise * clip * drawn) / len(x)
    return loss_sum / len(x)


def _log_rdp_sampled_gaussian(q: float, noise: float, order: int) -> float:
    """log A_alpha of the sampled Gaussian mechanism at integer ``order`` (Mironov, Talwar and Zhang 2019, Sec. 3.3):
    A = sum_k C(alpha, k) (1 - q)^(alpha - k) q^k exp((k^2 - k) / (2 sigma^2))."""
    k = np.arange(order + 1)
    log_binom = np.array([math.lgamma(order + 1) - math.lgamma(i + 1) - math.lgamma(order - i + 1) for i in k])
    with np.errstate(divide="ignore"):
        terms = log_binom + (order - k) * np.log1p(-q) + k * np.log(q) + (k * k - k) / (2 * noise ** 2)
    top = terms.max()
    return float(top + np.log(np.exp(terms - top).sum()))


def epsilon(*, sample_rate: float, noise: float, steps: int, delta: float,
            orders: Iterable[int] = ORDERS) -> tuple[float, int]:
    """(epsilon, best order): the (epsilon, delta)-DP of ``steps`` steps of DP-SGD at Poisson sampling rate
    ``sample_rate`` and noise multiplier ``noise`` (see the module: RDP accountant, Balle et al.'s conversion)."""
    if not 0 < sample_rate <= 1 or not noise > 0 or steps < 1 or not 0 < delta < 1:
        raise ParameterError(f"epsilon needs 0 < sample_rate <= 1, noise > 0, steps >= 1 and 0 < delta < 1; got "
                             f"{sample_rate}, {noise}, {steps}, {delta}.")
    best = (math.inf, 0)
    for order in orders:
        if sample_rate == 1:
            rdp = order / (2 * noise ** 2)
        else:
            rdp = _log_rdp_sampled_gaussian(sample_rate, noise, order) / (order - 1)
        eps = steps * rdp - (math.log(delta) + math.log(order)) / (order - 1) + math.log((order - 1) / order)
        best = min(best, (eps, order))
    return best
