"""The composition root: builds the store-backed application from settings."""

from __future__ import annotations

import structlog

from service.application import FlashpointApplication
from service.persistence import redact, store_environment
from service.settings import Settings

log = structlog.get_logger()


def build_application(settings: Settings) -> FlashpointApplication:
    """Open the configured event store (creating its tables) and the application on it."""
    app = FlashpointApplication(env=store_environment(settings.store))
    log.info("store.opened", store=redact(settings.store))
    return app
