"""What a product's backend may attach to a session: its own key and a small JSON object."""

from __future__ import annotations

import json
from typing import Any

from mediagate.errors import BadUserInput

MAX_EXTERNAL_ID_CHARS = 200
MAX_METADATA_BYTES = 4096


def check_external_id(external_id: str | None) -> str | None:
    if external_id is None:
        return None
    if not external_id or len(external_id) > MAX_EXTERNAL_ID_CHARS or not external_id.isprintable():
        raise BadUserInput(
            f"externalId must be 1 to {MAX_EXTERNAL_ID_CHARS} printable characters",
            field="externalId",
        )
    return external_id


def encode_metadata(metadata: Any) -> str | None:
    """The metadata as stored (compact JSON), if it is an object of at most 4 KiB."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise BadUserInput("metadata must be a JSON object", field="metadata")
    try:
        encoded = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        raise BadUserInput("metadata must be plain JSON", field="metadata") from None
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise BadUserInput(
            f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON", field="metadata"
        )
    return encoded
