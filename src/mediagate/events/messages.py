"""The two kinds of message on the media queue, parsed from bytes. No I/O.

MinIO's AMQP target publishes `{"EventName", "Key", "Records": [...]}` where each
record's `s3.object.key` is URL-query-escaped ('/' as %2F, ' ' as '+').
confirmUpload publishes `{"type": "process-media", "mediaId", "fileKey", "sessionId"}`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

JOB_TYPE = "process-media"
OBJECT_CREATED_EVENTS = frozenset(
    {
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
    }
)


class MalformedMessage(ValueError):
    """The body is neither a processing job nor a bucket event we understand."""


@dataclass(frozen=True, slots=True)
class ProcessJob:
    media_id: uuid.UUID
    file_key: str
    session_id: uuid.UUID

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "type": JOB_TYPE,
                "mediaId": str(self.media_id),
                "fileKey": self.file_key,
                "sessionId": str(self.session_id),
            }
        ).encode()


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One object to process, whichever message announced it."""

    file_key: str
    source: str


def parse_message(body: bytes, bucket: str) -> list[WorkItem]:
    """The objects a message asks to process; [] for events that concern nothing of ours."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedMessage(f"not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise MalformedMessage("the message is not a JSON object")
    if payload.get("type") == JOB_TYPE:
        return [_parse_job(payload)]
    if "Records" in payload:
        return _parse_event(payload, bucket)
    raise MalformedMessage("neither a processing job nor a bucket event")


def _parse_job(payload: dict[str, Any]) -> WorkItem:
    key = payload.get("fileKey")
    try:
        uuid.UUID(str(payload.get("mediaId")))
    except ValueError:
        raise MalformedMessage("mediaId is not a UUID") from None
    if not isinstance(key, str) or not key:
        raise MalformedMessage("fileKey is missing")
    return WorkItem(file_key=key, source="job")


def _parse_event(payload: dict[str, Any], bucket: str) -> list[WorkItem]:
    records = payload.get("Records")
    if not isinstance(records, list):
        raise MalformedMessage("Records is not a list")
    items = []
    for record in records:
        try:
            name = record["eventName"]
            s3 = record["s3"]
            record_bucket = s3["bucket"]["name"]
            escaped_key = s3["object"]["key"]
        except (KeyError, TypeError):
            raise MalformedMessage("a record lacks eventName or s3 bucket/object") from None
        if name in OBJECT_CREATED_EVENTS and record_bucket == bucket:
            items.append(WorkItem(file_key=unquote_plus(escaped_key), source="event"))
    return items
