"""Protect datasets larger than one machine's memory: parquet shards watermarked shard by shard (issue 16).

:func:`protect_shards` runs the two passes (hash and select, then mark and write) on a :class:`LocalRunner`
(worker processes) and :func:`install` writes the key and puts the output folder in place. The output is byte for
byte what in-memory ``method.apply`` writes; see :mod:`datamark.scale.engine`.
"""

from .engine import Sharded, check_supported, install, protect_shards
from .local import LocalRunner

__all__ = ["LocalRunner", "Sharded", "check_supported", "install", "protect_shards"]
