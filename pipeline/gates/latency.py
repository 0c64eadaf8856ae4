"""Latency gates (pytest-benchmark): single-row p99, batch throughput, and single-row time
against the champion's, each judged on an interval with a reference workload timed between
its rounds (checks.timing_verdict: passed, failed or inconclusive, never a pass by default).
The two single-row gates judge the same rounds, measured once, the champion's predict in them.

With benchmarking disabled no figure exists, and the gate is reported as skipped, never
as passed: a skipped required gate refuses promotion.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from pipeline import checks, timing
from pipeline.gates import family

__all__ = ["test_single_row_latency", "test_batch_throughput", "test_latency_vs_champion"]


def _single_rows(frame, columns, seed: int):
    """Each call: the next of a seeded stream of single rows, as predict's arguments."""
    X = frame[columns]
    picks = np.random.default_rng(seed).integers(0, len(X), size=1 << 16)
    at = iter(range(len(picks)))
    return lambda: (X.iloc[[picks[next(at) % len(picks)]]],)


def _judged(pipeline_settings) -> dict:
    return {"reruns": pipeline_settings.environment.inconclusive_reruns}


def _single_row_rounds(gate_session, candidate_model, eval_frame, feature_spec, pipeline_settings, bench, *, fresh: bool):
    """The single-row rounds both single-row gates judge: the candidate's predict of one row,
    the reference workload before it and, when a model holds the champion alias, the
    champion's predict of the same row in the same round. Measured once per session, by
    whichever gate runs first (its pytest-benchmark fixture times the candidate); `fresh`: a
    rerun of an inconclusive gate measures again."""
    champion, cfg = gate_session.champion, pipeline_settings.gates.latency
    rows = _single_rows(eval_frame, feature_spec.columns, pipeline_settings.seed)

    def measure():
        # One call per round, so the rounds are single-call times and their p99 is a real p99.
        # Single rows are served on one thread: starting OpenMP workers costs more than a row's
        # work, and on a busy machine waiting for them dominates the tail.
        with threadpool_limits(limits=1, user_api="openmp"):
            return timing.interleaved(candidate_model.predict, rows, cfg.single_row_rounds,
                                      other=champion.model.predict if champion is not None else None, benchmark=bench)

    return measure() if fresh else gate_session.shared("single_row_rounds", measure)


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")  # the other single-row gate measured the rounds
@family("latency")
def test_single_row_latency(benchmark, gate_session, candidate_model, eval_frame, feature_spec, pipeline_settings, gate):
    cfg = pipeline_settings.gates.latency

    def measure(bench):
        r = _single_row_rounds(gate_session, candidate_model, eval_frame, feature_spec, pipeline_settings, bench, fresh=bench is None)
        return checks.single_row_latency(r, confidence=cfg.confidence, seed=pipeline_settings.seed)

    gate.timed(measure, benchmark, **_judged(pipeline_settings))


@family("latency")
def test_batch_throughput(benchmark, candidate_model, eval_frame, feature_spec, pipeline_settings, gate):
    cfg, X = pipeline_settings.gates.latency, eval_frame[feature_spec.columns]
    batch = X.sample(n=cfg.batch_rows, replace=len(X) < cfg.batch_rows, random_state=pipeline_settings.seed)

    def measure(bench):
        candidate_model.predict(batch)  # warm-up, untimed
        r = timing.interleaved(candidate_model.predict, lambda: (batch,), cfg.batch_rounds, benchmark=bench)
        return checks.batch_throughput(r, cfg.batch_rows, confidence=cfg.confidence, seed=pipeline_settings.seed)

    gate.timed(measure, benchmark, **_judged(pipeline_settings))


# not applicable (no champion, nothing timed), or the other single-row gate measured the rounds
@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
@family("latency")
def test_latency_vs_champion(benchmark, gate_session, candidate_model, eval_frame, feature_spec, pipeline_settings, gate):
    champion, cfg = gate_session.champion, pipeline_settings.gates.latency
    if champion is None:
        return gate.not_applicable(f"no model holds @{pipeline_settings.champion_alias}: no latency to compare with")
    who = f"{champion.name} v{champion.version} @{pipeline_settings.champion_alias}"

    def measure(bench):
        # The champion answers the same row in the same round, before the candidate in even
        # rounds and after it in odd ones (timing.interleaved).
        r = _single_row_rounds(gate_session, candidate_model, eval_frame, feature_spec, pipeline_settings, bench, fresh=bench is None)
        return checks.latency_vs_champion(r, champion=who, confidence=cfg.confidence, seed=pipeline_settings.seed)

    gate.timed(measure, benchmark, **_judged(pipeline_settings))
