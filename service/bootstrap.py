"""The composition root: builds the store, application, read models and their worker, and
everything else a server, a projection worker or a CLI command needs.

Entry points (the CLI, and through it ``serve``) call it; nothing below them wires stores.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from wsgiref.simple_server import WSGIServer

import psycopg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from projections.ownership import CHANNEL, AppendListener, Ownership
from projections.readmodels import ALL, ReadModels
from projections.runner import BATCH_INTERVAL, FOLLOWERS, POLL_INTERVAL, ProjectionWorker
from projections.store import ViewStore
from projections.timetravel import TimeTravel
from service.adapters.datastore import postgres_connector, postgres_scope, setup_serialized
from service.adapters.deadlines import bind_to_call_deadlines
from service.adapters.eventlog import RecorderEventSource
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import StoreURLError, redact, store_environment
from service.audit.chain import Chainer
from service.audit.seals import load_private_key
from service.audit.tables import LogTables
from service.metrics import Metrics
from service.settings import Settings
from service.status import LogStatus, log_status

log = structlog.get_logger()

#: Threads besides the RPC threads that use the event store's pool.
STORE_THREADS = 4
#: How long one check of the event store may take (the server's store watcher).
STORE_CHECK_TIMEOUT = 1.5


class SetupError(Exception):
    """The settings name a store or a key that cannot be used; the message is one line for
    the user, with no traceback to follow."""


class StoreMissing(SetupError):
    """A reading command was pointed at a store that does not exist (often a typo)."""


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///…`` URL names, or None (PostgreSQL, ``:memory:``)."""
    parts = urlsplit(url)
    path = unquote(parts.path).removeprefix("/")
    if parts.scheme != "sqlite" or not path or path == ":memory:":
        return None
    return Path(path)


def open_environment(
    settings: Settings, *, create: bool, pool_size: int | None = None
) -> tuple[dict[str, str], Path | None]:
    """The store's ``eventsourcing`` environment, and the SQLite file this call is about to
    create (None if it exists, or is not a file).

    Checked before anything is opened: without ``create`` a missing SQLite file is refused
    (``store_environment`` would make its directories, and the store would be made empty);
    a PostgreSQL server is asked for one connection, which names the reason (refused, no
    such database, bad password) where the store's pool would only time out after retries.
    """
    path = sqlite_path(settings.store)
    new = path if path is not None and not path.exists() else None
    if new is not None and not create:
        raise StoreMissing(
            f"no store at {new}: check --store (or FLASHPOINT_STORE); only serve, report, "
            "demo, import and migrate create one"
        )
    try:
        env = store_environment(settings.store, pool_size=pool_size)
    except StoreURLError as error:
        raise SetupError(f"invalid --store: {error}") from None
    if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        try:
            with postgres_connector(env, "check")() as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as error:
            reason = " ".join(str(error).split())
            raise SetupError(f"cannot open store {redact(settings.store)}: {reason}") from None
    return env, new


def _open_application(
    settings: Settings, env: dict[str, str], *, created: Path | None, one_shot: bool
) -> FlashpointApplication:
    """Open the configured event store (creating its tables) and the application on it."""
    app = FlashpointApplication(env=env)
    if settings.group_commit:
        app.enable_group_commit()
    if created is not None:
        log.info("store.created", store=redact(settings.store), path=str(created))
    # Every one-shot CLI command would print this line before its answer; servers and
    # workers, which run for long, say where they write.
    opened = log.debug if one_shot else log.info
    opened("store.opened", store=redact(settings.store), group_commit=app.group_commit)
    return app


def load_seal_key(path: str | None) -> Ed25519PrivateKey | None:
    """The seal-signing key at ``path`` (None: seals go unsigned); SetupError if the file is
    missing or not an Ed25519 private key in PEM."""
    if not path:
        return None
    try:
        return load_private_key(path)
    except OSError as error:
        raise SetupError(f"seal key {path}: {error.strerror or error}") from None
    except (ValueError, TypeError) as error:
        reason = str(error).split(".")[0] if str(error) else "unreadable"
        raise SetupError(f"seal key {path}: not an Ed25519 private key in PEM ({reason})") from None


def check_store(recorder: Any, timeout: float = STORE_CHECK_TIMEOUT) -> None:
    """Raise unless the event store answers a trivial query within about ``timeout``.

    On PostgreSQL this borrows a connection from the recorder's own pool with a short
    timeout: the recorder's methods retry a lost connection ten times over most of a
    minute, far too slow to notice an outage. SQLite asks for the head of the log.
    """
    pool = getattr(getattr(recorder, "datastore", None), "pool", None)
    if pool is None or not hasattr(pool, "connection"):
        recorder.max_notification_id()
        return
    with pool.connection(timeout=timeout) as connection:
        connection.execute("SELECT 1").fetchone()


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

    def status(self) -> LogStatus:
        """How far behind the log each read model and the audit chain are, read now."""
        return log_status(self)

    def check_store(self) -> None:
        """Raise unless the event store answers at once (see :func:`check_store`)."""
        check_store(self.app.recorder)

    def store_answers(self) -> bool:
        try:
            self.check_store()
        except Exception:
            return False
        return True

    def watch(self, metrics: Metrics, store_up: Callable[[], bool]) -> None:
        """Have ``metrics`` report this service (appends, positions, lag, pools)."""
        metrics.watch(self, store_up)

    def close(self) -> None:
        self.worker.stop()  # first: releasing ownership lets a standby take over at once
        if self.listener is not None:
            self.listener.stop()
        self.views.close()
        self.app.close()


def build(
    settings: Settings,
    *,
    follow: bool = False,
    exclusive: bool = False,
    create: bool = True,
    one_shot: bool = False,
    batch_interval: float | None = None,
    poll_interval: float | None = None,
) -> Flashpoint:
    """Build the service; with ``follow`` the projections are kept current in this process.

    ``batch_interval``: the least time between two rounds of the worker's catch-up (default:
    batched when it follows in this process, at once otherwise; see ``ProjectionWorker``).
    ``poll_interval``: how often the worker looks for appends it was not told of (default
    ``POLL_INTERVAL``).

    Without ``create`` a store that does not exist is refused (:class:`StoreMissing`) rather
    than made empty: reading commands pass it, so a mistyped ``--store`` fails. A
    ``one_shot`` CLI command logs opening the store at debug, not info.

    Group commit is on as ``settings.group_commit`` says, for servers and CLI commands alike.

    ``exclusive`` (``flashpoint project``): on PostgreSQL, the worker processes only the
    projections it holds an advisory lock for (standing by for the others, to take over
    when their owner dies), and a LISTEN on the events table's trigger wakes it on every
    append. On SQLite it changes nothing.
    """
    # Every RPC thread may hold a connection, beside the committer, the projections, the
    # chainer and the health watcher.
    env, created = open_environment(
        settings, create=create, pool_size=settings.threads + STORE_THREADS
    )
    seal_key = load_seal_key(settings.seal_key)
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
        app = _open_application(settings, env, created=created, one_shot=one_shot)
        views = ViewStore.open(env)
        bind_to_call_deadlines(views.recorder.datastore)  # queries run under RPC deadlines
        source = RecorderEventSource(app.recorder)
        # Following in the server's own process, rounds are batched so that they cost per
        # batch of the log, not per call.
        interval = batch_interval
        if interval is None:
            interval = BATCH_INTERVAL if follow else 0.0
        worker = ProjectionWorker(
            source, views, ALL, ownership=ownership, batch_interval=interval,
            poll_interval=POLL_INTERVAL if poll_interval is None else poll_interval,
        )  # fmt: skip
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


@dataclass
class AuditLog:
    """The log alone, as the audit commands that only read or import it need: no read
    models (so none of their tables are made)."""

    app: FlashpointApplication
    log_tables: LogTables

    def close(self) -> None:
        self.app.close()


def build_log(settings: Settings, *, create: bool = True, one_shot: bool = False) -> AuditLog:
    """The log alone (``create`` and ``one_shot`` as for :func:`build`)."""
    env, created = open_environment(settings, create=create)
    app = _open_application(settings, env, created=created, one_shot=one_shot)
    return AuditLog(app=app, log_tables=LogTables(app.recorder))


def build_server(settings: Settings) -> Flashpoint:
    """The service ``serve`` answers from. It does not follow the log itself: with
    ``projections = embedded`` ``serve`` runs the followers in a child process of its own
    (``service.cli.serve.FollowerProcess``), else separate workers do."""
    return build(settings)


def build_follower(settings: Settings) -> Flashpoint:
    """The service of a server's follower process: the projections and the chainer, caught
    up in rounds batched over ``BATCH_INTERVAL`` (its server wakes it on appends)."""
    return build(settings, batch_interval=BATCH_INTERVAL)


def prepare_store(settings: Settings) -> None:
    """Create every table the service uses (IF NOT EXISTS), then let go of the store; for a
    parent process whose workers would otherwise race to."""
    build(settings).close()


def serve_worker_metrics(settings: Settings, service: Flashpoint) -> WSGIServer | None:
    """Serve a projection worker's metrics (positions, lag, its pool) if the settings ask
    for them; the HTTP server, to stop with ``service.metrics.stop_serving``."""
    address = settings.metrics_address()
    if address is None:
        return None
    metrics = Metrics()
    service.watch(metrics, service.store_answers)
    return metrics.serve(*address)
