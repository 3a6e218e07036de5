"""The web dashboard and the HTTP/JSON API (``flashpoint serve --http HOST:PORT``).

``start_http`` is the one integration point with the gRPC server: given the running
server's servicers, metrics and store health, and its authenticator, it binds and starts
the HTTP server beside it; the caller stops it with ``HttpServer.stop``.
"""

from __future__ import annotations

from service.api.auth import Authenticator
from service.api.http.server import HttpApi, HttpParts, HttpServer, tls_context
from service.api.server import (
    RunningServer,
    ServeRefused,
    check_exposure,
    check_port_free,
    is_loopback,
    listen_port,
)
from service.audit.tables import LogTables
from service.settings import Settings


def check_http(settings: Settings, authenticator: Authenticator, *, share_port: bool) -> None:
    """Refuse an ``--http`` address that cannot be served, or would be open to a network
    without tokens (as ``check_exposure`` refuses for gRPC)."""
    address = settings.http
    if address is None:
        return
    listen_port(address)
    if (share_port or settings.workers > 1) and address.rsplit(":", 1)[-1] in ("", "0"):
        raise ServeRefused("--workers needs a fixed port in --http, not port 0")
    if not share_port:
        check_port_free(address)
    check_exposure(settings, authenticator, address=address, what="HTTP on ")


def start_http(
    settings: Settings,
    running: RunningServer,
    log_tables: LogTables,
    authenticator: Authenticator,
    *,
    share_port: bool = False,
) -> HttpServer:
    """The HTTP server on ``settings.http``, started, answering through ``running``'s
    servicers (TLS with the gRPC server's certificate when it has one)."""
    if settings.http is None or running.servicers is None:
        raise ServeRefused("no --http address (or no servicers) to serve HTTP with")
    check_http(settings, authenticator, share_port=share_port)
    parts = HttpParts(
        servicers=running.servicers,
        authenticator=authenticator,
        log_tables=log_tables,
        metrics=running.metrics,
        store_up=running.store_watcher.is_available,
    )
    api = HttpApi(
        parts,
        threads=settings.threads,
        max_body_bytes=settings.max_message_bytes,
        loopback=is_loopback(settings.http),
    )
    context = None
    if settings.tls_cert and settings.tls_key:
        context = tls_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    try:
        server = HttpServer(settings.http, api, share_port=share_port, ssl_context=context)
    except OSError as error:
        api.close()
        raise ServeRefused(f"cannot listen on {settings.http}: {error.strerror}") from error
    server.start()
    return server


__all__ = ["HttpApi", "HttpParts", "HttpServer", "check_http", "start_http"]
