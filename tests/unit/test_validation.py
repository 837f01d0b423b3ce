from datetime import UTC, datetime, timedelta

import pytest

from mediagate.domain import keys
from mediagate.domain.media_types import MEDIA_TYPES
from mediagate.domain.validation import (
    StoredObject,
    normalise_stage,
    parse_content_type,
    rejection_reason,
    validate_alt,
    validate_filename,
)
from mediagate.errors import BadUserInput

JPEG = MEDIA_TYPES["image/jpeg"]


@pytest.mark.parametrize("raw", ["image/jpeg", "IMAGE/JPEG", " image/jpeg ", "Image/Jpeg"])
def test_content_type_case_and_blanks_are_normalised(raw: str) -> None:
    assert parse_content_type(raw).content_type == "image/jpeg"


@pytest.mark.parametrize(
    "raw",
    [
        "image/svg+xml",
        "text/html",
        "application/octet-stream",
        "image/jpeg; charset=utf-8",
        "video/mp4;codecs=avc1",
        "",
        "image/jpg",
    ],
)
def test_content_types_outside_the_allowlist_or_with_parameters_are_refused(raw: str) -> None:
    with pytest.raises(BadUserInput) as caught:
        parse_content_type(raw)
    assert caught.value.details == {"field": "contentType"}


def test_all_seven_spec_types_are_allowed() -> None:
    assert set(MEDIA_TYPES) == {
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "video/mp4",
        "video/quicktime",
        "video/webm",
    }


@pytest.mark.parametrize(
    ("filename", "extension"),
    [("photo.jpg", ".jpg"), ("PHOTO.JPEG", ".jpeg"), ("my car (1).jpg", ".jpg"), ("ü.jpg", ".jpg")],
)
def test_good_filenames_give_their_extension(filename: str, extension: str) -> None:
    assert validate_filename(filename, JPEG) == extension


@pytest.mark.parametrize(
    "filename",
    [
        "../etc/passwd.jpg",
        "a/b.jpg",
        "a\\b.jpg",
        "..jpg",
        "photo\x00.jpg",
        "photo\n.jpg",
        "photo\x7f.jpg",
        "gpj.\u202eexe.jpg",
        "",
        "   ",
        "a" * 252 + ".jpg",
        "é" * 126 + ".jpg",
        "photo.png",
        "photo",
        "photo.jpg.exe",
    ],
)
def test_unsafe_or_inconsistent_filenames_are_refused(filename: str) -> None:
    with pytest.raises(BadUserInput):
        validate_filename(filename, JPEG)


def test_filename_limit_is_255_bytes_not_characters() -> None:
    assert validate_filename("a" * 251 + ".jpg", JPEG) == ".jpg"
    with pytest.raises(BadUserInput):
        validate_filename("é" * 126 + ".jpg", JPEG)  # 256 bytes, 130 characters


def test_stage_defaults_to_general_and_must_be_known() -> None:
    assert normalise_stage(None) == "general"
    assert normalise_stage("testDrive") == "testDrive"
    with pytest.raises(BadUserInput):
        normalise_stage("processed")
    with pytest.raises(BadUserInput):
        normalise_stage("Inspection")


def test_alt_text_is_bounded() -> None:
    assert validate_alt("front bumper") == "front bumper"
    assert validate_alt(None) is None
    with pytest.raises(BadUserInput):
        validate_alt("x" * 2001)


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def stored(size: int = 100, content_type: str = "image/jpeg", at: datetime = NOW) -> StoredObject:
    return StoredObject(size=size, content_type=content_type, last_modified=at)


def test_an_acceptable_object_has_no_rejection_reason() -> None:
    assert rejection_reason(stored(), "image/jpeg", 1000, NOW + timedelta(minutes=5)) is None


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        (stored(size=0), "empty"),
        (stored(size=1001), "limit is 1000"),
        (stored(content_type="text/html"), "text/html"),
        (stored(content_type=""), "no type"),
        (stored(at=NOW + timedelta(minutes=6)), "expired"),
    ],
)
def test_objects_are_rejected_with_a_readable_reason(obj: StoredObject, fragment: str) -> None:
    reason = rejection_reason(obj, "image/jpeg", 1000, NOW + timedelta(minutes=5))
    assert reason is not None and fragment in reason


def test_content_type_of_stored_object_compared_without_parameters_or_case() -> None:
    obj = stored(content_type="IMAGE/JPEG; foo=bar")
    assert rejection_reason(obj, "image/jpeg", 1000, NOW) is None


def test_keys_are_built_by_the_server() -> None:
    import uuid

    session = uuid.uuid4()
    key = keys.upload_key(session, "inspection", ".jpg")
    assert key.startswith(f"sessions/{session}/inspection/") and key.endswith(".jpg")
    assert keys.is_upload_key(key)
    assert keys.processed_key(key, ".jpg") == "processed/" + key.removeprefix("sessions/")
    assert keys.processed_key(key.replace("inspection", "general"), ".jpg").startswith(
        f"processed/{session}/general/"
    )
    assert not keys.is_upload_key("processed/" + key)
    assert not keys.is_upload_key(key + "/../x")


def test_output_extensions() -> None:
    assert keys.output_extension("image/png") == ".jpg"
    assert keys.output_extension("video/quicktime") == ".mp4"
