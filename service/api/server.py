"""The gRPC server: built from settings by ``create_server``, run by ``serve``."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.api.auth import Authenticator, load_tokens
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.interceptors import CallInterceptor
from service.api.servicers import AuditServicer, CommandServicer, QueryServicer
from service.bootstrap import Flashpoint, build
from service.metrics import Metrics, stop_serving
from service.settings import Settings
from service.status import log_status

log = structlog.get_logger()

SERVICE_NAMES = (
    command_pb.DESCRIPTOR.services_by_name["CommandService"].full_name,
    query_pb.DESCRIPTOR.services_by_name["QueryService"].full_name,
    audit_pb.DESCRIPTOR.services_by_name["AuditService"].full_name,
)


class ServeRefused(Exception):
    """The server will not start with these settings (an unsafe or impossible setup)."""


#: How often the store watcher checks the event store, and how long one check may take.
STORE_CHECK_SECONDS = 2.0
STORE_CHECK_TIMEOUT = 1.5


def store_answers(recorder: Any) -> bool:
    try:
        check_store(recorder)
    except Exception:
        return False
    return True


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


class StoreWatcher:
    """Checks the event store every ``interval`` seconds; health answers NOT_SERVING (and
    RPCs UNAVAILABLE, through the interceptor) while it fails, SERVING once it answers."""

    def __init__(
        self,
        recorder: Any,
        health_servicer: health.HealthServicer,
        interval: float = STORE_CHECK_SECONDS,
    ) -> None:
        self._recorder = recorder
        self._health = health_servicer
        self.interval = interval
        self.available = True
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def is_available(self) -> bool:
        return self.available

    def check(self) -> bool:
        """Check the store once, update health on a change; whether it answered."""
        try:
            check_store(self._recorder)
        except Exception as error:
            if self.available:
                log.error("store.unavailable", error=str(error) or type(error).__name__)
                self.available = False
                set_health(self._health, health_pb2.HealthCheckResponse.NOT_SERVING)
            return False
        if not self.available:
            log.info("store.available")
            self.available = True
            set_health(self._health, health_pb2.HealthCheckResponse.SERVING)
        return True

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.check()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="store-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def set_health(servicer: health.HealthServicer, status: Any) -> None:
    for name in ("", *SERVICE_NAMES):
        servicer.set(name, status)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    metrics: Metrics
    store_watcher: StoreWatcher
    #: Where ``/metrics`` is served (host, port), or None when metrics are off.
    metrics_address: tuple[str, int] | None = None
    _metrics_http: WSGIServer | None = field(default=None, repr=False)

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_http.server_port if self._metrics_http is not None else None

    def start(self) -> None:
        if self.metrics_address is not None:
            self._metrics_http = self.metrics.serve(*self.metrics_address)
        self.server.start()
        set_health(self.health, health_pb2.HealthCheckResponse.SERVING)
        self.store_watcher.check()
        self.store_watcher.start()

    def stop(self, grace: float) -> None:
        # Health answers NOT_SERVING first, so load balancers drain us before calls stop.
        self.health.enter_graceful_shutdown()
        self.store_watcher.stop()
        self.server.stop(grace).wait()
        if self._metrics_http is not None:
            stop_serving(self._metrics_http)
            self._metrics_http = None


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings, authenticator: Authenticator) -> None:
    if not is_loopback(settings.listen) and not authenticator.enabled and not settings.insecure:
        raise ServeRefused(
            f"refusing to serve {settings.listen} without authentication: configure tokens "
            "(--tokens-file or FLASHPOINT_TOKENS) or pass --insecure to accept the risk"
        )


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert and not settings.tls_key:
        if settings.tls_client_ca:
            raise ServeRefused("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise ServeRefused("TLS needs both --tls-cert and --tls-key")
    key, cert = Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes()
    client_ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def create_server(
    settings: Settings, service: Flashpoint, authenticator: Authenticator
) -> RunningServer:
    """A configured, bound, not yet started server (``listen`` may use port 0)."""
    check_exposure(settings, authenticator)
    if settings.group_commit:
        service.app.enable_group_commit()
    limit = settings.max_message_bytes
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    watcher = StoreWatcher(service.app.recorder, health_servicer)
    metrics = Metrics()
    metrics.watch(service, watcher.is_available)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="rpc"),
        interceptors=[CallInterceptor(authenticator, metrics, watcher.is_available)],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Several processes may serve one port (``--workers``); the kernel spreads
            # connections among them.
            ("grpc.so_reuseport", 1),
        ],
        maximum_concurrent_rpcs=settings.threads * 8,
    )
    app = service.app
    # Its RPCs are set from the command table when the module loads, which the generated
    # stub's abstract methods cannot see.
    commands = CommandServicer(app)  # type: ignore[abstract]
    command_grpc.add_CommandServiceServicer_to_server(commands, server)
    query_grpc.add_QueryServiceServicer_to_server(
        QueryServicer(
            app,
            service.read_models,
            service.worker.notify,
            service.time_travel,
            lambda: log_status(service),
        ),
        server,
    )
    audit_grpc.add_AuditServiceServicer_to_server(AuditServicer(service), server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, credentials)
    except RuntimeError as error:
        raise ServeRefused(f"cannot listen on {settings.listen}: {error}") from error
    if port == 0:
        raise ServeRefused(f"cannot listen on {settings.listen}")
    return RunningServer(
        server=server,
        port=port,
        health=health_servicer,
        metrics=metrics,
        store_watcher=watcher,
        metrics_address=metrics_address(settings),
    )


def metrics_address(settings: Settings) -> tuple[str, int] | None:
    """Where to serve ``/metrics``: ``metrics_host`` (default the gRPC listen host), on
    ``metrics_port`` (None: off)."""
    if not settings.metrics_port:
        return None
    if settings.metrics_host:
        return settings.metrics_host, settings.metrics_port
    host = settings.listen.rsplit(":", 1)[0].strip("[]") or "0.0.0.0"  # noqa: S104
    return host, settings.metrics_port


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (logged), for a process to wait on."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("server.stopping", signal=signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then drain in-flight calls and exit."""
    authenticator = Authenticator(load_tokens(settings.tokens_file, settings.tokens))
    check_exposure(settings, authenticator)
    if settings.workers > 1:
        return serve_workers(settings)
    service = build(settings, follow=settings.projections == "embedded")
    running = create_server(settings, service, authenticator)
    stopping = stop_on_signals()
    running.start()
    log.info(
        "server.started",
        listen=settings.listen,
        port=running.port,
        tls=bool(settings.tls_cert),
        mutual_tls=bool(settings.tls_client_ca),
        auth=authenticator.enabled,
        projections=settings.projections,
        metrics_port=running.metrics_port,
    )
    stopping.wait()
    running.stop(settings.grace_seconds)
    service.close()
    log.info("server.stopped")
    return 0


#: How long the parent waits for its workers after forwarding a stop, beyond their grace.
WORKER_STOP_MARGIN = 30.0
#: The exit status of a parent whose worker exited unasked with status 0.
EXIT_WORKER_FAILED = 1


def worker_environment(settings: Settings, index: int) -> dict[str, str]:
    """The environment of worker ``index``: these settings as ``FLASHPOINT_*`` variables,
    with one worker (itself) and, when metrics are on, its own metrics port."""
    prefix = "FLASHPOINT_"
    names = {prefix + name.upper() for name in Settings.model_fields}
    environment = {key: value for key, value in os.environ.items() if key not in names}
    values = settings.model_dump()
    values["workers"] = 1
    if settings.metrics_port:
        values["metrics_port"] = settings.metrics_port + index
    for name, value in values.items():
        if value is not None:
            environment[prefix + name.upper()] = str(value)
    return environment


def serve_workers(settings: Settings) -> int:
    """Run ``settings.workers`` server processes on one port until SIGTERM or SIGINT.

    Each worker is ``flashpoint serve`` with the same settings (passed in its environment)
    and one worker; the stop signal is forwarded to all of them. A worker exiting unasked
    stops the others; the exit status is then non-zero, as it is if any worker failed.
    """
    if settings.listen.rsplit(":", 1)[-1] in ("", "0"):
        raise ServeRefused("--workers needs a fixed port in --listen, not port 0")
    # Create the store's tables once here: workers starting together would race to.
    build(settings, follow=False).close()
    stopping = stop_on_signals()
    code = "import sys; from service.cli.main import main; sys.exit(main(['serve']))"
    children: list[subprocess.Popen[bytes]] = []
    try:
        for index in range(settings.workers):
            children.append(
                subprocess.Popen(  # noqa: S603 - our own interpreter and module
                    [sys.executable, "-c", code], env=worker_environment(settings, index)
                )
            )
        log.info("server.workers_started", listen=settings.listen, pids=[c.pid for c in children])
        while not stopping.wait(0.2):
            if any(child.poll() is not None for child in children):
                log.error(
                    "server.worker_exited",
                    exited={c.pid: c.returncode for c in children if c.returncode is not None},
                )
                break
    finally:
        asked = stopping.is_set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + settings.grace_seconds + WORKER_STOP_MARGIN
        for child in children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("server.worker_killed", pid=child.pid)
                child.kill()
                child.wait()
    failures = [child.returncode for child in children if child.returncode != 0]
    log.info("server.stopped", workers={c.pid: c.returncode for c in children})
    if failures:
        return next((code for code in failures if code > 0), EXIT_WORKER_FAILED)
    return 0 if asked else EXIT_WORKER_FAILED
