from __future__ import annotations

from pathlib import Path

import pytest

from mediagate.config import Settings
from mediagate.processing.isolation import DecoderPool
from mediagate.scanning.clamav import ClamdScanner
from mediagate.storage.object_store import ObjectStore
from mediagate.worker.pipeline import MediaPipeline
from tests.support import daemons


@pytest.fixture(scope="session")
def scratch_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scratch")


@pytest.fixture(scope="session")
def pipeline(
    settings: Settings,
    store: ObjectStore,
    clamd: daemons.Clamd,
    scratch_root: Path,
    decoders: DecoderPool,
) -> MediaPipeline:
    scanner = ClamdScanner(settings.scanner.host, settings.scanner.port, settings.scanner.timeout)
    return MediaPipeline(settings, store, scanner, decoders, scratch_root=scratch_root)
