"""Latency gates (pytest-benchmark): single-row p99 and batch throughput.

With benchmarking disabled no figure exists, and the gate is reported as skipped, never
as passed: a skipped required gate refuses promotion.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from pipeline import checks
from pipeline.gates import family

__all__ = ["test_single_row_latency", "test_batch_throughput"]


def _rounds(benchmark) -> np.ndarray:
    if benchmark.disabled or benchmark.stats is None:
        pytest.skip("benchmarking disabled: latency not measured, gate not passed")
    return np.asarray(benchmark.stats.stats.data, float)


@family("latency")
def test_single_row_latency(benchmark, candidate_model, eval_frame, feature_spec, pipeline_settings, gate):
    X = eval_frame[feature_spec.columns]
    rounds = pipeline_settings.gates.latency.single_row_rounds
    picks = iter(np.random.default_rng(pipeline_settings.seed).integers(0, len(X), size=rounds + 10))

    def one_row():
        return (X.iloc[[next(picks)]],), {}

    # One call per round, so the rounds are single-call times and their p99 is a real p99.
    # Single rows are served on one thread: starting OpenMP workers costs more than a row's
    # work, and on a busy machine waiting for them dominates the tail.
    with threadpool_limits(limits=1, user_api="openmp"):
        benchmark.pedantic(candidate_model.predict, setup=one_row, rounds=rounds, iterations=1, warmup_rounds=0)
    finding = checks.single_row_latency(_rounds(benchmark) * 1000)
    assert gate.holds(finding), gate.explain(finding)


@family("latency")
def test_batch_throughput(benchmark, candidate_model, eval_frame, feature_spec, pipeline_settings, gate):
    n = pipeline_settings.gates.latency.batch_rows
    X = eval_frame[feature_spec.columns]
    batch = X.sample(n=n, replace=len(X) < n, random_state=pipeline_settings.seed)
    benchmark.pedantic(candidate_model.predict, args=(batch,), rounds=10, iterations=1, warmup_rounds=1)
    finding = checks.batch_throughput(_rounds(benchmark), n)
    assert gate.holds(finding), gate.explain(finding)
