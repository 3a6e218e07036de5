"""The composition root: builds the store, application, read models and their worker."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import structlog

from projections.ownership import CHANNEL, AppendListener, Ownership
from projections.readmodels import ALL, ReadModels
from projections.runner import FOLLOWERS, ProjectionWorker
from projections.store import ViewStore
from projections.timetravel import TimeTravel
from service.adapters.datastore import postgres_connector, postgres_scope, setup_serialized
from service.adapters.deadlines import bind_to_call_deadlines
from service.adapters.eventlog import RecorderEventSource
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import redact, store_environment
from service.audit.chain import Chainer
from service.audit.seals import load_private_key
from service.audit.tables import LogTables
from service.settings import Settings

log = structlog.get_logger()

#: Threads besides the RPC threads that use the event store's pool.
STORE_THREADS = 4


def build_application(settings: Settings) -> FlashpointApplication:
    """Open the configured event store (creating its tables) and the application on it."""
    # Every RPC thread may hold a connection, beside the committer, the projections, the
    # chainer and the health watcher.
    app = FlashpointApplication(
        env=store_environment(settings.store, pool_size=settings.threads + STORE_THREADS)
    )
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
    #: Wakes the worker on appends by other processes (exclusive workers on PostgreSQL).
    listener: AppendListener | None = None

    def close(self) -> None:
        self.worker.stop()  # first: releasing ownership lets a standby take over at once
        if self.listener is not None:
            self.listener.stop()
        self.views.close()
        self.app.close()


def build(settings: Settings, *, follow: bool, exclusive: bool = False) -> Flashpoint:
    """Build the service; with ``follow`` the projections are kept current in this process.

    ``exclusive`` (``flashpoint project``): on PostgreSQL, the worker processes only the
    projections it holds an advisory lock for (standing by for the others, to take over
    when their owner dies), and a LISTEN on the events table's trigger wakes it on every
    append. On SQLite it changes nothing.
    """
    env = store_environment(settings.store, pool_size=settings.threads + STORE_THREADS)
    ownership: Ownership | None = None
    if exclusive and env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        ownership = Ownership(
            postgres_connector(env, "owner"),
            postgres_scope(env),
            [projection.name for projection in ALL] + [FOLLOWERS],
        )
    # Workers starting together would otherwise race creating the same tables.
    setup: AbstractContextManager[None] = nullcontext()
    if ownership is not None:
        setup = ownership.serialized()
    elif env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        setup = setup_serialized(env)
    with setup:
        app = build_application(settings)
        views = ViewStore.open(env)
        bind_to_call_deadlines(views.recorder.datastore)  # queries run under RPC deadlines
        source = RecorderEventSource(app.recorder)
        worker = ProjectionWorker(source, views, ALL, ownership=ownership)
        if ownership is not None:
            events_table: str = getattr(app.recorder, "events_table_name", "stored_events")
            views.install_append_notify(events_table, CHANNEL)
    listener: AppendListener | None = None
    if ownership is not None:
        listener = AppendListener(
            postgres_connector(env, "listener"), ownership.scope, worker.notify
        )
        listener.start()
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
        listener=listener,
    )
