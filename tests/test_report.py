"""Gate reports from a real gate run: plots that are really drawn, Markdown, HTML, JUnit XML.

The report draws its plots from what the gates recorded, never from a recomputation: the
residual plots from the residual gates' sample, the slice plot from slice_error, the
latency histogram from single_row_latency, the bootstrap from champion_mae. The gate run
loads a spy plugin (`plot_spy`) that writes down, for every plot saved, what it says:
titles, labels, legend entries, lines, bars and points. So each plot is checked against
the figures and thresholds the evidence holds for the gate it comes from.

One gate run serves every test of this module, so it is a subprocess started by a
module-scoped fixture (conftest's run_gates), not a per-test pytester run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from conftest import CHEAP, LIGHT_MODEL, SHARED_MACHINE, GateRun, deep_merge, run_gates, write_project
from pipeline import config, data, figures, jobs, registry, report, train
from pipeline.config import fmt_number

pytestmark = pytest.mark.slow

ENV = "staging"
# Imported by the gate run (-p plot_spy): after each savefig, what the figure says, by plot name.
PLOT_SPY = '''
import json, os
from pathlib import Path

from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

_savefig = Figure.savefig


def _said(fig):
    (ax,) = fig.axes
    legend = ax.get_legend()
    return {
        "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
        "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
        "lines": [[float(v) for v in (*ln.get_xdata()[:2], *ln.get_ydata()[:2])] for ln in ax.lines if len(ln.get_xdata()) == 2],
        "points": sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)),
        "bars": [[float(p.get_width()), float(p.get_height())] for p in ax.patches],  # [width, height]
        "yticklabels": [t.get_text() for t in ax.get_yticklabels()],
    }


def savefig(self, fname, *args, **kwargs):
    _savefig(self, fname, *args, **kwargs)
    out = Path(os.environ["PLOT_SPY"])
    said = json.loads(out.read_text()) if out.exists() else {}
    said[Path(str(fname)).stem] = _said(self)
    out.write_text(json.dumps(said))


Figure.savefig = savefig
'''


def pixel_spread(path: Path) -> float:
    """Standard deviation of the pixel values: ~0 for a blank image."""
    return float(np.asarray(mpimg.imread(path), float)[..., :3].std())


@pytest.fixture(scope="module")
def gate_run(tmp_path_factory):
    """Version 1 holds @staging; version 2 is gated against it with --model-uri (no promotion).

    Version 1 is fitted on half the training rows, so the two differ and the bootstrap of
    their MAE difference is a real distribution.
    """
    folder = tmp_path_factory.mktemp("report")
    # This test is about the reports, not speed: cheap gate settings, latency bounds a busy machine meets.
    cfg = write_project(folder / "project", deep_merge(CHEAP, SHARED_MACHINE), model=LIGHT_MODEL)
    settings = config.load(cfg, ENV)
    dataset = data.load(settings)
    parts = data.split(settings, dataset)
    half = train.fit(settings, dataset.features, parts.train.sample(frac=0.5, random_state=0))
    metrics = figures.regression_metrics(parts.eval[settings.data.target].to_numpy(), half.predict(parts.eval[dataset.features.columns]))
    first = registry.log_candidate(settings, half, dataset, parts.eval, metrics)
    registry.connect(settings).set_registered_model_alias(first.name, ENV, first.version)
    second = jobs.train_and_log(settings, progress=lambda s: None).candidate
    (folder / "plot_spy.py").write_text(PLOT_SPY)
    run = run_gates(folder / "gates", cfg, "-p", "plot_spy", env=ENV, model_uri=second.uri,
                    pythonpath=(folder,), environ={"PLOT_SPY": str(folder / "said.json")})
    assert run.returncode == 0, run.output[-4000:]
    assert run.evidence["status"] == "passed", run.evidence["reasons"]
    assert run.evidence["model"]["version"] == second.version
    said = json.loads((folder / "said.json").read_text())
    return settings, first, second, run, said


def test_every_plot_is_drawn(gate_run):
    _, _, _, run, said = gate_run
    # Every gate a plot is drawn from ran and recorded its data, so every plot is there.
    for gate in ("residual_skew", "slice_error", "single_row_latency", "champion_mae"):
        assert run.outcomes[gate] == "passed"
    assert set(run.plots) == set(report.plots_of("regression")) == set(said)
    for name, path in run.plots.items():
        pixels = mpimg.imread(path)
        assert pixels.shape[:2] == (500, 800), f"{name}.png is {pixels.shape[1]}x{pixels.shape[0]}, expected 800x500"
        assert pixel_spread(path) > 0.05, f"{name}.png looks blank (pixel sd {pixel_spread(path):.4f})"
        assert said[name]["title"] and said[name]["xlabel"], f"{name}: no title or axis label"


def test_blank_image_is_caught(tmp_path):
    blank = tmp_path / "blank.png"
    mpimg.imsave(blank, np.ones((500, 800, 3)))
    assert pixel_spread(blank) < 0.05


def rows_in(detail: str, what: str) -> int:
    found = re.search(rf"(\d+) {what}", detail)
    assert found, detail
    return int(found[1])


def mae_band(run: GateRun) -> tuple[float, str]:
    th = run.figure("mae")["threshold"]
    return th["max"], th["unit"]


def test_residual_plots_show_the_residual_gates_sample_and_their_thresholds(gate_run):
    _, _, _, run, said = gate_run
    rows = rows_in(run.figure("residual_skew")["detail"], "rows")  # the residual gates' sample
    assert rows == rows_in(run.figure("residual_kurtosis")["detail"], "rows")
    limit, unit = mae_band(run)
    fig = {g: run.figure(g) for g in ("r2", "mae", "residual_skew", "residual_kurtosis", "residual_spread")}

    pva = said["predicted_vs_actual"]
    assert pva["title"] == (f"Predicted vs actual Sale_Price: R2 {fmt_number(fig['r2']['value'])}, "
                            f"MAE {fmt_number(fig['mae']['value'])} {unit} ({ENV})")
    assert pva["points"] == rows
    assert pva["legend"] == [f"{rows} rows (the residual gates' sample)", "perfect", f"+/- MAE threshold {fmt_number(limit)} {unit}"]

    rvp = said["residuals_vs_predicted"]
    spread = fig["residual_spread"]
    assert rvp["title"] == f"Residuals vs predicted: spread ratio {fmt_number(spread['value'])} (threshold {spread['threshold']['text']}, {ENV})"
    assert rvp["points"] == rows
    assert sorted(y0 for *_, y0, y1 in rvp["lines"] if y0 == y1 and y0) == [-limit, limit]  # the MAE threshold lines

    qq = said["residual_qq"]
    skew, kurt = fig["residual_skew"], fig["residual_kurtosis"]
    assert qq["title"] == (f"Residual QQ: |skew| {fmt_number(skew['value'])} (threshold {skew['threshold']['text']}), "
                           f"excess kurtosis {fmt_number(kurt['value'])} (threshold {kurt['threshold']['text']})")
    assert qq["ylabel"] == "residual quantiles (log units)"  # judged on the configured log scale
    assert qq["points"] == rows

    hist = said["residual_hist"]
    assert re.fullmatch(rf"Residuals: mean -?[\d,.]+ {unit} over {rows} rows \({ENV}\)", hist["title"]), hist["title"]
    assert len(hist["bars"]) == 50
    assert sorted(x0 for x0, x1, *_ in hist["lines"] if x0 == x1) == [-limit, limit]


def test_slice_plot_shows_every_judged_slice_against_the_threshold(gate_run):
    _, _, _, run, said = gate_run
    fig = run.figure("slice_error")
    plot = said["slice_errors"]
    assert plot["title"] == f"Slice MAPE / overall MAPE ({ENV})"
    assert len(plot["bars"]) == rows_in(fig["detail"], "slices judged")
    assert max(w for w, _ in plot["bars"]) == pytest.approx(fig["value"])  # the worst slice is the gate's figure
    worst = re.search(r"worst slice (\S+) \((\d+) rows", fig["detail"])
    assert f"{worst[1]} (n={worst[2]})" in plot["yticklabels"]
    assert plot["legend"] == [f"threshold {fig['threshold']['text']}", "overall"]
    assert sorted(x0 for x0, x1, *_ in plot["lines"] if x0 == x1) == sorted([fig["threshold"]["max"], 1.0])


def test_latency_plot_shows_the_gates_calls_and_threshold(gate_run):
    _, _, _, run, said = gate_run
    fig = run.figure("single_row_latency")
    plot = said["latency_hist"]
    calls = CHEAP["gates"]["latency"]["single_row_rounds"]
    assert rows_in(fig["detail"], "single-row predicts") == calls
    assert plot["title"] == f"Single-row prediction latency, {calls} calls ({ENV})"
    assert plot["legend"] == [f"p99 {fig['value']:.1f} ms", f"threshold {fig['threshold']['text']}"]
    assert fig["threshold"]["max"] == SHARED_MACHINE["environments"][ENV]["thresholds"]["single_row_latency"]["max"]
    assert sorted(x0 for x0, x1, *_ in plot["lines"] if x0 == x1) == pytest.approx(sorted([fig["value"], fig["threshold"]["max"]]))


def test_bootstrap_plot_shows_the_champion_gates_resamples_judged_bound_and_margin(gate_run):
    _, first, _, run, said = gate_run
    gate = run.gates["champion_mae"]
    fig = gate["figure"]
    plot = said["champion_bootstrap"]
    assert plot["title"] == (f"Candidate vs champion {first.name} v{first.version} @{ENV}: "
                             f"MAE change {gate['reported']['champion_mae_change']:+.2%} ({ENV})")
    assert fig["value"] < 0  # the champion saw half the rows: the candidate is better
    assert plot["legend"] == [f"95% upper bound {fig['value']:+.2%} (judged: non-inferiority)", f"margin {fig['threshold']['max']:+.0%}"]
    assert sorted(x0 for x0, x1, *_ in plot["lines"] if x0 == x1) == pytest.approx(sorted([100 * fig["value"], 100 * fig["threshold"]["max"]]))
    assert len(plot["bars"]) == 50 and sum(1 for _, h in plot["bars"] if h) > 1  # a distribution, not one value
    assert sum(h for _, h in plot["bars"]) == CHEAP["gates"]["champion"]["bootstrap_resamples"]


def test_markdown_lists_every_gate_that_ran_and_links_plots(gate_run):
    _, _, _, run, _ = gate_run
    md = (run.evidence_dir / "gate-report.md").read_text()
    assert len(run.gates) >= 25
    for gate, g in run.gates.items():
        row = next((ln for ln in md.splitlines() if ln.startswith(f"| {gate} | {g['family']} |")), None)
        assert row, f"{gate} missing from the Markdown table"
        assert g["outcome"] in row
        if g["figure"] is not None:
            assert f"| {g['figure']['threshold']['text']} |" in row, row
    for name in report.plots_of("regression"):
        assert f"(plots/{name}.png)" in md
    assert "PASSED" in md.splitlines()[0]


def test_html_is_self_contained(gate_run):
    _, _, _, run, _ = gate_run
    page = (run.evidence_dir / "gate-report.html").read_text()
    assert page.count("data:image/png;base64,") == len(report.plots_of("regression"))
    assert "src='http" not in page and 'src="http' not in page
    for gate in run.gates:
        assert f"<td>{gate}</td>" in page


def test_junit_xml_carries_figures_and_thresholds_keyed_by_gate(gate_run):
    from junitparser import JUnitXml, Properties, Property

    _, _, _, run, _ = gate_run
    xml = JUnitXml.fromfile(str(run.evidence_dir.parent / "gates.xml"))
    cases = {case.name: case for suite in xml for case in suite}
    assert len(cases) == len(run.gates)
    recorded = 0
    for gate, g in run.gates.items():
        case = cases[f"test_{gate}"]
        # junitparser reads suite-level properties natively; a testcase's are its child elements.
        props = {p.name: p.value for block in case.iterchildren(Properties) for p in block.iterchildren(Property)}
        assert all(k.startswith(f"{gate}.") for k in props), f"{gate}: properties of another gate: {sorted(props)}"
        fig = g["figure"]
        if g["outcome"] == "skipped":  # nothing recorded (serving skips at staging): no figure, nothing to carry
            assert fig["value"] is None and fig["threshold"]["env"] == "staging", f"{gate}: {fig}"  # its threshold still shown
            assert not props, f"{gate}: {props}"
            continue
        recorded += 1
        th = fig["threshold"]
        assert props[f"{gate}.threshold"] == th["text"], f"{gate}: threshold property"
        assert props[f"{gate}.direction"] == th["direction"] and props[f"{gate}.unit"] == th["unit"]
        assert props[f"{gate}.env"] == ENV
        assert float(props[f"{gate}.figure"]) == pytest.approx(fig["value"], nan_ok=True), f"{gate}: figure property"
        if fig["detail"]:
            assert props[f"{gate}.detail"] == fig["detail"]
    assert recorded >= 25


def test_reports_are_logged_on_the_version_run(gate_run):
    settings, _, version, _, _ = gate_run
    client = registry.connect(settings)
    logged = {a.path for a in client.list_artifacts(version.run_id, f"reports/{ENV}")}
    assert {f"reports/{ENV}/gate-report.md", f"reports/{ENV}/gate-report.html", f"reports/{ENV}/plots"} <= logged
    plots = {Path(a.path).name for a in client.list_artifacts(version.run_id, f"reports/{ENV}/plots")}
    assert plots == {f"{name}.png" for name in report.plots_of("regression")}
