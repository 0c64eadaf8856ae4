"""Reports: plots a person reads at a glance, and the gate table as Markdown and HTML.

Rendered headless (matplotlib's Agg backend). Every plot has a title, units on its axes
and the relevant threshold drawn in.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import figures
from pipeline.config import Settings, fmt_number

PLOTS = {
    "predicted_vs_actual": "Predicted vs actual",
    "residuals_vs_predicted": "Residuals vs predicted",
    "residual_qq": "Residual QQ plot",
    "residual_hist": "Residual histogram",
    "slice_errors": "Error per slice",
    "latency_hist": "Single-row latency",
    "champion_bootstrap": "Bootstrap of the MAE difference",
}
SIZE_IN = (8.0, 5.0)
DPI = 100  # 800 x 500 pixels


@dataclass(frozen=True)
class ReportInputs:
    settings: Settings
    y: np.ndarray
    p: np.ndarray
    frame: Any
    latency_ms: np.ndarray | None = None
    bootstrap: figures.Bootstrap | None = None
    champion_label: str = ""


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


def render(inputs: ReportInputs, out_dir: Path) -> dict[str, Path]:
    """Write every plot that has data to out_dir; return {name: path}."""
    plt = _plt()
    out_dir.mkdir(parents=True, exist_ok=True)
    s, th = inputs.settings, inputs.settings.thresholds
    unit = th.mae.unit or "units"
    target = s.data.target
    y, p = np.asarray(inputs.y, float), np.asarray(inputs.p, float)
    resid = y - p
    written: dict[str, Path] = {}

    def save(name: str, fig) -> None:
        path = out_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written[name] = path

    mae_max = th.mae.max
    # Predicted vs actual, with the MAE threshold as a band around the diagonal.
    fig, ax = plt.subplots(figsize=SIZE_IN)
    ax.scatter(y, p, s=8, alpha=0.5, label="evaluation rows")
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, label="perfect")
    if mae_max is not None:
        ax.fill_between([lo, hi], [lo - mae_max, hi - mae_max], [lo + mae_max, hi + mae_max], color="tab:green", alpha=0.15, label=f"+/- MAE threshold {fmt_number(mae_max)} {unit}")
    ax.set(title=f"Predicted vs actual {target}: R2 {figures.r2(y, p):.3f}, MAE {fmt_number(figures.mae(y, p))} {unit} ({s.env})",
           xlabel=f"actual {target} ({unit})", ylabel=f"predicted {target} ({unit})")
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
    sp = figures.spread(figures.residuals(y, p, s.gates.residuals.scale), np.log(p) if s.gates.residuals.scale == "log" else p)
    ax.set(title=f"Residuals vs predicted: spread ratio {sp.ratio:.2f} (threshold {th.residual_spread_ratio.describe()}, {s.env})",
           xlabel=f"predicted {target} ({unit})", ylabel=f"actual - predicted ({unit})")
    _money(ax)
    ax.legend(loc="upper left")
    save("residuals_vs_predicted", fig)

    # QQ plot of residuals on the judged scale.
    from scipy import stats

    judged = figures.residuals(y, p, s.gates.residuals.scale)
    norm = figures.normality(judged)
    fig, ax = plt.subplots(figsize=SIZE_IN)
    (osm, osr), (slope, intercept, _) = stats.probplot(judged, dist="norm")
    ax.scatter(osm, osr, s=8, alpha=0.6)
    ax.plot(osm, slope * np.asarray(osm) + intercept, color="black", lw=1, label="normal reference")
    scale_unit = "log units" if s.gates.residuals.scale == "log" else unit
    ax.set(title=f"Residual QQ: skew {norm.skew:.2f} ({th.residual_skew.describe()}), excess kurtosis {norm.excess_kurtosis:.2f} ({th.residual_excess_kurtosis.describe()})",
           xlabel="normal theoretical quantiles (sd)", ylabel=f"residual quantiles ({scale_unit})")
    ax.legend(loc="upper left")
    save("residual_qq", fig)

    # Residual histogram with the MAE threshold.
    fig, ax = plt.subplots(figsize=SIZE_IN)
    ax.hist(resid, bins=50, color="tab:blue", alpha=0.8)
    if mae_max is not None:
        for sign in (1, -1):
            ax.axvline(sign * mae_max, color="tab:red", ls="--", lw=1, label="MAE threshold" if sign > 0 else None)
        ax.legend()
    ax.set(title=f"Residuals: mean {fmt_number(resid.mean())} {unit}, Jarque-Bera p={norm.jb_p_value:.2g} ({s.env})",
           xlabel=f"actual - predicted ({unit})", ylabel="rows")
    _money(ax, "x")
    save("residual_hist", fig)

    # Error per slice as bars, the ratio threshold as a line.
    cfg = s.gates.slices
    slices = figures.slice_errors(inputs.frame, y, p, cfg.columns, target, cfg.target_bands, cfg.min_rows, cfg.metric)
    if slices:
        fig, ax = plt.subplots(figsize=SIZE_IN)
        labels = [f"{sl.column}={sl.value} (n={sl.rows})" for sl in slices][::-1]
        ratios = [sl.ratio for sl in slices][::-1]
        colors = ["tab:red" if not th.slice_error_ratio.holds(r) else "tab:blue" for r in ratios]
        ax.barh(labels, ratios, color=colors)
        if th.slice_error_ratio.max is not None:
            ax.axvline(th.slice_error_ratio.max, color="tab:red", ls="--", label=f"threshold {th.slice_error_ratio.describe()}")
        ax.axvline(1.0, color="black", lw=1, label="overall")
        ax.set(title=f"Slice {cfg.metric.upper()} / overall {cfg.metric.upper()} ({s.env})", xlabel=f"ratio of slice {cfg.metric.upper()} to overall (x)", ylabel="")
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(loc="lower right")
        save("slice_errors", fig)

    if inputs.latency_ms is not None and len(inputs.latency_ms):
        lat = np.asarray(inputs.latency_ms, float)
        fig, ax = plt.subplots(figsize=SIZE_IN)
        ax.hist(lat, bins=40, color="tab:blue")
        p99 = float(np.percentile(lat, 99))
        ax.axvline(p99, color="black", lw=1, label=f"p99 {p99:.1f} ms")
        if th.single_row_p99_ms.max is not None:
            ax.axvline(th.single_row_p99_ms.max, color="tab:red", ls="--", label=f"threshold {th.single_row_p99_ms.describe()}")
        ax.set(title=f"Single-row prediction latency, {len(lat)} calls ({s.env})", xlabel="latency (ms)", ylabel="calls")
        ax.legend()
        save("latency_hist", fig)

    if inputs.bootstrap is not None:
        b = inputs.bootstrap
        fig, ax = plt.subplots(figsize=SIZE_IN)
        ax.hist(100 * b.samples, bins=50, color="tab:blue")
        ax.axvline(100 * b.lower, color="black", lw=1, label=f"{b.confidence:.0%} lower bound {b.lower:+.2%}")
        if th.champion_mae_delta.max is not None:
            ax.axvline(100 * th.champion_mae_delta.max, color="tab:red", ls="--", label=f"tolerance {th.champion_mae_delta.max:+.0%}")
        ax.set(title=f"Candidate vs champion {inputs.champion_label}: MAE change {b.delta:+.2%} ({s.env})",
               xlabel="relative MAE difference, candidate - champion (%)", ylabel="bootstrap resamples")
        ax.legend()
        save("champion_bootstrap", fig)
    return written


def _figure_text(g: dict[str, Any]) -> tuple[str, str]:
    figs = g.get("figures") or []
    if not figs:
        return "-", "-"
    f = figs[0]
    th = f.get("threshold") or {}
    unit = th.get("unit", "")
    value = "-" if f.get("value") is None else f"{fmt_number(f['value'])}{' ' + unit if unit and unit != '%' else unit}"
    return value, th.get("text", "-")


STATUS_MARK = {"passed": "✅ passed", "failed": "❌ failed", "error": "💥 error", "skipped": "⏭ skipped"}


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
    for g in doc.get("gates", []):
        fig, th = _figure_text(g)
        lines.append(f"| {g['gate']} | {g['family']} | {fig} | {th} | {STATUS_MARK.get(g['outcome'], g['outcome'])} |")
    lines.append("")
    failing = [g for g in doc.get("gates", []) if g["outcome"] not in ("passed",) and g.get("message")]
    if failing:
        lines.append("### Why")
        for g in failing:
            lines.append(f"- `{g['gate']}`: {g['message']}")
        lines.append("")
    if plots:
        lines.append("### Plots")
        for name, path in plots.items():
            rel = path.relative_to(link_base) if path.is_relative_to(link_base) else path
            lines.append(f"- [{PLOTS.get(name, name)}]({rel.as_posix()})")
        lines.append("")
    lines.append(f"Evidence: config sha256 `{doc.get('config_sha256', '')[:12]}`, evaluation data sha256 `{str(doc.get('eval_data_sha256'))[:12]}`, model sha256 `{str(model.get('sha256'))[:12]}`, git `{str(doc.get('git_commit'))[:12]}`, {doc.get('started')} → {doc.get('ended')}.")
    return "\n".join(lines) + "\n"


def html_report(doc: dict[str, Any], plots: dict[str, Path]) -> str:
    """A self-contained HTML page: the table and the plots embedded as data URIs."""
    model = doc.get("model") or {}
    who = f"{model.get('name')} version {model.get('version')}" if model.get("version") else "model fitted in session"
    rows = []
    for g in doc.get("gates", []):
        fig, th = _figure_text(g)
        cls = "ok" if g["outcome"] == "passed" else "bad"
        rows.append(f"<tr class='{cls}'><td>{html.escape(g['gate'])}</td><td>{html.escape(g['family'])}</td><td>{html.escape(fig)}</td>"
                    f"<td>{html.escape(th)}</td><td>{html.escape(g['outcome'])}</td><td>{html.escape(g.get('message') or '')}</td></tr>")
    imgs = []
    for name, path in plots.items():
        data = base64.b64encode(path.read_bytes()).decode()
        imgs.append(f"<figure><img alt='{html.escape(PLOTS.get(name, name))}' src='data:image/png;base64,{data}'><figcaption>{html.escape(PLOTS.get(name, name))}</figcaption></figure>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Model gates: {html.escape(who)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}
tr.ok td:nth-child(5){{color:#070}}tr.bad td:nth-child(5){{color:#b00;font-weight:bold}}figure{{display:inline-block;margin:1em}}</style></head>
<body><h1>Model gates: {html.escape(who)} ({html.escape(doc['environment'])}) — {html.escape(doc['status'].upper())}</h1>
<ul>{''.join(f'<li>{html.escape(r)}</li>' for r in doc.get('reasons', []))}</ul>
<table><tr><th>gate</th><th>family</th><th>figure</th><th>threshold</th><th>status</th><th>message</th></tr>{''.join(rows)}</table>
{''.join(imgs)}
</body></html>
"""


def write(inputs: ReportInputs | None, doc: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Plots under out_dir/plots, gate-report.md and gate-report.html in out_dir."""
    from pipeline.gating import write_atomic

    plots = render(inputs, out_dir / "plots") if inputs is not None else {}
    md = out_dir / "gate-report.md"
    write_atomic(md, markdown(doc, plots, out_dir).encode())
    page = out_dir / "gate-report.html"
    write_atomic(page, html_report(doc, plots).encode())
    return {**plots, "markdown": md, "html": page}
