"""A robust AMQP connection to the first node of a cluster that answers.

aio-pika's robust connection reconnects, and restores its channels, queues and
consumers, but only ever to the one URL it was given. This one tries the nodes in
order on every (re)connection, starting from the node it last had.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.robust_connection import RobustConnection
from yarl import URL

log = logging.getLogger(__name__)

# How long opening a connection to one node may take before the next is tried.
CONNECT_TIMEOUT_SECONDS = 5.0


_open_transport = getattr(RobustConnection, "_RobustConnection__connect_transport")  # noqa: B009


class NodesConnection(RobustConnection):
    def __init__(self, nodes: Sequence[str], **kwargs: Any) -> None:
        super().__init__(URL(nodes[0]), **kwargs)
        self._nodes = [URL(node) for node in nodes]
        self._current = 0

    # aio-pika's one step that opens the transport (to `self.url`), run on every
    # (re)connection; overriding it keeps the rest of the robust machinery as it is.
    async def _RobustConnection__connect_transport(self) -> None:
        failure: BaseException | None = None
        for _ in self._nodes:
            self.url = self._nodes[self._current]
            try:
                await _open_transport(self)
            except Exception as error:  # refused, timed out, closed: the next node
                failure = error
                log.warning("broker node unreachable", extra={"node": self._node_name()})
                self._current = (self._current + 1) % len(self._nodes)
            else:
                log.info("broker connected", extra={"node": self._node_name()})
                return
        assert failure is not None
        raise failure

    def _node_name(self) -> str:
        return f"{self.url.host}:{self.url.port}"


async def connect(nodes: Sequence[str], **kwargs: Any) -> aio_pika.abc.AbstractRobustConnection:
    """Connected to the first node that answers (raises if none does); each node has
    CONNECT_TIMEOUT_SECONDS unless `timeout` says otherwise."""
    connection = NodesConnection(nodes, **{"timeout": CONNECT_TIMEOUT_SECONDS, **kwargs})
    await connection.connect()
    return connection
