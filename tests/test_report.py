"""Gate reports from a real gate run: plots that are really drawn, Markdown, HTML, JUnit XML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from pipeline import config, jobs, registry, report

pytestmark = pytest.mark.slow


def pixel_spread(path: Path) -> float:
    """Standard deviation of the pixel values: ~0 for a blank image."""
    return float(np.asarray(mpimg.imread(path), float)[..., :3].std())


@pytest.fixture(scope="module")
def gate_run(tmp_path_factory):
    """Version 1 holds @staging; version 2 is gated against it with --model-uri (no promotion)."""
    from tests.conftest import write_project

    folder = tmp_path_factory.mktemp("report")
    # This test is about the reports, not speed: latency bounds that a busy machine meets.
    cfg = write_project(folder / "project", {"environments": {"staging": {"thresholds": {
        "single_row_p99_ms": {"max": 5000, "unit": "ms"}, "batch_throughput": {"min": 100, "unit": "rows/s"}}}}})
    settings = config.load(cfg, "staging")
    first = jobs.train_and_log(settings, progress=lambda s: None).candidate
    registry.connect(settings).set_registered_model_alias(first.name, "staging", first.version)
    second = jobs.train_and_log(settings.with_env("staging"), progress=lambda s: None).candidate
    out = folder / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(Path(__file__).resolve().parents[1] / "model_tests"), "-m", "gates",
         "--model-uri", second.uri, "--pipeline-config", str(cfg), "--env", "staging", "--evidence-dir", str(out),
         f"--junitxml={out / 'gates.xml'}", "-p", "no:cacheprovider", "-q"],
        cwd=folder, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    import json

    evidence = json.loads((out / f"evidence-{second.name}-v{second.version}-staging.json").read_text())
    return settings, second, out, evidence


def test_every_plot_is_drawn(gate_run):
    _, _, out, _ = gate_run
    for name in report.PLOTS:
        path = out / "plots" / f"{name}.png"
        assert path.is_file(), f"{name}.png missing"
        pixels = mpimg.imread(path)
        assert pixels.shape[:2] == (500, 800), f"{name}.png is {pixels.shape[1]}x{pixels.shape[0]}, expected 800x500"
        assert pixel_spread(path) > 0.05, f"{name}.png looks blank (pixel sd {pixel_spread(path):.4f})"


def test_blank_image_is_caught(tmp_path):
    blank = tmp_path / "blank.png"
    mpimg.imsave(blank, np.ones((500, 800, 3)))
    assert pixel_spread(blank) < 0.05


def test_markdown_lists_every_gate_that_ran_and_links_plots(gate_run):
    _, _, out, evidence = gate_run
    md = (out / "gate-report.md").read_text()
    ran = [g["gate"] for g in evidence["gates"]]
    assert len(ran) >= 25
    for gate in ran:
        assert f"| {gate} |" in md, f"{gate} missing from the Markdown table"
    for name in report.PLOTS:
        assert f"(plots/{name}.png)" in md
    assert "PASSED" in md.splitlines()[0]


def test_html_is_self_contained(gate_run):
    _, _, out, evidence = gate_run
    page = (out / "gate-report.html").read_text()
    assert page.count("data:image/png;base64,") == len(report.PLOTS)
    assert "src='http" not in page and 'src="http' not in page
    for g in evidence["gates"]:
        assert f"<td>{g['gate']}</td>" in page


def test_junit_xml_carries_figures_and_thresholds(gate_run):
    from junitparser import JUnitXml, Properties, Property

    _, _, out, evidence = gate_run
    xml = JUnitXml.fromfile(str(out / "gates.xml"))
    cases = {case.name: case for suite in xml for case in suite}
    assert len(cases) == len(evidence["gates"])
    for g in evidence["gates"]:
        case = cases[f"test_{g['gate']}"]
        # junitparser reads suite-level properties natively; a testcase's are its child elements.
        props = {p.name: p.value for block in case.iterchildren(Properties) for p in block.iterchildren(Property)}
        for fig in g["figures"]:
            assert f"{fig['name']}.threshold" in props, f"{g['gate']}: no threshold property"
            assert f"{fig['name']}.figure" in props, f"{g['gate']}: no figure property"
            if fig["value"] is not None:
                assert float(props[f"{fig['name']}.figure"]) == pytest.approx(fig["value"])


def test_reports_are_logged_on_the_version_run(gate_run):
    settings, version, _, _ = gate_run
    client = registry.connect(settings)
    logged = {a.path for a in client.list_artifacts(version.run_id, "reports/staging")}
    assert {"reports/staging/gate-report.md", "reports/staging/gate-report.html", "reports/staging/plots"} <= logged
    plots = {Path(a.path).name for a in client.list_artifacts(version.run_id, "reports/staging/plots")}
    assert plots == {f"{name}.png" for name in report.PLOTS}
