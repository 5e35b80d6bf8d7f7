import numpy as np
from scipy import stats

from datamark._rng import keyed_scores, resolve_secret, select_smallest, threshold_for


def _ids(n):
    return [f"row-{i}" for i in range(n)]


def test_selection_is_deterministic_and_exact():
    secret = resolve_secret(7)
    ids = _ids(1000)
    a = select_smallest(keyed_scores(secret, ids, "mark"), 100)
    b = select_smallest(keyed_scores(secret, ids, "mark"), 100)
    assert np.array_equal(a, b) and len(a) == 100 and len(set(a.tolist())) == 100


def test_selection_depends_on_secret_and_purpose():
    ids = _ids(1000)
    a = set(select_smallest(keyed_scores(resolve_secret(1), ids, "mark"), 100).tolist())
    b = set(select_smallest(keyed_scores(resolve_secret(2), ids, "mark"), 100).tolist())
    c = set(select_smallest(keyed_scores(resolve_secret(1), ids, "probe"), 100).tolist())
    assert len(a & b) < 40 and len(a & c) < 40  # overlap of independent 10 % draws is ~10 rows


def test_selection_ignores_row_order():
    secret, ids = resolve_secret(3), _ids(500)
    chosen = {ids[i] for i in select_smallest(keyed_scores(secret, ids, "mark"), 50)}
    perm = np.random.default_rng(0).permutation(len(ids))
    shuffled = [ids[i] for i in perm]
    chosen_shuffled = {shuffled[i] for i in select_smallest(keyed_scores(secret, shuffled, "mark"), 50)}
    assert chosen == chosen_shuffled


def test_shards_select_the_same_rows_with_a_global_threshold():
    secret, ids = resolve_secret(4), _ids(2000)
    scores = keyed_scores(secret, ids, "mark")
    whole = set(select_smallest(scores, 200).tolist())
    threshold = threshold_for(scores, 200)
    by_shard = set()
    for start in range(0, 2000, 300):  # each shard hashes on its own and compares with the threshold
        shard_scores = keyed_scores(secret, ids[start:start + 300], "mark")
        by_shard |= {start + i for i in np.flatnonzero(shard_scores <= threshold)}
    assert whole == by_shard


def test_eligible_mask_is_respected_and_classes_are_hit_binomially():
    secret, ids = resolve_secret(5), _ids(5000)
    labels = np.arange(5000) % 10
    chosen = select_smallest(keyed_scores(secret, ids, "mark"), 500, eligible=labels != 3)
    assert not np.any(labels[chosen] == 3)
    counts = np.bincount(labels[chosen], minlength=10)
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 500, 1 / 9)
    assert all(lo <= c <= hi for i, c in enumerate(counts) if i != 3)


def test_resolve_secret_fresh_without_seed():
    assert resolve_secret(None) != resolve_secret(None)
    assert resolve_secret(1) == resolve_secret(1) != resolve_secret(2)
