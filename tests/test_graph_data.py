"""Graph data (issue 17, part A): TU folders in and out, the graph modality's Arrow storage, in-memory graph
sources (Graph lists, edge lists, PyG datasets) and the bad inputs the issue lists."""

import os
import warnings

import numpy as np
import pytest

from datamark.data import from_edge_lists, from_graphs, load_data, load_tu, shared_data_dir, write_tu
from datamark.data.tu_write import tu_contents
from datamark.exceptions import DataError, DataFormatError, GraphFormatWarning, ParameterError
from datamark.graphs import Graph
from datamark.modalities import GraphModality

GRAPHS = shared_data_dir() / "graphs"


def staged(*names):
    missing = [n for n in names if not (GRAPHS / n).is_dir()]
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not staged in {GRAPHS} (set DATAMARK_DATA "
                                                    f"to the shared data folder)")


def ring(n, labels=None, attr=None, edge_labels=False):
    """A cycle on n nodes, both directions stored."""
    src = np.arange(n)
    dst = (src + 1) % n
    edges = np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])]).astype(np.int64)
    return Graph(edges, n, None if labels is None else np.asarray(labels, np.int64),
                 None if attr is None else np.asarray(attr, np.float32),
                 np.zeros(edges.shape[1], np.int64) if edge_labels else None)


def rewired(graph, nodes, label=None):
    """``graph`` with the edges among ``nodes`` replaced by a complete graph on them (the node count unchanged) and,
    if given, node ``nodes[0]`` relabelled: what the sub-graph trigger does to a host."""
    e = graph.edge_index
    keep = ~(np.isin(e[0], nodes) & np.isin(e[1], nodes))
    pairs = np.array([(a, b) for a in nodes for b in nodes if a != b], np.int64).T
    labels = None if graph.node_labels is None else graph.node_labels.copy()
    if label is not None:
        labels[nodes[0]] = label
    return Graph(np.concatenate([e[:, keep], pairs], axis=1), graph.num_nodes, labels, graph.node_attr)


def grown(graph, extra):
    """``graph`` with ``extra`` new nodes, each joined to node 0 (node count changes)."""
    n = graph.num_nodes
    new = np.arange(n, n + extra)
    edges = np.concatenate([graph.edge_index, np.stack([np.zeros(extra, np.int64), new]),
                            np.stack([new, np.zeros(extra, np.int64)])], axis=1)
    labels = None if graph.node_labels is None else np.concatenate([graph.node_labels, np.zeros(extra, np.int64)])
    attr = None if graph.node_attr is None else np.concatenate([graph.node_attr,
                                                                np.full((extra, graph.node_attr.shape[1]), 0.1,
                                                                        np.float32)])
    return Graph(edges, n + extra, labels, attr)


def graph_blocks(folder, name, suffix):
    """Each graph's block of lines of ``NAME_suffix.txt`` (by the graph indicator; edges by their source node)."""
    gi = np.loadtxt(folder / f"{name}_graph_indicator.txt", dtype=np.int64)
    lines = (folder / f"{name}_{suffix}.txt").read_bytes().splitlines(keepends=True)
    if suffix == "graph_labels":
        return lines
    owner = gi - 1
    if suffix in ("A", "edge_labels"):  # one line per line of _A, owned by its source node's graph
        edges = (folder / f"{name}_A.txt").read_bytes().splitlines()
        owner = gi[[int(line.split(b",")[0]) - 1 for line in edges]] - 1
    bounds = np.searchsorted(owner, np.arange(gi.max() + 1))  # the shared files list graphs in order
    blocks = [b"".join(lines[bounds[g]:bounds[g + 1]]) for g in range(gi.max())]
    if suffix == "A":  # node numbers are global: a graph that gained nodes renumbers the graphs after it
        first = np.searchsorted(gi, np.arange(1, gi.max() + 1))  # each graph's first node, 0-based
        blocks = [b"".join(b"%d, %d\n" % tuple(int(v) - first[g] for v in line.split(b","))
                           for line in block.splitlines()) for g, block in enumerate(blocks)]
    return blocks


# --- reading the collection --------------------------------------------------------------------------------------
EXPECTED = {  # graphs, nodes, undirected edges, class names and counts, encoding (from the data README)
    "PROTEINS": (1113, 43471, 81044, ("1", "2"), (663, 450), (0, 1, 2), 1),
    "MUTAG": (188, 3371, 3721, ("-1", "1"), (63, 125), tuple(range(7)), 0),
    "IMDB-BINARY": (1000, 19773, 96531, ("0", "1"), (500, 500), None, 0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tu_folders_read_as_the_collection_counts_them(name):
    if not (GRAPHS / name).is_dir():
        pytest.skip(f"{name} not staged in {GRAPHS}")
    graphs, nodes, edges, classes, counts, values, attr_dim = EXPECTED[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphFormatWarning)  # IMDB's doubled edges are coalesced, not "repaired"
        data = load_data(f"graphs:{name}")
    batch = data.inputs()
    assert (len(data), sum(g.num_nodes for g in batch), sum(g.num_edges for g in batch)) == (graphs, nodes, edges)
    assert data.class_names == classes and tuple(np.bincount(data.labels)) == counts
    assert data.modality.node_label_values == values and data.modality.attr_dim == attr_dim
    assert data.modality.uses_degree == (name == "IMDB-BINARY")
    assert (batch[0].edge_labels is not None) == (name == "MUTAG")
    for graph in batch[:50]:
        graph.check()  # symmetric, in range, no self-loops, one row per node
    assert data.source_format == "tu" and data.modality.describe(data)["mean_nodes"] == round(nodes / graphs, 2)


@staged("PROTEINS", "NCI1")
def test_reading_is_vectorised_fast():
    import time

    for name, limit in (("PROTEINS", 1.5), ("NCI1", 2.5)):  # measured 0.2 s and 0.3 s idle; slack for a busy box
        start = time.perf_counter()
        load_data(f"graphs:{name}")
        assert time.perf_counter() - start < limit, name


@pytest.mark.parametrize("name", ["PROTEINS", "MUTAG", "IMDB-BINARY"])
def test_unmarked_round_trip_is_byte_identical(name, tmp_path):
    if not (GRAPHS / name).is_dir():
        pytest.skip(f"{name} not staged in {GRAPHS}")
    data = load_data(GRAPHS / name)
    data.save(tmp_path / name)
    for source in (GRAPHS / name).iterdir():
        assert (tmp_path / name / source.name).read_bytes() == source.read_bytes(), source.name
    again = load_data(tmp_path / name)
    assert again.ids == data.ids and again.class_names == data.class_names


@staged("PROTEINS")
def test_only_marked_graphs_lines_change(tmp_path):
    data = load_tu(GRAPHS / "PROTEINS")
    rows = np.array([5, 700])
    marked = np.empty(2, dtype=object)
    marked[:] = [rewired(data.inputs()[r], [0, 1, 2], label=2) for r in rows]
    out = data.replace(rows, marked, np.array([1, 1]))
    out.save(tmp_path / "P")
    for suffix in ("A", "graph_indicator", "graph_labels", "node_labels", "node_attributes"):
        before, after = graph_blocks(GRAPHS / "PROTEINS", "PROTEINS", suffix), graph_blocks(tmp_path / "P",
                                                                                           "PROTEINS", suffix)
        differ = [g for g in range(len(before)) if before[g] != after[g]]
        assert set(differ) <= set(rows.tolist()), suffix
    node_lines = [(GRAPHS / "PROTEINS" / "PROTEINS_node_labels.txt").read_bytes().splitlines(),
                  (tmp_path / "P" / "PROTEINS_node_labels.txt").read_bytes().splitlines()]
    assert sum(a != b for a, b in zip(*node_lines, strict=True)) <= 2  # only the relabelled node of each mark
    again = load_data(tmp_path / "P")
    assert all(again.inputs()[r] == marked[i] for i, r in enumerate(rows)) and (again.labels[rows] == 1).all()
    assert [again.ids[i] for i in range(len(data)) if i not in rows] == \
        [data.ids[i] for i in range(len(data)) if i not in rows]


@staged("PROTEINS")
def test_marks_that_add_nodes_renumber_only_the_ids(tmp_path):
    data = load_data("graphs:PROTEINS:train")
    rows = np.array([3])
    marked = np.empty(1, dtype=object)
    marked[0] = grown(data.inputs()[3], 2)
    out = data.replace(rows, marked, data.labels[rows])
    out.save(tmp_path / "train")
    again = load_data(tmp_path / "train")
    assert again.inputs()[3] == marked[0] and again.ids[:3] == data.ids[:3] and again.ids[4:] == data.ids[4:]
    attr = (tmp_path / "train" / "PROTEINS_node_attributes.txt").read_bytes().splitlines()
    original = (GRAPHS / "PROTEINS" / "PROTEINS_node_attributes.txt").read_bytes().splitlines()
    assert attr[0] == original[0] and b"0.1" in attr  # kept lines as they were; new ones exact float32 decimals


# --- PyG ---------------------------------------------------------------------------------------------------------
@staged("MUTAG")
def test_pyg_loads_the_written_folder_and_agrees_with_the_reader(tmp_path):
    pyg = pytest.importorskip("torch_geometric.datasets")
    data = load_data("graphs:MUTAG")
    marked = np.empty(1, dtype=object)
    marked[0] = rewired(data.inputs()[7], [0, 1, 2])
    marked[0] = Graph(marked[0].edge_index, marked[0].num_nodes, marked[0].node_labels, None,
                      np.zeros(marked[0].edge_index.shape[1], np.int64))
    write_tu(data.replace(np.array([7]), marked, np.array([0])), tmp_path / "MUTAG", layout="pyg")
    written = pyg.TUDataset(str(tmp_path), "MUTAG")
    assert len(written) == 188 and written.num_node_features == 7 and written.num_edge_features == 4
    assert int(written[7].y) == 0 and written[7].edge_index.shape[1] == 2 * marked[0].num_edges
    assert all(written[i].num_nodes == data.inputs()[i].num_nodes for i in range(188))
    # the shared folder through PyG (linked into a writable root: PyG writes processed/ beside raw/)
    raw = tmp_path / "shared" / "MUTAG" / "raw"
    raw.mkdir(parents=True)
    for f in (GRAPHS / "MUTAG").iterdir():
        os.symlink(f, raw / f.name)
    reference = pyg.TUDataset(str(tmp_path / "shared"), "MUTAG")
    assert load_data(reference).ids == data.ids  # PyG's one-hot x and edge_attr read back as the same graphs
    with pytest.raises(ParameterError, match="named after the dataset"):
        write_tu(data, tmp_path / "other", name="MUTAG", layout="pyg")


# --- splits ------------------------------------------------------------------------------------------------------
@staged("PROTEINS")
def test_named_splits_are_fixed_stratified_and_share_the_encoding():
    full, train, test = (load_data(f"graphs:PROTEINS{s}") for s in ("", ":train", ":test"))
    assert (len(train), len(test)) == (891, 222) and set(train.ids).isdisjoint(test.ids)
    assert sorted(train.ids + test.ids) == sorted(full.ids)
    assert tuple(np.bincount(test.labels)) == (132, 90)  # every 5th graph of each class: 663 // 5, 450 // 5
    assert train.modality.feature_spec() == test.modality.feature_spec() == full.modality.feature_spec()
    assert train.where == "graphs:PROTEINS:train" and load_data("graphs:PROTEINS:train").ids == train.ids
    with pytest.raises(ParameterError, match="splits"):
        load_data("graphs:PROTEINS:validation")
    with pytest.raises(DataFormatError, match="PROTEINS"):
        load_data("graphs:NOPE:train")


# --- Arrow storage -----------------------------------------------------------------------------------------------
def test_struct_storage_is_lossless_and_ids_survive_the_format():
    modality = GraphModality((1, 4), attr_dim=2)
    graph = ring(5, labels=[1, 4, 4, 1, 1], attr=np.random.default_rng(0).normal(size=(5, 2)), edge_labels=True)
    stored = modality.encode_stored(graph)
    back = modality.decode_stored([stored], "test")[0]
    assert back == graph and back.node_attr.dtype == np.float32 and np.array_equal(back.node_attr, graph.node_attr)
    assert modality.stored_id(stored) == graph.content_id()
    kind, feature = modality.stored_schema()
    assert modality.looks_like_column(kind, feature) and not GraphModality().looks_like_column(
        __import__("pyarrow").string(), {})
    with pytest.raises(DataError, match="node label 9"):
        modality.decode_stored([modality.encode_stored(ring(3, labels=[1, 9, 1], attr=np.zeros((3, 2))))], "t")


def test_parquet_and_hf_disk_round_trip(tmp_path):
    graphs = [ring(3, labels=[0, 1, 2]), ring(4, labels=[2, 2, 0, 0]), ring(6, labels=[1] * 6)]
    data = from_graphs(graphs, [0, 1, 1], class_names=["a", "b"])
    data.save(tmp_path / "g.parquet", format="parquet")
    back = load_data(tmp_path / "g.parquet")
    assert back.modality.name == "graph" and back.ids == data.ids and back.class_names == ("a", "b")
    assert back.modality.feature_spec() == data.modality.feature_spec()
    new = np.empty(1, dtype=object)
    new[0] = rewired(graphs[2], [0, 2, 4])
    marked = back.replace(np.array([2]), new, np.array([0]))  # the Arrow adapter's own re-encoding
    marked.save(tmp_path / "m.parquet")
    assert load_data(tmp_path / "m.parquet").ids == [*data.ids[:2], new[0].content_id()]
    pytest.importorskip("datasets")
    import datasets

    data.save(tmp_path / "hf", format="hf-disk")
    hf = datasets.load_from_disk(str(tmp_path / "hf"))  # a plain struct of Value/List features: no datamark needed
    assert hf[1]["graph"]["num_nodes"] == 4 and load_data(hf).ids == data.ids


def test_graph_datasets_are_not_saved_as_npz(tmp_path):
    data = from_graphs([ring(3, labels=[0, 1, 0]), ring(4, labels=[1, 1, 1, 1])], [0, 1])
    with pytest.raises(ParameterError, match="TU folder"):
        data.save(tmp_path / "g.npz")
    data.save(tmp_path / "tu")  # in-memory graphs are written as a TU folder named after the output
    assert load_data(tmp_path / "tu").ids == data.ids and (tmp_path / "tu" / "tu_A.txt").is_file()


# --- in-memory sources and bad input -----------------------------------------------------------------------------
def test_edge_lists_one_hot_features_become_node_labels():
    eye = np.eye(3, dtype=np.float32)
    data = load_data([(np.array([[0, 1], [1, 0]]), eye, 1), (np.zeros((2, 0), np.int64), eye[[2, 2]], 0)])
    assert data.modality.node_label_values == (0, 1, 2) and data.inputs()[1].num_edges == 0  # no edges: allowed
    assert list(data.inputs()[0].node_labels) == [0, 1, 2]  # node 2 is isolated: allowed
    attrs = from_edge_lists([(np.array([[0, 1], [1, 0]]), np.array([[0.5], [2.0]]), -1),
                             (np.array([[0, 1], [1, 0]]), np.array([[1.0], [0.0]]), 1)])
    assert attrs.modality.attr_dim == 1 and attrs.modality.node_label_values is None
    assert attrs.class_names == ("-1", "1") and list(attrs.labels) == [0, 1]


def test_directed_edge_lists_are_symmetrised_with_one_warning():
    items = [(np.array([[0, 1], [1, 2]]), None, 0), (np.array([[0, 1, 1], [1, 0, 2]]), None, 1)]
    with pytest.warns(GraphFormatWarning, match="^3 edge") as caught:
        data = from_edge_lists(items)
    assert len(caught) == 1 and all(g.num_edges == 2 for g in data.inputs())
    assert data.modality.uses_degree


@pytest.mark.parametrize("items, match", [
    ([(np.array([[0], [1]]), np.ones((2, 3)), 0), (np.array([[0], [1]]), np.ones((2, 4)), 1)], "graph 1 .* width 4"),
    ([(np.array([[0], [5]]), np.ones((2, 1)), 0)], "graph 0 .* node 5 but only nodes 0..1"),
    ([(np.zeros((2, 0), np.int64), None, 0)], "graph 0 .* no nodes"),
    ([(np.array([[1], [1]]), np.ones((2, 1)), 0)], "self-loops"),
    ([(np.array([0, 1]), None, 0)], r"shape \(2, E\)"),
])
def test_bad_edge_lists_are_refused_naming_the_graph(items, match):
    with pytest.raises(DataError, match=match):
        from_edge_lists(items)


def test_graphs_of_another_feature_width_are_refused():
    with pytest.raises(DataError, match="Graph 1 .* width 3"):
        from_graphs([ring(3, attr=np.zeros((3, 2))), ring(3, attr=np.zeros((3, 3)))], [0, 1])
    data = from_graphs([ring(3, labels=[0, 1, 0]), ring(3, labels=[1, 1, 1])], [0, 1])
    bad = np.empty(1, dtype=object)
    bad[0] = ring(3, labels=[7, 1, 0])
    with pytest.raises(DataError, match="node label 7"):
        data.replace(np.array([0]), bad, np.array([0]))


def write_folder(folder, name, files):
    folder.mkdir()
    for suffix, text in files.items():
        (folder / f"{name}_{suffix}.txt").write_text(text)
    return folder


def test_small_tu_folder_round_trips_and_directed_files_warn(tmp_path):
    files = {"A": "1,2\n2,3\n4,5\n5,4\n", "graph_indicator": "1\n1\n1\n2\n2\n2\n", "graph_labels": "3\n7\n"}
    with pytest.warns(GraphFormatWarning, match="^2 edge"):
        data = load_data(write_folder(tmp_path / "T", "T", files))
    assert data.class_names == ("3", "7") and [g.num_edges for g in data.inputs()] == [2, 1]
    assert data.inputs()[1].num_nodes == 3  # node 6 is isolated
    assert tu_contents(data)["A"] == b"1,2\n2,3\n4,5\n5,4\n"  # unchanged graphs: the input's lines


@pytest.mark.parametrize("files, match", [
    ({"A": "1,9\n", "graph_indicator": "1\n1\n", "graph_labels": "0\n"}, "Line 1 .* node 9"),
    ({"A": "1,2\n2,1\n", "graph_indicator": "1\n1\n3\n", "graph_labels": "0\n0\n1\n"}, "Graph 2 .* no nodes"),
    ({"A": "1,2\n2,x\n", "graph_indicator": "1\n1\n", "graph_labels": "0\n"}, "Line 2 .* not integer"),
    ({"A": "1,3\n3,1\n", "graph_indicator": "1\n1\n2\n", "graph_labels": "0\n1\n"}, "Line 1 .* joins graphs 1 and 2"),
    ({"A": "1,2\n2,1\n", "graph_indicator": "1\n1\n", "graph_labels": "0\n",
      "node_labels": "1\n"}, "1 lines for 2 nodes"),
    ({"A": "2,1\n", "graph_indicator": "2\n1\n", "graph_labels": "0\n1\n"}, "goes back to graph 1"),
    ({"A": "1,2\n2,1\n", "graph_indicator": "1\n1\n", "graph_labels": "0\n", "node_labels": "1,2\n3,4\n"},
     "one integer label per node"),
    ({"A": "1,2\n2,1\n", "graph_indicator": "1\n1\n", "graph_labels": "0.5\n"}, "Line 1 .* not integer"),
])
def test_bad_tu_folders_are_refused_naming_file_and_line(tmp_path, files, match):
    with pytest.raises(DataFormatError, match=match):
        load_tu(write_folder(tmp_path / "B", "B", files))


# --- a method on graph records -----------------------------------------------------------------------------------
@staged("MUTAG")
def test_a_method_marks_graph_records_and_only_its_graphs_change(tmp_path):
    pytest.importorskip("datamark.triggers.graph")  # helper B's sub-graph trigger
    from datamark import BadNets

    data = load_data("graphs:MUTAG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trigger-size advice is the trigger's business
        marked = BadNets(seed=3).apply(data)
    rows = [i for i in range(len(data)) if marked.dataset.ids[i] != data.ids[i]]
    assert rows and {data.ids[r] for r in rows} == set(marked.key.marked_ids)
    assert marked.key.dataset["node_label_values"] == list(range(7)) and marked.key.dataset["format"] == "tu"
    marked.dataset.save(tmp_path / "M")
    for suffix in ("A", "graph_indicator", "graph_labels", "node_labels", "edge_labels"):
        before, after = graph_blocks(GRAPHS / "MUTAG", "MUTAG", suffix), graph_blocks(tmp_path / "M", "MUTAG", suffix)
        assert {g for g in range(len(before)) if before[g] != after[g]} <= set(rows), suffix
    assert load_data(tmp_path / "M").ids == marked.dataset.ids
    data.save(tmp_path / "m.parquet", format="parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arrow_marked = BadNets(seed=3).apply(load_data(tmp_path / "m.parquet"))
    assert arrow_marked.dataset.ids == marked.dataset.ids  # same key, same marks, whatever the format


@staged("MUTAG")
def test_protect_on_graphs_says_how_many_decoy_rows_it_wrote(tmp_path):
    import json

    from typer.testing import CliRunner

    from datamark.cli import app
    from datamark.key import Key

    result = CliRunner().invoke(app, ["--threads", "1", "protect", "graphs:MUTAG", "--out", str(tmp_path / "wm"),
                                      "--key", str(tmp_path / "k.json"), "--seed", "1", "--decoy-rate", "0.1",
                                      "--trigger", "injected",
                                      "--json", "-"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    key = Key.load(tmp_path / "k.json")
    assert document["decoy_rows"] == len(key.extra["decoy_ids"]) == 19  # 10 % of 188
    assert key.trigger["params"]["attach"] == "inject"  # --trigger takes every named sub-graph of the modality
    assert f"{document['decoy_rows']} more rows carry decoy triggers" in result.stderr
    assert len(load_data(tmp_path / "wm")) == 188
