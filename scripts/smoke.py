"""One photo through the running system, as a frontend would send it; exit 0 when it
ends COMPLETED with a downloadable, metadata-free JPEG. Usage: smoke.py API TOKEN SESSION FILE"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

UPLOAD = """mutation($s: UUID!) { getUploadUrl(sessionId: $s, filename: "smoke.jpg",
  contentType: "image/jpeg", stage: "intake") { uploadUrl fileKey } }"""
CONFIRM = """mutation($s: UUID!, $k: String!) { confirmUpload(sessionId: $s, fileKey: $k,
  alt: "smoke test") { id status } }"""
STATUS = """query($id: UUID!) { media(id: $id) { status url width height rejectionReason } }"""


def main(api: str, token: str, session: str, photo: Path) -> int:
    client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def call(query: str, **variables: str) -> dict:  # type: ignore[type-arg]
        body = client.post(api, json={"query": query, "variables": variables}).json()
        if body.get("errors"):
            raise SystemExit(f"GraphQL error: {body['errors']}")
        return body["data"]  # type: ignore[no-any-return]

    ticket = call(UPLOAD, s=session)["getUploadUrl"]
    put = httpx.put(
        ticket["uploadUrl"], content=photo.read_bytes(), headers={"Content-Type": "image/jpeg"}
    )
    put.raise_for_status()
    media_id = call(CONFIRM, s=session, k=ticket["fileKey"])["confirmUpload"]["id"]
    deadline = time.monotonic() + 60
    while (media := call(STATUS, id=media_id)["media"])["status"] not in (
        "COMPLETED",
        "REJECTED",
        "SCAN_FAILED",
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"still {media['status']} after 60 s")
        time.sleep(0.2)
    reason = media["rejectionReason"] or ""
    print(f"smoke: {media['status']} {media['width']}x{media['height']} {reason}")
    if media["status"] != "COMPLETED":
        return 1
    download = httpx.get(media["url"])
    body = download.content
    ok = download.status_code == 200 and body[:3] == b"\xff\xd8\xff" and b"Exif" not in body
    print(f"smoke: download {download.status_code}, {len(body)} bytes, clean={ok}")
    demo = httpx.get(api.removesuffix("/graphql") + "/demo")
    module = httpx.get(api.removesuffix("/graphql") + "/client/mediagate.js")
    print(f"smoke: demo page {demo.status_code}, browser client {module.status_code}")
    return 0 if ok and demo.status_code == module.status_code == 200 else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
