import json
import uuid

import pytest

from mediagate.events.messages import MalformedMessage, ProcessJob, WorkItem, parse_message
from mediagate.services.pipeline import DeadLetter, Done, Retry
from mediagate.worker.consumer import worst
from tests.support.worker_process import minio_event

KEY = f"sessions/{uuid.uuid4()}/testDrive/{uuid.uuid4()}.jpg"


def test_minio_event_keys_are_unescaped() -> None:
    body = minio_event("media", KEY, 10)
    assert b"%2F" in body, "MinIO escapes '/' in the record's key"
    assert parse_message(body, "media") == [WorkItem(file_key=KEY, source="event")]


def test_plus_and_percent_escapes_follow_query_escaping() -> None:
    body = minio_event("media", "sessions/a b+c%/x.jpg", 10)
    assert parse_message(body, "media")[0].file_key == "sessions/a b+c%/x.jpg"


@pytest.mark.parametrize(
    "event",
    [
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
    ],
)
def test_every_object_created_event_counts(event: str) -> None:
    assert len(parse_message(minio_event("media", KEY, 1, event), "media")) == 1


def test_other_events_and_other_buckets_are_ignored() -> None:
    assert parse_message(minio_event("media", KEY, 1, "s3:ObjectRemoved:Delete"), "media") == []
    assert parse_message(minio_event("other", KEY, 1), "media") == []


def test_jobs_round_trip() -> None:
    job = ProcessJob(uuid.uuid4(), KEY, uuid.uuid4())
    assert parse_message(job.to_bytes(), "media") == [WorkItem(file_key=KEY, source="job")]


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
