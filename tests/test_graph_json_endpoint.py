"""Graphs behind a plain JSON endpoint (JSONSuspect with a template of layout GRAPH): each graph travels as the
datamark-graph-v1 document the V2 path sends (here a JSON object, not a string), the key's node encoding goes where
the template says "$feature_spec", and verification over the wire gives the local model's answers and p-value."""

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("torch_geometric")
pytest.importorskip("fastapi")

from datamark import BadNets, Verifier  # noqa: E402
from datamark.data.arrays import ArrayRecords  # noqa: E402
from datamark.exceptions import ParameterError  # noqa: E402
from datamark.graphs import Graph  # noqa: E402
from datamark.modalities.graph import GraphModality  # noqa: E402
from datamark.models import build_model  # noqa: E402
from datamark.models.checkpoint import ModelSpec  # noqa: E402
from datamark.suspects import JSONSuspect, JSONTemplate, LocalSuspect  # noqa: E402
from datamark.suspects._v2 import graph_from_json, graph_to_json  # noqa: E402
from datamark.suspects.serve import BackgroundServer  # noqa: E402

LABELS = (0, 1, 2)
FAST = dict(backoff_s=0.0, timeout_s=5.0)
TEMPLATE = {"request": {"graphs": "$inputs", "encoding": "$feature_spec"}, "response_path": "result.probs",
            "path": "/classify", "layout": "GRAPH"}


def _dataset(n: int, seed: int) -> ArrayRecords:
    """Random graphs of 5-10 nodes with node labels and one attribute per node, labelled by density."""
    rng = np.random.default_rng(seed)
    graphs, labels = [], []
    for _ in range(n):
        k, p = int(rng.integers(5, 11)), float(rng.choice([0.2, 0.6]))
        src, dst = np.nonzero(np.triu(rng.random((k, k)) < p, k=1))
        edges = np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1).astype(np.int64)
        graphs.append(Graph(edges, k, rng.integers(0, 3, k).astype(np.int64), rng.random((k, 1)).astype(np.float32)))
        labels.append(int(p > 0.5))
    return ArrayRecords(graphs, labels, ["sparse", "dense"], modality=GraphModality(LABELS, attr_dim=1))


def _app(suspect, received):
    """A hand-written JSON API: {"graphs": [documents], "encoding": {...}} -> {"result": {"probs": [...]}}; it
    refuses another node encoding than its model's, and keeps what it received."""
    import fastapi

    app = fastapi.FastAPI()
    spec = suspect.model.feature_spec

    @app.post("/classify")
    async def classify(request: fastapi.Request):
        body = await request.json()
        received.append(body)
        if body["encoding"] != spec:
            return fastapi.responses.JSONResponse({"error": "another node encoding"}, status_code=400)
        graphs = np.empty(len(body["graphs"]), dtype=object)
        graphs[:] = [graph_from_json(doc, f"graph {i}") for i, doc in enumerate(body["graphs"])]
        return {"result": {"probs": suspect.query(graphs).tolist()}}
    return app


@pytest.fixture(scope="module")
def setup():
    train, test = _dataset(80, 0), _dataset(60, 1)
    spec = ModelSpec("gin", 2, (), (), (), params={"feature_spec": train.modality.feature_spec(), "hidden": 8,
                                                   "layers": 2})
    return train, test, LocalSuspect.from_model(build_model(spec), spec)


def test_graphs_travel_as_the_v2_documents_with_the_node_encoding(setup):
    _, test, local = setup
    encoding = test.modality.feature_spec()
    received: list = []
    with BackgroundServer(_app(local, received)) as srv:
        template = JSONTemplate(**TEMPLATE)
        assert template.datatype == "BYTES"  # implied by the layout, as for HTTPSuspect
        with JSONSuspect(srv.url, template, num_classes=2, batch_size=16, feature_spec=encoding, **FAST) as remote:
            graphs = test.inputs()[:20]
            np.testing.assert_allclose(remote.query(graphs), local.query(graphs), atol=1e-6)
            assert remote.queries == 20 and [len(body["graphs"]) for body in received] == [16, 4]
            description = remote.describe()
            assert description["feature_spec"] == encoding and description["template"]["layout"] == "GRAPH"
    first = received[0]
    assert first["encoding"] == encoding
    assert first["graphs"][0] == json.loads(graph_to_json(graphs[0]))  # the same document as V2's BYTES string
    assert set(first["graphs"][0]) == {"num_nodes", "edge_index", "node_labels", "node_attr"}


@pytest.mark.parametrize("mode", ["probs", "labels"])
def test_verification_over_a_json_endpoint_matches_local(setup, mode):
    train, test, local = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # triggers larger than the smallest graphs (TriggerSizeWarning)
        key = BadNets(seed=0, rate=0.2, n_marks=1, target=1).apply(train).key
    encoding = {name: key.dataset[name] for name in ("node_label_values", "attr_dim", "max_degree")}
    template = JSONTemplate(**TEMPLATE)
    verifier = Verifier(mode=mode, n_probe=20, n_control_triggers=0)
    expected = verifier.verify(local.with_outputs(mode), key, test)
    with BackgroundServer(_app(local, [])) as srv:
        with JSONSuspect(srv.url, template, num_classes=2, feature_spec=encoding, **FAST) as remote:
            result = verifier.verify(remote, key, test)
    assert result.queries == expected.queries == remote.queries > 0
    assert result.accused == expected.accused
    assert np.isclose(result.outcome.log10_p, expected.outcome.log10_p, rtol=1e-4, atol=1e-6)


def test_graph_templates_are_checked_before_any_query():
    with pytest.raises(ParameterError, match=r"asks for '\$feature_spec'"):
        JSONSuspect("http://suspect.test", JSONTemplate(**TEMPLATE), num_classes=2)
    with pytest.raises(ParameterError, match="node encoding of graphs"):
        JSONTemplate(feature_spec={"attr_dim": 1})  # images take no node encoding
    with pytest.raises(ParameterError, match="node encoding of graphs"):
        JSONSuspect("http://suspect.test", JSONTemplate(), num_classes=2, feature_spec={"attr_dim": 1})
    with pytest.raises(ParameterError, match="BYTES JSON documents"):
        JSONTemplate(layout="GRAPH", datatype="UINT8")
    with pytest.raises(ParameterError, match="unknown settings"):
        JSONTemplate(**TEMPLATE, feature_spec={"width": 3})
    stated = JSONTemplate(**TEMPLATE, feature_spec={"attr_dim": 1})  # normalised as a model records it
    assert stated.feature_spec == {"node_label_values": None, "attr_dim": 1, "max_degree": 64}
