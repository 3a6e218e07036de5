"""A real Flashpoint gRPC server on a loopback port, for API tests."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import structlog

from service.adapters.store import FlashpointApplication
from service.api.auth import Authenticator, TokenEntry, parse_tokens
from service.api.server import RunningServer, create_server
from service.bootstrap import Flashpoint, build
from service.settings import Settings


@dataclass
class ServerUnderTest:
    service: Flashpoint
    running: RunningServer
    address: str

    @property
    def app(self) -> FlashpointApplication:
        return self.service.app

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)


@contextmanager
def running_server(
    store_url: str,
    *,
    tokens: list[TokenEntry] | None = None,
    **settings: Any,
) -> Iterator[ServerUnderTest]:
    """Start a server on 127.0.0.1:<free port> over ``store_url``; stop it afterwards."""
    config = Settings(store=store_url, listen="127.0.0.1:0", **settings)
    service = build(config, follow=config.projections == "embedded")  # as `serve` does
    running = create_server(config, service, Authenticator(tokens or []))
    running.start()
    try:
        yield ServerUnderTest(service=service, running=running, address=f"127.0.0.1:{running.port}")
    finally:
        running.stop(grace=1.0)
        service.close()


def token_entries(*lines: str) -> list[TokenEntry]:
    return parse_tokens("\n".join(lines))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def flashpoint() -> str:
    """The installed console script next to this interpreter (the venv's ``flashpoint``)."""
    found = shutil.which("flashpoint", path=os.path.dirname(sys.executable))
    if found is None:
        pytest.fail(f"no flashpoint console script beside {sys.executable}; pip install -e .")
    return found


def clean_env() -> dict[str, str]:
    """This environment without FLASHPOINT_* settings, so nothing leaks into the CLI."""
    return {key: value for key, value in os.environ.items() if not key.startswith("FLASHPOINT_")}


def run_flashpoint(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it, without our environment's FLASHPOINT_* settings."""
    return subprocess.run(
        [flashpoint(), *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=timeout,
        check=False,
    )


@contextmanager
def cli_logging_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests that run the CLI's ``main`` in the test process: ``main`` configures the
    process's logging with loggers cached on first use, which would outlive the test and
    hide later tests' captured logs. Inside, it configures without the cache; after, the
    defaults come back."""
    from service import logs

    configure = logs.configure_logging
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def configure_uncached(level: str = "info", fmt: str = "auto") -> None:
        configure(level, fmt)
        structlog.configure(cache_logger_on_first_use=False)

    monkeypatch.setattr(logs, "configure_logging", configure_uncached)
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
