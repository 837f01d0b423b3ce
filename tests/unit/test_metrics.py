"""Prometheus exposition of a monitoring snapshot."""


def test_metrics_render_in_prometheus_text_format() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from mediagate.observability.metrics import Snapshot, render

    text = render(
        Snapshot(
            media_by_status={"COMPLETED": 3, "REJECTED": 1},
            viruses_found=1,
            processing_seconds={0.5: 1.25, 0.95: 4.0},
            queue_messages={"q": 2, "q.dead": 0},
            stuck=3,
            subscriptions=7,
            slow_subscribers_dropped=2,
            webhook_backlog_seconds=90.5,
            webhook_endpoints_disabled=1,
        )
    ).decode()
    samples = {
        (s.name, tuple(s.labels.values())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("mediagate_media", ("COMPLETED",))] == 3
    assert samples[("mediagate_processing_seconds", ("0.95",))] == 4.0
    assert samples[("mediagate_queue_messages", ("q.dead",))] == 0
    assert samples[("mediagate_viruses_found", ())] == 1
    assert samples[("mediagate_subscriptions", ())] == 7
    assert samples[("mediagate_media_stuck", ())] == 3
    assert samples[("mediagate_webhook_oldest_undelivered_seconds", ())] == 90.5
    assert samples[("mediagate_webhook_endpoints_disabled", ())] == 1
    assert samples[("mediagate_slow_subscribers_dropped_total", ())] == 2


def test_every_reconciler_finding_and_job_result_has_a_series_from_the_start() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from mediagate.worker.metrics import WorkerMetrics
    from mediagate.worker.reconciler import Findings
    from mediagate.worker.retries import JobResult

    text = generate_latest(WorkerMetrics().registry).decode()
    labels = {
        (sample.name, value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }
    findings = {v for name, v in labels if name == "mediagate_worker_reconciler_findings_total"}
    results = {v for name, v in labels if name == "mediagate_worker_jobs_total"}
    assert findings == set(Findings().counts())
    assert results == {result.value for result in JobResult}
