"""The outside-thief graph benchmark's client must send the thief's model exactly the features the thief trained on:
its encoding is checked against what ``torch_geometric.datasets.TUDataset`` builds from datamark's release."""

import numpy as np
import pytest

pytest.importorskip("torch_geometric")

from datamark import BadNets  # noqa: E402
from datamark.data import load_data, shared_data_dir  # noqa: E402
from datamark.data.tu_write import write_tu  # noqa: E402


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("graph_outside_thief")


@pytest.mark.parametrize("name", ["MUTAG", "IMDB-BINARY"])
def test_the_clients_features_are_the_thiefs_own(bench, tmp_path, name):
    if not (shared_data_dir() / "graphs" / name).exists():
        pytest.skip(f"{name} is not in the shared data folder")
    train = load_data(f"graphs:{name}:train")
    train = train.subset(np.arange(min(len(train), 200)))
    released = BadNets(seed=0, rate=0.1).apply(train).dataset
    write_tu(released, tmp_path / name, name=name, layout="pyg")
    dataset, encoding = bench.thief_dataset(tmp_path, name)
    graphs = released.inputs()
    assert len(dataset) == len(graphs)
    for graph, data in zip(graphs, dataset, strict=True):
        assert np.array_equal(encoding.features(graph).numpy(), data.x.numpy())
        ours = sorted(map(tuple, np.asarray(graph.edge_index).T.tolist()))
        assert ours == sorted(map(tuple, data.edge_index.numpy().T.tolist()))
    model, _ = bench.train_thief(dataset, "gin", seed=0, epochs=1)
    api = bench.PyGThiefAPI(model, encoding, dataset.num_classes)
    probs = api.query(graphs[:5])
    assert probs.shape == (5, dataset.num_classes) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert api.with_outputs("labels").query(graphs[:5]).tolist() == probs.argmax(1).tolist()
