"""The gRPC server: built from settings by ``create_server``, run by ``serve``."""

from __future__ import annotations

import ipaddress
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

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
from service.settings import Settings

log = structlog.get_logger()

SERVICE_NAMES = (
    command_pb.DESCRIPTOR.services_by_name["CommandService"].full_name,
    query_pb.DESCRIPTOR.services_by_name["QueryService"].full_name,
    audit_pb.DESCRIPTOR.services_by_name["AuditService"].full_name,
)


class ServeRefused(Exception):
    """The server will not start with these settings (an unsafe or impossible setup)."""


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer

    def start(self) -> None:
        self.server.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float) -> None:
        # Health answers NOT_SERVING first, so load balancers drain us before calls stop.
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


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
    limit = settings.max_message_bytes
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="rpc"),
        interceptors=[CallInterceptor(authenticator)],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
        maximum_concurrent_rpcs=settings.threads * 8,
    )
    app = service.app
    command_grpc.add_CommandServiceServicer_to_server(CommandServicer(app), server)
    query_grpc.add_QueryServiceServicer_to_server(
        QueryServicer(app, service.read_models, service.worker.notify, service.time_travel),
        server,
    )
    audit_grpc.add_AuditServiceServicer_to_server(AuditServicer(service), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
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
    return RunningServer(server=server, port=port, health=health_servicer)


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then drain in-flight calls and exit."""
    authenticator = Authenticator(load_tokens(settings.tokens_file, settings.tokens))
    check_exposure(settings, authenticator)
    service = build(settings, follow=settings.projections == "embedded")
    running = create_server(settings, service, authenticator)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("server.stopping", signal=signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    running.start()
    log.info(
        "server.started",
        listen=settings.listen,
        port=running.port,
        tls=bool(settings.tls_cert),
        mutual_tls=bool(settings.tls_client_ca),
        auth=authenticator.enabled,
        projections=settings.projections,
    )
    stopping.wait()
    running.stop(settings.grace_seconds)
    service.close()
    log.info("server.stopped")
    return 0
