"""Exact distributed k-th smallest: where the keyed selection of :func:`datamark._rng.select_smallest` cuts.

In-memory protect ranks the eligible rows by ``(keyed score, position)`` and keeps the ``k`` first. Shard by shard
the same rows are kept by a :class:`Cut`: every eligible row whose score is below ``score``, plus, of the rows
whose score *equals* it (duplicate row ids hash alike), the first ``ties[s]`` of shard ``s`` in position order --
shards are in file order, so position order across shards is (shard, row). The cut is found without gathering the
scores: a few rounds of 256-bin histograms over the next 8 bits of the score narrow the bucket holding rank ``k``
(each round reads every shard's cached scores once; memory: shards x 256 counts), and once the bucket holds at
most :data:`GATHER_ROWS` rows its scores are gathered and sorted exactly. With 64-bit uniform scores, one
million rows need one histogram round, a billion two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

BITS_PER_ROUND = 8
GATHER_ROWS = 1 << 16  # rows of one bucket gathered to the coordinator for the exact final sort
#: One query to every shard: ``(prefix, bits, gather)`` -- the eligible rows whose top ``bits`` bits equal
#: ``prefix``; a histogram of their next 8 bits, or (``gather``) their scores in position order.
Query = tuple[int, int, bool]


@dataclass(frozen=True)
class Cut:
    """The rows of rank < k: score below ``score``, or equal to it and among the first ``ties[s]`` of shard s."""

    score: int
    ties: tuple[int, ...]

    def below(self, scores: np.ndarray, shard: int, eligible: np.ndarray | None = None) -> np.ndarray:
        """Mask of the ``eligible`` rows (default all) of shard ``shard`` (its scores, in position order) that lie
        below the cut; ties are counted among eligible rows only, as the selection counted them."""
        mask = scores < np.uint64(self.score)
        tied = scores == np.uint64(self.score)
        if eligible is not None:
            mask &= eligible
            tied &= eligible
        mask[np.flatnonzero(tied)[:self.ties[shard]]] = True
        return mask


def everything(n_shards: int) -> Cut:
    """The cut below which every row lies (k = all eligible rows)."""
    return Cut(2**64 - 1, (np.iinfo(np.int64).max,) * n_shards)


def nothing(n_shards: int) -> Cut:
    """The cut below which no row lies (k = 0)."""
    return Cut(0, (0,) * n_shards)


def answer(scores: np.ndarray, eligible: np.ndarray, queries: Sequence[Query]) -> list[np.ndarray]:
    """One shard's answers to ``queries`` (run where the shard's scores are)."""
    out = []
    for prefix, bits, gather in queries:
        mask = eligible.copy()
        if bits:
            mask &= (scores >> np.uint64(64 - bits)) == np.uint64(prefix)
        if gather:
            out.append(scores[mask])
        else:
            shift = np.uint64(64 - bits - BITS_PER_ROUND)
            out.append(np.bincount(((scores[mask] >> shift) & np.uint64(0xFF)).astype(np.int64), minlength=256))
    return out


def find_cuts(ask: Callable[[list[Query]], list[list[np.ndarray]]], ranks: Sequence[int], n_shards: int,
              total: int) -> list[Cut]:
    """The cut at each of ``ranks`` among ``total`` eligible rows. ``ask(queries)`` returns every shard's answers
    (a list per shard, in shard order); all ranks are narrowed together, one ``ask`` per round."""
    state = {}  # rank -> [prefix, bits, rank within the bucket]
    cuts: dict[int, Cut] = {}
    for k in ranks:
        if not 0 <= k <= total:
            raise ValueError(f"cannot select {k} rows from {total} eligible rows")
        if k == 0:
            cuts[k] = nothing(n_shards)
        elif k == total:
            cuts[k] = everything(n_shards)
        else:
            state[k] = [0, 0, k, False]
    while state:
        pending = list(state)
        replies = ask([(state[k][0], state[k][1], state[k][3]) for k in pending])
        for q, k in enumerate(pending):
            prefix, bits, r, gather = state[k]
            per_shard = [reply[q] for reply in replies]
            if gather:
                cuts[k] = _exact(per_shard, r)
                del state[k]
                continue
            hist = np.sum(per_shard, axis=0)
            cum = np.cumsum(hist)
            b = int(np.searchsorted(cum, r))  # first bucket whose cumulative count reaches r
            r -= int(cum[b - 1]) if b else 0
            prefix, bits = (prefix << BITS_PER_ROUND) | b, bits + BITS_PER_ROUND
            if bits == 64:  # one score value: all ties, taken in (shard, row) order
                counts = [int(h[b]) for h in per_shard]
                cuts[k] = Cut(prefix, _spread(r, counts))
                del state[k]
            else:
                state[k] = [prefix, bits, r, int(hist[b]) <= GATHER_ROWS]
    return [cuts[k] for k in ranks]


def _exact(per_shard: list[np.ndarray], r: int) -> Cut:
    """The cut at rank ``r`` among the gathered scores of one bucket (each shard's in position order)."""
    scores = np.concatenate(per_shard)
    shard = np.repeat(np.arange(len(per_shard)), [len(s) for s in per_shard])
    position = np.concatenate([np.arange(len(s)) for s in per_shard])
    order = np.lexsort((position, shard, scores))
    threshold = scores[order[r - 1]]
    need = r - int((scores < threshold).sum())
    return Cut(int(threshold), _spread(need, [int((s == threshold).sum()) for s in per_shard]))


def _spread(need: int, counts: list[int]) -> tuple[int, ...]:
    """Take ``need`` tied rows, shard after shard in file order."""
    ties = []
    for count in counts:
        take = min(need, count)
        ties.append(take)
        need -= take
    return tuple(ties)
