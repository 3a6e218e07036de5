"""Prometheus metrics: RPCs, latency, appends, projection positions, lag and quarantined
events, the store's pool, which projections this process owns, the process itself (CPU,
memory, file descriptors) and what is running (``flashpoint_build_info``).

Every server keeps its metrics in a registry of its own (not prometheus-client's global
one), so several servers can live in one process (the tests build many). Values that
describe state rather than events (positions, lag, the head of the log, the connection
pool) are read when Prometheus scrapes, so they are never stale.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import structlog
from eventsourcing.postgres import PostgresRecorder
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.status import log_status

if TYPE_CHECKING:
    from service.bootstrap import Flashpoint

log = structlog.get_logger()

#: Latency buckets (seconds): commands take milliseconds; a store outage takes seconds.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class Metrics:
    """One server's metrics and the registry that ``/metrics`` serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpcs = Counter(
            "flashpoint_rpcs",
            "RPCs served, by full method name and final status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.rpc_duration = Histogram(
            "flashpoint_rpc_duration_seconds",
            "Time from receiving an RPC to its final status, by full method name.",
            ["method"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.events_appended = Counter(
            "flashpoint_events_appended",
            "Appends to the event log made by this process: one per recorded command "
            "(its events, and its receipt in the receipts table, are written together).",
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        self._rpc_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def serve(self, host: str, port: int) -> WSGIServer:
        """Serve ``/metrics`` over HTTP at ``host:port`` (in a thread); stop with
        :func:`stop_serving`."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("metrics.started", address=host, port=server.server_port)
        return server

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        # The labelled children are looked up once per method and code: ``labels()`` takes
        # a lock and builds a key each time, about two thirds of what observing costs.
        children = self._rpc_children.get((method, code))
        if children is None:
            children = (
                self.rpcs.labels(method=method, code=code),
                self.rpc_duration.labels(method=method),
            )
            self._rpc_children[(method, code)] = children
        count, duration = children
        count.inc()
        duration.observe(seconds)

    def watch(self, service: Flashpoint, store_up: Callable[[], bool]) -> None:
        """Count ``service``'s appends and report its log, projections and pool on scrape;
        ``store_up`` tells whether the event store answered its last health check."""
        service.app.append_listeners.append(lambda _position: self.events_appended.inc())
        self.registry.register(_ServiceCollector(service, store_up))


class _ServiceCollector(Collector):
    """Reads the state of the log, the projections and the pool at scrape time.

    A scrape while the store is down reports ``flashpoint_store_up 0`` and leaves out what
    it could not read, rather than failing or blocking on the store's retries.
    """

    def __init__(self, service: Flashpoint, store_up: Callable[[], bool]) -> None:
        self._service = service
        self._store_up = store_up

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield _build_info(self._service)
        yield _ownership(self._service)
        up = GaugeMetricFamily(
            "flashpoint_store_up", "1 when the event store answered its last health check."
        )
        up.add_metric([], 1.0 if self._store_up() else 0.0)
        yield up
        yield from _pool_metrics(self._service.app.recorder)
        if not self._store_up():
            return
        try:
            status = log_status(self._service)
        except Exception as error:
            log.warning("metrics.store_read_failed", error=str(error))
            return
        head_gauge = GaugeMetricFamily(
            "flashpoint_log_head", "Position of the last event in the log."
        )
        head_gauge.add_metric([], float(status.head))
        yield head_gauge
        position = GaugeMetricFamily(
            "flashpoint_projection_position",
            "Last log position each projection (and the audit chain) has processed.",
            labels=["projection"],
        )
        lag = GaugeMetricFamily(
            "flashpoint_projection_lag_events",
            "Log positions each projection still has to process (head minus position).",
            labels=["projection"],
        )
        lag_seconds = GaugeMetricFamily(
            "flashpoint_projection_lag_seconds",
            "How long the oldest event each projection has not processed has waited.",
            labels=["projection"],
        )
        quarantined = GaugeMetricFamily(
            "flashpoint_projection_quarantined_events",
            "Events each projection's live generation set aside because its fold could not "
            "process them (see ListProjections); 0 when none.",
            labels=["projection"],
        )
        for follower in [*status.projections, status.audit_chain]:
            position.add_metric([follower.name], float(follower.position))
            lag.add_metric([follower.name], float(follower.lag_events))
            lag_seconds.add_metric([follower.name], follower.lag_seconds)
        for follower in status.projections:
            quarantined.add_metric([follower.name], float(follower.quarantined_events))
        yield position
        yield lag
        yield lag_seconds
        yield quarantined


def flashpoint_version() -> str:
    try:
        return package_version("flashpoint")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree not installed
        return "unknown"


def store_kind(recorder: Any) -> str:
    """``postgresql`` or ``sqlite``: which store the recorder writes to."""
    # By class, not module: the recorder is a subclass of the library's (receipts).
    return "postgresql" if isinstance(recorder, PostgresRecorder) else "sqlite"


def _build_info(service: Flashpoint) -> Metric:
    info = GaugeMetricFamily(
        "flashpoint_build_info",
        "Always 1: the Flashpoint version, Python version and kind of event store running.",
        labels=["version", "python", "store"],
    )
    info.add_metric(
        [flashpoint_version(), platform.python_version(), store_kind(service.app.recorder)], 1.0
    )
    return info


def _ownership(service: Flashpoint) -> Metric:
    """1 for each projection this process keeps current: those it holds the lock of
    (PostgreSQL workers), or all of them when it follows the log alone; else 0. Read from
    what the worker last knew, without asking the store."""
    worker = service.worker
    if worker.ownership is not None:
        owned: frozenset[str] = worker.ownership.owned
    else:
        owned = frozenset(worker.projections) if worker.following else frozenset()
    gauge = GaugeMetricFamily(
        "flashpoint_projection_owned",
        "1 when this process keeps the projection current (it owns it), 0 when another "
        "process does or it stands by.",
        labels=["projection"],
    )
    for name in sorted(worker.projections):
        gauge.add_metric([name], 1.0 if name in owned else 0.0)
    return gauge


def stop_serving(server: WSGIServer) -> None:
    server.shutdown()
    server.server_close()


def _pool_metrics(recorder: Any) -> Iterator[Metric]:
    """The PostgreSQL connection pool's occupancy (nothing for SQLite, which has no pool)."""
    pool = getattr(getattr(recorder, "datastore", None), "pool", None)
    get_stats = getattr(pool, "get_stats", None)
    if get_stats is None:
        return
    stats: dict[str, int] = get_stats()
    for key, help_text in (
        ("pool_max", "Most connections the store's pool may open."),
        ("pool_size", "Connections the store's pool holds (in use, idle or being opened)."),
        ("pool_available", "Idle connections in the store's pool."),
        ("requests_waiting", "Requests waiting for a connection from the store's pool."),
    ):
        name = key if key.startswith("pool_") else f"pool_{key}"
        gauge = GaugeMetricFamily(f"flashpoint_store_{name}", help_text)
        gauge.add_metric([], float(stats.get(key, 0)))
        yield gauge
