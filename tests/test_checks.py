"""Unit tests: every standard check, the figure domains, Threshold, environments, evidence judging, gate identity.

Pure functions on small, hand-made inputs: no pytest session, no MLflow, no fit of the
configured model. The figures are worked out independently here (numpy by hand).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression

from pipeline import checks, figures
from pipeline import config as config_mod
from pipeline import data as data_mod
from pipeline import evidence as evidence_mod
from pipeline.judge import judge
from pipeline import robustness as rb
from pipeline.config import Threshold
from pipeline.errors import InputError
from conftest import CONFIG, write_project

Y = np.array([100.0, 200.0, 300.0, 400.0])
P = np.array([110.0, 190.0, 330.0, 400.0])


# ---------------------------------------------------------------- every standard gate has a check of its name


def test_every_standard_gate_is_a_spec_with_a_check_a_domain_and_a_generated_test():
    import ast
    import importlib
    from pathlib import Path

    from pipeline import catalogue
    from pipeline.evidence import FAMILIES

    specs = catalogue.standard()
    assert len(specs) == 30 and [s.family for s in specs] == sorted((s.family for s in specs), key=list(FAMILIES).index)
    gates = {s.id for s in specs}
    assert gates <= set(checks.DOMAINS), gates - set(checks.DOMAINS)
    for s in specs:
        assert callable(getattr(checks, s.id)), s.id
        module = importlib.import_module(f"pipeline.gates.{s.family}")
        test = getattr(module, f"test_{s.id}")
        assert f"test_{s.id}" in module.__all__ and test.gate_spec is s and s.doc
        assert {m.name for m in test.pytestmark} >= {"gates", s.family}
    # A gate's test is at most three statements: the wiring lives in its spec, once.
    for path in Path(catalogue.__file__).parent.joinpath("gates").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                assert len(node.body) <= 3, f"{path.name}: {node.name} has {len(node.body)} statements"


def test_a_gate_is_as_good_as_its_worst_case():
    g = evidence_mod.GateResult("r2", "metrics")
    for outcome in ("passed", "failed", "passed"):
        g.merge_outcome(outcome)
    assert g.outcome == "failed"


def test_gate_identity_is_the_test_name_and_one_family(pytester):
    items = pytester.getitems("""
        import pytest
        from pipeline.gates import family

        @family("metrics")
        @pytest.mark.parametrize("k", [1, 2])
        def test_median_error(k):
            pass

        def test_not_a_gate():
            pass
    """)
    from pipeline.plugin import gate_identity

    assert [gate_identity(i) for i in items] == [("median_error", "metrics"), ("median_error", "metrics"), None]
    with pytest.raises(ValueError, match="unknown gate family 'metric'"):
        from pipeline.gates import family

        family("metric")


def test_a_threshold_relative_to_the_baseline_judges_the_ratio_beside_any_absolute_bound():
    y = np.array([100.0, 200.0, 300.0, 400.0])
    p = y + np.array([10.0, -10.0, 10.0, -10.0])
    baseline = np.full(4, 250.0)  # the median: MAE 100
    f = checks.mae(y, p, baseline)
    assert f.value == 10 and f.reported == {"mae_baseline": 100.0, "mae_ratio_to_baseline": 0.1}
    assert f.detail == "4 evaluation rows; baseline (the training target's median) MAE 100, ratio 0.1"
    ratio = Threshold(gate="mae", env="dev", max_ratio_to_baseline=0.05)
    assert ratio.describe() == "<= 0.05x baseline" and not ratio.holds(f.value, 0.1) and ratio.holds(f.value, 0.04)
    assert not ratio.holds(f.value)  # a ratio bound with no ratio measured never holds
    assert ratio.explain("MAE", 10, ratio=0.1) == "MAE 10 is 0.1x the baseline's > 0.05x (dev)"
    both = Threshold(gate="mae", env="dev", max=5, unit="kg", max_ratio_to_baseline=0.5)
    assert both.describe() == "<= 5 kg and <= 0.5x baseline" and not both.holds(10, 0.1) and both.holds(4, 0.1)
    assert checks.mae(y, p).reported == {}  # without a baseline: the figure alone
