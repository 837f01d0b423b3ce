"""Entry point for ASGI servers running several processes: each reads its settings once."""

from __future__ import annotations

from litestar import Litestar

from mediagate.api.app import create_app
from mediagate.config import load_settings


def create_app_from_environment() -> Litestar:
    return create_app(load_settings())
