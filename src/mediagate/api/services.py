"""What the API process builds at start-up and its handlers use: in the app's state."""

from __future__ import annotations

from dataclasses import dataclass

from mediagate.api.graphql.executor import GraphQLExecutor
from mediagate.api.graphql.ws import SocketServices
from mediagate.auth.tokens import TokenVerifier
from mediagate.events.publisher import JobPublisher
from mediagate.services import monitoring
from mediagate.services.uploads import UploadService
from mediagate.services.webhooks import WebhookService


@dataclass(frozen=True, slots=True)
class Services:
    executor: GraphQLExecutor
    uploads: UploadService
    webhooks: WebhookService
    verifier: TokenVerifier
    publisher: JobPublisher
    sockets: SocketServices
    body_timeout: float
    metrics: monitoring.CachedSnapshots
    metrics_token: str | None
