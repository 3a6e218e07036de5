"""``flashpoint serve``: one server process, or several on one port (``--workers``).

The entry point of serving: it asks the composition root for the service and the API for
the server, runs it until SIGTERM or SIGINT, then drains in-flight calls.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import Any

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
    follower: FollowerProcess | None = None
    if settings.projections == "embedded":
        follower = FollowerProcess(settings)
        follower.attach(service)
    running = create_server(settings, service, authenticator, share_port=shared)
    stopping = stop_on_signals()
    reload_on_sighup(authenticator)
    if follower is not None:
        follower.start()
    running.start()
    settle_garbage_collector()
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
    try:
        stopping.wait()
        running.stop(settings.grace_seconds)
    finally:
        if follower is not None:
            follower.stop(settings.grace_seconds + WORKER_STOP_MARGIN)
        service.close()
    log.info("server.stopped")
    return 0


#: Allocations between two collections of the youngest generation while serving (Python's
#: default is 700: a command allocates hundreds of objects, so it ran every few calls).
SERVING_GC_THRESHOLD = 20_000


def settle_garbage_collector() -> None:
    """Collect once, then freeze what start-up made (modules, schemas, descriptors: most
    of the heap, and never garbage) out of the collector's reach, and collect the young
    generation less often. Under load the collector took about 3% of the serving process's
    CPU (perf: ``gc_collect_main`` and its visits), most of it walking those objects again;
    a call's garbage is freed by reference counting, it holds no cycles."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(SERVING_GC_THRESHOLD, middle, old)


# ------------------------------------------------------------------ the follower process

#: The follower's environment names the ends of its two pipes: wake-ups from the server,
#: and the state of the read models' store back to it.
WAKEUP_FD_VARIABLE = "FLASHPOINT_INTERNAL_WAKEUP_FD"
STATUS_FD_VARIABLE = "FLASHPOINT_INTERNAL_STATUS_FD"
#: Wake-up bytes: something was appended; a reader waits for a position.
APPENDED, HURRY = b"a", b"h"
#: How long the follower lets append wake-ups gather before reading them (a hurry is
#: never held back by more than this).
WAKEUP_GATHER_SECONDS = 0.005
#: How often the follower reports a change in its store's state, and the server checks
#: that it still runs.
FOLLOWER_CHECK_SECONDS = 0.1
#: The pause before restarting a follower that exited unasked, doubled up to the second.
FOLLOWER_RESTART_FIRST, FOLLOWER_RESTART_MAX = 0.5, 30.0


class FollowerProcess:
    """The projections and the audit chainer of ``serve --projections embedded``, in a child
    process that this server starts, restarts if it dies, and stops.

    In the server's own process they took a turn of the interpreter (and of its lock) with
    every command; in their own they cost the log: rounds batched over ``BATCH_INTERVAL``,
    woken by a byte per append over a pipe (a reader waiting for ``min_position`` makes the
    next round start at once). The child reads the same stores, so queries, positions and
    ``min_position`` answer as before; the state of its read models' store comes back over
    a second pipe into the server's ``worker.store_failure``, so health still answers
    NOT_SERVING while they cannot be written. The child ends by itself when the server is
    gone (its wake-up pipe closes), even after a SIGKILL.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._wake_read, self._wake_write = os.pipe()
        # Never block a call: a full pipe already holds a wake-up the child has not read.
        os.set_blocking(self._wake_write, False)
        self._status_read, self._status_write = os.pipe()
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._worker: Any = None

    def attach(self, service: bootstrap.Flashpoint) -> None:
        """Wake the child on ``service``'s appends and its readers' hurries, and mirror the
        child's store state in ``service.worker.store_failure``."""
        self._worker = service.worker
        service.app.append_listeners.append(lambda _position: self.notify())
        service.worker.hurry_listeners.append(self.hurry)

    def notify(self) -> None:
        self._send(APPENDED)

    def hurry(self) -> None:
        self._send(HURRY)

    def _send(self, signal_byte: bytes) -> None:
        # Full (a wake-up is pending anyway) or closed (stopping): nothing to do.
        with contextlib.suppress(OSError):
            os.write(self._wake_write, signal_byte)

    def start(self) -> None:
        self._spawn()
        for target, name in ((self._supervise, "follower-supervisor"),
                             (self._read_status, "follower-status")):  # fmt: skip
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _spawn(self) -> None:
        environment = worker_environment(self._settings, 0)
        environment.pop(SHARED_PORT_VARIABLE, None)
        environment.pop(ENV_PREFIX + "METRICS_PORT", None)  # the server reports the lag
        environment[WAKEUP_FD_VARIABLE] = str(self._wake_read)
        environment[STATUS_FD_VARIABLE] = str(self._status_write)
        code = "import sys; from service.cli.serve import run_follower; sys.exit(run_follower())"
        self._child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-c", code],
            env=environment,
            pass_fds=(self._wake_read, self._status_write),
        )
        log.info("projections.process_started", pid=self._child.pid)

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def _supervise(self) -> None:
        delay = FOLLOWER_RESTART_FIRST
        while not self._stopping.wait(FOLLOWER_CHECK_SECONDS):
            child = self._child
            if child is None or child.poll() is None:
                continue
            log.error("projections.process_exited", pid=child.pid, code=child.returncode,
                      restart_in=delay)  # fmt: skip
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, FOLLOWER_RESTART_MAX)
            self._spawn()

    def _read_status(self) -> None:
        with os.fdopen(self._status_read, "rb", buffering=0, closefd=False) as stream:
            for line in stream:
                text = line.decode(errors="replace").strip()
                if self._worker is not None:
                    self._worker.store_failure = text[len("failing ") :] if text else None

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.error("projections.process_killed", pid=child.pid)
                child.kill()
                child.wait()
        for fd in (self._wake_write, self._wake_read, self._status_write):
            os.close(fd)


def run_follower() -> int:
    """The follower process's main: follow the log until SIGTERM, or until the server that
    started it is gone."""
    from service.logs import configure_logging

    settings = Settings.load()
    configure_logging(settings.log_level, settings.log_format)
    wake = int(os.environ[WAKEUP_FD_VARIABLE])
    status = int(os.environ[STATUS_FD_VARIABLE])
    service = bootstrap.build_follower(settings)
    worker = service.worker

    def stop(*_: Any) -> None:
        worker.stopping.set()
        worker.hurried.set()
        worker.wakeup.set()

    signal.signal(signal.SIGTERM, stop)
    # Ctrl-C reaches the whole process group: the server stops its follower itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def listen() -> None:
        while True:
            try:
                data = os.read(wake, 4096)
            except OSError:
                data = b""
            if not data:
                if not worker.stopping.is_set():
                    log.warning("projections.server_gone")
                stop()
                return
            if HURRY in data:
                worker.hurry()
            else:
                worker.notify()
                # Appends arrive by the hundred a second and rounds start at most every
                # BATCH_INTERVAL: let them gather into one read rather than one each.
                time.sleep(WAKEUP_GATHER_SECONDS)

    def report() -> None:
        said: str | None = None
        while not worker.stopping.wait(FOLLOWER_CHECK_SECONDS):
            failure = worker.store_failure
            if failure != said:
                line = f"failing {failure}" if failure else ""
                try:
                    os.write(status, (" ".join(line.split()) + "\n").encode())
                except OSError:
                    return
                said = failure

    for target in (listen, report):
        threading.Thread(target=target, daemon=True).start()
    try:
        worker.run()
    finally:
        service.close()
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
