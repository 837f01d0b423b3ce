"""deploy/prometheus: the rules are valid, each alert has its unit test, and the real
Prometheus scrapes a running API and worker and fires an alert from what they report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mediagate.config import Settings
from mediagate.domain.status import MediaStatus
from mediagate.observability.metrics import Snapshot, render
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.metrics import WorkerMetrics
from mediagate.worker.retries import JobResult
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.flow import upload
from tests.support.worker_process import WorkerProcess, wait_for_status, wait_until

DEPLOY = daemons.ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "alerts.yml"

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (./scripts/test installs Debian's prometheus)",
)


def _alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"]}


def test_the_rules_are_valid() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_passes_its_unit_tests() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert tested == _alert_names()
    result = subprocess.run(
        ["promtool", "test", "rules", "alerts.test.yml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Prometheus that evaluates our rules every second; its scrape targets are
    written to a file it reads again (file_sd), so the test can add them."""
    targets = tmp_path / "targets.yml"
    targets.write_text("[]")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "mediagate",
                        "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}],
                    }
                ],
            }
        )
    )
    port = daemons.free_port()
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", targets
    finally:
        process.terminate()
        process.wait(timeout=30)


def _scrape(targets: Path, job: str, address: str) -> None:
    entries = yaml.safe_load(targets.read_text())
    entries.append({"targets": [address], "labels": {"job": job}})
    targets.write_text(yaml.safe_dump(entries))


async def test_prometheus_scrapes_the_api_and_a_worker_and_fires_on_a_virus(
    prometheus: tuple[str, Path],
    env: dict[str, str],
    api: httpx.AsyncClient,
    settings: Settings,
    tenant: Tenant,
    clamd: daemons.Clamd,
    store: ObjectStore,
) -> None:
    url, targets = prometheus
    metrics_port = daemons.free_port()
    worker = WorkerProcess({**env, "WORKER_METRICS_PORT": str(metrics_port)})
    await worker.start(settings)
    try:
        with daemons.serve_api(env, "--workers", "1") as served:
            _scrape(targets, "mediagate-api", served.url.removeprefix("http://"))
            _scrape(targets, "mediagate-worker", f"127.0.0.1:{metrics_port}")
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:

                async def both_scraped() -> bool:
                    query = {"query": 'up{job=~"mediagate-api|mediagate-worker"} == 1'}
                    found = await client.get("/api/v1/query", params=query)
                    return len(found.json()["data"]["result"]) == 2

                await wait_until(both_scraped, "Prometheus never scraped both")
                virus = await upload(api, tenant, media.eicar(), "eicar.jpg")
                await wait_for_status(virus["fileKey"], MediaStatus.REJECTED)

                async def firing() -> set[str]:
                    alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
                    return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

                async def virus_alert() -> bool:
                    return "MediagateVirusDetected" in await firing()

                await wait_until(virus_alert, "the virus alert never fired")
                rules = (await client.get("/api/v1/rules")).json()["data"]["groups"]
                now_firing = await firing()
    finally:
        worker.stop()
    evaluated = {rule["name"]: rule["health"] for group in rules for rule in group["rules"]}
    assert evaluated == dict.fromkeys(_alert_names(), "ok")
    assert "MediagateScannerDown" not in now_firing
    assert "MediagateWorkerDown" not in now_firing


def _exported_names() -> set[str]:
    """Every series name the API and a worker export (and Prometheus's own `up`)."""
    api = render(Snapshot({"COMPLETED": 1}, 0, {0.5: 1.0}, {"q": 0}, 0, 0, 0, 0.0, 0)).decode()
    worker = WorkerMetrics()
    worker.finished(JobResult.COMPLETED, {"scan": 0.1})
    worker.reconciled({"completed_missing_object": 1})
    text = api + generate_latest(worker.registry).decode()
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    } | {"up"}


def test_the_rules_and_the_dashboard_use_only_series_that_exist() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "mediagate.json").read_text())
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    expressions += [
        rule["expr"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    ]
    used = {name for expr in expressions for name in re.findall(r"mediagate_\w+", expr)}
    assert used and used <= _exported_names(), used - _exported_names()


def test_the_compose_prometheus_config_is_valid(tmp_path: Path) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["rule_files"] = [str(RULES)]  # its path inside the container, here
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
