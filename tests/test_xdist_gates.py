"""Gates under pytest-xdist (-n 2): evidence collected once by the controller, promotion still correct.

Workers run the gates; each report carries its gate identity and what the gate recorded
(its figure and its plot data) to the controller, which alone writes the evidence, draws
the report's plots and promotes. pytest-benchmark disables itself under xdist, so the
latency gates skip there: a run whose environment requires them is refused, one whose
environment does not is promoted.

The controller runs in this process (conftest's run_gates_in_process): its workers are
processes of their own, so a subprocess around it would add nothing.
"""

from __future__ import annotations

import math

import pytest
import yaml
from matplotlib import image as mpimg

from conftest import (
    CHEAP,
    LIGHT_MODEL,
    ROOT,
    deep_merge,
    registered_versions,
    require_only,
    run_gates_in_process,
    write_project,
)
from pipeline import config as config_mod
from pipeline import registry, report

pytestmark = pytest.mark.slow

report._plt()

NAME = "ames-price"
METRICS = ["r2", "mae", "rmse", "mape"]
LATENCY = ["single_row_latency", "batch_throughput", "latency_vs_champion"]
# Families whose gates record plot data (residuals, slices, champion), beside the two the
# promotion turns on: the plots must be drawn from what the workers recorded.
FILES = ("test_metrics.py", "test_latency.py", "test_residuals.py", "test_slices.py", "test_champion.py")
GATES = [*METRICS, *LATENCY, "residual_skew", "residual_kurtosis", "residual_spread", "residual_autocorrelation",
         "slice_error", "champion_mae"]
BASELINE = "baseline"  # the champion alias both runs compare with


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three versions of the configured model: the first holds @baseline, the champion of both runs."""
    folder = tmp_path_factory.mktemp("xdist")
    cfg = write_project(folder, deep_merge(CHEAP, {"gates": {"champion": {"alias": BASELINE}}}), model=LIGHT_MODEL)
    # dev requires the metrics; staging the metrics and the latency gates; nothing else is required.
    raw = require_only(yaml.safe_load(cfg.read_text()), [*METRICS, *LATENCY])
    for gate in LATENCY:
        raw["environments"]["dev"]["thresholds"][gate]["required"] = False
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    settings = config_mod.load(cfg, "staging")
    assert settings.with_env("dev").environment.required_gates == sorted(METRICS)
    assert settings.environment.required_gates == sorted([*METRICS, *LATENCY])
    baseline, *versions = registered_versions(settings, 3)
    registry.connect(settings).set_registered_model_alias(NAME, BASELINE, baseline)
    return folder, cfg, baseline, versions


def gates_n2(tmp_path, cfg, version: str, env: str):
    return run_gates_in_process(tmp_path / f"{env}-run", cfg, "-n", "2", env=env, promote=True,
                                model_uri=f"models:/{NAME}/{version}", paths=tuple(ROOT / "model_tests" / f for f in FILES))


def test_xdist_run_writes_one_evidence_with_every_gate_and_promotes_when_nothing_required_is_missing(store, tmp_path):
    _, cfg, baseline, (v1, _) = store
    run = gates_n2(tmp_path, cfg, v1, "dev")
    assert run.returncode == 0, run.output[-3000:]
    assert "bringing up nodes" in run.output  # xdist workers ran the gates
    assert [p.name for p in run.evidence_dir.glob("evidence-*.json")] == [f"evidence-{NAME}-v{v1}-dev.json"]
    # Every gate once, with the figure its worker measured (latency gates skip under xdist).
    assert sorted(run.gates) == sorted(GATES)
    for gate in set(GATES) - set(LATENCY):
        assert run.outcomes[gate] == "passed", (gate, run.gates[gate])
        fig = run.figure(gate)
        assert math.isfinite(fig["value"]) and fig["threshold"]["env"] == "dev", fig
        assert run.junit_properties(gate)[f"{gate}.figure"] == repr(fig["value"])
    assert all(run.figure(g)["value"] > 0 for g in METRICS)
    assert f"@{BASELINE}" in run.figure("champion_mae")["detail"] and f"v{baseline}" in run.figure("champion_mae")["detail"]
    assert {run.outcomes[g] for g in LATENCY} == {"skipped"}
    assert run.gates["single_row_latency"]["figure"]["value"] is None
    assert run.evidence["status"] == "passed"
    # The plots are drawn by the controller from the data the workers' gates recorded: every
    # plot whose gate ran (the latency histogram's gate skipped).
    drawn = set(report.plots_of("regression")) - {"latency_hist"}
    assert set(run.plots) == drawn, sorted(run.plots)
    for name, path in run.plots.items():
        assert mpimg.imread(path).shape[:2] == (500, 800), name
    md = (run.evidence_dir / "gate-report.md").read_text()
    assert all(f"(plots/{name}.png)" in md for name in drawn)
    assert f"promoted {NAME} version {v1} to @dev" in run.output
    client = registry.connect(config_mod.load(cfg, "dev"))
    assert str(client.get_registered_model(NAME).aliases["dev"]) == v1


def test_xdist_run_is_refused_where_the_skipped_latency_gates_are_required(store, tmp_path):
    _, cfg, _, (_, v2) = store
    run = gates_n2(tmp_path, cfg, v2, "staging")
    assert run.returncode == 1, run.output[-3000:]
    assert run.evidence["status"] == "failed"
    assert run.refusals == [f"promotion refused: {NAME} version {v2}: staging gates did not pass: "
                            "gates skipped: batch_throughput, latency_vs_champion, single_row_latency"]
    client = registry.connect(config_mod.load(cfg, "staging"))
    assert "staging" not in (client.get_registered_model(NAME).aliases or {})
