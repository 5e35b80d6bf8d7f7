"""Data-side attacks: before training, the thief runs a detector on the released data and drops what it flags.

Each attack's :meth:`~.base.DataAttack.flag` takes the thief's ``model`` (trained on the ``released`` records: the
feature extractor and the scorer the detectors need) and returns the sorted row indices to remove. The detectors
themselves live in :mod:`datamark.evaluate.detectors` (the WSD metric uses the same ones); this module gives each a
name, a strength to sweep and the data it applies to.

* ``spectral-signatures`` (Tran et al., NeurIPS 2018) and ``activation-clustering`` (Chen et al., 2018): feature
  space of the model's penultimate layer; images.
* ``loss-filter``: the ``fraction`` of rows with the highest loss on their own label (equivalently the lowest
  probability of it); needs only the model's probabilities, so any modality a
  :class:`~datamark.suspects.LocalSuspect` queries (image, text, audio, graph).
* ``autoencoder-filter``: the ``fraction`` with the largest reconstruction error of a small autoencoder trained
  on the data (the model is not used); images.
* ``strip`` (Gao et al., ACSAC 2019, used as a data filter): rows whose predictions stay confident when blended
  with other rows (a trigger dominates the blend); images.
* ``adaptive``: an adaptive thief that runs every detector datamark ships, each at its default, and drops the
  union of what they flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..._rng import generator, seed_secret
from ...exceptions import ParameterError
from ...models.features import embed
from ...suspects.local import LocalSuspect
from ..detectors import activation_clustering, autoencoder_outliers, confidence_outliers, spectral_signatures
from .base import DataAttack, register_attack

#: Blended images per forward chunk of STRIP (about 12 MB of uint8 32 x 32 x 3 images): bounded memory.
STRIP_CHUNK = 4096
#: Images per forward batch of the thief's model (float32 on the CPU).
BATCH_SIZE = 512


def _rows(flagged: np.ndarray) -> np.ndarray:
    """Sorted unique int64 row indices."""
    return np.unique(np.asarray(flagged, dtype=np.int64))


def _check_open_unit(attack: str, name: str, value: float, fix: str) -> None:
    """Refuse a parameter outside (0, 1) with a one-line message naming it, its value and ``fix``."""
    if not 0.0 < value < 1.0:
        raise ParameterError(f"The '{name}' parameter of the '{attack}' attack must be in (0, 1); got {value}. "
                             f"{fix}")


def _suspect(model: Any, spec: Any) -> LocalSuspect:
    """The thief's own model as a probability-answering suspect (its modality's preprocessing)."""
    return LocalSuspect.from_model(model, spec, batch_size=BATCH_SIZE)


def _own_label_probs(model: Any, spec: Any, released: Any) -> np.ndarray:
    probs = _suspect(model, spec).query(released.inputs())
    labels = np.asarray(released.labels)
    return probs[np.arange(len(labels)), labels]


class _FeatureAttack(DataAttack):
    """A detector on the penultimate features of the thief's model, per class (images)."""

    modalities = ("image",)

    def flag(self, model: Any, spec: Any, released: Any, *, seed: int = 0) -> np.ndarray:
        self.check_modality(released.modality.name)
        features = embed(model, released.inputs(), batch_size=BATCH_SIZE)
        return self.flag_features(features, np.asarray(released.labels), seed=seed)

    def flag_features(self, features: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """The rows flagged from precomputed ``features`` (N x D) and ``labels`` (shared by :class:`Adaptive`)."""
        raise NotImplementedError


@register_attack("spectral-signatures")
@dataclass(frozen=True)
class SpectralSignatures(_FeatureAttack):
    """Spectral Signatures (Tran et al., NeurIPS 2018): per class, remove the ``ceil(1.5 * eps * n_class)`` rows
    with the largest squared projection on the top singular vector of the class's centred features.

    ``eps`` is the defender's bound on the poisoned share of a class (the paper's 1.5 x eps rule); not knowing the
    target class, the thief applies it to every class, so about ``1.5 * eps`` of all rows go.
    """

    eps: float = 0.1

    strength = "eps"

    def __post_init__(self) -> None:
        _check_open_unit(self.registry_name, "eps", self.eps, "It bounds the poisoned share of a class (e.g. 0.1).")

    def flag_features(self, features: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
        return _rows(spectral_signatures(features, labels, poison_fraction=self.eps).flagged)


@register_attack("activation-clustering")
@dataclass(frozen=True)
class ActivationClustering(_FeatureAttack):
    """Activation Clustering (Chen et al., 2018): per class, ICA of the features to 10 dimensions, 2-means, and
    remove the smaller cluster when it holds less than ``threshold`` of the class (the paper's 35 %). A larger
    threshold removes more classes' small clusters."""

    threshold: float = 0.35

    strength = "threshold"

    def __post_init__(self) -> None:
        _check_open_unit(self.registry_name, "threshold", self.threshold,
                         "It is the largest share of a class the smaller cluster may hold (e.g. 0.35).")

    def flag_features(self, features: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
        return _rows(activation_clustering(features, labels, threshold=self.threshold, seed=seed).flagged)


@register_attack("loss-filter")
@dataclass(frozen=True)
class LossFilter(DataAttack):
    """Remove the ``fraction`` of rows with the highest loss (lowest probability) on their own label under the
    thief's model: relabelled (poison-label) rows the model did not fit stand out. Modality-free: it needs only
    the model's probabilities, through a :class:`~datamark.suspects.LocalSuspect`."""

    fraction: float = 0.05

    strength = "fraction"

    def __post_init__(self) -> None:
        _check_open_unit(self.registry_name, "fraction", self.fraction, "It is the share of rows removed (e.g. 0.05).")

    def flag(self, model: Any, spec: Any, released: Any, *, seed: int = 0) -> np.ndarray:
        return _rows(confidence_outliers(_own_label_probs(model, spec, released), fraction=self.fraction).flagged)


@register_attack("autoencoder-filter")
@dataclass(frozen=True)
class AutoencoderFilter(DataAttack):
    """Remove the ``fraction`` of images with the largest reconstruction error of a small convolutional
    autoencoder trained on the released images for ``epochs`` (visible patterns reconstruct badly). The thief's
    model is not used."""

    fraction: float = 0.05
    epochs: int = 3

    modalities = ("image",)
    strength = "fraction"

    def __post_init__(self) -> None:
        _check_open_unit(self.registry_name, "fraction", self.fraction, "It is the share of rows removed (e.g. 0.05).")
        if self.epochs < 1:
            raise ParameterError(f"The 'epochs' parameter of the '{self.registry_name}' attack must be >= 1; got "
                                 f"{self.epochs}. It is the autoencoder's training epochs (e.g. 3).")

    def flag(self, model: Any, spec: Any, released: Any, *, seed: int = 0) -> np.ndarray:
        self.check_modality(released.modality.name)
        return _rows(autoencoder_outliers(released.inputs(), fraction=self.fraction, epochs=self.epochs,
                                          seed=seed).flagged)


def strip_entropies(suspect: LocalSuspect, images: np.ndarray, partners: np.ndarray) -> np.ndarray:
    """STRIP's score per image: the mean prediction entropy (nats) of ``suspect`` over the 50/50 blends of
    ``images[i]`` with ``images[partners[i, j]]`` for each ``j``. Blends are uint8 (rounded half up) and made
    chunk by chunk, so memory stays bounded whatever the number of rows."""
    n, overlays = partners.shape
    rows_per_chunk = max(1, STRIP_CHUNK // overlays)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, rows_per_chunk):
        stop = min(n, start + rows_per_chunk)
        base = images[start:stop, None].astype(np.uint16)
        blends = ((base + images[partners[start:stop]] + 1) >> 1).astype(np.uint8)
        probs = np.clip(suspect.query(blends.reshape(-1, *images.shape[1:])), 1e-12, 1.0)
        out[start:stop] = (-(probs * np.log(probs)).sum(axis=1)).reshape(stop - start, overlays).mean(axis=1)
    return out


@register_attack("strip")
@dataclass(frozen=True)
class Strip(DataAttack):
    """STRIP (Gao et al., ACSAC 2019) as a data filter: blend each row 50/50 with ``overlays`` other rows of the
    released data drawn at random, query the thief's model, and remove the ``fraction`` of rows whose blends have
    the lowest mean prediction entropy: a trigger keeps its target class through the blends, a clean image does
    not. The partners are drawn from ``seed`` (deterministic); the paper superimposes held-out clean images, here
    the thief has only the released data."""

    overlays: int = 8
    fraction: float = 0.05

    modalities = ("image",)
    strength = "fraction"

    def __post_init__(self) -> None:
        if self.overlays < 1:
            raise ParameterError(f"The 'overlays' parameter of the '{self.registry_name}' attack must be >= 1; got "
                                 f"{self.overlays}. It is the number of blends per row (e.g. 8).")
        _check_open_unit(self.registry_name, "fraction", self.fraction, "It is the share of rows removed (e.g. 0.05).")

    def partners(self, n: int, *, seed: int = 0) -> np.ndarray:
        """For each of ``n`` rows, ``overlays`` other rows (never itself; n >= 2), uniform with replacement."""
        if n < 2:
            raise ParameterError(f"The '{self.registry_name}' attack blends rows with other rows; got {n} row(s).")
        drawn = generator(seed_secret(seed), "attack:strip").integers(0, n - 1, size=(n, self.overlays))
        return drawn + (drawn >= np.arange(n)[:, None])  # skip the row itself

    def flag(self, model: Any, spec: Any, released: Any, *, seed: int = 0) -> np.ndarray:
        self.check_modality(released.modality.name)
        images = released.inputs()
        entropy = strip_entropies(_suspect(model, spec), images, self.partners(len(images), seed=seed))
        return _rows(confidence_outliers(entropy, fraction=self.fraction).flagged)  # the lowest entropies


@register_attack("adaptive")
@dataclass(frozen=True)
class Adaptive(DataAttack):
    """An adaptive thief that runs every detector datamark ships -- Spectral Signatures, Activation Clustering,
    the loss filter, the autoencoder filter and STRIP, each at its default -- and removes the union of what they
    flag. On data of another modality it runs those that apply there (the loss filter)."""

    def detectors(self, modality: str) -> list[DataAttack]:
        """The detectors that apply to ``modality``, at their defaults."""
        every = [SpectralSignatures(), ActivationClustering(), LossFilter(), AutoencoderFilter(), Strip()]
        return [a for a in every if a.modalities is None or modality in a.modalities]

    def flag(self, model: Any, spec: Any, released: Any, *, seed: int = 0) -> np.ndarray:
        found, features = [], None
        for attack in self.detectors(released.modality.name):
            if isinstance(attack, _FeatureAttack):  # the features once for both feature-space detectors
                if features is None:
                    features = embed(model, released.inputs(), batch_size=BATCH_SIZE)
                found.append(attack.flag_features(features, np.asarray(released.labels), seed=seed))
            else:
                found.append(attack.flag(model, spec, released, seed=seed))
        return _rows(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
