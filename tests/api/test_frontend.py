"""What a frontend gets besides the mutations: the policy, the client module, the demo."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import httpx
import pytest

from mediagate.api.app import create_app
from mediagate.config import Settings
from mediagate.domain.media_types import MEDIA_TYPES, STAGES
from tests.support.api import graphql, in_process
from tests.support.daemons import ROOT

CLIENT = ROOT / "clients" / "js"

POLICY = """
{ uploadPolicy {
    contentTypes { contentType kind extensions maxBytes }
    stages defaultStage maxFilenameBytes maxAltChars uploadUrlExpiresIn downloadUrlExpiresIn
} }
"""


async def test_the_upload_policy_is_what_the_mutations_apply(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    body = await graphql(api, POLICY, {}, token=None)
    policy = body["data"]["uploadPolicy"]
    assert {entry["contentType"] for entry in policy["contentTypes"]} == set(MEDIA_TYPES)
    jpeg = next(e for e in policy["contentTypes"] if e["contentType"] == "image/jpeg")
    assert jpeg == {
        "contentType": "image/jpeg",
        "kind": "IMAGE",
        "extensions": [".jpg", ".jpeg", ".jpe"],
        "maxBytes": settings.uploads.max_image_bytes,
    }
    assert set(policy["stages"]) == STAGES and policy["defaultStage"] == "general"
    assert policy["uploadUrlExpiresIn"] == settings.uploads.upload_url_ttl
    assert policy["downloadUrlExpiresIn"] == settings.uploads.download_url_ttl


async def test_the_browser_client_is_served(api: httpx.AsyncClient) -> None:
    response = await api.get("/client/mediagate.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.content == (CLIENT / "mediagate.js").read_bytes()


async def test_the_demo_page_is_served_only_when_enabled(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await api.get("/demo")).status_code == 404
    # Its lifespan is not run: the page needs none, and the session's app owns the pool.
    app = create_app(
        dataclasses.replace(settings, api=dataclasses.replace(settings.api, demo_page=True))
    )
    async with in_process(app, "http://demo") as client:
        page = await client.get("/demo")
        script = await client.get("/demo/demo.js")
        style = await client.get("/demo/demo.css")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert b"<script" not in page.content.replace(b'<script type="module" src="/demo/', b"")
    assert script.headers["content-type"].startswith("text/javascript")
    assert b'import { createClient } from "/client/mediagate.js"' in script.content
    assert style.headers["content-type"].startswith("text/css")
    for response in (page, script, style):
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "default-src 'none'" in policy
        assert f"connect-src 'self' {settings.s3.public_endpoint};" in policy


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/graphql"),
        ("GET", "/graphql"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/client/mediagate.js"),
        ("GET", "/no-such-page"),
    ],
)
async def test_every_response_keeps_its_address_and_type_to_itself(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await api.request(method, path, json={"query": "{ __typename }"})
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_client_package_declares_what_it_ships() -> None:
    import json

    package = json.loads((CLIENT / "package.json").read_text())
    assert package["name"] == "@mediagate/client"
    assert package["type"] == "module" and not package.get("dependencies")
    for shipped in package["files"]:
        assert (CLIENT / shipped).is_file()
    assert package["exports"]["."]["types"] == "./mediagate.d.ts"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_client_unit_tests_pass() -> None:
    """The client's own tests, with Node's test runner."""
    result = subprocess.run(
        ["node", "--test", "test/"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
