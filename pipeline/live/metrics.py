"""/metrics: Prometheus text format through the standard client, one registry per service."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Requests, rows, errors and latency per arm; the log's written and dropped rows; shadow scoring."""

    def __init__(self, service: Any):
        self.registry = CollectorRegistry()  # its own: two services in one process never share counters
        r = self.registry
        self.requests = Counter(
            "live_requests", "Requests answered, per arm that answered rows of them", ["arm"], registry=r
        )
        self.rows = Counter("live_rows", "Rows answered, per arm", ["arm"], registry=r)
        self.errors = Counter(
            "live_errors",
            "Requests answered with an error, per arm whose model refused them (none: before routing) and HTTP status",
            ["arm", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "live_predict_latency_seconds",
            "Time to predict one request's rows, per arm",
            ["arm"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.shadow_rows = Counter(
            "live_shadow_rows", "Rows scored off the answer's path, per arm", ["arm"], registry=r
        )
        self.shadow_errors = Counter(
            "live_shadow_errors", "Rows whose shadow scoring failed, per arm", ["arm"], registry=r
        )
        Gauge("live_log_rows_written", "Prediction log rows this process wrote", registry=r).set_function(
            lambda: service.log.written
        )
        Gauge(
            "live_log_rows_dropped",
            "Prediction log rows this process dropped (queue full or store unavailable)",
            registry=r,
        ).set_function(lambda: service.log.dropped)
        Gauge("live_log_rows_pending", "Prediction log rows queued, not yet written", registry=r).set_function(
            lambda: service.log.pending()
        )
        Gauge(
            "live_shadow_rows_skipped", "Rows not shadow-scored because the shadow queue was full", registry=r
        ).set_function(lambda: service.shadow_skipped)
        self.version = Gauge(
            "live_model_version",
            "The version each arm serves (the label; value 1)",
            ["arm", "alias", "version"],
            registry=r,
        )
        self._service = service

    def observe(self, arm: str, rows: int, seconds: float) -> None:
        self.requests.labels(arm).inc()
        self.rows.labels(arm).inc(rows)
        self.latency.labels(arm).observe(seconds)

    def error(self, status: int, arm: str | None = None) -> None:
        self.errors.labels(arm or "none", str(status)).inc()

    def shadow_scored(self, arm: str, rows: int) -> None:
        self.shadow_rows.labels(arm).inc(rows)

    def shadow_failed(self, arm: str, rows: int) -> None:
        self.shadow_errors.labels(arm).inc(rows)

    def text(self) -> bytes:
        self.version.clear()
        for a in self._service.arms.values():
            self.version.labels(a.name, a.alias, a.version).set(1)
        return generate_latest(self.registry)
