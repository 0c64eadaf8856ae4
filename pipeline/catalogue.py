"""The standard gates as values: one `GateSpec` per gate, in one catalogue.

A spec's `wire(inputs) -> Finding | NotApplicable` is the one place that chooses the rows,
settings and baseline a gate's check (pipeline.checks) gets. The pytest test of a standard
gate is generated from its spec (`export`); `bench/minimal.py` calls the same wires on a
session without pytest; both judge with pipeline.judge. A family is a module that registers
specs with `@spec(family)` and ends with `__all__ = export(__name__)`: the package's families
are `pipeline.gates.<family>`, and a repository adds its own the same way (its family named
with `register_family`), with no edit to the package.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipeline.checks import Finding
from pipeline.config import TASKS, Settings, Threshold
from pipeline.evidence import FAMILIES, STANDARD_FAMILIES
from pipeline.judge import judge

if TYPE_CHECKING:
    from pipeline.session import GateSession

# The standard families ship as pipeline.gates.<family>, one per entry of evidence.FAMILIES
# (family -> what its gates judge; a pytest marker each); register_family adds one from elsewhere.

# Fixtures a gate may need beyond the session (pytest's or a family's own), by name.
NEEDS = ("benchmark", "served", "tmp_path")


@dataclass(frozen=True)
class NotApplicable:
    """The gate's precondition is absent here: no figure, `reason` in its place. `stated`: the
    config (or the registry) says the absence is expected; a required gate whose absence
    nobody stated fails, saying `how` to state it."""

    reason: str
    stated: bool = True
    how: str = ""


@dataclass
class Inputs:
    """What a wire reads: the run's session, the gate's threshold, and the fixtures it needs."""

    session: GateSession
    threshold: Threshold
    benchmark: Any = None  # pytest-benchmark's fixture; None: timed without it
    served: str | None = None  # the scoring URL of the served candidate
    tmp_path: Path | None = None

    @property
    def settings(self) -> Settings:
        return self.session.settings

    def holds(self, finding: Finding) -> bool:
        return judge(self.threshold, finding).passed


Wire = Callable[[Inputs], "Finding | NotApplicable"]


@dataclass(frozen=True)
class GateSpec:
    id: str
    family: str
    wire: Wire
    doc: str = ""
    needs: tuple[str, ...] = ()  # of NEEDS
    # Fixtures set up before the gate runs, so that evaluation data or a model that cannot be
    # loaded is the gate's error (in setup), not its failure; the data contract gate, which
    # judges the data itself, sets up nothing.
    setup: tuple[str, ...] = ("eval_predictions",)
    # The threshold `run-pipeline init` writes for it, by environment: YAML flow text with an
    # optional comment, e.g. {"staging": "{max: 0, unit: rows}"} (init may override a line
    # with one it infers from the data). A new standard gate brings its line here.
    defaults: Mapping[str, str] = field(default_factory=dict, compare=False)
    marks: tuple[Any, ...] = field(default=(), compare=False)  # further pytest marks on its test
    # The tasks (data.task) whose models it judges; under another, the gate is not collected.
    tasks: tuple[str, ...] = TASKS

    def run(self, inputs: Inputs) -> Finding | NotApplicable:
        return self.wire(inputs)


SPECS: dict[str, GateSpec] = {}  # gate id -> spec, in registration order


# Called with (family, text) for each family registered while a gate session runs (the plugin
# registers its pytest marker).
FAMILY_LISTENERS: list[Callable[[str, str], None]] = []


def register_family(name: str, text: str) -> None:
    """Name a family of gates from outside the package: its specs may then register, and its
    pytest marker (`-m NAME`) is known to the session."""
    if not name.isidentifier():
        raise ValueError(f"gate family '{name}': not a Python identifier (it is a pytest marker)")
    if name not in FAMILIES:
        FAMILIES[name] = text
        for listener in FAMILY_LISTENERS:
            listener(name, text)


def spec(
    family: str,
    *,
    needs: Iterable[str] = (),
    marks: Iterable[Any] = (),
    setup: Iterable[str] = ("eval_predictions",),
    defaults: Mapping[str, str] | None = None,
    tasks: Iterable[str] = TASKS,
) -> Callable[[Wire], GateSpec]:
    """Register the decorated wire as the standard gate named by the function (`r2`, `mae`)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown gate family '{family}' (known: {', '.join(FAMILIES)}; register_family adds one)")
    needs, tasks = tuple(needs), tuple(tasks)
    if not tasks or any(t not in TASKS for t in tasks):
        raise ValueError(f"gate family '{family}': tasks {tasks!r}: each one of {', '.join(TASKS)}")
    unknown = [n for n in needs if n not in NEEDS]
    if unknown:
        raise ValueError(f"gate family '{family}': unknown need {unknown[0]!r} (known: {', '.join(NEEDS)})")

    def register(wire: Wire) -> GateSpec:
        gate_id = wire.__name__
        found = SPECS.get(gate_id)
        if found is not None and found.wire.__module__ != wire.__module__:
            raise ValueError(f"gate '{gate_id}' is already a gate of {found.wire.__module__}")
        made = GateSpec(
            gate_id,
            family,
            wire,
            doc=inspect.getdoc(wire) or "",
            needs=needs,
            setup=tuple(setup),
            marks=tuple(marks),
            defaults=dict(defaults or {}),
            tasks=tasks,
        )
        SPECS[gate_id] = made
        return made

    return register


def as_test(made: GateSpec) -> Callable[..., None]:
    """The pytest test of a spec: `gate` (the plugin's fixture) runs, records and judges it."""

    def test(gate: Any, **fixtures: Any) -> None:
        gate.decide(**{n: fixtures[n] for n in made.needs})

    test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            for n in dict.fromkeys(("gate", *made.setup, *made.needs))
        ]
    )
    test.__name__ = test.__qualname__ = f"test_{made.id}"
    test.__module__ = made.wire.__module__
    test.__doc__ = made.doc
    test.gate_spec = made  # type: ignore[attr-defined]
    marked: Any = test
    for mark in (*made.marks, pytest.mark.gates, getattr(pytest.mark, made.family)):
        marked = mark(marked)
    return marked


def export(module: str, *also: str) -> list[str]:
    """Put the test of every spec `module` registered into it; its `__all__` (with `also`)."""
    target = sys.modules[module]
    names = []
    for gate in SPECS.values():
        if gate.wire.__module__ == module:
            name = f"test_{gate.id}"
            setattr(target, name, as_test(gate))
            names.append(name)
    return [*names, *also]


def standard(task: str | None = None) -> list[GateSpec]:
    """Every standard gate's spec, family by family (importing each family's module); with
    `task`, those that judge its models."""
    for family in STANDARD_FAMILIES:
        importlib.import_module(f"pipeline.gates.{family}")
    order = list(FAMILIES)
    return sorted(
        (
            s
            for s in SPECS.values()
            if s.wire.__module__.startswith("pipeline.gates.") and (task is None or task in s.tasks)
        ),
        key=lambda s: order.index(s.family),
    )
