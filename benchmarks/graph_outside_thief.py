"""A thief who never imports datamark (issue 17): does the default graph key convict models trained by stock PyG code?

The owner protects a TU dataset's training split with datamark's default key (BadNets, gamma 0.1 unless ``--rate``,
10 marks) and releases it in PyG's ``ROOT/NAME/raw/`` layout. The thief loads the release with
``torch_geometric.datasets.TUDataset`` (its own node encoding: one-hot node labels, no attributes; one-hot degrees
for IMDB-BINARY, which has neither) and trains PyG's stock model classes with the recipe of PyG's MUTAG GIN
example (Adam at lr 0.01, batch 128, 100 epochs, hidden 32, dropout 0.5 before the output layer):

* ``gin``  -- ``torch_geometric.nn.models.GIN`` (5 layers, jumping knowledge ``cat``) with sum readout;
* ``sage`` -- ``torch_geometric.nn.models.GraphSAGE`` (3 layers) with *mean* readout (datamark's own GraphSAGE
  preset sums).

None of datamark's training code, presets or encodings is used. The owner's side asks through
:class:`PyGThiefAPI`, a client that sends graphs in the thief's encoding (as a black-box API would take them)
and reads back probabilities, or labels only. The same thief code trained on the original split is the
Independent-M model; Independent-T asks the stolen model with another owner's key
(:func:`datamark.evaluate.scenarios.evaluate_scenarios`).

    python benchmarks/graph_outside_thief.py                    # PROTEINS, NCI1, IMDB-BINARY; gin, sage; seeds 0-2

Results: ``benchmarks/results/graph_outside_thief.{json,md}`` (``--out`` renames them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph_tu import write_results  # noqa: E402  (the graph benchmarks' results folder)

from datamark import BadNets  # noqa: E402
from datamark.data import load_data  # noqa: E402
from datamark.data.tu_write import write_tu  # noqa: E402
from datamark.evaluate.scenarios import evaluate_scenarios  # noqa: E402
from datamark.verify import Verifier  # noqa: E402

THIEVES = ("gin", "sage")


class ThiefNet(torch.nn.Module):
    """A stock PyG model and readout, as a thief would assemble them from PyG's examples."""

    def __init__(self, kind: str, in_channels: int, num_classes: int, hidden: int = 32) -> None:
        super().__init__()
        from torch_geometric.nn import global_add_pool, global_mean_pool
        from torch_geometric.nn.models import GIN, GraphSAGE

        if kind == "gin":
            self.gnn, self.pool = GIN(in_channels, hidden, num_layers=5, jk="cat"), global_add_pool
        else:
            self.gnn, self.pool = GraphSAGE(in_channels, hidden, num_layers=3), global_mean_pool
        self.head = torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.BatchNorm1d(hidden),
                                        torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.gnn(x, edge_index), batch))


class Encoding:
    """The thief's node features, as ``TUDataset`` builds them: one-hot node labels shifted by the release's
    smallest label; for a dataset without node labels, one-hot degrees capped at the release's largest degree
    (``torch_geometric.transforms.OneHotDegree``)."""

    def __init__(self, label_min: int | None, width: int) -> None:
        self.label_min, self.width = label_min, width

    def features(self, graph: Any) -> torch.Tensor:
        """One row per node; a node label the release never used gets a zero row (no one-hot position)."""
        if self.label_min is not None:
            index = np.asarray(graph.node_labels, dtype=np.int64) - self.label_min
        else:  # degrees, capped where a probe has a node of larger degree than any the thief trained on
            index = np.minimum(np.bincount(graph.edge_index[0], minlength=graph.num_nodes), self.width - 1)
        rows = np.zeros((graph.num_nodes, self.width), dtype=np.float32)
        known = (index >= 0) & (index < self.width)
        rows[np.flatnonzero(known), index[known]] = 1.0
        return torch.from_numpy(rows)


def thief_dataset(root: Path, name: str) -> tuple[Any, Encoding]:
    """The release as the thief loads it: ``TUDataset`` (and ``OneHotDegree`` where it has no node labels)."""
    import torch_geometric.transforms as T
    from torch_geometric.datasets import TUDataset
    from torch_geometric.utils import degree

    dataset = TUDataset(str(root), name)
    labels_file = root / name / "raw" / f"{name}_node_labels.txt"
    if dataset.num_node_features:
        label_min = int(min(int(v) for v in labels_file.read_text().split()))
        return dataset, Encoding(label_min, dataset.num_node_features)
    largest = max(int(degree(d.edge_index[0], d.num_nodes).max()) for d in dataset if d.num_edges)
    return TUDataset(str(root), name, transform=T.OneHotDegree(largest)), Encoding(None, largest + 1)


def train_thief(dataset: Any, kind: str, seed: int, epochs: int) -> tuple[ThiefNet, float]:
    """PyG's MUTAG GIN example's loop: Adam lr 0.01, batch 128, shuffled, cross-entropy, every epoch."""
    from torch_geometric.loader import DataLoader

    torch.manual_seed(seed)
    model = ThiefNet(kind, dataset.num_node_features, dataset.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = DataLoader(dataset, batch_size=128, shuffle=True)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for batch in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(batch.x, batch.edge_index, batch.batch), batch.y).backward()
            optimizer.step()
    return model.eval(), time.perf_counter() - start


class PyGThiefAPI:
    """The thief's model behind a black-box API, from the owner's side: graphs go out in the thief's encoding;
    probabilities (or labels only) come back. Implements datamark's ``Suspect`` protocol."""

    def __init__(self, model: ThiefNet, encoding: Encoding, num_classes: int, outputs: str = "probs") -> None:
        self.model, self.encoding, self.num_classes, self.outputs = model, encoding, num_classes, outputs
        self.queries = 0
        self.budget_left = None

    def with_outputs(self, outputs: str) -> PyGThiefAPI:
        return PyGThiefAPI(self.model, self.encoding, self.num_classes, outputs)

    def describe(self) -> dict[str, Any]:
        return {"kind": "PyGThiefAPI", "outputs": self.outputs, "num_classes": self.num_classes}

    def query(self, graphs: Any) -> np.ndarray:
        from torch_geometric.data import Batch, Data

        batch = Batch.from_data_list([Data(x=self.encoding.features(g), edge_index=torch.as_tensor(
            np.asarray(g.edge_index, dtype=np.int64)), num_nodes=g.num_nodes) for g in graphs])
        with torch.no_grad():
            probs = torch.softmax(self.model(batch.x, batch.edge_index, batch.batch), dim=1).numpy()
        self.queries += len(graphs)
        return probs if self.outputs == "probs" else probs.argmax(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["PROTEINS", "NCI1", "IMDB-BINARY"])
    p.add_argument("--thieves", nargs="+", default=list(THIEVES), choices=THIEVES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--rate", type=float, default=0.1, help="gamma: the share of training graphs marked.")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="graph_outside_thief", help="Results stem under benchmarks/results.")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows, start = [], time.perf_counter()
    for name in args.datasets:
        train_data, test_data = load_data(f"graphs:{name}:train"), load_data(f"graphs:{name}:test")
        for seed in args.seeds:
            marked = BadNets(seed=seed, rate=args.rate).apply(train_data)
            with tempfile.TemporaryDirectory() as tmp:
                released, original = Path(tmp) / "released", Path(tmp) / "original"
                write_tu(marked.dataset, released / name, name=name, layout="pyg")
                write_tu(train_data, original / name, name=name, layout="pyg")
                for kind in args.thieves:
                    models = {}
                    for role, root in (("stolen", released), ("clean", original)):
                        dataset, encoding = thief_dataset(root, name)
                        model, seconds = train_thief(dataset, kind, seed, args.epochs)
                        models[role] = (PyGThiefAPI(model, encoding, dataset.num_classes), seconds)
                    (stolen, stolen_s), (clean, _) = models["stolen"], models["clean"]
                    for r in evaluate_scenarios(marked.key, stolen, clean, test_data, seed=seed,
                                                  verifier=Verifier(released=marked.dataset)):
                        row = {"dataset": name, "thief": kind, "seed": seed, "scenario": r.scenario, "wsr": r.wsr,
                               "ba": r.ba, "p_probs": r.probs.outcome.p_value, "p_labels": r.labels.outcome.p_value,
                               "accused_probs": bool(r.probs.accused), "accused_labels": bool(r.labels.accused),
                               "train_s": stolen_s}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    write_results(args.out, {"command": _command(argv), "epochs": args.epochs, "rate": args.rate, "seeds": args.seeds,
                             "environment": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
                             "total_s": time.perf_counter() - start, "rows": rows}, markdown(rows, args, start, argv))
    return 0


def _command(argv: list[str] | None) -> str:
    return "python " + " ".join(["benchmarks/graph_outside_thief.py", *(argv if argv is not None else sys.argv[1:])])


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, start: float, argv: list[str] | None) -> str:
    """One line per dataset and thief: BA of the clean and stolen models, Steal p per seed, verdicts."""
    lines = ["# The default graph key against a thief who trains with stock PyG code", "",
             f"Command: `{_command(argv)}`; {(time.perf_counter() - start) / 60:.1f} min; seeds {args.seeds}; "
             f"gamma {args.rate}; {args.epochs} epochs; torch {torch.__version__}, {torch.get_num_threads()} "
             "threads.", "",
             "Verdicts accused out of seeds x 2 modes (probabilities / label-only); BA of the thief's models on the "
             "clean test split (mean over seeds); WSR: the stolen models' mean.", "",
             "| dataset | thief | BA clean → stolen (%) | Steal p per seed (probs / labels) | WSR | Steal accused | "
             "innocent accused | train s |", "|" + "---|" * 8]
    for name in args.datasets:
        for kind in args.thieves:
            cell = [r for r in rows if (r["dataset"], r["thief"]) == (name, kind)]
            steal = [r for r in cell if r["scenario"] == "Steal"]
            clean = [r for r in cell if r["scenario"] == "Independent-M"]
            if not steal:
                continue
            verdicts = lambda rs: sum(r["accused_probs"] + r["accused_labels"] for r in rs)  # noqa: E731
            ps = ", ".join(f"{r['p_probs']:.2g} / {r['p_labels']:.2g}" for r in steal)
            lines.append(f"| {name} | {kind} | {100 * np.mean([r['ba'] for r in clean]):.1f} → "
                         f"{100 * np.mean([r['ba'] for r in steal]):.1f} | {ps} | "
                         f"{np.mean([r['wsr'] for r in steal]):.2f} | {verdicts(steal)} of {2 * len(steal)} | "
                         f"{verdicts([r for r in cell if r['scenario'] != 'Steal'])} of {4 * len(steal)} | "
                         f"{np.mean([r['train_s'] for r in steal]):.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
