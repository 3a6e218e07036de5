"""Settings: one pydantic model, read from the environment and the command line.

Nothing here connects to anything; the composition root (``service.bootstrap``) does that
when it is asked to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_PREFIX = "FLASHPOINT_"
DEFAULT_STORE = "sqlite:///flashpoint.db"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``sqlite:///path/file.db`` (default: ``./flashpoint.db``) or ``postgresql://...``.
    store: str = DEFAULT_STORE
    #: Where ``serve`` listens.
    listen: str = "127.0.0.1:50051"
    #: Where ``serve`` also serves the web dashboard and the HTTP/JSON API (HOST:PORT,
    #: e.g. 127.0.0.1:8080); None serves none.
    http: str | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: ``auto`` writes JSON when stderr is not a terminal and readable lines when it is.
    log_format: Literal["auto", "json", "console"] = "auto"
    #: File of bearer tokens (one ``role:token`` per line); FLASHPOINT_TOKENS may hold them.
    tokens_file: str | None = None
    tokens: str | None = Field(default=None, repr=False)
    tls_cert: str | None = None
    tls_key: str | None = None
    #: CA bundle that client certificates must chain to (mutual TLS) when set.
    tls_client_ca: str | None = None
    insecure: bool = False
    #: Ed25519 private key (PEM) that signs the audit chain's seals; unsigned without it.
    seal_key: str | None = None
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    grace_seconds: float = Field(default=10.0, ge=0, le=300)
    #: ``embedded``: this process keeps the read models current; ``external``: separate
    #: ``flashpoint project`` workers do.
    projections: Literal["embedded", "external"] = "embedded"
    #: Worker threads serving RPCs.
    threads: int = Field(default=16, ge=1, le=256)
    #: Server processes ``serve`` runs, all listening on one port (SO_REUSEPORT), so one
    #: host uses all its cores; with more than one, worker ``i`` serves metrics (if on) on
    #: ``metrics_port + i``.
    workers: int = Field(default=1, ge=1, le=64)
    #: Group commit: the events of commands arriving together are appended in one
    #: transaction, each command still decided, answered and refused on its own.
    group_commit: bool = True
    #: Port for Prometheus metrics (``/metrics`` over HTTP on the host of ``listen``);
    #: None or 0 serves none.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    #: Host (address) for ``/metrics``; default the host of ``listen``.
    metrics_host: str | None = None

    @field_validator("store")
    @classmethod
    def _store_is_supported(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("store is a URL: sqlite:///path/file.db or postgresql://host/db")
        return value

    def metrics_address(self) -> tuple[str, int] | None:
        """Where to serve ``/metrics``: ``metrics_host`` (default the gRPC listen host), on
        ``metrics_port`` (None or 0: nowhere)."""
        if not self.metrics_port:
            return None
        if self.metrics_host:
            return self.metrics_host, self.metrics_port
        host = self.listen.rsplit(":", 1)[0].strip("[]") or "0.0.0.0"  # noqa: S104
        return host, self.metrics_port

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``FLASHPOINT_*`` variables, then explicit (CLI) overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = environ.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.model_validate(values)
