"""Graph models (GIN, GraphSAGE): PyG batching, training above chance, checkpoints, local suspects, the V2 wire
for graphs (JSON documents in a BYTES tensor) and the reference server."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from datamark.data.arrays import ArrayRecords  # noqa: E402
from datamark.exceptions import DataError, DataFormatError, EndpointError, ParameterError  # noqa: E402
from datamark.graphs import Graph  # noqa: E402
from datamark.modalities import modality_of_model  # noqa: E402
from datamark.modalities.graph import GraphModality  # noqa: E402
from datamark.models import (  # noqa: E402
    build_model,
    default_graph_config,
    fit_graph,
    graph_inputs,
    load_checkpoint,
    save_checkpoint,
)
from datamark.models.checkpoint import ModelSpec  # noqa: E402
from datamark.suspects import LocalSuspect  # noqa: E402
from datamark.suspects._v2 import TensorFormat, graph_from_json, graph_to_json  # noqa: E402

LABELS = (0, 1, 2)
SPEC = {"node_label_values": list(LABELS), "attr_dim": 1, "max_degree": 64}
FAST = dict(backoff_s=0.0, timeout_s=5.0)
TINY = dict(hidden=16, layers=2)


def _graph(rng: np.random.Generator, n: int, p: float) -> Graph:
    """An Erdős–Rényi graph G(n, p) with random node labels and one attribute per node."""
    upper = np.triu(rng.random((n, n)) < p, k=1)
    src, dst = np.nonzero(upper)
    edges = np.concatenate([np.stack([src, dst]), np.stack([dst, src])], axis=1).astype(np.int64)
    return Graph(edges, n, rng.integers(0, 3, n).astype(np.int64), rng.random((n, 1)).astype(np.float32))


def _dataset(n: int, seed: int) -> ArrayRecords:
    """A synthetic task: sparse (p = 0.15, class 0) or dense (p = 0.5, class 1) graphs of 6-12 nodes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    graphs = [_graph(rng, int(rng.integers(6, 13)), 0.5 if y else 0.15) for y in labels]
    return ArrayRecords(graphs, labels, ["sparse", "dense"], modality=GraphModality(LABELS, attr_dim=1))


@pytest.fixture(scope="module")
def data():
    return _dataset(240, 0), _dataset(120, 1)


@pytest.fixture(scope="module")
def trained(data):
    train, _ = data
    return {arch: fit_graph(train, arch=arch, config=default_graph_config(arch, epochs=12), **TINY)
            for arch in ("gin", "graphsage")}


@pytest.mark.parametrize("arch", ["gin", "graphsage"])
def test_graph_models_learn_above_chance(trained, data, arch):
    model, spec = trained[arch]
    _, test = data
    suspect = LocalSuspect.from_model(model, spec)
    accuracy = float((suspect.query(test.inputs()).argmax(1) == test.labels).mean())
    assert accuracy > 0.85, accuracy  # chance is about 0.5
    assert spec.input_shape == () and spec.params["feature_spec"] == SPEC and not model.training


def test_graph_inputs_batch_like_pyg_and_batching_changes_no_answer(trained, data):
    _, test = data
    graphs = test.inputs()[:3]
    x, edge_index, batch = graph_inputs(graphs, test.modality)
    counts = [g.num_nodes for g in graphs]
    assert x.shape == (sum(counts), 4) and batch.tolist() == sum(([i] * c for i, c in enumerate(counts)), [])
    second = edge_index[:, graphs[0].edge_index.shape[1]:graphs[0].edge_index.shape[1] + graphs[1].edge_index.shape[1]]
    assert torch.equal(second - counts[0], torch.from_numpy(graphs[1].edge_index))
    model, _ = trained["gin"]
    with torch.no_grad():
        together = model(x, edge_index, batch)
        alone = torch.cat([model(*graph_inputs([g], test.modality)) for g in graphs])
    assert torch.allclose(together, alone, atol=1e-5)


def test_checkpoint_round_trip_gives_identical_answers(trained, data, tmp_path):
    _, test = data
    for arch, (model, spec) in trained.items():
        save_checkpoint(model, spec, tmp_path / f"{arch}.pt")
        loaded, loaded_spec = load_checkpoint(tmp_path / f"{arch}.pt")
        assert loaded_spec == spec and type(loaded) is type(model) and loaded.feature_spec == SPEC
        first = LocalSuspect.from_model(model, spec).query(test.inputs())
        assert np.array_equal(LocalSuspect.from_model(loaded, loaded_spec).query(test.inputs()), first)
        assert {k: spec.params[k] for k in ("hidden", "layers", "dropout", "readout")} == {
            "hidden": 16, "layers": 2, "dropout": 0.5, "readout": "sum"}  # defaults written out
    model, spec = trained["gin"]
    damaged = ModelSpec("gin", 2, (), (), (), params={**spec.params, "feature_spec": {**SPEC, "max_degree": 0}})
    save_checkpoint(model, damaged, tmp_path / "damaged.pt")
    with pytest.raises(DataFormatError, match="invalid model spec"):
        load_checkpoint(tmp_path / "damaged.pt")


def test_modality_of_model_is_the_models_encoding(trained):
    model, _ = trained["graphsage"]
    modality = modality_of_model(model)
    assert isinstance(modality, GraphModality) and modality.feature_spec() == SPEC and modality.num_features == 4


def test_local_suspect_answers_probabilities_and_labels(trained, data):
    model, spec = trained["gin"]
    _, test = data
    model.train()
    suspect = LocalSuspect.from_model(model, spec, batch_size=50)
    probs = suspect.query(test.inputs())
    assert probs.shape == (len(test), 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert model.training, "the suspect restores the model's mode"
    model.eval()
    labels = suspect.with_outputs("labels").query(test.inputs()[:7])
    assert labels.shape == (7,) and np.array_equal(labels, probs[:7].argmax(1))
    assert suspect.queries == len(test)


def test_encoding_is_the_models_not_the_datas(trained, data):
    """A data split configured with other node-label values is still encoded the model's way; a node label the
    model never saw is refused by name."""
    model, _ = trained["gin"]
    _, test = data
    graphs = test.inputs()[:5]
    narrower = GraphModality((0, 1, 2, 7), attr_dim=1)
    with torch.no_grad():
        assert torch.equal(narrower.logits(model, graphs, torch.device("cpu")),
                           test.modality.logits(model, graphs, torch.device("cpu")))
    odd = Graph(graphs[0].edge_index, graphs[0].num_nodes, np.full(graphs[0].num_nodes, 7), graphs[0].node_attr)
    with pytest.raises(DataError, match="node label 7"):
        LocalSuspect(model, num_classes=2).query([odd])


def test_fit_graph_refuses_wrong_arch_and_data_and_keeps_global_rng(data):
    train, _ = data
    with pytest.raises(ParameterError, match="graph architecture.*'tiny'"):
        fit_graph(train, arch="tiny")
    with pytest.raises(ParameterError, match="drop the feature_spec"):
        fit_graph(train, arch="gin", feature_spec=SPEC)
    images = ArrayRecords(np.zeros((4, 8, 8, 1), np.uint8), [0, 1, 0, 1])
    with pytest.raises(ParameterError, match="graph dataset"):
        fit_graph(images, arch="gin")
    with pytest.raises(ParameterError, match="readout"):
        build_model(ModelSpec("gin", 2, (), (), (), params={"feature_spec": SPEC, "readout": "max"}))
    state = torch.get_rng_state()
    small = train.subset(np.arange(40))
    first, _ = fit_graph(small, arch="gin", config=default_graph_config("gin", epochs=1, seed=3), **TINY)
    second, _ = fit_graph(small, arch="gin", config=default_graph_config("gin", epochs=1, seed=3), **TINY)
    assert torch.equal(torch.get_rng_state(), state)
    pairs = zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


# --- the wire --------------------------------------------------------------------------------------------------
def test_graph_json_round_trip_keeps_content(data):
    _, test = data
    fmt = TensorFormat("BYTES", "GRAPH")
    assert fmt.modality == "graph" and fmt.shape(()) == [-1]
    sent = fmt.encode(test.inputs()[:10])
    back = fmt.decode(np.asarray(sent, dtype=object).reshape(-1, 1))
    assert [g.content_id() for g in back] == [g.content_id() for g in test.inputs()[:10]]
    bare = Graph(np.zeros((2, 0), np.int64), 3)  # no edges, no features: isolated nodes only
    doc = json.loads(graph_to_json(bare))
    assert doc == {"num_nodes": 3, "edge_index": [[], []]} and graph_from_json(doc, "g").num_nodes == 3
    with pytest.raises(ParameterError, match="BYTES"):
        TensorFormat("FP32", "GRAPH")


@pytest.mark.parametrize(("doc", "message"), [
    ({"num_nodes": 2, "edge_index": [[0, 2], [2, 0]]}, "edge to node 2 but only nodes 0..1"),
    ({"num_nodes": True, "edge_index": [[], []]}, "num_nodes True"),
    ({"num_nodes": 2, "edge_index": [["0"], [1]]}, "holds str values"),
    ({"num_nodes": 2, "edge_index": [[0, 1]]}, "two lists of node ids"),
    ({"num_nodes": 2, "edge_index": [[], []], "node_attr": [[1.0], [1.0, 2.0]]}, "regular array"),
    ({"num_nodes": 2, "edge_index": [[], []], "node_attr": [[float("nan")], [1.0]]}, "finite"),
    ({"num_nodes": 2, "edge_index": [[], []], "node_labels": [1]}, "1 node_labels for 2 nodes"),
    ({"num_nodes": 2, "edge_index": [[], []], "x": [[1.0], [1.0]]}, "unknown field"),
    ("[1, 2]", "not a JSON object"),
])
def test_bad_graph_documents_are_refused_by_name(doc, message):
    with pytest.raises(ValueError, match=message):
        graph_from_json(doc if isinstance(doc, str) else json.dumps(doc), "graph 0")


def test_graph_checkpoint_served_over_v2(trained, data, tmp_path):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from datamark.suspects.http import HTTPSuspect
    from datamark.suspects.serve import BackgroundServer, app_from_checkpoint

    model, spec = trained["gin"]
    _, test = data
    save_checkpoint(model, spec, tmp_path / "gin.pt")
    graphs = test.inputs()[:30]
    local = LocalSuspect.from_model(model, spec)
    with BackgroundServer(app_from_checkpoint(tmp_path / "gin.pt", model_name="g")) as srv:
        metadata = httpx.get(f"{srv.url}/v2/models/g").json()
        assert metadata["inputs"] == [{"name": "input", "datatype": "BYTES", "shape": [-1]}]
        assert metadata["parameters"]["layout"] == "GRAPH" and metadata["parameters"]["feature_spec"] == SPEC
        with HTTPSuspect(srv.url, "g", layout="GRAPH", feature_spec=SPEC, batch_size=8, **FAST) as remote:
            assert remote.num_classes == 2 and remote.describe()["feature_spec"] == SPEC
            assert np.allclose(remote.query(graphs), local.query(graphs), atol=1e-6)
            assert remote.queries == 30
        other = {**SPEC, "node_label_values": [0, 1, 2, 3]}
        with pytest.raises(EndpointError, match="encodes nodes as"):
            HTTPSuspect(srv.url, "g", layout="GRAPH", feature_spec=other, **FAST)
        bad = {"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                           "data": [json.dumps({"num_nodes": 1, "edge_index": [[0], [5]]})]}]}
        answer = httpx.post(f"{srv.url}/v2/models/g/infer", json=bad)
        assert answer.status_code == 400 and "edge to node 5" in answer.json()["error"]
        bad = {"parameters": {"feature_spec": other}, "inputs": [{"name": "input", "datatype": "BYTES", "shape": [1],
                                                                   "data": [graph_to_json(graphs[0])]}]}
        answer = httpx.post(f"{srv.url}/v2/models/g/infer", json=bad)
        assert answer.status_code == 400 and "parameters.feature_spec" in answer.json()["error"]


@pytest.mark.parametrize("mode", ["probs", "labels"])
def test_verification_over_the_wire_matches_local(data, tmp_path, mode):
    """A DVBW key on graphs, verified against a served checkpoint with the key's node encoding: the same probes,
    queries and p-value as the local model gives."""
    pytest.importorskip("fastapi")
    import warnings

    from datamark import BadNets, Verifier
    from datamark.suspects.http import HTTPSuspect
    from datamark.suspects.serve import BackgroundServer, app_from_checkpoint

    train, test = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a trigger larger than the smallest graphs (TriggerSizeWarning)
        marked = BadNets(seed=0, rate=0.2, n_marks=1, target=1).apply(train)
    model, spec = fit_graph(marked.dataset, arch="gin", config=default_graph_config("gin", epochs=12), **TINY)
    save_checkpoint(model, spec, tmp_path / "stolen.pt")
    key = marked.key
    encoding = {name: key.dataset[name] for name in ("node_label_values", "attr_dim", "max_degree")}
    verifier = Verifier(mode=mode, n_probe=30, n_control_triggers=0)
    local = verifier.verify(LocalSuspect.from_model(model, spec, outputs=mode), key, test)
    with BackgroundServer(app_from_checkpoint(tmp_path / "stolen.pt", model_name="g", outputs=mode)) as srv:
        with HTTPSuspect(srv.url, "g", layout="GRAPH", feature_spec=encoding, num_classes=2, **FAST) as remote:
            result = verifier.verify(remote, key, test)
            assert result.queries == local.queries == remote.queries > 0
    assert result.accused == local.accused
    assert np.isclose(result.outcome.log10_p, local.outcome.log10_p, rtol=1e-4, atol=1e-6)


class _Remembers:
    """A suspect that answers each released marked graph with the label the release gave it, and 50/50 on
    every other graph: a model that learned the release's rows and nothing of its triggers."""

    def __init__(self, released, modality, outputs: str = "probs") -> None:
        self.remembered = dict(zip(released.ids, released.labels.tolist(), strict=True))
        self.modality, self.num_classes, self.queries, self.outputs = modality, released.num_classes, 0, outputs

    @property
    def budget_left(self):
        return None

    def describe(self):
        return {"kind": "test double"}

    def query(self, inputs):
        self.queries += len(inputs)
        out = np.full((len(inputs), self.num_classes), 1.0 / self.num_classes)
        for i, graph in enumerate(inputs):
            label = self.remembered.get(self.modality.content_id(graph))
            if label is not None:
                out[i] = np.eye(self.num_classes)[label]
        return out if self.outputs == "probs" else out.argmax(1)


@pytest.fixture(scope="module")
def graph_key(data):
    import warnings

    from datamark import BadNets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a trigger larger than the smallest graphs (TriggerSizeWarning)
        return BadNets(seed=3, rate=0.25).apply(data[0])


def test_graph_keys_ask_their_marks_released_rows(data, graph_key):
    """A multi-mark graph key's plan asks each mark's released rows and names them by their released ids; a key of
    another modality is written as before (no such field), so its bytes and commitment are unchanged."""
    from datamark import BadNets
    from datamark.data.arrays import ArrayRecords as Arrays
    from datamark.modalities.image import ImageModality

    key, release = graph_key.key, graph_key.dataset
    assert key.verification["marked_rows"] is True and key.plan.marked_rows
    position = {row_id: i for i, row_id in enumerate(data[0].ids)}
    for mark in key.mark_list():
        rows = np.array([position[row_id] for row_id in mark.marked_ids])
        assert list(mark.released_ids) == [release.ids[r] for r in rows]  # the same rows, as released
        assert (release.labels[rows] == mark.target).all()
    rng = np.random.default_rng(0)
    images = Arrays(rng.integers(0, 256, (200, 8, 8, 3), dtype=np.uint8), rng.integers(0, 4, 200),
                    ["a", "b", "c", "d"], modality=ImageModality())
    image_key = BadNets(seed=3, rate=0.2, trigger_size=2).apply(images).key
    assert "marked_rows" not in image_key.verification
    assert all("released_ids" not in m for m in image_key.marks)


@pytest.mark.filterwarnings("ignore::datamark.exceptions.DegenerateTestWarning")  # the effect test beside it
def test_remembered_rows_convict_and_other_keys_do_not(data, graph_key):
    """A suspect that learned only the release's marked rows (no trigger) is accused at the test's floor in both
    modes through them; another owner's key (fresh targets, asked on the same rows) is not; a clean answerer is
    not. The suspect is asked nothing before the release is checked."""
    from datamark import Verifier
    from datamark.evaluate.scenarios import independent_key

    key, release = graph_key.key, graph_key.dataset
    _, test = data
    suspect = _Remembers(release, release.modality)
    with pytest.raises(ParameterError, match="--released"):
        Verifier().verify(suspect, key, test)
    with pytest.raises(ParameterError, match="marked rows are not in"):
        Verifier(released=data[0]).verify(suspect, key, test)  # the original data: not the rows released
    assert suspect.queries == 0
    for mode in ("probs", "labels"):
        suspect = _Remembers(release, release.modality, mode)
        result = Verifier(mode=mode, released=release).verify(suspect, key, test)
        assert result.accused and result.outcome.p_value == pytest.approx(2.0 ** -len(key.marks))
        assert result.marks["released_rows_per_mark"] == [len(m.released_ids) for m in key.mark_list()]
        other = Verifier(mode=mode, released=release).verify(suspect, independent_key(key, 7), test)
        assert not other.accused and other.outcome.p_value > 0.01
    blank = _Remembers(data[0], release.modality)
    blank.remembered = {}
    assert Verifier(released=release).verify(blank, key, test).outcome.p_value == 1.0


@pytest.mark.filterwarnings("ignore::datamark.exceptions.DegenerateTestWarning")  # the effect test beside it
def test_sequential_marks_test_asks_the_released_rows_too(data, graph_key):
    """The anytime-valid marks test asks each mark's released graphs beside its triggered probes: a suspect that
    remembers only the release's rows is accused by it, and without the release it is refused before a query."""
    from datamark.verify.sequential import SequentialVerifier

    key, release = graph_key.key, graph_key.dataset
    suspect = _Remembers(release, release.modality)
    with pytest.raises(ParameterError, match="--released"):
        SequentialVerifier().verify(suspect, key, data[1])
    assert suspect.queries == 0
    result = SequentialVerifier(probes_per_mark=5, released=release).verify(suspect, key, data[1])
    assert result.accused and result.marks["hits"] == result.marks["marks_asked"]


def test_edited_marked_rows_plans_are_refused(graph_key, tmp_path):
    """A plan that asks the marked rows where a mark names none, or with a non-boolean value, is refused."""
    import json as _json

    from datamark.exceptions import KeyFormatError
    from datamark.key import Key

    graph_key.key.save(tmp_path / "k.json")
    raw = _json.loads((tmp_path / "k.json").read_text())
    broken = {**raw, "marks": [{**raw["marks"][0], "released_ids": []}, *raw["marks"][1:]]}
    (tmp_path / "b.json").write_text(_json.dumps(broken))
    with pytest.raises(KeyFormatError):
        Key.load(tmp_path / "b.json")
    odd = {**raw, "verification": {**raw["verification"], "marked_rows": "yes"}}
    (tmp_path / "o.json").write_text(_json.dumps(odd))
    with pytest.raises(KeyFormatError, match="marked_rows"):
        Key.load(tmp_path / "o.json")


def test_cli_verify_of_a_graph_key_needs_the_release(tmp_path):
    """`datamark verify` of a graph key: without --released one line naming the option and no query; with the TU
    folder protect wrote, a verdict whose marks test asked every mark's released graphs, and an evidence file
    that re-verifies with the same release (and asks for it without)."""
    from typer.testing import CliRunner

    from datamark.cli import app

    def invoke(*args):
        return CliRunner().invoke(app, ["--threads", "1", *map(str, args)])

    assert invoke("protect", "graphs:MUTAG", "--out", tmp_path / "wm", "--key", tmp_path / "k.json", "--rate",
                  "0.3").exit_code == 0
    assert invoke("train", tmp_path / "wm", "--out", tmp_path / "m.pt", "--epochs", "3").exit_code == 0
    base = ("verify", "--key", tmp_path / "k.json", "--model", tmp_path / "m.pt", "--data", "graphs:MUTAG")
    missing = invoke(*base)
    assert missing.exit_code == 2 and "--released" in missing.output
    assert len([line for line in missing.output.splitlines() if line.startswith("error")]) == 1
    asked = invoke(*base, "--released", tmp_path / "wm", "--json", tmp_path / "r.json", "--evidence",
                   tmp_path / "ev.jsonl")
    assert asked.exit_code in (0, 1), asked.output
    marks = json.loads((tmp_path / "r.json").read_text())["marks"]
    assert sum(marks["released_rows_per_mark"]) == len(json.loads((tmp_path / "k.json").read_text())["marked_ids"])
    check = ("evidence", tmp_path / "ev.jsonl", "--key", tmp_path / "k.json", "--data", "graphs:MUTAG")
    assert invoke(*check, "--released", tmp_path / "wm").exit_code == 0  # the answers imply the verdict
    unreleased = invoke(*check)
    assert unreleased.exit_code == 2 and "--released" in unreleased.output
