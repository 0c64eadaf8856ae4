"""The one judge: `judge(threshold, finding) -> Verdict` for every kind of bound.

A figure is judged against min/max (a NaN figure never passes) and, where the threshold has
max_ratio_to_baseline, its ratio to the baseline's (a ratio bound with no ratio measured
does not hold). A timing is judged on its intervals, not on one number: see `_timing`. The
gates, `bench/minimal.py`, `run-pipeline compare` and the live monitor all judge here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from pipeline.config import Threshold, fmt_number

if TYPE_CHECKING:  # pipeline.checks imports scipy (~1.4 s): the live monitor judges without it
    from pipeline.checks import Finding


def judge(threshold: Threshold, finding: Finding) -> Verdict:
    """passed, failed or inconclusive (a timing whose rounds cannot decide), with the one line that says why."""
    if finding.judged_on != "figure":
        verdict = _timing(threshold, finding, relative=finding.judged_on == "paired_interval")
        return Verdict(
            verdict.outcome, f"{verdict.why}; {finding.detail} ({threshold.env})" if threshold.env else verdict.why
        )
    held = threshold.holds(finding.value, finding.baseline_ratio)
    return Verdict(
        "passed" if held else "failed",
        threshold.explain(finding.label, finding.value, finding.detail, finding.baseline_ratio),
    )


@dataclass(frozen=True)
class Verdict:
    outcome: Literal["passed", "failed", "inconclusive"]
    why: str  # what decided it: one line with figure, bound and environment

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


def word(side: str) -> str:
    return {"held": "within", "violated": "beyond", "straddles": "straddles"}[side]


def _side(lower: float, upper: float, lo_bound: float | None, hi_bound: float | None) -> str:
    """'held', 'violated' or 'straddles' for an interval against a bound (or a band)."""
    if (hi_bound is not None and lower > hi_bound) or (lo_bound is not None and upper < lo_bound):
        return "violated"
    if (hi_bound is None or upper <= hi_bound) and (lo_bound is None or lower >= lo_bound):
        return "held"
    return "straddles"


def _timing(threshold: Threshold, finding: Finding, relative: bool) -> Verdict:
    """Judge a timing finding's intervals against the threshold (see the section's comment).

    Each bound (min/max on the figure; max_ratio_to_reference on the figure in reference units)
    is judged on its own interval: held when the whole interval is on its good side (load only
    adds time), or when it straddles the bound but the interval without the waiting for a core
    (the unwaited rounds: what an idle machine would have measured) is on the good side (only
    the slowest rounds waited); violated when the whole interval is beyond it even without the
    waiting; else undecided, which includes "every round beyond it, but only by the time it
    waited for a core" (not measured reliably). Any violation fails, every bound holding
    passes, anything else is inconclusive. `relative`: the figure is a
    ratio of two timings taken in the same rounds (a champion's), which load moves together:
    judged on its interval alone.
    """
    r = finding.reported
    if math.isnan(float(finding.value)):
        return Verdict("failed", f"{finding.label}: no timing measured")
    unit = f" {threshold.unit}" if threshold.unit else ""
    bounds = []  # (figure text, key prefix, min, max, bound text)
    if threshold.min is not None or threshold.max is not None:
        bounds.append(
            (
                f"{finding.label} {fmt_number(finding.value)}{unit}",
                "",
                threshold.min,
                threshold.max,
                threshold.describe_figure(),
            )
        )
    if threshold.max_ratio_to_reference is not None:
        bounds.append(
            (
                f"{finding.label} {fmt_number(r['ratio_to_reference'])}x the reference",
                "ratio_",
                None,
                threshold.max_ratio_to_reference,
                f"<= {fmt_number(threshold.max_ratio_to_reference)}x",
            )
        )
    judged = []  # (text, side, bound)
    for figure, key, lo_b, hi_b, bound in bounds:
        lower, upper = r[f"{key}interval_lower"], r[f"{key}interval_upper"]
        text = f"{figure}, interval [{fmt_number(lower)}, {fmt_number(upper)}],"
        side = _side(lower, upper, lo_b, hi_b)
        if side != "held" and not relative:
            # Load only adds time: what decides is the interval without the waiting for a core.
            ul, uu = r[f"{key}unwaited_lower"], r[f"{key}unwaited_upper"]
            unwaited = _side(ul, uu, lo_b, hi_b)
            waited = r.get("wait_share", 0.0) >= 0.01  # else the unwaited interval is the same one again
            if unwaited == "violated":
                side = "violated"
                text += f" without the waiting for a core [{fmt_number(ul)}, {fmt_number(uu)}]," if waited else ""
            elif unwaited == "held" and side == "straddles":  # only the tail waited: the rest measured the model
                side, text = (
                    "held",
                    f"{text} straddles {bound}, but without the waiting for a core [{fmt_number(ul)}, {fmt_number(uu)}],",
                )
            elif side == "violated":  # every round beyond it, by waiting: not measured reliably
                side, text = (
                    "busy",
                    (
                        f"{text} beyond {bound}, but it waited for a core {r.get('wait_share', 0.0):.0%} of the time "
                        f"(the machine was busy, and load only adds time): without the waiting the interval is "
                        f"[{fmt_number(ul)}, {fmt_number(uu)}]"
                    ),
                )
            elif waited:
                text += f" without the waiting for a core [{fmt_number(ul)}, {fmt_number(uu)}],"
        judged.append((text, side, bound))
    violated = [f"{t} beyond {b}" for t, side, b in judged if side == "violated"]
    if violated:
        return Verdict("failed", "; ".join(violated))
    if all(side == "held" for _, side, _ in judged):
        return Verdict("passed", "; ".join(f"{t} within {b}" for t, _, b in judged))
    why = [t if side == "busy" else f"{t} {word(side)} {b}" for t, side, b in judged]
    return Verdict("inconclusive", "inconclusive: " + "; ".join(why))


def measured_until_decided(measure: Callable[[bool], Finding], threshold: Threshold, reruns: int) -> Finding:
    """A timing measured by `measure(first)`, measured again while its verdict is inconclusive,
    up to `reruns` more times (`first`: the first attempt, which pytest-benchmark's fixture
    times; it times one per test). The detail says which attempt decided."""
    attempt, finding = 0, measure(True)
    while attempt < reruns and judge(threshold, finding).outcome == "inconclusive":
        attempt += 1
        finding = measure(False)
    if reruns:
        finding = replace(finding, detail=f"{finding.detail}; attempt {attempt + 1} of up to {1 + reruns}")
    return finding
