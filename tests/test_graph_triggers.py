"""The sub-graph trigger (DVBW's graph setting), DVBW and UBW-P on graph records, and the graph preview.

Built on small hand-made graphs: node-labelled graphs with attributes and edge labels (like PROTEINS / ENZYMES),
degree-only graphs (like IMDB-BINARY), and awkward ones (no edges, isolated nodes, fewer nodes than the trigger).
"""

import json
import math
import warnings

import numpy as np
import pytest

from datamark.data.arrays import ArrayRecords
from datamark.evaluate.graph_preview import graph_changes, graph_preview
from datamark.exceptions import DataError, OutputExistsError, ParameterError, TriggerSizeWarning
from datamark.graphs import Graph
from datamark.methods.dvbw import BadNets
from datamark.methods.ubw import UBWP
from datamark.modalities.graph import GraphModality
from datamark.registry import TRIGGERS
from datamark.testing.contracts import check_method
from datamark.triggers import Trigger
from datamark.triggers.graph import DENSITY_RANGE, SubgraphTrigger, make_subgraph_trigger
from datamark.triggers.graph_make import MARK_MIN_SIZE, mark_size
from datamark.triggers.graph_stats import graph_statistics

LABELS = (0, 1, 2)
# Most triggers here are bigger than the 2-node graph on purpose; the warning is checked where it is the point.
pytestmark = pytest.mark.filterwarnings("ignore::datamark.exceptions.TriggerSizeWarning")


def _random_graph(rng, n, p=0.3, labels=True, attrs=2, edge_labels=True) -> Graph:
    upper = np.triu(rng.random((n, n)) < p, k=1)
    a, b = np.nonzero(upper)
    edge_index = np.concatenate([np.stack([a, b]), np.stack([b, a])], axis=1).astype(np.int64)
    return Graph(edge_index, n,
                 rng.choice(LABELS, size=n, p=(0.6, 0.3, 0.1)).astype(np.int64) if labels else None,
                 rng.normal(size=(n, attrs)).astype(np.float32) if attrs else None,
                 rng.integers(0, 3, size=edge_index.shape[1]).astype(np.int64) if edge_labels else None)


def _batch(graphs) -> np.ndarray:
    out = np.empty(len(graphs), dtype=object)
    out[:] = graphs
    return out


@pytest.fixture(scope="module")
def labelled():
    """40 node-labelled graphs of 6-24 nodes with 2 attributes and edge labels, plus three awkward ones."""
    rng = np.random.default_rng(0)
    graphs = [_random_graph(rng, int(n)) for n in rng.integers(6, 25, size=40)]
    graphs.append(Graph(np.zeros((2, 0), np.int64), 7, np.zeros(7, np.int64), np.ones((7, 2), np.float32),
                        np.zeros(0, np.int64)))  # no edges at all
    graphs.append(_random_graph(rng, 12, p=0.05))  # isolated nodes likely
    graphs.append(Graph(np.array([[0, 1], [1, 0]]), 2, np.array([1, 2]), np.zeros((2, 2), np.float32),
                        np.array([1, 1])))  # fewer nodes than any default trigger
    return _batch(graphs)


@pytest.fixture(scope="module")
def records(labelled):
    labels = np.arange(len(labelled)) % 3
    return ArrayRecords(labelled, labels, ["a", "b", "c"], where="(hand graphs)",
                        modality=GraphModality(node_label_values=LABELS, attr_dim=2))


@pytest.fixture(scope="module")
def modality(records):
    return records.modality  # fitted to the graphs: carries their statistics for its default trigger


@pytest.fixture(scope="module")
def trigger(modality):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TriggerSizeWarning)
        return make_subgraph_trigger(np.random.default_rng(1), modality, size=5)


def _copy(graph: Graph) -> tuple:
    return tuple(None if v is None else np.array(v, copy=True) for v in
                 (graph.edge_index, graph.node_labels, graph.node_attr, graph.edge_labels))


def _edges(edge_index) -> set:
    return {(int(min(a, b)), int(max(a, b))) for a, b in zip(*edge_index, strict=True)}


# ---------------------------------------------------------------------------------------------------- the trigger

def test_registered_and_repr_keeps_the_secret(trigger):
    assert TRIGGERS["subgraph"] is SubgraphTrigger
    text = repr(trigger)
    assert "5 nodes" in text and str(trigger.edges[0]) not in text and str(trigger.place_seed) not in text


def test_apply_is_pure_deterministic_and_keeps_the_batch_type(trigger, labelled):
    before = [_copy(g) for g in labelled]
    first, second = trigger.apply(labelled), trigger.apply(labelled)
    assert isinstance(first, np.ndarray) and first.dtype == object and len(first) == len(labelled)
    assert np.array_equal(first, second)  # content equality: the same graphs again
    for graph, saved in zip(labelled, before, strict=True):  # inputs untouched
        for now, then in zip(_copy(graph), saved, strict=True):
            assert (now is None and then is None) or np.array_equal(now, then)
    assert trigger.apply(labelled[0]) == first[0]  # one Graph in, one Graph out
    as_list = trigger.apply(list(labelled[:3]))
    assert isinstance(as_list, list) and as_list == list(first[:3])


def test_marked_graphs_are_valid_and_only_the_chosen_nodes_change(trigger, labelled):
    k = trigger.size
    for graph, marked in zip(labelled, trigger.apply(labelled), strict=True):
        marked.check("marked graph")
        hosts = trigger.host_nodes(graph)
        assert len(set(hosts.tolist())) == k
        assert marked.num_nodes == max(graph.num_nodes, k)
        assert len(marked.edge_labels) == marked.edge_index.shape[1]
        chosen = set(hosts.tolist())
        # edges with an endpoint outside the chosen nodes are kept exactly; inside, the trigger's edges only
        outside = {e for e in _edges(graph.edge_index) if not set(e) <= chosen}
        assert {e for e in _edges(marked.edge_index) if not set(e) <= chosen} == outside
        inside = {e for e in _edges(marked.edge_index) if set(e) <= chosen}
        assert inside == {tuple(sorted((int(hosts[a]), int(hosts[b])))) for a, b in trigger.edges}
        assert np.array_equal(marked.node_labels[hosts], trigger.node_labels)
        assert np.array_equal(marked.node_attr[hosts], np.asarray(trigger.node_attr, np.float32))
        others = np.setdiff1d(np.arange(graph.num_nodes), hosts)
        assert np.array_equal(marked.node_labels[others], graph.node_labels[others])
        assert np.array_equal(marked.node_attr[others], graph.node_attr[others])
        nodes, _, _ = graph_changes(graph, marked)
        assert nodes <= chosen


def test_small_hosts_get_the_missing_nodes(trigger, labelled):
    tiny = labelled[-1]
    marked = trigger.apply(tiny)
    assert tiny.num_nodes == 2 and marked.num_nodes == trigger.size
    assert sorted(trigger.host_nodes(tiny).tolist()) == list(range(trigger.size))
    assert _edges(marked.edge_index) == {tuple(sorted((int(a), int(b)))) for a, b in
                                         trigger.host_nodes(tiny)[np.array(trigger.edges)]}


def test_placement_is_keyed_per_graph_and_content(trigger, labelled):
    big = labelled[int(np.argmax([g.num_nodes for g in labelled]))]
    shuffled = Graph(big.edge_index[:, ::-1].copy(), big.num_nodes, big.node_labels, big.node_attr,
                     big.edge_labels[::-1].copy())
    assert np.array_equal(trigger.host_nodes(big), trigger.host_nodes(shuffled))  # edge order is not content
    other = SubgraphTrigger(**{**trigger.params(), "place_seed": trigger.place_seed + 1})
    assert not np.array_equal(trigger.host_nodes(big), other.host_nodes(big))
    places = {tuple(sorted(trigger.host_nodes(g).tolist())) for g in labelled if g.num_nodes > 12}
    assert len(places) > 1  # not one fixed place for every graph


def test_config_round_trips_exactly_through_json(trigger, labelled):
    config = json.loads(json.dumps(trigger.to_config()))
    rebuilt = Trigger.from_config(config)
    assert rebuilt == trigger and rebuilt.to_config() == trigger.to_config()
    assert np.array_equal(rebuilt.apply(labelled), trigger.apply(labelled))


def test_independent_draws_another_trigger_of_the_same_kind(trigger):
    rng = np.random.default_rng(3)
    others = [trigger.independent(rng) for _ in range(20)]
    for other in others:
        assert (other.size, other.family, other.density_range) == (trigger.size, trigger.family,
                                                                   trigger.density_range)
        assert (other.label_values, other.label_weights, other.attr_pool) == (trigger.label_values,
                                                                             trigger.label_weights, trigger.attr_pool)
        assert other.place_seed != trigger.place_seed
        assert DENSITY_RANGE[0] <= other.density <= DENSITY_RANGE[1]
    assert len({o.edges for o in others}) > 1 and len({o.node_labels for o in others}) > 1
    assert all(o != trigger for o in others)


def test_defaults_follow_the_data(modality, labelled):
    with pytest.warns(TriggerSizeWarning, match="1 of 43 graphs"):
        made = make_subgraph_trigger(np.random.default_rng(5), modality)
    mean = np.mean([g.num_nodes for g in labelled])
    assert made.size == max(3, math.ceil(0.2 * mean)) and made.family == "er"
    assert DENSITY_RANGE[0] <= made.density <= DENSITY_RANGE[1]
    assert set(made.node_labels) <= set(LABELS) and len(made.node_attr) == made.size
    pool = {tuple(r) for r in made.attr_pool}
    assert all(tuple(r) in pool for r in made.node_attr)  # attributes are rows of the data
    weights = dict(zip(made.label_values, made.label_weights, strict=True))
    assert weights[0] > weights[1] > weights[2]  # the data's label frequencies, not uniform
    with pytest.warns(TriggerSizeWarning):
        again = make_subgraph_trigger(np.random.default_rng(5), modality, labelled)  # data= gives the same
    assert again == made


def test_families_and_fixed_density(modality):
    rng = np.random.default_rng(0)
    complete = make_subgraph_trigger(rng, modality, size=4, family="complete")
    star = make_subgraph_trigger(rng, modality, size=4, family="star")
    assert len(complete.edges) == 6 and complete.density is None
    assert star.edges == ((0, 1), (0, 2), (0, 3))
    fixed = make_subgraph_trigger(rng, modality, size=6, density=0.8)
    assert fixed.density == 0.8 and fixed.independent(rng).density == 0.8


def test_degree_only_data_gets_structure_only():
    rng = np.random.default_rng(2)
    graphs = _batch([_random_graph(rng, 10, labels=False, attrs=0, edge_labels=False) for _ in range(5)])
    degree = GraphModality()
    made = make_subgraph_trigger(rng, degree, graphs)
    assert made.node_labels is None and made.node_attr is None and made.size == 3
    marked = made.apply(graphs)
    assert all(g.node_labels is None and g.node_attr is None and g.edge_labels is None for g in marked)
    assert degree.features(marked[0]).shape == (10, degree.num_features)


def test_bad_parameters_are_refused(modality):
    rng = np.random.default_rng(0)
    with pytest.raises(ParameterError, match="'family'"):
        make_subgraph_trigger(rng, modality, size=4, family="ring")
    with pytest.raises(ParameterError, match="'density'"):
        make_subgraph_trigger(rng, modality, size=4, density=1.5)
    with pytest.raises(ParameterError, match="'size'"):
        make_subgraph_trigger(rng, modality, size=2)
    with pytest.raises(ParameterError, match="mean graph size"):
        make_subgraph_trigger(rng, GraphModality(node_label_values=LABELS))
    with pytest.raises(ParameterError, match="'edges'"):
        SubgraphTrigger(4, ((0, 4),))
    with pytest.raises(ParameterError, match="shape"):
        SubgraphTrigger(3, ((0, 1),)).check_input_shape((32, 32, 3))


def test_bad_graphs_are_refused_clearly(trigger):
    with pytest.raises(DataError, match="edge to node 5"):
        trigger.apply(Graph(np.array([[0, 5], [5, 0]]), 3, np.zeros(3, np.int64), np.zeros((3, 2), np.float32)))
    with pytest.raises(DataError, match="has none"):
        trigger.apply(Graph(np.array([[0, 1], [1, 0]]), 6, None, np.zeros((6, 2), np.float32)))
    with pytest.raises(DataError, match="width 2 but a graph has width 3"):
        trigger.apply(Graph(np.array([[0, 1], [1, 0]]), 6, np.zeros(6, np.int64), np.zeros((6, 3), np.float32)))
    with pytest.raises(DataError, match="not a datamark Graph|marks datamark Graphs"):
        trigger.apply(["a text"])


# ------------------------------------------------------------------------------------------------------ methods

@pytest.mark.parametrize("build", [
    lambda **p: BadNets(rate=0.2, n_marks=1, **p),
    lambda **p: BadNets(rate=0.2, n_marks=3, decoy_rate=0.1, **p),
    lambda **p: UBWP(rate=0.2, n_marks=1, n_candidates=1, **p),
    lambda **p: UBWP(rate=0.2, n_marks=2, n_candidates=3, **p),
], ids=["dvbw", "dvbw-marks-decoys", "ubw-p", "ubw-p-candidates"])
def test_method_contract_on_graph_records(build, records):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TriggerSizeWarning)
        check_method(build, records)


def test_multi_mark_key_has_one_subgraph_trigger_and_target_per_mark(records):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TriggerSizeWarning)
        marked = BadNets(rate=0.3, n_marks=3, seed=4).apply(records)
    marks = marked.key.mark_list()
    assert len(marks) == 3 and all(isinstance(m.trigger, SubgraphTrigger) for m in marks)
    assert len({m.trigger.place_seed for m in marks}) == 3
    for mark in marks:
        rows = [records.ids.index(i) for i in mark.marked_ids]
        assert np.array_equal(marked.dataset.inputs()[rows], mark.trigger.apply(records.inputs()[rows]))
        assert (marked.dataset.labels[rows] == mark.target).all()


def test_each_mark_of_a_multi_mark_key_gets_a_complete_subgraph_of_its_own_size(records):
    """Marks whose sub-graphs a GNN cannot tell apart teach it contradicting targets (issue 17): each mark's is
    complete, injected and of its own size, centred on the single mark's size (the paper's, which stays as it
    was)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TriggerSizeWarning)
        single = BadNets(rate=0.3, n_marks=1, seed=4).apply(records).key.mark_list()[0].trigger
        marks = BadNets(rate=0.3, n_marks=4, seed=4).apply(records).key.mark_list()
    assert (single.family, single.attach) == ("er", "replace") and single.size == mark_size(single.size, 0, 1)
    assert [m.trigger.size for m in marks] == [mark_size(single.size, j, 4) for j in range(4)]
    assert len({m.trigger.size for m in marks}) == 4 and min(m.trigger.size for m in marks) >= MARK_MIN_SIZE
    assert all((m.trigger.family, m.trigger.attach) == ("complete", "inject") for m in marks)
    assert mark_size(8, 0, 10) == 4 and mark_size(8, 9, 10) == 13 and mark_size(20, 0, 10) == 15


def test_keys_written_before_marks_were_sized_apart_still_check(records, tmp_path):
    """A key whose dataset record does not say ``mark_sizes`` re-draws its marks all of one size, as it was made;
    a new key edited to say so is refused (its sub-graphs are not what that draw gives), as is an unknown value."""
    import dataclasses

    from datamark import Key
    from datamark.exceptions import KeyFormatError
    from datamark.verify.consistency import check_key

    binary = ArrayRecords(records.inputs(), records.labels % 2, ["a", "b"], where="(hand graphs)",
                          modality=records.modality)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TriggerSizeWarning)
        key = BadNets(rate=0.3, n_marks=3, seed=4).apply(binary).key
        GraphModality.mark_sizes = "same"
        try:
            old = BadNets(rate=0.3, n_marks=3, seed=4).apply(binary).key
        finally:
            GraphModality.mark_sizes = "distinct"
    assert key.plan.test == "marks-randomization" and key.dataset["mark_sizes"] == "distinct"
    assert len({m.trigger.size for m in old.mark_list()}) == 1
    before = dataclasses.replace(old, dataset={k: v for k, v in old.dataset.items() if k != "mark_sizes"})
    assert check_key(before).drawn and check_key(key).drawn
    for value, message in (("same", "trigger differs"), ("bigger", "mark_sizes")):
        edited = dataclasses.replace(key, dataset={**key.dataset, "mark_sizes": value})
        edited.save(tmp_path / f"{value}.json")
        with pytest.raises(KeyFormatError, match=message):
            Key.load(tmp_path / f"{value}.json")


# ------------------------------------------------------------------------------------------------------ picture

def test_preview_writes_a_png_and_keeps_an_existing_one(trigger, labelled, tmp_path):
    originals = labelled[[0, 1, -3, -1]]
    marked = trigger.apply(originals)
    path = tmp_path / "graphs.png"
    graph_preview(originals, marked, path, titles=["a→b", "b→c"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(OutputExistsError):
        graph_preview(originals, marked, path)
    graph_preview(originals, marked, path, overwrite=True)
    with pytest.raises(ParameterError):
        graph_preview(originals, marked[:2], tmp_path / "other.png")


def test_graph_changes_name_what_the_trigger_did(trigger, labelled):
    graph = labelled[0]
    marked = trigger.apply(graph)
    nodes, added, removed = graph_changes(graph, marked)
    assert added == _edges(marked.edge_index) - _edges(graph.edge_index)
    assert removed == _edges(graph.edge_index) - _edges(marked.edge_index)
    assert nodes and nodes <= set(trigger.host_nodes(graph).tolist())
    assert graph_changes(graph, graph) == (set(), set(), set())


def test_watermark_stages_draws_graph_watermarks_with_the_graph_preview(records, tmp_path):
    from datamark.evaluate.preview import watermark_stages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TriggerSizeWarning)
        marked = BadNets(rate=0.2, n_marks=1, seed=3).apply(records)
    path = tmp_path / "stages.png"
    assert watermark_stages(marked.key, records, marked.dataset, path, n=4) == 4
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_a_fitted_modality_carries_its_datasets_statistics_for_the_default_trigger(records, labelled):
    from datamark.data.graphs import from_graphs

    stats = records.modality.stats
    assert stats.n_graphs == len(labelled) and stats.min_nodes == 2
    assert stats.label_values == LABELS and len(stats.attr_pool) <= 64
    assert records.subset(np.arange(5)).modality.stats is stats  # a split keeps its whole dataset's
    learned = from_graphs(list(labelled), np.arange(len(labelled)) % 2).modality
    assert learned.node_label_values == LABELS and learned.stats.n_graphs == len(labelled)
    made = learned.default_trigger(np.random.default_rng(0))
    assert isinstance(made, SubgraphTrigger) and made.size == max(3, math.ceil(0.2 * stats.mean_nodes))
    assert graph_statistics(labelled).label_counts == stats.label_counts


def test_uniform_label_draws_weigh_every_label_the_data_uses_alike(modality):
    made = make_subgraph_trigger(np.random.default_rng(0), modality, size=5, labels="uniform")
    assert made.label_values == LABELS and made.label_weights == (1 / 3, 1 / 3, 1 / 3)
    assert made.independent(np.random.default_rng(1)).label_weights == made.label_weights
    with pytest.raises(ParameterError, match="'labels'"):
        make_subgraph_trigger(np.random.default_rng(0), modality, size=5, labels="rare")


def test_keyed_label_draws_give_each_trigger_its_own_mix_of_the_datas_labels(modality):
    first, second = (make_subgraph_trigger(np.random.default_rng(seed), modality, size=5, labels="keyed")
                     for seed in (0, 1))
    assert first.label_values == second.label_values == LABELS
    assert first.label_weights != second.label_weights and all(w > 0 for w in first.label_weights)
    assert abs(sum(first.label_weights) - 1) < 1e-9 and set(first.node_labels) <= set(LABELS)
    again = make_subgraph_trigger(np.random.default_rng(0), modality, size=5, labels="keyed")
    assert Trigger.from_config(json.loads(json.dumps(first.to_config()))) == first == again


def test_injected_triggers_add_new_nodes_and_leave_the_host_whole(modality, labelled):
    made = make_subgraph_trigger(np.random.default_rng(4), modality, size=5, attach="inject", links=2)
    assert Trigger.from_config(json.loads(json.dumps(made.to_config()))) == made
    other = made.independent(np.random.default_rng(5))
    assert (other.attach, other.links) == ("inject", 2)
    for graph, marked in zip(labelled, made.apply(labelled), strict=True):
        marked.check("injected graph")
        n = graph.num_nodes
        hosts, anchors = made.placement(graph)
        assert marked.num_nodes == n + 5 and np.array_equal(hosts, np.arange(n, n + 5))
        assert len(anchors) == min(2, n) and (anchors < n).all()
        old = _edges(graph.edge_index)
        assert old <= _edges(marked.edge_index)  # no host edge removed
        links = {tuple(sorted((int(hosts[i]), int(a)))) for i, a in enumerate(anchors)}
        assert _edges(marked.edge_index) - old == {(int(hosts[a]), int(hosts[b])) for a, b in made.edges} | links
        assert np.array_equal(marked.node_labels[:n], graph.node_labels)  # host nodes untouched
        assert np.array_equal(marked.node_labels[n:], made.node_labels)
        assert np.array_equal(marked.node_attr[n:], np.asarray(made.node_attr, np.float32))
    with pytest.raises(ParameterError, match="'attach'"):
        make_subgraph_trigger(np.random.default_rng(0), modality, size=5, attach="glue")
    with pytest.raises(ParameterError, match="'links'"):
        SubgraphTrigger(3, ((0, 1),), attach="inject", links=0)
