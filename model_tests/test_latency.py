"""Latency gates (pytest-benchmark): single-row p99 and batch throughput.

With benchmarking disabled no figure exists, and the gate is reported as skipped, never
as passed: a skipped required gate refuses promotion.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

pytestmark = [pytest.mark.gates, pytest.mark.latency]


def _rounds(benchmark):
    if benchmark.disabled or benchmark.stats is None:
        pytest.skip("benchmarking disabled: latency not measured, gate not passed")
    return np.asarray(benchmark.stats.stats.data, float)


def test_single_row_latency(benchmark, gate_session, candidate_model, eval_frame, feature_spec, pipeline_settings, thresholds, record_gate):
    th = thresholds.single_row_p99_ms
    X = eval_frame[feature_spec.columns]
    rounds = pipeline_settings.gates.latency.single_row_rounds
    rng = np.random.default_rng(pipeline_settings.seed)
    picks = iter(rng.integers(0, len(X), size=rounds + 10))

    def one_row():
        return (X.iloc[[next(picks)]],), {}

    # One call per round, so the rounds are single-call times and their p99 is a real p99.
    # Single rows are served on one thread: starting OpenMP workers costs more than a row's
    # work, and on a busy machine waiting for them dominates the tail.
    with threadpool_limits(limits=1, user_api="openmp"):
        benchmark.pedantic(candidate_model.predict, setup=one_row, rounds=rounds, iterations=1, warmup_rounds=0)
    times_ms = _rounds(benchmark) * 1000
    gate_session.latency_ms = times_ms
    p99, p50 = float(np.percentile(times_ms, 99)), float(np.percentile(times_ms, 50))
    detail = f"p50 {p50:.2f} ms over {len(times_ms)} single-row predicts"
    record_gate("single_row_p99_ms", p99, th, detail)
    assert th.holds(p99), th.explain("single-row p99", p99, detail)


def test_batch_throughput(benchmark, candidate_model, eval_frame, feature_spec, pipeline_settings, thresholds, record_gate):
    th = thresholds.batch_throughput
    n = pipeline_settings.gates.latency.batch_rows
    X = eval_frame[feature_spec.columns]
    batch = X.sample(n=n, replace=len(X) < n, random_state=pipeline_settings.seed)
    benchmark.pedantic(candidate_model.predict, args=(batch,), rounds=10, iterations=1, warmup_rounds=1)
    median_s = float(np.median(_rounds(benchmark)))
    rate = n / median_s
    detail = f"median {median_s * 1000:.1f} ms per {n}-row batch"
    record_gate("batch_throughput", rate, th, detail)
    assert th.holds(rate), th.explain("batch throughput", rate, detail)
