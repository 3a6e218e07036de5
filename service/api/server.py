"""The gRPC server: ``create_server`` builds it from settings and the parts the composition
root made; ``service.cli.serve`` runs it."""

from __future__ import annotations

import errno
import ipaddress
import socket
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
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from service.adapters.datastore import store_down
from service.api import translation as tr
from service.api.auth import Authenticator
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.interceptors import CallInterceptor
from service.api.servicers import ServiceParts, Servicers, servicers_for
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


#: How often the store watcher checks the event store: an outage shows in health within
#: about this plus one check's timeout.
STORE_CHECK_SECONDS = 0.5


class StoreWatcher:
    """Checks the event store every ``interval`` seconds; health answers NOT_SERVING (and
    RPCs UNAVAILABLE, through the interceptor) while it fails, SERVING once it answers."""

    def __init__(
        self,
        check: Callable[[], None],
        health_servicer: health.HealthServicer,
        interval: float = STORE_CHECK_SECONDS,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._check = check
        #: Told ``True`` when the store comes back, ``False`` when it goes.
        self._on_change = on_change
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
                if self._on_change is not None:
                    self._on_change(False)
            return False
        if not self.available:
            log.info("store.available")
            self.available = True
            if self._on_change is not None:
                self._on_change(True)
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


#: The reflection service tools ask for first (grpcurl, Postman); grpcio-reflection only
#: ships v1alpha, whose messages are v1's field for field.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def enable_reflection(names: tuple[str, ...], server: grpc.Server) -> None:
    """Serve reflection as v1 and v1alpha, both answering from the default descriptor pool.

    v1 is the v1alpha servicer under the v1 name: the wire format is the same.
    """
    listed = (*names, reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.ReflectionServicer(listed)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),)
    )


class ProjectionStoreFailing(Exception):
    """The projection worker cannot write the read models (its store fails)."""


def check_service(parts: ServedParts) -> None:
    """Raise unless the event store answers and the projection worker's store works: read
    models that cannot be written go stale, which the server must not hide."""
    parts.check_store()
    failure = parts.worker.store_failure
    if failure is not None:
        raise ProjectionStoreFailing(f"the read models cannot be written: {failure}")


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
    #: The servicers it serves (the HTTP API serves the very same: ``service.api.http``).
    servicers: Servicers | None = None

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


def listen_port(listen: str) -> int:
    """The port of a ``HOST:PORT`` listen address: 1..65535, or 0 for any free port."""
    host, colon, text = listen.rpartition(":")
    if not colon or not host.strip("[]"):
        raise ServeRefused(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ServeRefused(
            f"--listen {listen!r}: the port must be a number from 1 to 65535 (0: any free port)"
        )
    return int(text)


def check_port_free(listen: str) -> None:
    """Refuse an address another process listens on, naming it.

    gRPC binds with SO_REUSEADDR only (unless ``--workers`` share the port), so a bind
    would fail anyway; asking first gives a clear line instead of gRPC's core log.
    """
    port = listen_port(listen)
    if port == 0:
        return
    host = listen.rpartition(":")[0].strip("[]")
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:
        raise ServeRefused(f"cannot listen on {listen}: {error}") from error
    for family, kind, protocol, _name, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise ServeRefused(
                        f"cannot listen on {listen}: the address is already in use "
                        "(another server?)"
                    ) from error
                raise ServeRefused(f"cannot listen on {listen}: {error.strerror}") from error


def check_exposure(
    settings: Settings, authenticator: Authenticator, *, address: str | None = None, what: str = ""
) -> None:
    """Refuse to listen beyond loopback without tokens (unless ``--insecure``): on
    ``settings.listen``, or on ``address`` (``what`` names it: "HTTP on ")."""
    address = settings.listen if address is None else address
    if not is_loopback(address) and not authenticator.enabled and not settings.insecure:
        raise ServeRefused(
            f"refusing to serve {what}{address} without authentication: configure tokens "
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
    settings: Settings,
    parts: ServedParts,
    authenticator: Authenticator,
    *,
    share_port: bool = False,
) -> RunningServer:
    """A configured, bound, not yet started server (``listen`` may use port 0) answering
    from ``parts``, which the composition root built.

    ``share_port``: the processes of one ``serve --workers N`` bind the same port
    (SO_REUSEPORT, the kernel spreads connections among them); any other server refuses a
    port in use, so a second server on another store cannot take half the connections.
    """
    listen_port(settings.listen)
    if not share_port:
        check_port_free(settings.listen)
    check_exposure(settings, authenticator)
    limit = settings.max_message_bytes
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    datastore = getattr(parts.app.recorder, "datastore", None)
    watcher = StoreWatcher(
        lambda: check_service(parts),
        health_servicer,
        on_change=lambda up: store_down(datastore, not up),
    )
    metrics = Metrics()
    parts.watch(metrics, watcher.is_available)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="rpc"),
        interceptors=[CallInterceptor(authenticator, metrics, watcher.is_available)],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # gRPC turns SO_REUSEPORT on by default: only workers of one group share.
            ("grpc.so_reuseport", 1 if share_port else 0),
        ],
        maximum_concurrent_rpcs=settings.threads * 8,
    )
    servicers = servicers_for(parts, threads=settings.threads)
    command_grpc.add_CommandServiceServicer_to_server(servicers.commands, server)
    query_grpc.add_QueryServiceServicer_to_server(servicers.queries, server)
    audit_grpc.add_AuditServiceServicer_to_server(servicers.audit, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
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
        servicers=servicers,
    )
