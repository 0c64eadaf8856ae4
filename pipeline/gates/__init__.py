"""The standard gate suite, shipped with the package: one module per family.

Each module registers its gates as values (pipeline.catalogue.GateSpec) and exports their
generated pytest tests. A repository adopts a family with one import line in one of its own
test files, e.g. `from pipeline.gates.metrics import *`, and gets every gate of it, and its
upgrades, without copying gate files. `family` marks a repository's own hand-written gate
test (it then records and judges through the `gate` fixture's `holds`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from pipeline.evidence import FAMILIES

F = TypeVar("F", bound=Callable)


def family(name: str) -> Callable[[F], F]:
    """Mark a test as a gate of one family (`gates` plus the family's marker)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown gate family '{name}' (known: {', '.join(FAMILIES)})")

    def mark(fn: F) -> F:
        return pytest.mark.gates(getattr(pytest.mark, name)(fn))

    return mark
