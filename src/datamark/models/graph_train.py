"""Train a graph classifier the way a thief would: on the (possibly watermarked) graphs as released, with the
node encoding of the dataset (one-hot node labels and attributes, or one-hot degrees), no augmentation.

One plain loop for every datamark graph model (:mod:`datamark.models.graph`): AdamW, a short linear warm-up then
linear decay of the learning rate (the text and audio trainers' schedule), cross-entropy, shuffling from a local
generator, dropout under a forked seeded RNG. Node features are encoded once, before the first epoch; each step
batches its graphs the way PyG does (:func:`~datamark.models.graph.batch_tensors`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._device import compute_device
from ..exceptions import ParameterError
from ..registry import MODELS
from ._common import check_train_config, train_epochs


@dataclass(frozen=True, kw_only=True)
class GraphTrainConfig:
    """Training hyper-parameters; see :func:`default_graph_config` for the tuned values per architecture."""

    epochs: int = 30
    batch_size: int = 64          # graphs per step
    lr: float = 0.01              # peak AdamW learning rate (the GIN paper's Adam rate)
    weight_decay: float = 1e-4    # decoupled (AdamW); none on biases and batch norm
    warmup_frac: float = 0.05     # share of steps warming up linearly from 0 to ``lr``, then linear decay to 0
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        check_train_config(self)


def default_graph_config(arch: str, **overrides: Any) -> GraphTrainConfig:
    """Defaults per architecture; ``overrides`` replace single fields.

    The GIN paper (Xu et al. 2019) trains far longer: Adam at lr 0.01 halved every 50 epochs for 350 epochs, batch
    32 or 128, 5 layers of hidden 16-64, dropout 0.5 -- minutes per model on 2 CPU cores. The presets keep its rate,
    width 64 and dropout with 3 layers, batch 64 and 30 epochs. Measured with one torch thread on a shared 2-core
    machine (load 1-2, so an idle one is faster), on the ``graphs:NAME:test`` split, mean +- std over seeds 0-2:
    PROTEINS GIN 0.739 +- 0.006 in 9 s, GraphSAGE 0.767 +- 0.008 in 9 s; NCI1 GIN 0.795 +- 0.004 in 29 s, GraphSAGE
    0.782 +- 0.001 in 25 s; IMDB-BINARY (degree features) GIN 0.745 +- 0.004 in 8 s, GraphSAGE 0.705 +- 0.027 in
    7 s. ``benchmarks/graph_tu.py`` records the time of every model it trains.
    """
    presets: dict[str, dict[str, Any]] = {
        "gin": dict(epochs=30, batch_size=64, lr=0.01, weight_decay=1e-4, warmup_frac=0.05),
        "graphsage": dict(epochs=30, batch_size=64, lr=0.01, weight_decay=1e-4, warmup_frac=0.05),
    }
    return GraphTrainConfig(**{**presets.get(arch, {}), **overrides})


def train_graph_model(model: nn.Module, graphs: Any, labels: np.ndarray, config: GraphTrainConfig, *,
                      progress: bool = False) -> nn.Module:
    """Train a datamark graph classifier in place on a batch of graphs and int ``labels``; returns it on the CPU,
    in eval mode.

    Node features are the model's own encoding (its ``feature_spec``). Deterministic for a given ``config.seed``
    on a given device: shuffling uses a local generator, dropout a forked, seeded global RNG restored afterwards.
    """
    from ..modalities.graph import GraphModality
    from .graph import batch_tensors

    if getattr(model, "modality", None) != "graph":
        raise ParameterError(f"train_graph_model needs a datamark graph classifier; got a {type(model).__name__}. "
                             f"Build one with datamark.models.build_model or fit_graph.")
    graphs = GraphModality().batch(graphs, "to train on")
    targets = torch.tensor(np.asarray(labels), dtype=torch.long)  # a copy: Arrow labels are read-only
    if targets.ndim != 1 or len(targets) != len(graphs):
        raise ParameterError(f"train_graph_model needs one label per graph; got {len(graphs)} graphs and labels of "
                             f"shape {tuple(targets.shape)}.")
    encoding = GraphModality(**model.feature_spec)
    features = [encoding.features(g) for g in graphs]  # once, not per epoch
    edges = [g.edge_index for g in graphs]
    device = compute_device()
    targets = targets.to(device)
    n = len(graphs)

    def batch_loss(idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        rows = idx.numpy()
        inputs = batch_tensors([features[i] for i in rows], [edges[i] for i in rows], device)
        y = targets[idx.to(device)]
        return F.cross_entropy(model(*inputs), y, label_smoothing=config.label_smoothing)

    return train_epochs(model, n, config, device, batch_loss, progress=progress)


def fit_graph(data: Any, *, arch: str = "gin", config: GraphTrainConfig | None = None, progress: bool = False,
              **arch_params: Any) -> tuple[nn.Module, Any]:
    """Train a fresh graph ``arch`` on a graph dataset; returns ``(model, spec)``, ready for ``save_checkpoint``.

    ``data`` has ``inputs()`` (a batch of :class:`~datamark.graphs.Graph`), ``labels``, ``num_classes``,
    ``class_names`` and a :class:`~datamark.modalities.graph.GraphModality` as ``modality`` (a graph
    :class:`~datamark.data.Records`), whose node encoding the model keeps (``feature_spec`` in the spec's
    ``params``); ``arch_params`` are the model's sizes (``hidden``, ``layers``, ``dropout``, ``readout``).
    """
    from .checkpoint import ModelSpec, build_model

    cls = MODELS.get(arch)
    if getattr(cls, "modality", None) != "graph":
        graph_archs = sorted(name for name, c in MODELS.items() if getattr(c, "modality", None) == "graph")
        raise ParameterError(f"fit_graph needs a graph architecture, one of {graph_archs}; got '{arch}'. Train "
                             f"image, text and audio models with datamark.models.fit.")
    feature_spec = getattr(data.modality, "feature_spec", None)
    if getattr(data.modality, "name", None) != "graph" or not callable(feature_spec):
        raise ParameterError(f"fit_graph needs a graph dataset; got {getattr(data.modality, 'name', data.modality)!r}"
                             f" data. Load graphs with datamark.load_data (e.g. 'graphs:PROTEINS:train').")
    if "feature_spec" in arch_params:
        raise ParameterError("fit_graph takes the node encoding from the data (data.modality.feature_spec()); drop "
                             "the feature_spec argument.")
    spec = ModelSpec(arch=arch, num_classes=data.num_classes, input_shape=(), mean=(), std=(),
                     class_names=tuple(data.class_names),
                     params=cls.params_for(feature_spec=feature_spec(), **arch_params))
    config = config or default_graph_config(arch)
    model = build_model(spec, seed=config.seed)
    return train_graph_model(model, data.inputs(), data.labels, config, progress=progress), spec
