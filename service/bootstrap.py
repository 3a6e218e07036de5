"""The composition root: builds the store, application, read models and their worker."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from projections.events import RecorderEventSource
from projections.readmodels import ALL, ReadModels
from projections.runner import ProjectionWorker
from projections.store import ViewStore
from projections.timetravel import TimeTravel
from service.application import FlashpointApplication
from service.audit import Chainer, LogTables, load_private_key
from service.persistence import redact, store_environment
from service.settings import Settings

log = structlog.get_logger()


def build_application(settings: Settings) -> FlashpointApplication:
    """Open the configured event store (creating its tables) and the application on it."""
    app = FlashpointApplication(env=store_environment(settings.store))
    log.info("store.opened", store=redact(settings.store))
    return app


@dataclass
class Flashpoint:
    """Everything one process needs: the write side, the read side, and (maybe) the worker
    that keeps the read side and the audit chain current."""

    app: FlashpointApplication
    views: ViewStore
    read_models: ReadModels
    worker: ProjectionWorker
    log_tables: LogTables
    chainer: Chainer
    time_travel: TimeTravel

    def close(self) -> None:
        self.worker.stop()
        self.views.close()
        self.app.close()


def build(settings: Settings, *, follow: bool) -> Flashpoint:
    """Build the service; with ``follow`` the projections are kept current in this process."""
    app = build_application(settings)
    views = ViewStore.open(store_environment(settings.store))
    source = RecorderEventSource(app.recorder)
    worker = ProjectionWorker(source, views, ALL)
    log_tables = LogTables(app.recorder)
    seal_key = load_private_key(settings.seal_key) if settings.seal_key else None
    chainer = Chainer(log_tables, seal_key)
    worker.followers.append(chainer.step)
    if follow:
        app.append_listeners.append(lambda _position: worker.notify())
        worker.start()
    return Flashpoint(
        app=app,
        views=views,
        read_models=ReadModels(views),
        worker=worker,
        log_tables=log_tables,
        chainer=chainer,
        time_travel=TimeTravel(source, ALL),
    )
