"""A URL that signs its length signs the Host header as botocore would derive it from the
URL itself (the default port left out), so the store computes the same signature."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mediagate.config import load_settings
from mediagate.storage.object_store import ObjectStore
from tests.unit.test_config import BASE


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


@pytest.mark.parametrize(
    "endpoint",
    ["https://media.example.com", "https://media.example.com:443", "http://localhost:9000",
     "http://127.0.0.1:80", "https://[::1]:8443"],
)  # fmt: skip
def test_the_signed_host_is_the_one_botocore_derives(endpoint: str) -> None:
    settings = load_settings({**BASE, "S3_PUBLIC_ENDPOINT": endpoint})
    store = ObjectStore(settings)
    key = "sessions/00000000-0000-0000-0000-000000000001/general/a.jpg"
    while True:  # both signed within one second: the same X-Amz-Date
        ours = _query(store.presign_put(key, timedelta(seconds=300), datetime.now(UTC), 1234))
        signer = S3SigV4QueryAuth(
            Credentials(settings.s3.upload_access_key, settings.s3.upload_secret_key),
            "s3",
            settings.s3.region,
            expires=300,
        )
        request = AWSRequest(
            method="PUT",
            url=f"{endpoint}/{settings.s3.bucket}/{key}",
            headers={"Content-Length": "1234"},
        )
        signer.add_auth(request)
        theirs = _query(request.url)
        if ours["X-Amz-Date"] == theirs["X-Amz-Date"]:
            break
    assert ours["X-Amz-SignedHeaders"] == "content-length;host"
    assert ours["X-Amz-Signature"] == theirs["X-Amz-Signature"]
