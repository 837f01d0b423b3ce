"""The clamd scanner: only OK is clean, everything else fails closed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mediagate.scanning.clamav import (
    ClamdScanner,
    Clean,
    Infected,
    ScannerUnavailable,
    verdict_from,
)
from tests.support import daemons, media


def test_verdicts() -> None:
    assert verdict_from({"stream": ("OK", None)}) == Clean()
    assert verdict_from({"stream": ("FOUND", "Win.Test.EICAR_HDB-1")}) == Infected(
        "Win.Test.EICAR_HDB-1"
    )
    for reply in (
        None,
        {},
        {"stream": ("ERROR", "Can't allocate memory")},
        {"stream": ("FOUND", None)},
    ):
        with pytest.raises(ScannerUnavailable):
            verdict_from(reply)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small_limit_clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[daemons.Clamd]:
    daemon = daemons.Clamd(tmp_path_factory.mktemp("clamd-small"), StreamMaxLength="1M")
    daemon.start()
    yield daemon
    daemon.stop()


def test_a_size_limit_reply_is_not_a_clean_scan(
    small_limit_clamd: daemons.Clamd, tmp_path: Path
) -> None:
    """clamd stops reading at its limit, answers and closes while we still send: the
    reply is read all the same (64 times the limit: the send fails on every run)."""
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        out.truncate(64 * 1024 * 1024)
    scanner = ClamdScanner("127.0.0.1", small_limit_clamd.port, timeout=30)
    with pytest.raises(ScannerUnavailable, match="size limit"):
        scanner.scan_file(big)


def test_a_signature_hidden_inside_a_valid_photo_is_found(
    clamd: daemons.Clamd, tmp_path: Path
) -> None:
    """Image fuzzy hashing is off in the shipped clamd.conf; every byte is still matched."""
    photo = media.fixture("landscape_1.jpg")
    comment = b"\xff\xfe" + (len(media.eicar()) + 2).to_bytes(2, "big") + media.eicar()
    hidden = tmp_path / "hidden.jpg"
    hidden.write_bytes(photo[:2] + comment + photo[2:])  # a COM segment right after SOI
    scanner = ClamdScanner("127.0.0.1", clamd.port, timeout=30)
    assert scanner.scan_file(hidden) == Infected("Eicar-Test-Signature.UNOFFICIAL")


def test_real_scans(clamd: daemons.Clamd, tmp_path: Path) -> None:
    scanner = ClamdScanner("127.0.0.1", clamd.port, timeout=30)
    clean, infected = tmp_path / "clean.jpg", tmp_path / "eicar.txt"
    clean.write_bytes(media.fixture("landscape_1.jpg"))
    infected.write_bytes(media.eicar())
    assert scanner.scan_file(clean) == Clean()
    assert scanner.scan_file(infected) == Infected("Eicar-Test-Signature.UNOFFICIAL")
    assert scanner.ping()


def test_unreachable_scanner_is_unavailable(tmp_path: Path) -> None:
    file = tmp_path / "a.jpg"
    file.write_bytes(b"x")
    scanner = ClamdScanner("127.0.0.1", daemons.free_port(), timeout=5)
    with pytest.raises(ScannerUnavailable):
        scanner.scan_file(file)
    assert not scanner.ping()
