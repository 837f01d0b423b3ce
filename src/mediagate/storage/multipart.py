"""S3 multipart calls, through the minio SDK's own request code.

The SDK's public API uploads multipart objects itself but exposes no call for an upload
that a browser sends part by part. Its private methods (`_create_multipart_upload`,
`_list_parts`, `_complete_multipart_upload`, `_abort_multipart_upload`,
`_list_multipart_uploads`) do exactly these S3 calls with the client's signing, retries
and error parsing; they are used here and nowhere else, and the SDK is pinned to its
minor version (pyproject.toml) so a change to them is a deliberate upgrade that the
tests (against moto and Ceph RGW) check. A second S3 library for five calls would add
a second signer, a second connection pool and a second set of credentials to keep.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from minio.datatypes import Part as SdkPart
from minio.error import S3Error

from mediagate.domain.multipart import MAX_PARTS, Part
from mediagate.storage.object_store import ObjectStore

_GONE_CODES = frozenset({"NoSuchUpload", "NoSuchKey"})
_REFUSED_CODES = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})
PAGE = 1000


class UploadGone(Exception):
    """The store has no such multipart upload (completed, aborted or expired)."""


class PartsRefused(Exception):
    """The store refused to complete the upload from these parts."""


@dataclass(frozen=True, slots=True)
class OpenUpload:
    key: str
    upload_id: str
    initiated: datetime | None


class MultipartUploads:
    def __init__(self, store: ObjectStore) -> None:
        self._client = store.client
        self._bucket = store.bucket

    async def create(self, key: str, content_type: str) -> str:
        """Start an upload; the object it completes into has `content_type`."""
        return await asyncio.to_thread(
            self._client._create_multipart_upload,
            self._bucket,
            key,
            {"Content-Type": content_type},
        )

    async def parts(self, key: str, upload_id: str) -> list[Part]:
        """The parts stored so far, at most MAX_PARTS of them."""
        return await asyncio.to_thread(self._parts, key, upload_id)

    def _parts(self, key: str, upload_id: str) -> list[Part]:
        found: list[Part] = []
        marker: str | None = None
        while len(found) <= MAX_PARTS:
            try:
                page = self._client._list_parts(
                    self._bucket, key, upload_id, max_parts=PAGE, part_number_marker=marker
                )
            except S3Error as error:
                raise _translated(error) from None
            found += [Part(p.part_number, p.etag, p.size or 0) for p in page.parts]
            if not page.is_truncated or not page.next_part_number_marker:
                break
            marker = page.next_part_number_marker
        return found

    async def complete(self, key: str, upload_id: str, parts: list[Part]) -> None:
        # The SDK quotes the ETag itself: one sent as a header gave it would be doubled.
        sdk_parts = [SdkPart(part.number, part.etag.strip('"')) for part in parts]
        try:
            await asyncio.to_thread(
                self._client._complete_multipart_upload, self._bucket, key, upload_id, sdk_parts
            )
        except S3Error as error:
            raise _translated(error) from None

    async def abort(self, key: str, upload_id: str) -> bool:
        """Abort the upload and drop its parts; False when it was gone already (aborted,
        expired, or completed)."""
        try:
            await asyncio.to_thread(
                self._client._abort_multipart_upload, self._bucket, key, upload_id
            )
        except S3Error as error:
            if error.code not in _GONE_CODES:
                raise
            return False
        return True

    async def open_uploads(self, prefix: str, limit: int) -> list[OpenUpload]:
        """Up to `limit` uploads started under `prefix` and neither completed nor aborted."""
        return await asyncio.to_thread(self._open_uploads, prefix, limit)

    def _open_uploads(self, prefix: str, limit: int) -> list[OpenUpload]:
        found: list[OpenUpload] = []
        key_marker: str | None = None
        id_marker: str | None = None
        while len(found) < limit:
            page = self._client._list_multipart_uploads(
                self._bucket,
                prefix=prefix,
                key_marker=key_marker,
                upload_id_marker=id_marker,
                max_uploads=min(PAGE, limit - len(found)),
            )
            found += [
                OpenUpload(upload.object_name, upload.upload_id, upload.initiated_time)
                for upload in page.uploads
                if upload.upload_id is not None
            ]
            if not page.is_truncated:
                break
            key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker
        return found


def _translated(error: S3Error) -> Exception:
    if error.code in _GONE_CODES:
        return UploadGone(error.code)
    if error.code in _REFUSED_CODES:
        return PartsRefused(error.message or error.code)
    return error
