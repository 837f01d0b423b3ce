import json
import uuid

import pytest

from mediagate.events.messages import (
    MalformedMessage,
    ParsedMessage,
    ProcessJob,
    WorkItem,
    parse_message,
)
from mediagate.worker.consumer import worst
from mediagate.worker.retries import DeadLetter, Done, Retry
from tests.support.worker_process import minio_event

KEY = f"sessions/{uuid.uuid4()}/testDrive/{uuid.uuid4()}.jpg"


def test_minio_event_keys_are_unescaped() -> None:
    body = minio_event("media", KEY, 10)
    assert b"%2F" in body, "MinIO escapes '/' in the record's key"
    assert parse_message(body, "media") == ParsedMessage([WorkItem(file_key=KEY, source="event")])


def test_plus_and_percent_escapes_follow_query_escaping() -> None:
    body = minio_event("media", "sessions/a b+c%/x.jpg", 10)
    assert parse_message(body, "media").items[0].file_key == "sessions/a b+c%/x.jpg"


@pytest.mark.parametrize(
    "event",
    [
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
        "ObjectCreated:Put",
        "ObjectCreated:CompleteMultipartUpload",
    ],
)
def test_every_object_created_event_counts_with_or_without_the_prefix(event: str) -> None:
    assert len(parse_message(minio_event("media", KEY, 1, event), "media").items) == 1


def test_other_events_and_other_buckets_are_passed_over_with_a_reason() -> None:
    removed = parse_message(minio_event("media", KEY, 1, "s3:ObjectRemoved:Delete"), "media")
    assert removed.items == [] and "not an object creation" in removed.ignored[0]
    elsewhere = parse_message(minio_event("other", KEY, 1), "media")
    assert elsewhere.items == [] and "'other'" in elsewhere.ignored[0]


def test_rgw_events_carry_the_key_unescaped() -> None:
    key = "sessions/a b+c%2F/x.jpg"
    record = {
        "eventVersion": "2.2",
        "eventSource": "ceph:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "media"}, "object": {"key": key, "size": 3}},
    }
    parsed = parse_message(json.dumps({"Records": [record]}).encode(), "media")
    assert parsed.items == [WorkItem(file_key=key, source="event")]


def test_aws_events_carry_the_key_url_escaped() -> None:
    record = {
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "media"}, "object": {"key": "sessions/a+b%2Bc.jpg"}},
    }
    parsed = parse_message(json.dumps({"Records": [record]}).encode(), "media")
    assert parsed.items[0].file_key == "sessions/a b+c.jpg"


def test_jobs_round_trip() -> None:
    job = ProcessJob(uuid.uuid4(), KEY, uuid.uuid4())
    assert parse_message(job.to_bytes(), "media").items == [WorkItem(file_key=KEY, source="job")]


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe",
        b"[]",
        b'{"hello": 1}',
        b'{"Records": "nope"}',
        b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}',
        json.dumps({"type": "process-media", "mediaId": "x", "fileKey": KEY}).encode(),
        json.dumps({"type": "process-media", "mediaId": str(uuid.uuid4())}).encode(),
    ],
)
def test_malformed_messages_raise(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_message(body, "media")


def test_the_worst_outcome_decides_a_message() -> None:
    assert worst([Done("a"), Retry("b")]) == Retry("b")
    assert worst([Retry("b"), DeadLetter("c"), Done("a")]) == DeadLetter("c")
    assert worst([Done("a"), Done("b")]) == Done("a")
    assert worst([]) == Done("nothing to do")
