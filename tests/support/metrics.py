"""Reading a served API's /metrics as a test would."""

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
