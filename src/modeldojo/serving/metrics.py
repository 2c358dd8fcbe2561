"""Prometheus metrics for GET /metrics: requests by route and status, latency, batch sizes, queue depth.
One registry per app (per worker process): with --workers N each scrape sees the worker that answered it."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = CONTENT_TYPE_LATEST
disable_created_metrics()  # the *_created series double every counter for no use here


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("dojo_requests", "HTTP requests answered", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("dojo_request_seconds", "Time to answer a request", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("dojo_batch_size", "Rows per model call", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.inference = Histogram("dojo_inference_seconds", "Time per model call", buckets=LATENCY_BUCKETS,
                                   registry=self.registry)
        self.queue_depth = Gauge("dojo_queue_depth", "Requests waiting for a batch", registry=self.registry)
        self.rows = Counter("dojo_rows_predicted", "Rows predicted", registry=self.registry)

    def batch(self, rows: int, seconds: float) -> None:
        self.batch_size.observe(rows)
        self.inference.observe(seconds)
        self.rows.inc(rows)

    def render(self) -> bytes:
        return generate_latest(self.registry)
