"""The contract every watermark method keeps, as checks a new method passes with one call.

``check_method(build, data)`` runs them all on a small dataset of any modality; ``build(**params)`` returns a
configured method (so methods that need a base model or short crafting settings can supply them). Each check
raises ``AssertionError`` with what broke:

* deterministic given a seed; another seed gives another secret;
* the input dataset is never modified; exactly the key's rows change (decoys keep their labels); every other row
  and label is bit-identical; targeted methods relabel to the target; the key alone rebuilds every mark;
* numpy's and torch's global random generators are untouched;
* the configuration round-trips through the saved key and rebuilds the same watermark;
* which rows are marked does not depend on the row order.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.arrays import ArrayRecords
from ..data.records import Records
from ..key import Key
from ..methods.base import WatermarkMethod
from ..triggers.base import Trigger


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) == len(b) and bool(np.array_equal(a, b))


def check_deterministic(build: Callable[..., WatermarkMethod], data: Records) -> None:
    a, b = build(seed=5).apply(data), build(seed=5).apply(data)
    assert np.array_equal(a.rows, b.rows) and a.key.secret == b.key.secret, "same seed, different rows or secret"
    assert _same(a.dataset.inputs(), b.dataset.inputs()), "same seed, different watermarked examples"
    assert build(seed=6).apply(data).key.secret != a.key.secret, "another seed gave the same secret"


def check_only_key_rows_change(build: Callable[..., WatermarkMethod], data: Records, *, exact: bool = True,
                               **params: Any) -> None:
    """``exact``: marked rows must equal their mark's trigger applied to the original (methods that perturb
    before stamping pass False)."""
    before, labels_before = data.inputs().copy(), data.labels.copy()
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    method = build(seed=1, **params)
    marked = method.apply(data)
    assert np.array_equal(np.random.get_state()[1], np_state), "numpy's global RNG was used"
    assert torch.equal(torch.get_rng_state(), torch_state), "torch's global RNG was used"
    assert _same(data.inputs(), before) and np.array_equal(data.labels, labels_before), "the input was modified"
    assert len(marked.key.marked_ids) == len(marked.rows), "the key does not list every marked row"
    assert set(marked.key.marked_ids) == {data.ids[r] for r in marked.rows}, "the key lists other rows"
    index = {row_id: i for i, row_id in enumerate(data.ids)}
    decoys = np.array([index[i] for i in marked.key.extra.get("decoy_ids", [])], dtype=np.int64)
    assert np.array_equal(marked.dataset.labels[decoys], data.labels[decoys]), "a decoy row changed its label"
    untouched = np.setdiff1d(np.arange(len(data)), np.concatenate([marked.rows, decoys]).astype(np.int64))
    assert _same(marked.dataset.inputs()[untouched], before[untouched]), "an unmarked example changed"
    assert np.array_equal(marked.dataset.labels[untouched], data.labels[untouched]), "an unmarked label changed"
    marks = marked.key.mark_list()
    assert sum(len(m.marked_ids) for m in marks) == len(marked.rows), "the marks do not cover the marked rows"
    assert Trigger.from_config(marked.key.trigger) is not None
    for mark in marks:
        rows = np.array([index[i] for i in mark.marked_ids], dtype=np.int64)
        if type(method).targeted:
            assert (marked.dataset.labels[rows] == mark.target).all(), "a marked row is not relabelled to its target"
        if exact:
            assert _same(marked.dataset.inputs()[rows], mark.trigger.apply(before[rows])), \
                "a marked row is not its mark's trigger applied to the original"


def check_key_round_trip(build: Callable[..., WatermarkMethod], data: Records) -> None:
    marked = build(seed=2).apply(data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "key.json"
        marked.key.save(path)
        key = Key.load(path)
    assert key.method == marked.key.method, "the method's parameters changed through the key"
    rebuilt = type(build(seed=2))(**key.method["params"])
    again = rebuilt.apply(data)
    assert again.key.marked_ids == key.marked_ids and again.key.trigger == key.trigger, \
        "the method rebuilt from the key marks other rows or another trigger"


def check_row_order_free(build: Callable[..., WatermarkMethod], data: Records) -> None:
    perm = np.random.default_rng(0).permutation(len(data))
    shuffled = ArrayRecords(data.inputs()[perm], data.labels[perm], list(data.class_names), modality=data.modality)
    a, b = build(seed=9).apply(data), build(seed=9).apply(shuffled)
    assert set(a.key.marked_ids) == set(b.key.marked_ids), "the marked rows depend on the row order"


def check_method(build: Callable[..., WatermarkMethod], data: Records, *, exact: bool = True,
                 **params: Any) -> None:
    """Every contract check on ``data``; ``params`` go to the only-key-rows check (e.g. a fixed target)."""
    check_deterministic(build, data)
    check_only_key_rows_change(build, data, exact=exact, **params)
    check_key_round_trip(build, data)
    check_row_order_free(build, data)
