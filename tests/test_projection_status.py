"""How far behind the log each read model is, through the API and as metrics, from servers
and from ``flashpoint project`` workers.

Expected values come from the log itself (its head, when its events were recorded), not
from the code under test.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from projections.readmodels import ALL
from service.api import translation as tr
from service.api.auth import new_token
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.domain import commands as c
from tests.api_support import (
    clean_env,
    flashpoint,
    free_port,
    running_server,
    token_entries,
)
from tests.factories import command
from tests.test_metrics import scrape, value

TIMEOUT = 30.0
PROJECTIONS = sorted(projection.name for projection in ALL)


def report(channel: grpc.Channel, count: int = 1) -> list[Any]:
    stub: Any = command_grpc.CommandServiceStub(channel)
    return [
        stub.ReportIncursion(tr.request_from_command(command(c.ReportIncursion)), timeout=TIMEOUT)
        for _ in range(count)
    ]


def list_projections(channel: grpc.Channel, **metadata: str) -> query_pb.ListProjectionsResponse:
    stub = query_grpc.QueryServiceStub(channel)
    return stub.ListProjections(
        query_pb.ListProjectionsRequest(), timeout=TIMEOUT, metadata=tuple(metadata.items())
    )


def caught_up(channel: grpc.Channel, head: int) -> query_pb.ListProjectionsResponse:
    deadline = time.monotonic() + TIMEOUT
    while True:
        status = list_projections(channel)
        followers = [*status.projections, status.audit_chain]
        if status.head >= head and all(f.position >= status.head for f in followers):
            return status
        assert time.monotonic() < deadline, f"not caught up with {head}: {status}"
        time.sleep(0.05)


def test_caught_up_read_models_report_no_lag(sqlite_url: str) -> None:
    with running_server(sqlite_url) as server, server.channel() as channel:
        answers = report(channel, 3)
        head = server.app.head_position()
        assert head == answers[-1].position
        status = caught_up(channel, head)
        assert status.head == head
        assert [p.name for p in status.projections] == PROJECTIONS
        versions = {projection.name: projection.version for projection in ALL}
        for projection in status.projections:
            assert projection.position == head
            assert projection.lag_events == 0 and projection.lag_seconds == 0.0
            assert projection.generation >= 1
            assert projection.fold_version == versions[projection.name]
        assert status.audit_chain.name == "audit-chain"
        assert status.audit_chain.position == head and status.audit_chain.lag_events == 0
        assert abs(status.read_at.ToDatetime().timestamp() - time.time()) < 60


def test_a_stalled_worker_shows_growing_lag_until_it_catches_up(sqlite_url: str) -> None:
    """With no worker following (``--projections external`` and none started), every read
    model falls behind by exactly what was appended, and the seconds behind grow with the
    age of the oldest unprocessed event; once a worker catches up, both return to zero."""
    with running_server(sqlite_url, projections="external") as server:
        service = server.service
        service.worker.catch_up()
        start = server.app.head_position()
        with server.channel() as channel:
            first = report(channel, 2)
            head = server.app.head_position()
            oldest = server.app.recorded_at(start + 1)
            time.sleep(0.3)
            before = list_projections(channel)
            time.sleep(0.3)
            after = list_projections(channel)
            assert before.head == after.head == head == first[-1].position
            for earlier, later in zip(
                [*before.projections, before.audit_chain],
                [*after.projections, after.audit_chain],
                strict=True,
            ):
                assert earlier.position == later.position == start
                assert earlier.lag_events == head - start
                waited = before.read_at.ToDatetime().timestamp() - oldest
                assert earlier.lag_seconds == pytest.approx(waited, abs=0.05)
                assert later.lag_seconds >= earlier.lag_seconds + 0.25
            service.worker.catch_up()
            status = list_projections(channel)
        for follower in [*status.projections, status.audit_chain]:
            assert follower.position == head
            assert follower.lag_events == 0 and follower.lag_seconds == 0.0


def test_listing_projections_is_for_analysts_and_admins(sqlite_url: str) -> None:
    tokens: dict[str, str] = {}
    lines: list[str] = []
    for role in ("reporter", "auditor", "analyst", "admin"):
        tokens[role], line = new_token(f"{role}-user", [role])
        lines.append(line)
    with (
        running_server(sqlite_url, tokens=token_entries(*lines)) as server,
        server.channel() as channel,
    ):
        for role in ("reporter", "auditor"):
            with pytest.raises(grpc.RpcError) as refused:
                list_projections(channel, authorization=f"Bearer {tokens[role]}")
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as anonymous:
            list_projections(channel)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for role in ("analyst", "admin"):
            status = list_projections(channel, authorization=f"Bearer {tokens[role]}")
            assert [p.name for p in status.projections] == PROJECTIONS


def test_lag_in_seconds_is_a_metric_of_the_server(sqlite_url: str) -> None:
    port = free_port()
    with running_server(sqlite_url, metrics_port=port, projections="external") as server:
        server.service.worker.catch_up()
        with server.channel() as channel:
            report(channel)
        time.sleep(0.2)
        samples = scrape(port)
        head = server.app.head_position()
    for name in [*PROJECTIONS, "audit-chain"]:
        assert value(samples, "flashpoint_projection_lag_events", projection=name) > 0
        assert value(samples, "flashpoint_projection_lag_seconds", projection=name) >= 0.2
        assert value(samples, "flashpoint_projection_position", projection=name) < head


def test_a_projection_worker_serves_its_metrics(tmp_path: Path) -> None:
    """``flashpoint project --metrics-port`` publishes the positions it reaches and the
    store's health, and stops cleanly on SIGTERM."""
    store = f"sqlite:///{tmp_path}/flashpoint.db"
    with running_server(store, projections="external") as server:
        with server.channel() as channel:
            report(channel, 3)
        head = server.app.head_position()
        port = free_port()
        worker = subprocess.Popen(
            [flashpoint(), "--store", store, "project", "--metrics-port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
        try:
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    samples = scrape(port)
                    positions = [
                        value(samples, "flashpoint_projection_position", projection=name)
                        for name in [*PROJECTIONS, "audit-chain"]
                    ]
                    if min(positions) >= head:
                        break
                except (OSError, AssertionError):
                    pass
                assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
                assert time.monotonic() < deadline, "the worker's metrics never showed the head"
                time.sleep(0.1)
            assert value(samples, "flashpoint_store_up") == 1.0
            assert value(samples, "flashpoint_log_head") == head
            assert value(samples, "flashpoint_projection_lag_seconds", projection="escalation") == 0
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=TIMEOUT) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def test_the_cli_shows_the_lag_locally_and_through_a_server(tmp_path: Path) -> None:
    """``flashpoint query projections`` reads the store as it is (no catching up first, which
    would hide the lag); with ``--server`` it asks the server."""
    import json

    from service.adapters.store import FlashpointApplication
    from service.adapters.store_url import store_environment

    store = f"sqlite:///{tmp_path}/flashpoint.db"
    app = FlashpointApplication(env=store_environment(store))
    try:
        head = app.execute(command(c.ReportIncursion)).position
    finally:
        app.close()
    local = subprocess.run(
        [flashpoint(), "--store", store, "query", "--json", "projections"],
        capture_output=True, text=True, env=clean_env(), timeout=60, check=False,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr
    shown = json.loads(local.stdout)
    assert int(shown["head"]) == head
    assert {p["name"]: int(p["lag_events"]) for p in shown["projections"]} == dict.fromkeys(
        PROJECTIONS, head
    )
    with running_server(store) as server, server.channel() as channel:
        caught_up(channel, head)
        remote = subprocess.run(
            [flashpoint(), "query", "--server", server.address, "--json", "projections"],
            capture_output=True, text=True, env=clean_env(), timeout=60, check=False,
        )  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    answered = json.loads(remote.stdout)
    assert [int(p["lag_events"]) for p in answered["projections"]] == [0] * len(PROJECTIONS)
    assert int(answered["audit_chain"]["position"]) == head


def test_lag_is_reported_while_the_oldest_event_is_of_an_unknown_type(sqlite_url: str) -> None:
    """A newer server (mid rolling deploy, say) appended an event type this one does not
    know: that is when a follower stalls, and its lag must still be reported."""
    import uuid

    from eventsourcing.persistence import StoredEvent

    with running_server(sqlite_url, projections="external") as server:
        server.service.worker.catch_up()
        start = server.app.head_position()
        state = b'{"timestamp":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"}}'
        server.app.recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "FromTheFuture", state)])
        with server.channel() as channel:
            status = list_projections(channel)
    assert status.head == start + 1
    for follower in [*status.projections, status.audit_chain]:
        assert follower.lag_events == 1
        assert follower.lag_seconds > 3600  # recorded on 2026-01-01, long before this test
