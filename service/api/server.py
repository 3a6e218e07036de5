"""The gRPC server: ``create_server`` builds it from settings and the parts the composition
root made; ``service.cli.serve`` runs it."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.api import translation as tr
from service.api.auth import Authenticator
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.interceptors import CallInterceptor
from service.api.servicers import ServiceParts, servicers_for
from service.metrics import Metrics, stop_serving
from service.settings import Settings

log = structlog.get_logger()

SERVICE_NAMES = tr.SERVICE_NAMES


class ServedParts(ServiceParts, Protocol):
    """What a server is built from: the servicers' parts, a way to check the event store,
    and a way to have metrics report them (``service.bootstrap.Flashpoint`` is one)."""

    def check_store(self) -> None: ...
    def watch(self, metrics: Metrics, store_up: Callable[[], bool]) -> None: ...


class ServeRefused(Exception):
    """The server will not start with these settings (an unsafe or impossible setup)."""


#: How often the store watcher checks the event store.
STORE_CHECK_SECONDS = 2.0


class StoreWatcher:
    """Checks the event store every ``interval`` seconds; health answers NOT_SERVING (and
    RPCs UNAVAILABLE, through the interceptor) while it fails, SERVING once it answers."""

    def __init__(
        self,
        check: Callable[[], None],
        health_servicer: health.HealthServicer,
        interval: float = STORE_CHECK_SECONDS,
    ) -> None:
        self._check = check
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
            self._check()
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
    settings: Settings, parts: ServedParts, authenticator: Authenticator
) -> RunningServer:
    """A configured, bound, not yet started server (``listen`` may use port 0) answering
    from ``parts``, which the composition root built."""
    check_exposure(settings, authenticator)
    limit = settings.max_message_bytes
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    watcher = StoreWatcher(parts.check_store, health_servicer)
    metrics = Metrics()
    parts.watch(metrics, watcher.is_available)
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
    servicers = servicers_for(parts)
    command_grpc.add_CommandServiceServicer_to_server(servicers.commands, server)
    query_grpc.add_QueryServiceServicer_to_server(servicers.queries, server)
    audit_grpc.add_AuditServiceServicer_to_server(servicers.audit, server)
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
        metrics_address=settings.metrics_address(),
    )
