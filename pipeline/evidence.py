"""Evidence: what a gate run found, as one JSON document, and the rules that read it.

Pure: building, hashing and judging evidence needs no MLflow; the registry package stores it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pipeline.config import Settings, Threshold, fmt_number

SCHEMA = "pipeline.evidence/1"
# Gate families, in the order reports show them.
FAMILIES: dict[str, str] = {
    "data": "the evaluation data meets the contract and has not drifted",
    "metrics": "R2, MAE, RMSE, MAPE; a classifier's ROC AUC, PR AUC, log loss, Brier, accuracy, F1",
    "champion": "not worse than the model holding the champion alias",
    "slices": "no slice of the data much worse than the whole",
    "residuals": "residual diagnostics: normality, spread, autocorrelation",
    "calibration": "a classifier's probabilities are as frequent as they say",
    "robustness": "noise, missing values, unseen categories, directional expectations",
    "determinism": "same inputs and seed give the same predictions",
    "latency": "prediction latency and throughput (pytest-benchmark)",
    "serving": "the model served over HTTP answers as it does in process",
}
STANDARD_FAMILIES = tuple(FAMILIES)  # shipped as pipeline.gates.<family>; a repository may register more

# What a required gate may end in and still allow promotion: it passed; its precondition is
# absent and the config says so; or it failed under a waiver, recorded beside it.
# ("advisory": a gate the environment does not require failed; it is reported, never judged.)
# ("inconclusive": a timing gate could not judge its rounds on a busy machine; never a pass.)
ACCEPTED = ("passed", "not_applicable", "waived")


@dataclass
class GateResult:
    """One gate (one test function; parametrized cases share the gate id)."""

    gate: str
    family: str
    nodeids: list[str] = field(default_factory=list)
    outcome: str = "not run"
    message: str = ""
    # The gated figure, named by the gate id: value, threshold, label, detail.
    figure: dict[str, Any] | None = None
    reported: dict[str, float] = field(default_factory=dict)  # shown beside it, never judged
    duration_s: float = 0.0
    waiver: dict[str, str] | None = None  # the waiver that turned a failure into "waived": reason, expires

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GateResult:
        """One entry of an evidence document's `gates`, typed (keys it does not know are left out)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    @property
    def value(self) -> float | None:
        return (self.figure or {}).get("value")

    @property
    def figure_text(self) -> str:
        return figure_text(self.figure)

    @property
    def threshold_text(self) -> str:
        return ((self.figure or {}).get("threshold") or {}).get("text", "-")

    def merge_outcome(self, outcome: str) -> None:
        # A gate with several cases is as good as its worst case.
        rank = {
            "passed": 0,
            "not_applicable": 1,
            "not run": 2,
            "waived": 3,
            "advisory": 4,
            "xpassed": 5,
            "xfailed": 6,
            "skipped": 7,
            "deselected": 8,
            "inconclusive": 9,
            "failed": 10,
            "error": 11,
        }
        if self.outcome == "not run" or rank.get(outcome, 7) > rank.get(self.outcome, 0):
            self.outcome = outcome


def gate_results(doc: dict[str, Any]) -> list[GateResult]:
    """An evidence document's gates, typed, in its order."""
    return [GateResult.from_dict(g) for g in doc.get("gates", [])]


def figure_text(figure: dict[str, Any] | None) -> str:
    """A recorded figure with its unit, '-' when there is none."""
    if not figure or figure.get("value") is None:
        return "-"
    unit = (figure.get("threshold") or {}).get("unit", "")
    text = f"{fmt_number(figure['value'])}{' ' + unit if unit and unit != '%' else unit}"
    if figure.get("ratio_to_baseline") is not None:
        text += f" ({fmt_number(figure['ratio_to_baseline'])}x baseline)"
    if figure.get("ratio_to_reference") is not None:
        text += f" ({fmt_number(figure['ratio_to_reference'])}x reference)"
    return text


def threshold_dict(threshold: Threshold) -> dict[str, Any]:
    out = {
        "min": threshold.min,
        "max": threshold.max,
        "unit": threshold.unit,
        "direction": threshold.direction,
        "env": threshold.env,
        "required": threshold.required,
        "text": threshold.describe(),
    }
    if threshold.max_ratio_to_baseline is not None:
        out["max_ratio_to_baseline"] = threshold.max_ratio_to_baseline
    return out


def figure_dict(
    gate: str, value: float | None, threshold: Threshold | None, label: str = "", detail: str = ""
) -> dict[str, Any]:
    """A gate's figure with its threshold as plain data: it travels between processes (pytest-xdist)."""
    # NaN and infinity pass through Python's json as NaN/Infinity, as in the evidence file.
    return {
        "name": gate,
        "value": None if value is None else float(value),
        "label": label,
        "threshold": None if threshold is None else threshold_dict(threshold),
        "detail": detail,
    }


class GateReport:
    """Gate outcomes, figures and plot data of one session, filled by the plugin's hooks."""

    def __init__(self) -> None:
        self.gates: dict[str, GateResult] = {}
        self.plots: dict[str, dict[str, Any]] = {}  # gate id -> what the report draws for it

    def gate(self, gate: str, family: str) -> GateResult:
        if gate not in self.gates:
            self.gates[gate] = GateResult(gate=gate, family=family)
        return self.gates[gate]

    def record(self, gate: str, family: str, recorded: dict[str, Any]) -> None:
        """Fold what a gate recorded ({"figure", "reported", "plot"}) into its result."""
        g = self.gate(gate, family)
        g.figure = recorded["figure"]
        g.reported = dict(recorded.get("reported") or {})
        if recorded.get("plot"):
            self.plots[gate] = recorded["plot"]

    def __bool__(self) -> bool:
        return bool(self.gates)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in (
        "pipeline",
        "mlflow",
        "scikit-learn",
        "pandas",
        "numpy",
        "scipy",
        "statsmodels",
        "pytest",
        "hypothesis",
        "pytest-benchmark",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def build(
    report: GateReport,
    settings: Settings,
    *,
    model: dict[str, Any],
    data_sha256: str | None,
    eval_data_sha256: str | None,
    git_commit: str | None,
    started: str,
    ended: str,
    node: dict[str, Any] | None = None,
    signer: str | None = None,
) -> dict[str, Any]:
    """The evidence document. `signer`: the id of the key that signs it (None: unsigned, said in
    the document; the signature itself is stored beside it, since it covers the document)."""
    required = settings.environment.required_gates
    order = list(FAMILIES)
    gates = [
        asdict(g)
        for g in sorted(
            report.gates.values(), key=lambda g: (order.index(g.family) if g.family in order else len(order), g.gate)
        )
    ]
    status, reasons = judge_gates(report, required)
    return {
        "schema": SCHEMA,
        "environment": settings.env,
        "status": status,
        "reasons": reasons,
        "model": model,
        "eval_data_sha256": eval_data_sha256,
        "data_sha256": data_sha256,
        "config_sha256": settings.digest,
        "required_gates": required,
        "gates": gates,
        "versions": _versions(),
        "git_commit": git_commit,
        "started": started,
        "ended": ended,
        "signer": signer,
        **({"node": node} if node else {}),
    }


def judge_gates(report: GateReport, required: list[str]) -> tuple[str, list[str]]:
    """'passed' only when every required gate ran and ended in an ACCEPTED outcome, and no gate
    failed (an advisory gate's failure is its own outcome, not "failed")."""
    reasons: list[str] = []
    missing = [g for g in required if g not in report.gates]
    if missing:
        reasons.append(f"required gates not collected: {', '.join(missing)}")
    by_outcome: dict[str, list[str]] = {}
    for name, g in report.gates.items():
        if g.outcome not in ACCEPTED and (name in required or g.outcome in ("failed", "error")):
            by_outcome.setdefault(g.outcome, []).append(name)
    for outcome, names in sorted(by_outcome.items()):
        reasons.append(f"gates {outcome}: {', '.join(sorted(names))}")
    return ("passed" if not reasons else "failed"), reasons


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, indent=2, default=str).encode()


def digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(doc)).hexdigest()
