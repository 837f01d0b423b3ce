"""The two kinds of message on the media queue, parsed from bytes. No I/O.

Bucket events come in the S3 notification format, from several stores:
- MinIO's AMQP target: `{"EventName", "Key", "Records": [...]}`, `eventName`
  `s3:ObjectCreated:Put`, each record's `s3.object.key` query-escaped ('/' as %2F,
  ' ' as '+');
- AWS S3: `ObjectCreated:Put` (no `s3:` prefix), keys URL-escaped ('+' for ' ');
- Ceph RGW: `ObjectCreated:Put`, `eventSource` `ceph:s3`, keys as they are.
confirmUpload publishes `{"type": "process-media", "mediaId", "fileKey", "sessionId"}`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

JOB_TYPE = "process-media"
OBJECT_CREATED_EVENTS = frozenset(
    {"ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:Copy"}
    | {"ObjectCreated:CompleteMultipartUpload"}
)
# Stores that put the key into the event as it is; the others escape it.
_RAW_KEY_SOURCES = frozenset({"ceph:s3"})


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


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    items: list[WorkItem]
    # Why each record that asks for nothing was passed over, for the log.
    ignored: list[str] = field(default_factory=list)


def parse_message(body: bytes, bucket: str) -> ParsedMessage:
    """The objects a message asks to process, and why any other record was passed over."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedMessage(f"not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise MalformedMessage("the message is not a JSON object")
    if payload.get("type") == JOB_TYPE:
        return ParsedMessage([_parse_job(payload)])
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


def _parse_event(payload: dict[str, Any], bucket: str) -> ParsedMessage:
    records = payload.get("Records")
    if not isinstance(records, list):
        raise MalformedMessage("Records is not a list")
    parsed = ParsedMessage([])
    for record in records:
        try:
            name = record["eventName"]
            s3 = record["s3"]
            record_bucket = s3["bucket"]["name"]
            key = s3["object"]["key"]
        except (KeyError, TypeError):
            raise MalformedMessage("a record lacks eventName or s3 bucket/object") from None
        if not isinstance(name, str) or not isinstance(key, str):
            raise MalformedMessage("eventName and the object key must be strings")
        event = name.removeprefix("s3:")
        if event not in OBJECT_CREATED_EVENTS:
            parsed.ignored.append(f"event {name} is not an object creation")
        elif record_bucket != bucket:
            parsed.ignored.append(f"event for bucket {record_bucket!r}, not {bucket!r}")
        else:
            raw = record.get("eventSource") in _RAW_KEY_SOURCES
            parsed.items.append(WorkItem(key if raw else unquote_plus(key), source="event"))
    return parsed
