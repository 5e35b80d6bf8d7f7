"""The node encoding of featureless graphs (issue 17 follow-ups): the one-hot degree cap is learned from the data
(its largest degree, at most MAX_DEGREE_CAP), kept by splits, marked copies, Parquet round trips and models, while an
encoding that states its cap (every key and checkpoint of earlier versions: 64) keeps it; a local graph suspect's
description records the encoding its model was trained with."""

import json
import warnings

import numpy as np
import pytest

from datamark.data import from_edge_lists, from_graphs, load_data, shared_data_dir
from datamark.data.arrays import ArrayRecords
from datamark.graphs import Graph
from datamark.modalities import GraphModality, get_modality
from datamark.modalities.graph import DEFAULT_MAX_DEGREE, MAX_DEGREE_CAP, largest_degree

IMDB = shared_data_dir() / "graphs" / "IMDB-BINARY"
needs_imdb = pytest.mark.skipif(not IMDB.is_dir(), reason=f"IMDB-BINARY not staged in {IMDB} (set DATAMARK_DATA)")
OLD_SPEC = {"node_label_values": None, "attr_dim": 0, "max_degree": 64}  # what every earlier featureless key says


def star(leaves: int, labels: bool = False) -> Graph:
    """Node 0 joined to ``leaves`` others (degree ``leaves``), both directions stored."""
    src, dst = np.zeros(leaves, np.int64), np.arange(1, leaves + 1)
    edges = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])
    return Graph(edges, leaves + 1, np.zeros(leaves + 1, np.int64) if labels else None)


def test_the_degree_cap_is_the_largest_degree_capped_and_at_least_one():
    assert largest_degree([star(3), star(90), star(7)]) == 90
    assert largest_degree([star(3), star(MAX_DEGREE_CAP + 40)]) == MAX_DEGREE_CAP == 256
    assert largest_degree([Graph(np.zeros((2, 0), np.int64), 4)]) == 1  # no edges: degrees 0 and 1 columns
    learned = GraphModality.learn([star(3), star(90)])
    assert learned.max_degree == 90 and learned.num_features == 91 and learned.given_max_degree == 90
    hub = GraphModality.learn([star(300)]).features(star(300))
    assert hub.shape == (301, 257) and hub[0, 256] == 1.0  # beyond the cap: the last column, as before


def test_every_in_memory_source_learns_it_and_a_stated_cap_is_kept():
    graphs = [star(3), star(90), star(5)]
    assert from_graphs(graphs, [0, 1, 0]).modality.max_degree == 90
    assert ArrayRecords(graphs, [0, 1, 0], modality="graph").modality.max_degree == 90
    edge_lists = [(g.edge_index, None, y) for g, y in zip(graphs, [0, 1, 0], strict=True)]
    assert from_edge_lists(edge_lists).modality.max_degree == 90
    stated = ArrayRecords(graphs, [0, 1, 0], modality=GraphModality(max_degree=64)).modality
    assert stated.max_degree == 64 and stated.feature_spec() == OLD_SPEC
    # node labels: the cap is unused and stays the default, so labelled encodings (PROTEINS, NCI1...) are unchanged
    labelled = from_graphs([star(3, labels=True), star(90, labels=True)], [0, 1]).modality
    assert labelled.max_degree == DEFAULT_MAX_DEGREE and not labelled.uses_degree
    # an encoding that does not say, before any data, is the old fixed one
    assert GraphModality().feature_spec() == OLD_SPEC == get_modality("graph", **OLD_SPEC).feature_spec()


def test_splits_marked_copies_and_parquet_keep_the_learned_cap(tmp_path):
    data = from_graphs([star(3), star(90), star(5), star(40)], [0, 1, 0, 1])
    assert data.modality.max_degree == 90
    assert data.subset(np.array([0, 2])).modality.max_degree == 90  # a split without the hub keeps it
    marked = data.replace(np.array([1]), np.array([star(4)], dtype=object), np.array([1]))
    assert marked.modality.max_degree == 90  # the largest-degree graph replaced: the dataset's encoding stays
    data.save(tmp_path / "g.parquet", format="parquet")
    assert load_data(tmp_path / "g.parquet").modality.feature_spec() == data.modality.feature_spec()


@needs_imdb
def test_imdb_learns_its_largest_degree_for_every_split():
    full, train, test = (load_data(f"graphs:IMDB-BINARY{s}") for s in ("", ":train", ":test"))
    assert full.modality.max_degree == 135  # its largest degree (the README's IMDB-BINARY figure)
    assert train.modality.feature_spec() == test.modality.feature_spec() == full.modality.feature_spec()
    degrees = [int(np.bincount(g.edge_index[0]).max()) for g in full.inputs()]
    assert max(degrees) == 135 and sorted(degrees)[-2] > DEFAULT_MAX_DEGREE  # several hubs the old cap collapsed
    hub = full.inputs()[int(np.argmax(degrees))]
    assert full.modality.features(hub).argmax(axis=1).max() == 135
    assert GraphModality(**OLD_SPEC).features(hub).argmax(axis=1).max() == 64


@needs_imdb
def test_a_model_trained_with_the_old_cap_answers_as_before():
    """A checkpoint that says 64 encodes IMDB with 64 columns on the data's 135-cap encoding, bit for bit."""
    pytest.importorskip("torch_geometric")
    import torch

    from datamark.models import build_model, graph_inputs
    from datamark.models.checkpoint import ModelSpec
    from datamark.suspects import LocalSuspect

    test = load_data("graphs:IMDB-BINARY:test")
    spec = ModelSpec("gin", 2, (), (), (), params={"feature_spec": OLD_SPEC, "hidden": 8, "layers": 2})
    model = build_model(spec)
    suspect = LocalSuspect.from_model(model, spec)
    graphs = test.inputs()[:40]
    with torch.no_grad():
        model.eval()
        expected = torch.softmax(model(*graph_inputs(graphs, GraphModality(**OLD_SPEC), torch.device("cpu"))), 1)
    assert test.modality.max_degree == 135 and model.num_features == 65
    np.testing.assert_array_equal(suspect.query(graphs), expected.numpy())
    assert suspect.describe()["feature_spec"] == OLD_SPEC


def test_a_local_graph_suspect_describes_its_node_encoding():
    """Evidence says how graphs were encoded: the model's own feature_spec, JSON values only."""
    pytest.importorskip("torch_geometric")
    from datamark.models import fit_graph
    from datamark.models.graph_train import default_graph_config
    from datamark.suspects import LocalSuspect

    rng = np.random.default_rng(0)
    graphs = [star(int(k)) for k in rng.integers(2, 30, 24)]
    labels = np.array([int(g.num_nodes > 15) for g in graphs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, spec = fit_graph(from_graphs(graphs, labels), arch="gin", hidden=8, layers=2,
                                config=default_graph_config("gin", epochs=1))
    learned = {"node_label_values": None, "attr_dim": 0, "max_degree": max(int(g.num_nodes) - 1 for g in graphs)}
    description = LocalSuspect.from_model(model, spec).describe()
    assert description["modality"] == "graph" and description["feature_spec"] == learned
    assert json.loads(json.dumps(description)) == description  # plain JSON: lists, ints, None
    # a model that records no encoding: the suspect's modality's (the default one)
    bare = LocalSuspect(model, num_classes=2, modality=GraphModality(max_degree=7))
    del model.feature_spec
    assert bare.describe()["feature_spec"]["max_degree"] == 7
