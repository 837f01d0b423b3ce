"""The object store behind a small interface, driven by the minio SDK.

The SDK is synchronous; network calls run in a worker thread. Presigning is pure
computation (SigV4 with a fixed region), so it runs inline.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import urllib3
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from minio import Minio
from minio.error import S3Error
from minio.sse import SseS3

from mediagate.config import Settings
from mediagate.domain.failures import arose_from
from mediagate.domain.validation import StoredObject

CHUNK_BYTES = 1024 * 1024
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NotFound", "ResourceNotFound"})


class ObjectTooLarge(Exception):
    """The object grew past the size cap while it was being read."""


@dataclass(frozen=True, slots=True)
class Download:
    size: int
    sha256: str


# The store answered that it cannot serve now, rather than anything about the request.
_BUSY_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"})


def is_unreachable(error: BaseException) -> bool:
    """Whether `error`, or an error it arose from, says the store cannot be reached or
    cannot serve now (refused, reset, timed out, 5xx after the client's own retries)."""
    return arose_from(error, _says_unreachable)


def _says_unreachable(error: BaseException) -> bool:
    if isinstance(error, S3Error):
        return error.code in _BUSY_CODES
    return isinstance(error, (urllib3.exceptions.HTTPError, ConnectionError))


def _client(
    endpoint: str, settings: Settings, pool_size: int, credential: tuple[str, str] | None = None
) -> Minio:
    parts = urlsplit(endpoint)
    access_key, secret_key = credential or (settings.s3.access_key, settings.s3.secret_key)
    http = urllib3.PoolManager(
        maxsize=pool_size,
        timeout=urllib3.Timeout(connect=5.0, read=60.0),
        retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
    )
    return Minio(
        parts.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parts.scheme == "https",
        region=settings.s3.region,
        http_client=http,
    )


class ObjectStore:
    """One bucket: uploads land under sessions/, processed copies under processed/."""

    def __init__(self, settings: Settings, pool_size: int = 32) -> None:
        self.bucket = settings.s3.bucket
        self.client = _client(settings.s3.endpoint, settings, pool_size)
        # Browsers must reach the host in a presigned URL, and the host is signed,
        # so URLs are signed for the public endpoint by a client that never connects.
        self._signer = _client(settings.s3.public_endpoint, settings, 1)
        # Upload URLs carry the upload credential, which may only put objects under
        # sessions/: a URL cannot be turned into a read or a copy of anything else.
        self._upload_signer = _client(
            settings.s3.public_endpoint,
            settings,
            1,
            (settings.s3.upload_access_key, settings.s3.upload_secret_key),
        )
        self._encrypt = settings.s3.sse
        self._upload_credentials = Credentials(
            settings.s3.upload_access_key, settings.s3.upload_secret_key
        )
        self._region = settings.s3.region
        public = urlsplit(settings.s3.public_endpoint)
        self._public_origin = f"{public.scheme}://{public.netloc}"  # as the minio SDK signs it
        # The Host header as clients send it (no default port). Given, botocore need not
        # parse it out of every URL again: a third of its time per signature.
        default_port = 443 if public.scheme == "https" else 80
        self._public_host = (
            public.netloc.rsplit(":", 1)[0] if public.port == default_port else public.netloc
        )

    def presign_put(self, key: str, ttl: timedelta, now: datetime, size: int | None = None) -> str:
        """A PUT URL valid for `ttl` from `now`; with `size`, Content-Length is among its
        signed headers, so the store refuses a body of any other length.

        The content type is not bound by the signature; confirmUpload and the worker
        check it instead.
        """
        if size is not None:
            return self._sign_with_length(key, ttl, size, {})
        return self._upload_signer.get_presigned_url(
            "PUT", self.bucket, key, expires=ttl, request_date=now
        )

    def presign_upload_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        ttl: timedelta,
        now: datetime,
        size: int | None = None,
    ) -> str:
        """A PUT URL for one part of a multipart upload, signed like presign_put's."""
        query: dict[str, str | list[str] | tuple[str]] = {
            "partNumber": str(part_number),
            "uploadId": upload_id,
        }
        if size is not None:
            return self._sign_with_length(key, ttl, size, query)
        return self._upload_signer.get_presigned_url(
            "PUT", self.bucket, key, expires=ttl, request_date=now, extra_query_params=query
        )

    def _sign_with_length(
        self, key: str, ttl: timedelta, size: int, query: Mapping[str, object]
    ) -> str:
        """The minio SDK signs only the host of a presigned URL; botocore's SigV4 signer
        signs every header of the request, Content-Length among them. It signs at the
        time of the call."""
        signer = S3SigV4QueryAuth(
            self._upload_credentials, "s3", self._region, expires=int(ttl.total_seconds())
        )
        url = f"{self._public_origin}/{self.bucket}/{quote(key, safe='/')}"
        if query:
            url += "?" + urlencode(query)
        request = AWSRequest(
            method="PUT", url=url, headers={"Host": self._public_host, "Content-Length": str(size)}
        )
        signer.add_auth(request)
        return str(request.url)

    def presign_get(self, key: str, ttl: timedelta, now: datetime) -> str:
        return self._signer.get_presigned_url(
            "GET", self.bucket, key, expires=ttl, request_date=now
        )

    async def head(self, key: str) -> StoredObject | None:
        try:
            stat = await asyncio.to_thread(self.client.stat_object, self.bucket, key)
        except S3Error as error:
            if error.code in _MISSING_CODES:
                return None
            raise
        assert stat.last_modified is not None and stat.size is not None
        return StoredObject(
            size=stat.size,
            content_type=stat.content_type or "",
            last_modified=stat.last_modified,
        )

    async def download(self, key: str, destination: Path, max_bytes: int) -> Download:
        """Stream the object to `destination`, hashing on the way and stopping past max_bytes."""
        return await asyncio.to_thread(self._download, key, destination, max_bytes)

    def _download(self, key: str, destination: Path, max_bytes: int) -> Download:
        digest = hashlib.sha256()
        size = 0
        response = self.client.get_object(self.bucket, key)
        try:
            with destination.open("wb") as sink:
                for chunk in response.stream(CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ObjectTooLarge(f"{key} is larger than {max_bytes} bytes")
                    digest.update(chunk)
                    sink.write(chunk)
        finally:
            response.close()
            response.release_conn()
        return Download(size=size, sha256=digest.hexdigest())

    async def upload(
        self, key: str, source: Path, content_type: str, metadata: dict[str, str]
    ) -> None:
        await asyncio.to_thread(self._upload, key, source, content_type, metadata)

    def _upload(self, key: str, source: Path, content_type: str, metadata: dict[str, str]) -> None:
        with source.open("rb") as stream:
            self.client.put_object(
                self.bucket,
                key,
                stream,
                source.stat().st_size,
                content_type=content_type,
                metadata=metadata,  # type: ignore[arg-type]
                sse=SseS3() if self._encrypt else None,
            )

    async def delete(self, key: str) -> None:
        """Remove the object; removing one that is already gone succeeds."""
        await asyncio.to_thread(self.client.remove_object, self.bucket, key)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix`; returns how many there were."""
        return await asyncio.to_thread(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        removed = 0
        for found in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
            self.client.remove_object(self.bucket, found.object_name)
            removed += 1
        return removed

    async def list_page(
        self, prefix: str, start_after: str, limit: int
    ) -> list[tuple[str, datetime]]:
        """Up to `limit` (key, last modified) under `prefix` after `start_after`, in the
        store's order (byte order of the keys)."""
        listed = await asyncio.to_thread(self._listed, prefix, start_after, limit)
        return [(found.object_name, found.last_modified) for found in listed]

    async def list_sizes(self, prefix: str, start_after: str, limit: int) -> list[tuple[str, int]]:
        """As list_page, with each object's size instead of its time."""
        listed = await asyncio.to_thread(self._listed, prefix, start_after, limit)
        return [(found.object_name, found.size or 0) for found in listed]

    def _listed(self, prefix: str, start_after: str, limit: int) -> list[Any]:
        listed = self.client.list_objects(
            self.bucket, prefix=prefix, recursive=True, start_after=start_after or None
        )
        return [
            found
            for found in itertools.islice(listed, limit)
            if found.object_name is not None and found.last_modified is not None
        ]
