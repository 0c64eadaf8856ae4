"""Latency gates (pytest-benchmark): single-row p99, batch throughput, and single-row time
against the champion's, each judged on an interval with a reference workload timed between
its rounds (pipeline.judge: passed, failed or inconclusive, never a pass by default).
The two single-row gates judge the same rounds, measured once, the champion's predict in them.

With benchmarking disabled no figure exists, and the gate is reported as skipped, never
as passed: a skipped required gate refuses promotion.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from pipeline import checks, timing
from pipeline.catalogue import Inputs, NotApplicable, export, spec
from pipeline.checks import Finding
from pipeline.judge import measured_until_decided

# The other single-row gate measured the rounds (or no champion: nothing timed).
UNUSED_BENCHMARK = pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")


def _single_rows(frame: Any, columns: list[str], seed: int) -> Callable[[], tuple]:
    """Each call: the next of a seeded stream of single rows, as predict's arguments."""
    X = frame[columns]
    picks = np.random.default_rng(seed).integers(0, len(X), size=1 << 16)
    at = iter(range(len(picks)))
    return lambda: (X.iloc[[picks[next(at) % len(picks)]]],)


def _single_row_rounds(run: Inputs, bench: Any, *, fresh: bool) -> timing.Rounds:
    """The single-row rounds both single-row gates judge: the candidate's predict of one row,
    the reference workload before it and, when a model holds the champion alias, the
    champion's predict of the same row in the same round. Measured once per session, by
    whichever gate runs first (its pytest-benchmark fixture times the candidate); `fresh`: a
    rerun of an inconclusive gate measures again."""
    s, settings = run.session, run.settings
    champion, cfg = s.champion, settings.gates.latency
    rows = _single_rows(s.eval_frame, s.features.columns, settings.seed)

    def measure() -> timing.Rounds:
        # One call per round, so the rounds are single-call times and their p99 is a real p99.
        # Single rows are served on one thread: starting OpenMP workers costs more than a row's
        # work, and on a busy machine waiting for them dominates the tail.
        with threadpool_limits(limits=1, user_api="openmp"):
            return timing.interleaved(
                s.model.predict,
                rows,
                cfg.single_row_rounds,
                other=champion.model.predict if champion is not None else None,
                benchmark=bench,
            )

    return measure() if fresh else s.shared("single_row_rounds", measure)


def _reruns(run: Inputs) -> int:
    return run.settings.environment.inconclusive_reruns


@spec(
    "latency",
    needs=("benchmark",),
    marks=(UNUSED_BENCHMARK,),
    defaults={
        "dev": "{max: 250, unit: ms, required: false}",
        "staging": "{max: 100, unit: ms, max_ratio_to_reference: 50}",
    },
)
def single_row_latency(run: Inputs) -> Finding:
    """Single-row p99 (ms), and in reference units, each on its interval."""
    cfg, seed = run.settings.gates.latency, run.settings.seed

    def measure(first: bool) -> Finding:
        rounds = _single_row_rounds(run, run.benchmark if first else None, fresh=not first)
        return checks.single_row_latency(rounds, confidence=cfg.confidence, seed=seed)

    return measured_until_decided(measure, run.threshold, _reruns(run))


@spec(
    "latency",
    needs=("benchmark",),
    defaults={
        "dev": "{min: 1000, unit: rows/s, required: false}",
        "staging": "{min: 5000, unit: rows/s}",
    },
)
def batch_throughput(run: Inputs) -> Finding:
    """Rows per second of the median batch predict, on its interval."""
    s, settings = run.session, run.settings
    cfg, X = settings.gates.latency, s.eval_frame[s.features.columns]
    batch = X.sample(n=cfg.batch_rows, replace=len(X) < cfg.batch_rows, random_state=settings.seed)

    def measure(first: bool) -> Finding:
        s.model.predict(batch)  # warm-up, untimed
        rounds = timing.interleaved(
            s.model.predict, lambda: (batch,), cfg.batch_rounds, benchmark=run.benchmark if first else None
        )
        return checks.batch_throughput(rounds, cfg.batch_rows, confidence=cfg.confidence, seed=settings.seed)

    return measured_until_decided(measure, run.threshold, _reruns(run))


@spec(
    "latency",
    needs=("benchmark",),
    marks=(UNUSED_BENCHMARK,),
    defaults={
        "dev": "{max: 2.0, required: false}",
        "staging": "{max: 1.2}  # at most 20 % slower than the alias holder (median per-round ratio)",
    },
)
def latency_vs_champion(run: Inputs) -> Finding | NotApplicable:
    """The candidate's single-row time over the champion's, timed in the same rounds on the same rows."""
    s, settings = run.session, run.settings
    champion, cfg = s.champion, settings.gates.latency
    if champion is None:
        return NotApplicable(f"no model holds @{settings.champion_alias}: no latency to compare with")
    who = f"{champion.who} @{settings.champion_alias}"

    def measure(first: bool) -> Finding:
        # The champion answers the same row in the same round, before the candidate in even
        # rounds and after it in odd ones (timing.interleaved).
        rounds = _single_row_rounds(run, run.benchmark if first else None, fresh=not first)
        return checks.latency_vs_champion(rounds, champion=who, confidence=cfg.confidence, seed=settings.seed)

    return measured_until_decided(measure, run.threshold, _reruns(run))


__all__ = export(__name__)
