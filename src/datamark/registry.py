"""Plain name -> class tables: the CLI and the key files refer to things by these names."""

from __future__ import annotations

from typing import Any

MODELS: dict[str, Any] = {}
TRIGGERS: dict[str, Any] = {}
METHODS: dict[str, Any] = {}
MODALITIES: dict[str, Any] = {}
ATTACKS: dict[str, Any] = {}


def register(table: dict[str, Any], name: str):
    """Class decorator adding the class to ``table`` under ``name`` (and recording the name on it)."""
    def decorate(cls):
        if name in table:
            raise RuntimeError(f"duplicate registration of '{name}'")
        table[name] = cls
        cls.registry_name = name
        return cls
    return decorate
