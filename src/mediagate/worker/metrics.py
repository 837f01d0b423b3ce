"""What one worker process did, as Prometheus counters and histograms on its own port.

Unlike the API's scrape-time gauges (derived from the database, the same from every
process), these count events in this process since it started: rate() and increase()
over them, summed across workers, are the fleet's figures.
"""

from __future__ import annotations

from dataclasses import fields

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from mediagate.worker.reconciler import Findings
from mediagate.worker.retries import JobResult

WEBHOOK_RESULTS = ("delivered", "retried", "failed", "disabled")
# From a small photo's database write to a long video's transcode.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Histogram(
            "mediagate_worker_stage_seconds",
            "Time per pipeline stage (download, inspect, scan, process, upload, database, "
            "delete_original)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "mediagate_worker_jobs_in_flight", "Messages being handled now", registry=self.registry
        )
        self.jobs = Counter(
            "mediagate_worker_jobs",
            "Jobs finished, by result (virus: rejected because the scanner found one)",
            ["result"],
            registry=self.registry,
        )
        self.retries = Counter(
            "mediagate_worker_retries", "Messages sent to a retry queue", registry=self.registry
        )
        self.dead_letters = Counter(
            "mediagate_worker_dead_letters",
            "Messages parked on the dead-letter queue",
            registry=self.registry,
        )
        self.scanner_up = Gauge(
            "mediagate_worker_scanner_up",
            "1 when clamd answered the worker's last ping, else 0",
            registry=self.registry,
        )
        self.scratch_free_bytes = Gauge(
            "mediagate_worker_scratch_free_bytes",
            "Free space where the worker writes each job's files (the system's temp dir)",
            registry=self.registry,
        )
        self.reconciler_findings = Counter(
            "mediagate_worker_reconciler_findings",
            "What reconcile runs found (completed_missing_object: data loss, never fixed)",
            ["finding"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "mediagate_worker_webhook_deliveries",
            "Webhook delivery attempts, by result (delivered, retried, failed: out of retries,"
            " disabled: the endpoint answered 410)",
            ["result"],
            registry=self.registry,
        )
        for label in WEBHOOK_RESULTS:
            self.webhook_deliveries.labels(label)
        for result in JobResult:  # every series exists from the start, at 0
            self.jobs.labels(result.value)
        for finding in fields(Findings):
            self.reconciler_findings.labels(finding.name)

    def finished(self, result: JobResult, timings: dict[str, float]) -> None:
        self.jobs.labels(result.value).inc()
        for stage, seconds in timings.items():
            self.stage_seconds.labels(stage).observe(seconds)

    def reconciled(self, counts: dict[str, int]) -> None:
        for finding, count in counts.items():
            self.reconciler_findings.labels(finding).inc(count)

    def serve(self, host: str, port: int) -> None:
        """prometheus_client's own HTTP server, in a thread: for a private network (the
        scraper's), not for the internet."""
        start_http_server(port, addr=host, registry=self.registry)
