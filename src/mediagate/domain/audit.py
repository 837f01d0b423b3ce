"""Who changes an upload, as the audit log names them."""

from __future__ import annotations

import getpass
import os
import socket
import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    # user, worker or operator
    kind: str
    name: str
    # The API request's or the worker job's id, to find the matching log lines.
    reference: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"

    @classmethod
    def user(cls, user_id: uuid.UUID, request_id: str | None) -> Actor:
        return cls("user", str(user_id), request_id)

    @classmethod
    def worker(cls, job_id: str) -> Actor:
        return cls("worker", f"{socket.gethostname()}:{os.getpid()}", job_id)

    @classmethod
    def operator(cls, command: str) -> Actor:
        return cls("operator", getpass.getuser(), command)
