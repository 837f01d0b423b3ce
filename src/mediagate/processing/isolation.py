"""Decoders run in child processes under a wall-clock, CPU and address-space limit.

A file controls how long a decoder runs and how much it allocates (progressive JPEGs
with hundreds of scans, decompression bombs, pathological video). Each decoder child
is long-lived (it keeps Pillow loaded and its memory warm) and runs one call at a
time; before each call it lowers its own RLIMIT_CPU and RLIMIT_AS, which ffmpeg
children inherit. The parent waits at most the wall-clock limit, then kills the
child's whole process group and starts a fresh one for the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from mediagate.processing.errors import ScratchUnavailable, UnacceptableMedia

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
STARTUP_SECONDS = 60.0
# A fresh interpreter that imports only what the calls need: no copy of the worker's
# threads, sockets or event loop, nor of its modules (multiprocessing's spawn would
# import the worker's main module again, some 40 MiB of it).
_CHILD = "from mediagate.processing.isolation import serve_fd; serve_fd({fd})"


@dataclass(frozen=True, slots=True)
class Limits:
    wall_seconds: float
    cpu_seconds: float
    memory_bytes: int
    # Shown to the client when the limit is hit.
    what: str = "the file"


class DecodeTimeout(UnacceptableMedia):
    """The decoder ran past its wall-clock or CPU limit."""


class DecoderCrashed(Exception):
    """The child died for a reason that is not a limit: not the file's fault for sure."""


def _die_with_parent() -> None:
    # Not on Linux: the pipe's EOF still ends the loop, after the call in progress.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _apply(limits: Limits) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime)
    # Soft limits only: the hard ones stay, so the next call can set its own.
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    _, as_hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_CPU, (used + int(limits.cpu_seconds) + 1, cpu_hard))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, as_hard))


def _lift() -> None:
    for limit in (resource.RLIMIT_CPU, resource.RLIMIT_AS):
        _, hard = resource.getrlimit(limit)
        resource.setrlimit(limit, (hard, hard))


def serve_fd(fd: int) -> None:
    """The child's entry point: the parent's import path and initializer come first."""
    connection = Connection(fd)
    sys.path[:], initializer = connection.recv()
    _serve(connection, initializer)


def _serve(connection: Connection, initializer: Callable[[], None] | None) -> None:
    """The child's loop: one call at a time until the parent goes away."""
    _die_with_parent()
    if initializer is not None:
        initializer()
    connection.send("ready")
    while True:
        try:
            function, args, limits = connection.recv()
        except EOFError:
            return
        _apply(limits)
        try:
            reply: tuple[str, Any] = ("ok", function(*args))
        except UnacceptableMedia as error:
            reply = ("unacceptable", str(error))
        except ScratchUnavailable as error:
            reply = ("scratch", str(error))
        except MemoryError:
            reply = ("unacceptable", f"{limits.what} needs more memory than allowed to decode")
        except Exception as error:
            reply = ("error", repr(error))
        finally:
            _lift()
        connection.send(reply)


class Decoder:
    """One child process; `call` is blocking (run it in a thread)."""

    def __init__(self, initializer: Callable[[], None] | None = None) -> None:
        self._initializer = initializer
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None

    def start(self) -> Connection:
        """The running child's pipe, starting a child first if there is none."""
        if self._connection is None or self._process is None or self._process.poll() is not None:
            ours, theirs = multiprocessing.Pipe()
            self._process = subprocess.Popen(
                [sys.executable, "-c", _CHILD.format(fd=theirs.fileno())],
                pass_fds=[theirs.fileno()],
                process_group=0,  # ffmpeg children join it: one kill ends them all
            )
            theirs.close()
            # Start-up (an interpreter, Pillow) is not the file's time: wait it out first.
            try:
                ours.send((sys.path, self._initializer))
                started = ours.poll(STARTUP_SECONDS) and ours.recv() == "ready"
            except (EOFError, OSError):
                started = False
            if not started:
                self.kill()
                ours.close()
                raise DecoderCrashed("the decoder process did not start")
            self._connection = ours
        return self._connection

    def call(self, function: Callable[..., T], args: tuple[Any, ...], limits: Limits) -> T:
        connection = self.start()
        connection.send((function, args, limits))
        if not connection.poll(limits.wall_seconds):
            self.kill()
            self._forget()
            raise DecodeTimeout(f"{limits.what} takes too long to decode")
        try:
            kind, value = connection.recv()
        except EOFError:
            code = self._wait()
            self._forget()
            raise self._death(code, limits) from None
        if kind == "ok":
            return value  # type: ignore[no-any-return]
        if kind == "unacceptable":
            raise UnacceptableMedia(value)
        if kind == "scratch":
            raise ScratchUnavailable(value)
        raise DecoderCrashed(value)

    @staticmethod
    def _death(code: int | None, limits: Limits) -> Exception:
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            return DecodeTimeout(f"{limits.what} takes too long to decode")
        return DecoderCrashed(f"the decoder process died (exit code {code})")

    def kill(self) -> None:
        """End the child and everything it started; a call waiting on it ends at once."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._wait()

    def _wait(self) -> int | None:
        assert self._process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)
        return self._process.returncode

    def close(self) -> None:
        self.kill()
        self._forget()

    def _forget(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None


class DecoderPool:
    """As many decoders as jobs run at once; a cancelled call kills its decoder."""

    def __init__(self, size: int, initializer: Callable[[], None] | None = None) -> None:
        self._idle: asyncio.Queue[Decoder] = asyncio.Queue()
        self._all = [Decoder(initializer) for _ in range(size)]
        for decoder in self._all:
            self._idle.put_nowait(decoder)

    async def start(self) -> None:
        """Start every child now, so the first files do not wait for an interpreter."""
        await asyncio.gather(*(asyncio.to_thread(decoder.start) for decoder in self._all))

    async def call(self, function: Callable[..., T], args: tuple[Any, ...], limits: Limits) -> T:
        decoder = await self._idle.get()
        running = asyncio.ensure_future(asyncio.to_thread(decoder.call, function, args, limits))
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            # Killed, the child's pipe closes and the waiting thread returns; the
            # decoder goes back to the pool only then, ready to start afresh.
            decoder.kill()
            await asyncio.gather(running, return_exceptions=True)
            raise
        finally:
            self._idle.put_nowait(decoder)

    def close(self) -> None:
        for decoder in self._all:
            decoder.close()
