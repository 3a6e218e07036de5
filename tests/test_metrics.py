"""Prometheus metrics over HTTP from a real server: RPCs by method and code, latency,
appends, the head of the log, projection positions and lag.

Everything is read the way Prometheus reads it: GET /metrics on 127.0.0.1, parsed with
prometheus-client's own text parser. Expected values come from the store's log and the
calls made here, not from the metrics code.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.domain import commands as c
from tests.api_support import ServerUnderTest, free_port, running_server
from tests.factories import command
from tests.test_cli_serve import serving

TIMEOUT = 30.0
REPORT = "/flashpoint.v1.CommandService/ReportIncursion"
GET_INCIDENT = "/flashpoint.v1.QueryService/GetIncident"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of GET http://127.0.0.1:<port>/metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}; have {sorted(k[0] for k in samples)}"
    return samples[key]


@pytest.fixture
def server(sqlite_url: str) -> Iterator[ServerUnderTest]:
    with running_server(sqlite_url, metrics_port=free_port()) as served:
        yield served


def report(channel: grpc.Channel) -> Any:
    """Report a valid incursion through the raw stub."""
    stub: Any = command_grpc.CommandServiceStub(channel)
    return stub.ReportIncursion(
        tr.request_from_command(command(c.ReportIncursion)), timeout=TIMEOUT
    )


def metrics_port(server: ServerUnderTest) -> int:
    port = server.running.metrics_port
    assert port is not None, "metrics were configured but are not served"
    return port


def test_rpcs_latency_appends_and_projections(server: ServerUnderTest) -> None:
    channel = server.channel()
    commands: Any = command_grpc.CommandServiceStub(channel)
    queries = query_grpc.QueryServiceStub(channel)
    try:
        incursion = command(c.ReportIncursion)
        first = commands.ReportIncursion(tr.request_from_command(incursion), timeout=TIMEOUT)
        report(channel)
        with pytest.raises(grpc.RpcError) as refused:
            commands.ReportIncursion(command_pb.ReportIncursionRequest(), timeout=TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        head = server.app.head_position()
        queries.GetIncident(
            query_pb.GetIncidentRequest(name=first.name, min_position=head), timeout=TIMEOUT
        )
        with pytest.raises(grpc.RpcError) as missing:
            queries.GetIncident(
                query_pb.GetIncidentRequest(name=f"incidents/{'0' * 8}-0000-4000-8000-{'0' * 12}"),
                timeout=TIMEOUT,
            )
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        channel.close()
    assert server.service.worker.wait_for(head, timeout=TIMEOUT)

    samples = scrape(metrics_port(server))

    assert value(samples, "flashpoint_rpcs_total", method=REPORT, code="OK") == 2
    assert value(samples, "flashpoint_rpcs_total", method=REPORT, code="INVALID_ARGUMENT") == 1
    assert value(samples, "flashpoint_rpcs_total", method=GET_INCIDENT, code="OK") == 1
    assert value(samples, "flashpoint_rpcs_total", method=GET_INCIDENT, code="NOT_FOUND") == 1
    assert value(samples, "flashpoint_rpc_duration_seconds_count", method=REPORT) == 3
    assert value(samples, "flashpoint_rpc_duration_seconds_bucket", method=REPORT, le="+Inf") == 3
    assert value(samples, "flashpoint_rpc_duration_seconds_sum", method=REPORT) > 0
    assert value(samples, "flashpoint_events_appended_total") == 2
    assert value(samples, "flashpoint_log_head") == head
    assert value(samples, "flashpoint_store_up") == 1
    names = sorted(server.service.worker.projections)
    assert names, "the server has no projections to report"
    for name in names:
        assert value(samples, "flashpoint_projection_position", projection=name) == head
        assert value(samples, "flashpoint_projection_lag_events", projection=name) == 0


def test_lag_is_read_at_scrape_time(server: ServerUnderTest) -> None:
    """With the worker stopped, appends show as lag on the next scrape, not a stale zero."""
    server.app.execute(command(c.ReportIncursion))
    before = server.app.head_position()
    assert server.service.worker.wait_for(before, timeout=TIMEOUT)
    name = sorted(server.service.worker.projections)[0]
    assert (
        value(scrape(metrics_port(server)), "flashpoint_projection_lag_events", projection=name)
        == 0
    )

    server.service.worker.stop()
    server.app.execute(command(c.ReportIncursion))
    head = server.app.head_position()
    assert head > before

    samples = scrape(metrics_port(server))
    assert value(samples, "flashpoint_log_head") == head
    assert value(samples, "flashpoint_projection_position", projection=name) == before
    assert value(samples, "flashpoint_projection_lag_events", projection=name) == head - before


def test_servers_in_one_process_count_separately(server: ServerUnderTest, tmp_path: Path) -> None:
    with (
        running_server(f"sqlite:///{tmp_path}/other.db", metrics_port=free_port()) as other,
        other.channel() as channel,
    ):
        report(channel)
        assert (
            value(scrape(metrics_port(other)), "flashpoint_rpcs_total", method=REPORT, code="OK")
            == 1
        )
    assert ("flashpoint_rpcs_total", frozenset({("method", REPORT), ("code", "OK")})) not in (
        scrape(metrics_port(server))
    )


def test_metrics_are_off_unless_configured(sqlite_url: str) -> None:
    with running_server(sqlite_url) as served:
        assert served.running.metrics_port is None


def test_serve_flag_serves_metrics(tmp_path: Path) -> None:
    """``flashpoint serve --metrics-port`` (the console script, a real process)."""
    port = free_port()
    with serving(tmp_path, "--metrics-port", str(port)) as served:
        with grpc.insecure_channel(served.address) as channel:
            report(channel)
        samples = scrape(port)
        assert value(samples, "flashpoint_rpcs_total", method=REPORT, code="OK") == 1
        assert value(samples, "flashpoint_events_appended_total") == 1
        assert served.stop() == 0
