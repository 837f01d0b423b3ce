"""Who a request acts for: a user of an organization, or the organization's own backend
(a service token), from a verified token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

SERVICE_ROLE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    # The product's backend: it manages the organization's sessions and webhooks.
    is_service: bool = False
