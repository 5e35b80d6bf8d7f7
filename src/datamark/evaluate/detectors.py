"""WSD (watermark stealthiness against detection): can a data inspector find the marked rows?

Four detectors a thief might run on a released training set before using it, each returning the rows it flags;
:func:`recall_precision` scores them against the key's marked rows.

* **Confidence outliers**: train on the data, flag the ``fraction`` (1 %) of samples with the lowest
  probability of their own label (mislabelled, poison-label watermarks stand out here).
* **Autoencoder**: a small convolutional autoencoder trained briefly on the data; flag the ``fraction`` (1 %)
  with the largest reconstruction error (visible patterns stand out).
* **Spectral Signatures** (Tran et al., NeurIPS 2018): per class, score each sample by its squared projection on
  the top singular vector of the class's centred penultimate features; remove the top ``1.5 * eps * n_class``,
  where eps is the defender's upper bound on the poisoned share of a class (Tran et al.'s rule). The defender does
  not know the target class, so the same eps applies to every class.
* **Activation Clustering** (Chen et al., 2018): per class, reduce the penultimate features to 10 dimensions with
  ICA, split them by 2-means, and flag the smaller cluster when it holds less than ``threshold`` (35 %) of the
  class (Chen et al.'s relative-size criterion).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._rng import isolated_torch_rng
from ..exceptions import ParameterError
from ..modalities.image import to_tensor

DETECTORS = ("confidence", "autoencoder", "spectral-signatures", "activation-clustering")


@dataclass(frozen=True)
class Detection:
    """The rows a detector flags, with the rule it applied (for the report)."""

    name: str
    flagged: np.ndarray
    rule: str

    def score(self, marked: np.ndarray) -> dict[str, float]:
        return {**recall_precision(self.flagged, marked), "n_flagged": int(len(self.flagged)), "rule": self.rule}


def recall_precision(flagged: np.ndarray, marked: np.ndarray) -> dict[str, float]:
    """Recall (share of marked rows flagged) and precision (share of flagged rows that are marked); 0 if empty."""
    hits = len(np.intersect1d(flagged, marked))
    return {"recall": hits / len(marked) if len(marked) else 0.0,
            "precision": hits / len(flagged) if len(flagged) else 0.0}


def _top(scores: np.ndarray, fraction: float) -> np.ndarray:
    if not 0.0 < fraction < 1.0:
        raise ParameterError(f"The flagged 'fraction' of a detector must be in (0, 1); got {fraction}.")
    k = max(1, int(round(fraction * len(scores))))
    return np.sort(np.argsort(-scores, kind="stable")[:k])


def confidence_outliers(true_label_probs: np.ndarray, *, fraction: float = 0.01) -> Detection:
    """Flag the ``fraction`` of samples whose own label gets the lowest probability from a trained model."""
    return Detection("confidence", _top(-np.asarray(true_label_probs, dtype=np.float64), fraction),
                     f"lowest {100 * fraction:g} % true-label confidence")


class _AutoEncoder(nn.Module):
    """Two stride-2 convolutions down (1/4 resolution, 32 channels), two transposed convolutions up."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Conv2d(channels, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        self.decode = nn.Sequential(nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
                                    nn.ConvTranspose2d(16, channels, 4, 2, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decode(self.encode(x))
        return out if out.shape[-2:] == x.shape[-2:] else F.interpolate(out, size=x.shape[-2:], mode="bilinear")


def _reconstruction_errors(model: nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.concatenate([((model(x) - x) ** 2).mean(dim=(1, 2, 3)).numpy() for x in
                               (to_tensor(images[s:s + batch_size]) for s in range(0, len(images), batch_size))])


def autoencoder_outliers(images: np.ndarray, *, fraction: float = 0.01, epochs: int = 3, batch_size: int = 256,
                         lr: float = 1e-3, seed: int = 0) -> Detection:
    """Train a small conv autoencoder on uint8 NHWC ``images`` for ``epochs`` (Adam); flag the ``fraction`` with
    the largest per-sample mean squared reconstruction error. Seeded; global RNGs untouched."""
    with isolated_torch_rng(seed):
        model = _AutoEncoder(images.shape[-1])
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen).numpy()
        for start in range(0, len(images), batch_size):
            x = to_tensor(images[np.sort(order[start:start + batch_size])])
            loss = F.mse_loss(model(x), x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return Detection("autoencoder", _top(_reconstruction_errors(model, images, batch_size), fraction),
                     f"top {100 * fraction:g} % reconstruction error ({epochs} epochs)")


def spectral_signatures(features: np.ndarray, labels: np.ndarray, *, poison_fraction: float,
                        factor: float = 1.5) -> Detection:
    """Tran et al.: per class, flag the top ``ceil(factor * poison_fraction * n_class)`` outlier scores."""
    if not 0.0 < poison_fraction <= 1.0:
        raise ParameterError(f"The 'poison_fraction' (eps) of Spectral Signatures must be in (0, 1]; got "
                             f"{poison_fraction}.")
    flagged = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        centred = features[rows].astype(np.float64) - features[rows].mean(axis=0)
        top = np.linalg.eigh(centred.T @ centred)[1][:, -1]  # top right singular vector, via the D x D Gram
        scores = (centred @ top) ** 2
        k = min(len(rows), math.ceil(round(factor * poison_fraction * len(rows), 6)))  # no float-noise extra row
        flagged.append(rows[np.argsort(-scores, kind="stable")[:k]])
    return Detection("spectral-signatures", np.sort(np.concatenate(flagged)),
                     f"per class top {factor:g} x eps x n_class scores, eps = {poison_fraction:.4g}")


def activation_clustering(features: np.ndarray, labels: np.ndarray, *, dims: int = 10, threshold: float = 0.35,
                          seed: int = 0) -> Detection:
    """Chen et al.: per class, ICA to ``dims`` dimensions, 2-means, flag the smaller cluster if its share of the
    class is below ``threshold``."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import FastICA

    flagged = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 4:
            continue
        x = features[rows].astype(np.float64)
        d = min(dims, x.shape[1], len(rows) - 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # FastICA convergence warnings: the reduction is still usable
            reduced = FastICA(d, whiten="unit-variance", whiten_solver="eigh", max_iter=400,
                              random_state=seed).fit_transform(x)
            assign = KMeans(2, n_init=10, random_state=seed).fit_predict(reduced)
        small = int(np.bincount(assign, minlength=2).argmin())
        if (assign == small).mean() < threshold:
            flagged.append(rows[assign == small])
    rows = np.sort(np.concatenate(flagged)) if flagged else np.zeros(0, dtype=np.int64)
    return Detection("activation-clustering", rows, f"ICA to {dims} dims, 2-means, smaller cluster < "
                                                    f"{100 * threshold:g} % of its class")


def run_detectors(model: nn.Module, images: np.ndarray, labels: np.ndarray, marked: np.ndarray, *,
                  poison_fraction: float, fraction: float = 0.01, ae_epochs: int = 3, seed: int = 0,
                  batch_size: int = 512) -> dict[str, dict[str, float]]:
    """The detectors that apply to the data on a training set (``images`` -- any modality's batch -- and
    ``labels``) with ``model`` trained on it; recall and precision of each against the ``marked`` rows.

    Confidence outliers need only the model's probabilities and run on every modality; the autoencoder and the
    feature-space detectors (Spectral Signatures, Activation Clustering) are defined on images.
    """
    from ..modalities import modality_of
    from ..suspects.local import LocalSuspect

    labels = np.asarray(labels)
    modality = modality_of(images)
    with torch.no_grad():
        num_classes = int(modality.logits(model.eval(), images[:1], torch.device("cpu")).shape[1])
    probs = LocalSuspect(model, num_classes=num_classes, batch_size=batch_size, modality=modality).query(images)
    found = [confidence_outliers(probs[np.arange(len(labels)), labels], fraction=fraction)]
    if modality.name == "image":
        from ..models.features import embed

        features = embed(model, images, batch_size=batch_size)
        found += [autoencoder_outliers(images, fraction=fraction, epochs=ae_epochs, seed=seed),
                  spectral_signatures(features, labels, poison_fraction=poison_fraction),
                  activation_clustering(features, labels, seed=seed)]
    return {d.name: d.score(np.asarray(marked)) for d in found}
