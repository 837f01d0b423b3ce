"""Reading the /metrics of a served API or worker as a test would."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


async def api_metric(url: str, name: str) -> float:
    """The value of the sample `name` (one without labels) the API at `url` exports."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{url}/metrics")).text
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return samples[name]


def worker_samples(port: int) -> dict[tuple[str, tuple[str, ...]], float]:
    """Every sample but histogram buckets a worker serves on `port`, by name and labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "le" not in sample.labels
    }
