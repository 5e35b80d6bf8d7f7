"""Protect datasets larger than one machine's memory: parquet or WebDataset tar shards watermarked shard by shard
(issue 16).

:func:`protect_shards` runs the two passes (hash and select, then mark and write) on a :class:`LocalRunner`
(worker processes) or a :class:`RayRunner` (Ray tasks, ``pip install "datamark[ray]"``), and :func:`install`
writes the key and puts the output folder in place. The output is byte for byte what in-memory ``method.apply``
writes; see :mod:`datamark.scale.engine`.
"""

from .engine import Sharded, check_supported, install, protect_shards
from .local import LocalRunner
from .ray import RayRunner

__all__ = ["LocalRunner", "RayRunner", "Sharded", "check_supported", "install", "protect_shards"]
