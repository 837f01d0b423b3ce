"""clamd INSTREAM scanning. Only an explicit OK is clean; everything else fails closed."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import clamd

# The clamd package sends 1 KiB chunks with socket.send (which may send part of a
# chunk); we keep its protocol handling and stream larger chunks with sendall.
CHUNK_BYTES = 256 * 1024


class ScannerUnavailable(Exception):
    """No verdict: clamd unreachable, timed out, over a limit, or answered something else."""


@dataclass(frozen=True, slots=True)
class Clean:
    pass


@dataclass(frozen=True, slots=True)
class Infected:
    signature: str


Verdict = Clean | Infected


class _StreamingClamd(clamd.ClamdNetworkSocket):  # type: ignore[misc]
    def instream(self, stream: BinaryIO) -> dict[str, tuple[str, str | None]] | None:
        try:
            self._init_socket()
            self._send_command("INSTREAM")
            try:
                while chunk := stream.read(CHUNK_BYTES):
                    self.clamd_socket.sendall(struct.pack("!L", len(chunk)) + chunk)
                self.clamd_socket.sendall(struct.pack("!L", 0))
            except OSError as send_failed:
                # clamd answers (e.g. "INSTREAM size limit exceeded") and closes while
                # we still send: its reply, when there is one, is the exact reason.
                raise self._reply_after(send_failed) from None
            response = self._recv_response()
            if not response:
                return None
            name, reason, status = self._parse_response(response)
            return {name: (status, reason)}
        finally:
            self._close_socket()

    def _reply_after(self, send_failed: OSError) -> Exception:
        try:
            reply = self._recv_response()
        except clamd.ConnectionError:
            return send_failed
        if not reply:
            return send_failed
        refused: Exception = clamd.ResponseError(reply.removeprefix("stream: "))
        return refused


class ClamdScanner:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._host = host
        self._port = port
        self._timeout = timeout

    def scan_file(self, path: Path) -> Verdict:
        """Blocking; run it in a thread."""
        client = _StreamingClamd(self._host, self._port, timeout=self._timeout)
        try:
            with path.open("rb") as stream:
                result = client.instream(stream)
        except clamd.ResponseError as error:  # e.g. "INSTREAM size limit exceeded"
            raise ScannerUnavailable(f"clamd refused the scan: {error}") from None
        except (TimeoutError, clamd.ConnectionError, OSError) as error:
            raise ScannerUnavailable(f"clamd unreachable or failed: {error}") from None
        return verdict_from(result)

    def ping(self) -> bool:
        try:
            return bool(_StreamingClamd(self._host, self._port, timeout=5).ping() == "PONG")
        except (clamd.ConnectionError, OSError):
            return False


def verdict_from(result: dict[str, tuple[str, str | None]] | None) -> Verdict:
    """Map clamd's reply to a verdict. FOUND is infected, OK is clean, anything else raises."""
    if not result or len(result) != 1:
        raise ScannerUnavailable(f"unexpected clamd reply: {result!r}")
    status, reason = next(iter(result.values()))
    if status == "OK":
        return Clean()
    if status == "FOUND" and reason:
        return Infected(reason)
    raise ScannerUnavailable(f"clamd answered {status}: {reason}")
