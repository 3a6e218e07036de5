"""``flashpoint serve``: one server process, or several on one port (``--workers``).

The entry point of serving: it asks the composition root for the service and the API for
the server, runs it until SIGTERM or SIGINT, then drains in-flight calls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

import structlog

from service import bootstrap
from service.api.auth import Authenticator
from service.api.server import (
    ServeRefused,
    check_exposure,
    check_port_free,
    create_server,
    listen_port,
)
from service.settings import ENV_PREFIX, Settings

log = structlog.get_logger()

__all__ = ["ServeRefused", "serve", "serve_workers", "stop_on_signals", "worker_environment"]


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (logged), for a process to wait on."""
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("server.stopping", signal=signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stopping


def reload_on_sighup(authenticator: Authenticator) -> None:
    """SIGHUP reads the tokens file again now (it is also read when it changes)."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Off the signal handler: reading and logging may block.
        threading.Thread(target=authenticator.reload, name="tokens-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, on_signal)


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then drain in-flight calls and exit."""
    authenticator = Authenticator.load(settings.tokens_file, settings.tokens)
    # The workers of one group share the port their parent found free.
    shared = os.environ.get(SHARED_PORT_VARIABLE) == settings.listen
    listen_port(settings.listen)
    if not shared:
        check_port_free(settings.listen)  # before opening the store: fail fast
    check_exposure(settings, authenticator)
    if settings.workers > 1:
        return serve_workers(settings)
    service = bootstrap.build_server(settings)
    running = create_server(settings, service, authenticator, share_port=shared)
    stopping = stop_on_signals()
    reload_on_sighup(authenticator)
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


#: Set by ``serve_workers`` in its workers' environment to the address they share (not a
#: setting: a user cannot ask a single server to share a port).
SHARED_PORT_VARIABLE = "FLASHPOINT_INTERNAL_SHARED_LISTEN"
#: How long the parent waits for its workers after forwarding a stop, beyond their grace.
WORKER_STOP_MARGIN = 30.0
#: The exit status of a parent whose worker exited unasked with status 0.
EXIT_WORKER_FAILED = 1


def worker_environment(settings: Settings, index: int) -> dict[str, str]:
    """The environment of worker ``index``: these settings as ``FLASHPOINT_*`` variables,
    with one worker (itself) and, when metrics are on, its own metrics port."""
    prefix = ENV_PREFIX
    names = {prefix + name.upper() for name in Settings.model_fields}
    environment = {key: value for key, value in os.environ.items() if key not in names}
    values = settings.model_dump()
    values["workers"] = 1
    environment[SHARED_PORT_VARIABLE] = settings.listen
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
    bootstrap.prepare_store(settings)
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
        signalled: set[int] = set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                signalled.add(child.pid)
        deadline = time.monotonic() + settings.grace_seconds + WORKER_STOP_MARGIN
        for child in children:
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("server.worker_killed", pid=child.pid)
                child.kill()
                child.wait()
    # A worker still starting when the stop is forwarded has no handler yet and ends by the
    # signal itself: that is the stop asked of it, not a failure.
    failures = [
        child.returncode
        for child in children
        if child.returncode != 0
        and not (child.pid in signalled and child.returncode == -signal.SIGTERM)
    ]
    log.info("server.stopped", workers={c.pid: c.returncode for c in children})
    if failures:
        return next((code for code in failures if code > 0), EXIT_WORKER_FAILED)
    return 0 if asked else EXIT_WORKER_FAILED
