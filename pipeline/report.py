"""Reports: plots a person reads at a glance, and the gate table as Markdown and HTML.

Rendered headless (matplotlib's Agg backend). Every plot has a title, units on its axes
and the relevant threshold drawn in.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import CLASSIFIERS, LOSS_LABELS, REGRESSION, TASKS, fmt_number
from pipeline.evidence import gate_results
from pipeline.files import write_atomic

# matplotlib (0.45 s with pyplot, its backend chosen first) and scipy.stats (0.6 s) are imported inside
# the plotting code: pipeline.gating imports this module for `run-pipeline promote`, `approve`,
# `rollback` and `audit`, which draw nothing.

PLOTS = {
    "predicted_vs_actual": "Predicted vs actual",
    "residuals_vs_predicted": "Residuals vs predicted",
    "residual_qq": "Residual QQ plot",
    "residual_hist": "Residual histogram",
    "slice_errors": "Error per slice",
    "latency_hist": "Single-row latency",
    "champion_bootstrap": "Bootstrap of the MAE difference",
    "champion_log_loss_bootstrap": "Bootstrap of the log-loss difference",
    "reliability": "Reliability curve",
}
# The tasks whose gates draw each plot; a plot not listed is a regressor's.
PLOT_TASKS = {
    "slice_errors": TASKS,
    "latency_hist": TASKS,
    "champion_log_loss_bootstrap": CLASSIFIERS,
    "reliability": CLASSIFIERS,
}


def plots_of(task: str) -> list[str]:
    """The plots a complete gate run of a `task` model draws (each from its gate's data)."""
    return [name for name in PLOTS if task in PLOT_TASKS.get(name, REGRESSION)]


SIZE_IN = (8.0, 5.0)
DPI = 100  # 800 x 500 pixels


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _money(ax, axis: str = "both") -> None:
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v / 1000:,.0f}k" if abs(v) >= 1000 else f"{v:,.0f}")
    if axis in ("x", "both"):
        ax.xaxis.set_major_formatter(fmt)
    if axis in ("y", "both"):
        ax.yaxis.set_major_formatter(fmt)


class _Doc:
    """The evidence's figures and thresholds by gate id, as the plots need them."""

    def __init__(self, doc: dict[str, Any]):
        self.env = doc.get("environment", "")
        self.figures = {g.gate: g.figure or {} for g in gate_results(doc)}

    def value(self, gate: str) -> float | None:
        return self.figures.get(gate, {}).get("value")

    def threshold(self, gate: str) -> dict[str, Any]:
        return self.figures.get(gate, {}).get("threshold") or {}

    def text(self, gate: str) -> str:
        th = self.threshold(gate)
        return f"threshold {th['text']}" if th else "not gated"


def render(
    doc: dict[str, Any], plots: dict[str, dict[str, Any]], out_dir: Path, target: str = "target"
) -> dict[str, Path]:
    """Write every plot whose data a gate recorded to out_dir; return {name: path}.

    Each plot shows the rows and figures the gates judged (their recorded plot data and
    their evidence figures), never a recomputation on other rows.
    """
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    d = _Doc(doc)
    mae_th = d.threshold("mae")
    unit = mae_th.get("unit") or "units"
    mae_max = mae_th.get("max")
    written: dict[str, Path] = {}

    def save(name: str, fig) -> None:
        path = out_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written[name] = path

    sample = plots.get("residual_skew")
    if sample:
        y, p = np.asarray(sample["y"], float), np.asarray(sample["p"], float)
        judged = np.asarray(sample["resid"], float)
        resid = y - p
        rows = f"{len(y)} rows (the residual gates' sample)"
        # Predicted vs actual, with the MAE threshold as a band around the diagonal.
        fig, ax = plt.subplots(figsize=SIZE_IN)
        ax.scatter(y, p, s=8, alpha=0.5, label=rows)
        lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="perfect")
        if mae_max is not None:
            ax.fill_between(
                [lo, hi],
                [lo - mae_max, hi - mae_max],
                [lo + mae_max, hi + mae_max],
                color="tab:green",
                alpha=0.15,
                label=f"+/- MAE threshold {fmt_number(mae_max)} {unit}",
            )
        r2, mae = d.value("r2"), d.value("mae")
        ax.set(
            title=f"Predicted vs actual {target}: R2 {fmt_number(r2)}, MAE {fmt_number(mae)} {unit} ({d.env})",
            xlabel=f"actual {target} ({unit})",
            ylabel=f"predicted {target} ({unit})",
        )
        _money(ax)
        ax.legend(loc="upper left")
        save("predicted_vs_actual", fig)

        # Residuals vs predicted, with the MAE threshold as lines.
        fig, ax = plt.subplots(figsize=SIZE_IN)
        ax.scatter(p, resid, s=8, alpha=0.5)
        ax.axhline(0, color="black", lw=1)
        if mae_max is not None:
            for sign in (1, -1):
                ax.axhline(sign * mae_max, color="tab:red", ls="--", lw=1, label="MAE threshold" if sign > 0 else None)
            ax.legend(loc="upper left")
        ax.set(
            title=f"Residuals vs predicted: spread ratio {fmt_number(d.value('residual_spread'))} ({d.text('residual_spread')}, {d.env})",
            xlabel=f"predicted {target} ({unit})",
            ylabel=f"actual - predicted ({unit})",
        )
        _money(ax)
        save("residuals_vs_predicted", fig)

        # QQ plot of residuals on the judged scale.
        from scipy import stats

        fig, ax = plt.subplots(figsize=SIZE_IN)
        (osm, osr), (slope, intercept, _) = stats.probplot(judged, dist="norm")
        ax.scatter(osm, osr, s=8, alpha=0.6)
        ax.plot(osm, slope * np.asarray(osm) + intercept, color="black", lw=1, label="normal reference")
        scale_unit = "log units" if sample.get("scale") == "log" else unit
        ax.set(
            title=f"Residual QQ: |skew| {fmt_number(d.value('residual_skew'))} ({d.text('residual_skew')}), excess kurtosis {fmt_number(d.value('residual_kurtosis'))} ({d.text('residual_kurtosis')})",
            xlabel="normal theoretical quantiles (sd)",
            ylabel=f"residual quantiles ({scale_unit})",
        )
        ax.legend(loc="upper left")
        save("residual_qq", fig)

        # Residual histogram with the MAE threshold.
        fig, ax = plt.subplots(figsize=SIZE_IN)
        ax.hist(resid, bins=50, color="tab:blue", alpha=0.8)
        if mae_max is not None:
            for sign in (1, -1):
                ax.axvline(sign * mae_max, color="tab:red", ls="--", lw=1, label="MAE threshold" if sign > 0 else None)
            ax.legend()
        ax.set(
            title=f"Residuals: mean {fmt_number(resid.mean())} {unit} over {len(resid)} rows ({d.env})",
            xlabel=f"actual - predicted ({unit})",
            ylabel="rows",
        )
        _money(ax, "x")
        save("residual_hist", fig)

    sl = plots.get("slice_error")
    if sl and sl.get("slices"):
        metric = LOSS_LABELS.get(str(sl.get("metric")), str(sl.get("metric")))
        th = d.threshold("slice_error")
        fig, ax = plt.subplots(figsize=SIZE_IN)
        labels = [f"{c}={v} (n={n})" for c, v, n, _ in sl["slices"]][::-1]
        ratios = [r for *_, r in sl["slices"]][::-1]
        limit = th.get("max")
        colors = ["tab:red" if limit is not None and r > limit else "tab:blue" for r in ratios]
        ax.barh(labels, ratios, color=colors)
        if limit is not None:
            ax.axvline(limit, color="tab:red", ls="--", label=d.text("slice_error"))
        ax.axvline(1.0, color="black", lw=1, label="overall")
        ax.set(
            title=f"Slice {metric} / overall {metric} ({d.env})",
            xlabel=f"ratio of slice {metric} to overall (x)",
            ylabel="",
        )
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(loc="lower right")
        save("slice_errors", fig)

    lat = plots.get("single_row_latency")
    if lat and lat.get("latency_ms"):
        times = np.asarray(lat["latency_ms"], float)
        fig, ax = plt.subplots(figsize=SIZE_IN)
        ax.hist(times, bins=40, color="tab:blue")
        p99 = float(np.percentile(times, 99))
        ax.axvline(p99, color="black", lw=1, label=f"p99 {p99:.1f} ms")
        limit = d.threshold("single_row_latency").get("max")
        if limit is not None:
            ax.axvline(limit, color="tab:red", ls="--", label=d.text("single_row_latency"))
        ax.set(
            title=f"Single-row prediction latency, {len(times)} calls ({d.env})", xlabel="latency (ms)", ylabel="calls"
        )
        ax.legend()
        save("latency_hist", fig)

    for gate, loss, name in (
        ("champion_mae", "MAE", "champion_bootstrap"),
        ("champion_log_loss", "log-loss", "champion_log_loss_bootstrap"),
    ):
        boot = plots.get(gate)
        if not (boot and boot.get("samples")):
            continue
        samples = np.asarray(boot["samples"], float)
        fig, ax = plt.subplots(figsize=SIZE_IN)
        ax.hist(100 * samples, bins=50, color="tab:blue")
        bound = boot.get("bound", "lower")  # the bound the gate judged (checks.CHAMPION_TESTS)
        ax.axvline(
            100 * boot[bound],
            color="black",
            lw=1,
            label=f"{boot['confidence']:.0%} {bound} bound {boot[bound]:+.2%} (judged: {boot.get('test', 'not_confidently_worse').replace('_', '-')})",
        )
        limit = d.threshold(gate).get("max")
        if limit is not None:
            ax.axvline(100 * limit, color="tab:red", ls="--", label=f"margin {limit:+.0%}")
        ax.set(
            title=f"Candidate vs champion {boot.get('champion', '')}: {loss} change {boot['delta']:+.2%} ({d.env})",
            xlabel=f"relative {loss} difference, candidate - champion (%)",
            ylabel="bootstrap resamples",
        )
        ax.legend()
        save(name, fig)

    cal = plots.get("calibration_error")
    if cal and cal.get("reliability"):
        mean_p, freq, counts = (np.asarray(col, float) for col in zip(*cal["reliability"]))
        fig, ax = plt.subplots(figsize=SIZE_IN)
        ax.plot([0, 1], [0, 1], color="black", lw=1, label="calibrated")
        ax.plot(mean_p, freq, color="tab:blue", marker="o", label="observed, per bin (marker area: rows)")
        ax.scatter(mean_p, freq, s=20 + 200 * counts / counts.max(), color="tab:blue", alpha=0.4)
        ax.set(
            title=f"Reliability: observed frequency per probability bin ({d.env})",
            xlabel="mean predicted probability in the bin",
            ylabel="observed frequency",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        ax.legend(loc="upper left")
        save("reliability", fig)
    return written


STATUS_MARK = {
    "passed": "✅ passed",
    "failed": "❌ failed",
    "error": "💥 error",
    "skipped": "⏭ skipped",
    "waived": "⚠️ waived",
    "advisory": "⚠️ advisory",
    "not_applicable": "➖ not applicable",
    "inconclusive": "❔ inconclusive",
}


def markdown(doc: dict[str, Any], plots: dict[str, Path], link_base: Path) -> str:
    """The gate report as Markdown: one row per gate, then links to the plots."""
    model = doc.get("model") or {}
    who = f"{model.get('name')} version {model.get('version')}" if model.get("version") else "model fitted in session"
    lines = [f"## Model gates: {who} ({doc['environment']}) — {doc['status'].upper()}", ""]
    for reason in doc.get("reasons", []):
        lines.append(f"- {reason}")
    if doc.get("reasons"):
        lines.append("")
    lines += ["| gate | family | figure | threshold | status |", "| --- | --- | --- | --- | --- |"]
    gates = gate_results(doc)
    for g in gates:
        lines.append(
            f"| {g.gate} | {g.family} | {g.figure_text} | {g.threshold_text} | {STATUS_MARK.get(g.outcome, g.outcome)} |"
        )
    lines.append("")
    failing = [g for g in gates if g.outcome not in ("passed",) and g.message]
    if failing:
        lines.append("### Why")
        for g in failing:
            lines.append(f"- `{g.gate}`: {g.message}")
        lines.append("")
    if plots:
        lines.append("### Plots")
        for name, path in plots.items():
            rel = path.relative_to(link_base) if path.is_relative_to(link_base) else path
            lines.append(f"- [{PLOTS.get(name, name)}]({rel.as_posix()})")
        lines.append("")
    lines.append(
        f"Evidence: config sha256 `{doc.get('config_sha256', '')[:12]}`, evaluation data sha256 `{str(doc.get('eval_data_sha256'))[:12]}`, model sha256 `{str(model.get('sha256'))[:12]}`, git `{str(doc.get('git_commit'))[:12]}`, {doc.get('started')} → {doc.get('ended')}."
    )
    return "\n".join(lines) + "\n"


def html_report(doc: dict[str, Any], plots: dict[str, Path]) -> str:
    """A self-contained HTML page: the table and the plots embedded as data URIs."""
    model = doc.get("model") or {}
    who = f"{model.get('name')} version {model.get('version')}" if model.get("version") else "model fitted in session"
    rows = []
    for g in gate_results(doc):
        cls = "ok" if g.outcome == "passed" else "bad"
        cells = (g.gate, g.family, g.figure_text, g.threshold_text, g.outcome, g.message or "")
        rows.append(f"<tr class='{cls}'>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    imgs = []
    for name, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode()
        imgs.append(
            f"<figure><img alt='{html.escape(PLOTS.get(name, name))}' src='data:image/png;base64,{data}'><figcaption>{html.escape(PLOTS.get(name, name))}</figcaption></figure>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Model gates: {html.escape(who)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
tr.ok td:nth-child(5){{color:#070}}tr.bad td:nth-child(5){{color:#b00;font-weight:bold}}figure{{display:inline-block;margin:1em}}</style></head>
<body><h1>Model gates: {html.escape(who)} ({html.escape(doc["environment"])}) — {html.escape(doc["status"].upper())}</h1>
<ul>{"".join(f"<li>{html.escape(r)}</li>" for r in doc.get("reasons", []))}</ul>
<table><tr><th>gate</th><th>family</th><th>figure</th><th>threshold</th><th>status</th><th>message</th></tr>{"".join(rows)}</table>
{"".join(imgs)}
</body></html>
"""


def write(
    doc: dict[str, Any], plots: dict[str, dict[str, Any]], out_dir: Path, target: str = "target"
) -> dict[str, Path]:
    """Plots under out_dir/plots, gate-report.md and gate-report.html in out_dir."""
    drawn = render(doc, plots, out_dir / "plots", target) if plots else {}
    md = out_dir / "gate-report.md"
    write_atomic(md, markdown(doc, drawn, out_dir).encode())
    page = out_dir / "gate-report.html"
    write_atomic(page, html_report(doc, drawn).encode())
    return {**drawn, "markdown": md, "html": page}
