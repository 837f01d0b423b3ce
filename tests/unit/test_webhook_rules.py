"""The rules behind webhooks: where we may connect, when to try again, what a secret is."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime

import pytest

from mediagate.config import SettingsError, load_settings
from mediagate.domain.webhooks import (
    MAX_RETRY_AFTER,
    AllowedNetworks,
    Verdict,
    is_secret,
    new_secret,
    parse_retry_after,
    retry_delay,
    verdict_of,
)
from tests.unit.test_config import BASE

DEFAULT = load_settings(BASE).outbound.allowed_networks


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.255.255.254", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "::",
        "224.0.0.1", "ff02::1", "::ffff:127.0.0.1", "100.64.0.1", "fc00::1",
    ],
)  # fmt: skip
def test_the_default_refuses_loopback_link_local_multicast_and_unspecified(address: str) -> None:
    assert not DEFAULT.allows(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["10.0.0.7", "172.31.255.1", "192.168.1.1", "8.8.8.8"])
def test_the_default_allows_private_ranges_and_public_addresses(address: str) -> None:
    assert DEFAULT.allows(ipaddress.ip_address(address))


def test_listing_one_loopback_address_allows_that_one_only() -> None:
    listed = AllowedNetworks.parse("127.0.0.1/32")
    assert listed.allows(ipaddress.ip_address("127.0.0.1"))
    assert listed.allows(ipaddress.ip_address("::ffff:127.0.0.1"))
    for other in ("127.0.0.2", "10.0.0.1", "8.8.8.8"):
        assert not listed.allows(ipaddress.ip_address(other))


@pytest.mark.parametrize("value", ["", "banana", "10.0.0.0/33", "public,300.1.1.1/32"])
def test_malformed_network_lists_are_refused_in_one_line(value: str) -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_ALLOWED_NETWORKS") as raised:
        load_settings({**BASE, "WEBHOOK_ALLOWED_NETWORKS": value or ","})
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEBHOOK_RETRY_SCHEDULE", "5,-1"),
        ("WEBHOOK_RETRY_SCHEDULE", "5,inf"),
        ("WEBHOOK_RETRY_SCHEDULE", "soon"),
        ("WEBHOOK_SECRET", "not-whsec"),
        ("WEBHOOK_SECRET", "whsec_c2hvcnQ="),
        ("WEBHOOK_URL", "ftp://x"),
    ],
)
def test_malformed_webhook_settings_are_refused(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings({**BASE, variable: value})


def test_a_url_and_its_secret_come_together() -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_URL and WEBHOOK_SECRET"):
        load_settings({**BASE, "WEBHOOK_URL": "https://backend.internal/hooks"})
    with pytest.raises(SettingsError, match="VALIDATION_HOOK_URL"):
        load_settings({**BASE, "VALIDATION_HOOK_SECRET": new_secret()})


def test_secrets_are_whsec_and_32_random_bytes() -> None:
    made = {new_secret() for _ in range(50)}
    assert len(made) == 50 and all(is_secret(secret) for secret in made)
    assert all(len(secret) == len("whsec_") + 44 for secret in made)


def test_only_2xx_delivers_and_410_disables() -> None:
    schedule = (1.0, 2.0)
    assert verdict_of(200, 1, schedule) is Verdict.DELIVERED
    assert verdict_of(299, 1, schedule) is Verdict.DELIVERED
    for status in (None, 301, 302, 400, 404, 429, 500, 503):
        assert verdict_of(status, 1, schedule) is Verdict.RETRY
        assert verdict_of(status, 3, schedule) is Verdict.FAILED, "the schedule is spent"
    assert verdict_of(410, 1, schedule) is Verdict.GONE


def test_the_schedule_steps_carry_ten_percent_of_jitter() -> None:
    rng = random.Random(7)
    schedule = (5.0, 300.0)
    delays = [retry_delay(2, schedule, None, rng) for _ in range(500)]
    assert 270 <= min(delays) < 280 and 320 < max(delays) <= 330
    assert retry_delay(9, schedule, None, rng) <= 330, "past the schedule: its last step"


def test_retry_after_is_honoured_and_bounded() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert parse_retry_after(503, "120", now) == 120
    assert parse_retry_after(429, "Thu, 03 Dec 2026 12:01:00 GMT", now) == 60
    assert parse_retry_after(500, "120", now) is None, "only 429 and 503"
    assert parse_retry_after(503, "soon", now) is None
    assert parse_retry_after(503, "9" * 5000, now) == MAX_RETRY_AFTER
    assert retry_delay(1, (5.0,), 10**9, None) == MAX_RETRY_AFTER
