"""The HTTP/JSON API (``serve --http``) over a real server and a real HTTP client: its
answers are gRPC's ``MessageToDict`` for the same requests (errors included), its streams
are server-sent events, and it serves the static pages safely."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import json_format
from grpc_status import rpc_status

from service.api import translation as tr
from service.api.auth import Authenticator, TokenEntry, new_token
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.http import HttpServer, check_http, start_http
from service.api.http import server as http_server
from service.api.server import RunningServer, ServeRefused, create_server
from service.api.translation import json_api
from service.audit.export import export_lines
from service.bootstrap import Flashpoint, build
from service.cli.demo import SCENARIO_AT, run_scenario
from service.client import FlashpointClient
from service.settings import Settings
from tests.api_support import clean_env, flashpoint, free_port, token_entries

#: Generous bound for anything that waits on the server (never asserted on).
TIMEOUT = 30.0
AT = SCENARIO_AT.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Dashboard:
    service: Flashpoint
    running: RunningServer
    http: HttpServer
    #: The demo's results: name -> resource name.
    names: dict[str, str]
    head: int

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    @property
    def http_port(self) -> int:
        return self.http.port


@contextmanager
def dashboard_server(
    store_url: str, tokens: list[TokenEntry] | None = None, *, demo: bool = True
) -> Iterator[Dashboard]:
    """gRPC on a free port and HTTP on another, over one service (as ``serve --http``)."""
    config = Settings(store=store_url, listen="127.0.0.1:0", http="127.0.0.1:0")
    service = build(config, follow=True)
    authenticator = Authenticator(tokens or [])
    running = create_server(config, service, authenticator)
    running.start()
    server = start_http(config, running, service.log_tables, authenticator)
    try:
        names: dict[str, str] = {}
        head = 0
        if demo:
            admin = None
            if tokens:
                admin = ADMIN_TOKEN
            with FlashpointClient(f"127.0.0.1:{running.port}", token=admin) as client:
                results = run_scenario(client.execute)
            names = {name: result.resource for name, result in results.items()}
            head = max(result.position for result in results.values())
        yield Dashboard(service, running, server, names, head)
    finally:
        server.stop(1.0)
        running.stop(grace=1.0)
        service.close()


ADMIN_TOKEN, _ADMIN_LINE = new_token("admin-user", ["admin"])


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def post(port: int, path: str, data: Any, headers: dict[str, str] | None = None) -> Any:
    body = data if isinstance(data, bytes) else json.dumps(data).encode()
    return request(
        port, "POST", path, body, {"Content-Type": "application/json", **(headers or {})}
    )


def get_message(port: int, path: str, data: Any, headers: dict[str, str] | None = None) -> Any:
    query = urllib.parse.urlencode({"message": json.dumps(data)})
    return request(port, "GET", f"{path}?{query}", headers=headers)


def grpc_call(address: str, path: str, data: dict[str, Any], token: str | None = None) -> Any:
    """(ok, answer) from gRPC: the response's MessageToDict, or the error as Connect's
    body would spell it (code, message, details as the JSON of each Any)."""
    method = json_api.METHODS[path]
    message = method.request_type()
    json_format.ParseDict(data, message)
    stubs = {
        "command": command_grpc.CommandServiceStub,
        "query": query_grpc.QueryServiceStub,
        "audit": audit_grpc.AuditServiceStub,
    }
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(address) as channel:
        call = getattr(stubs[method.service](channel), method.name)
        try:
            if method.server_streaming:
                answer: Any = [
                    json_format.MessageToDict(m)
                    for m in call(message, metadata=metadata, timeout=TIMEOUT)
                ]
            else:
                answer = json_format.MessageToDict(
                    call(message, metadata=metadata, timeout=TIMEOUT)
                )
            return True, answer
        except grpc.RpcError as error:
            status = rpc_status.from_call(error)  # type: ignore[arg-type]
            body: dict[str, Any] = {"code": error.code().name.lower(), "message": error.details()}
            if status is not None and status.details:
                body["details"] = [json_format.MessageToDict(d) for d in status.details]
            return False, body


# ------------------------------------------------------------------ stores


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('http')}/flashpoint.db"
    database: str = request.getfixturevalue("postgres_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    return f"{database}?schema={schema}"


@pytest.fixture(scope="module")
def dashboard(store_url: str) -> Iterator[Dashboard]:
    with dashboard_server(store_url) as server:
        yield server


# ------------------------------------------------------------------ the same answers


def read_cases(names: dict[str, str], head: int) -> list[tuple[str, dict[str, Any]]]:
    """A request for every Query and Audit read method over the demo data."""
    incident = (
        names["drones-poland"]
        if "drones-poland" in names
        else next(v for v in names.values() if v.startswith("incidents/"))
    )
    sanctions = next(v for v in names.values() if v.startswith("sanctions/"))
    track = next(v for v in names.values() if v.startswith("negotiations/"))
    q, a = "/flashpoint.v1.QueryService/", "/flashpoint.v1.AuditService/"
    after = {"minPosition": str(head)}
    return [
        (q + "GetIncident", {"name": incident, **after}),
        (q + "ListIncidents", {"pageSize": 3, **after}),
        (q + "ListIncidents", {"country": "POL", **after}),
        (q + "GetSanctionsRegime", {"name": sanctions, **after}),
        (q + "GetNegotiation", {"name": track, **after}),
        (q + "ListNegotiations", {"party": "UKR", **after}),
        (q + "ListSanctions", {"target": "RUS", "includeLifted": True, **after}),
        (q + "GetForcePosture", {"country": "POL", "at": AT, **after}),
        (q + "GetEscalation", {"country": "POL", "at": AT, "asOf": AT, **after}),
        (q + "ListEscalations", {"at": AT, "asOf": AT, **after}),
        (q + "ListEscalations", {"at": AT, "asOf": AT, "minLevel": 2, "limit": 3, **after}),
        (
            q + "GetPairEscalation",
            {"actor": "RUS", "target": "POL", "at": AT, "asOf": AT, **after},
        ),
        (
            q + "GetEscalationHistory",
            {
                "country": "POL",
                "startTime": "2025-09-01T00:00:00Z",
                "endTime": "2025-09-14T00:00:00Z",
                "asOf": AT,
                **after,
            },
        ),
        (a + "GetHistory", {"name": incident}),
        (a + "ListSeals", {}),
    ]


class TestSameAnswersAsGrpc:
    def test_every_read_method_answers_as_grpc_over_get_and_post(
        self, dashboard: Dashboard
    ) -> None:
        """For each Query/Audit read, GET ?message= and POST answer gRPC's MessageToDict."""
        cases = read_cases(dashboard.names, dashboard.head)
        for path, data in cases:
            ok, expected = grpc_call(dashboard.grpc_address, path, data)
            assert ok, (path, expected)
            for status, headers, body in (
                post(dashboard.http_port, f"/api{path}", data),
                get_message(dashboard.http_port, f"/api{path}", data),
            ):
                assert status == 200, (path, body)
                assert headers["content-type"].startswith("application/json")
                # Equal as JSON (a Struct's keys, a map's, come in no fixed order).
                assert json.loads(body) == expected, path
                assert b"\n" not in body  # one line, as an SSE data: line needs

    def test_a_get_without_message_is_the_default_request(self, dashboard: Dashboard) -> None:
        status, _, body = request(
            dashboard.http_port, "GET", "/api/flashpoint.v1.AuditService/ListSeals"
        )
        assert status == 200
        assert (
            json.loads(body)
            == grpc_call(dashboard.grpc_address, "/flashpoint.v1.AuditService/ListSeals", {})[1]
        )

    def test_list_projections_and_verify_log_answer_as_grpc(self, dashboard: Dashboard) -> None:
        """Answers that carry the time they were made: equal but for that time."""
        for path, moment in (
            ("/flashpoint.v1.QueryService/ListProjections", "readAt"),
            ("/flashpoint.v1.AuditService/VerifyLog", "verifiedAt"),
        ):
            ok, expected = grpc_call(dashboard.grpc_address, path, {})
            status, _, body = post(dashboard.http_port, f"/api{path}", {})
            assert ok and status == 200, body
            answer = json.loads(body)
            answer.pop(moment, None)
            expected.pop(moment, None)
            assert answer == expected

    def test_errors_answer_as_grpc_with_connect_statuses(self, dashboard: Dashboard) -> None:
        """A missing resource, an invalid field, a rule: gRPC's code, message and details."""
        missing = f"incidents/{uuid.UUID(int=0)}"
        q = "/flashpoint.v1.QueryService/"
        cases: list[tuple[str, dict[str, Any], int, str]] = [
            (q + "GetIncident", {"name": missing}, 404, "not_found"),
            (q + "GetEscalation", {"country": "XXX"}, 400, "invalid_argument"),
            (q + "ListEscalations", {"minLevel": 9}, 400, "invalid_argument"),
            (q + "GetEscalationHistory", {"country": "POL"}, 400, "invalid_argument"),
        ]
        for path, data, http_status, code in cases:
            ok, expected = grpc_call(dashboard.grpc_address, path, data)
            assert not ok and expected["code"] == code, expected
            status, headers, body = post(dashboard.http_port, f"/api{path}", data)
            assert (status, json.loads(body)) == (http_status, expected), path
            assert headers["content-type"].startswith("application/json")

    def test_read_events_over_sse_are_grpcs_messages_with_their_positions(
        self, dashboard: Dashboard
    ) -> None:
        path = "/flashpoint.v1.AuditService/ReadEvents"
        ok, expected = grpc_call(dashboard.grpc_address, path, {"limit": 5})
        assert ok
        events = list(sse_events(dashboard.http_port, path, {"limit": 5}))
        assert [json.loads(e["data"]) for e in events] == expected
        assert [e["id"] for e in events] == [m["event"]["position"] for m in expected]


# ------------------------------------------------------------------ input errors


class TestInputErrors:
    PATH = "/api/flashpoint.v1.QueryService/ListEscalations"

    def violation(self, body: bytes) -> tuple[str, str]:
        answer = json.loads(body)
        assert answer["code"] == "invalid_argument", answer
        detail = answer["details"][0]
        assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        violation = detail["fieldViolations"][0]
        return violation["field"], violation["description"]

    def test_malformed_json_is_invalid_argument(self, dashboard: Dashboard) -> None:
        status, _, body = post(dashboard.http_port, self.PATH, b'{"limit": 3')
        assert status == 400
        assert self.violation(body)[0] == "(request)"

    def test_json_that_is_not_an_object_is_invalid_argument(self, dashboard: Dashboard) -> None:
        status, _, body = post(dashboard.http_port, self.PATH, b"[1, 2]")
        assert status == 400
        assert self.violation(body)[0] == "(request)"

    @pytest.mark.parametrize(
        ("data", "field"),
        [
            pytest.param({"limit": "three"}, "limit", id="wrong-type"),
            pytest.param({"minLevel": 1.5}, "min_level", id="fraction"),
            pytest.param({"countries": "POL"}, "countries", id="not-a-list"),
            pytest.param({"at": "yesterday"}, "at", id="bad-timestamp"),
            pytest.param({"colour": "red"}, "colour", id="unknown-field"),
        ],
    )
    def test_a_bad_field_is_invalid_argument_naming_it(
        self, dashboard: Dashboard, data: dict[str, Any], field: str
    ) -> None:
        status, _, body = post(dashboard.http_port, self.PATH, data)
        assert status == 400, body
        assert self.violation(body)[0] == field

    def test_a_nested_field_is_named_by_its_path(self, dashboard: Dashboard) -> None:
        status, _, body = post(
            dashboard.http_port,
            "/api/flashpoint.v1.CommandService/ReportIncursion",
            {"requestId": "nested-1", "evidence": {"reliability": 5}},
        )
        assert status == 400
        assert self.violation(body)[0] == "evidence.reliability"

    def test_an_unknown_method_or_service_is_not_found(self, dashboard: Dashboard) -> None:
        for path in (
            "/api/flashpoint.v1.QueryService/Nope",
            "/api/flashpoint.v1.Nope/GetIncident",
            "/api/anything",
        ):
            status, _, body = post(dashboard.http_port, path, {})
            assert status == 404
            assert json.loads(body)["code"] == "not_found"

    def test_a_stream_over_the_unary_route_is_not_found_pointing_to_sse(
        self, dashboard: Dashboard
    ) -> None:
        status, _, body = post(
            dashboard.http_port, "/api/flashpoint.v1.QueryService/WatchEscalation", {}
        )
        assert status == 404
        assert "/api/stream/" in json.loads(body)["message"]

    def test_a_command_over_get_is_refused(self, dashboard: Dashboard) -> None:
        status, headers, body = request(
            dashboard.http_port, "GET", "/api/flashpoint.v1.CommandService/ReportIncursion"
        )
        assert status == 405
        assert headers["allow"] == "POST"
        assert json.loads(body)["code"] == "unimplemented"

    def test_a_post_that_is_not_json_is_refused(self, dashboard: Dashboard) -> None:
        """A form post (which any page may send cross-site) never reaches a command."""
        status, _, body = request(
            dashboard.http_port,
            "POST",
            "/api/flashpoint.v1.CommandService/ReportIncursion",
            b"requestId=x",
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 415
        assert json.loads(body)["code"] == "invalid_argument"

    def test_a_body_too_large_is_refused_as_json(self, dashboard: Dashboard) -> None:
        status, _, body = post(dashboard.http_port, self.PATH, b" " * (5 * 1024 * 1024))
        assert status == 413
        assert json.loads(body)["code"] == "resource_exhausted"


# ------------------------------------------------------------------ commands


class TestCommands:
    def test_a_command_is_recorded_and_replayed_by_its_request_id(
        self, dashboard: Dashboard
    ) -> None:
        data = {
            "requestId": "http-incursion-1",
            "actor": {"country": "RUS"},
            "target": {"country": "EST"},
            "count": 2,
            "evidence": {
                "occurredAt": "2025-09-19T09:00:00Z",
                "precision": "minute",
                "sources": [{"name": "ERR"}],
                "reliability": "B",
                "credibility": 2,
            },
        }
        path = "/api/flashpoint.v1.CommandService/ReportIncursion"
        status, _, body = post(dashboard.http_port, path, data)
        assert status == 200, body
        first = json.loads(body)
        assert first.get("replayed") is not True
        status, _, body = post(dashboard.http_port, path, data)
        again = json.loads(body)
        assert status == 200
        assert again["replayed"] is True
        assert (again["name"], again["position"]) == (first["name"], first["position"])
        # The same request id through gRPC replays the HTTP one: one store, one table.
        ok, grpc_answer = grpc_call(dashboard.grpc_address, path.removeprefix("/api"), data)
        assert ok and grpc_answer["name"] == first["name"]
        # A reused request id for another request is ALREADY_EXISTS, 409.
        status, _, body = post(dashboard.http_port, path, {**data, "count": 3})
        assert status == 409, body
        assert json.loads(body)["code"] == "already_exists"


# ------------------------------------------------------------------ server-sent events


def sse_events(
    port: int,
    path: str,
    data: dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    until: Any = None,
) -> Iterator[dict[str, str]]:
    """The events of a server-sent stream (each a dict of its fields), until it ends or
    ``until(event)`` is true. Reads with a socket timeout, never a timed assertion."""
    query = urllib.parse.urlencode({"message": json.dumps(data)})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", f"/api/stream{path}?{query}", headers=headers or {})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        event: dict[str, str] = {}
        while True:
            line = response.readline()
            if not line:
                return
            text = line.decode().rstrip("\r\n")
            if text == "":
                if event:
                    yield event
                    if until is not None and until(event):
                        return
                event = {}
            elif text.startswith(":"):
                event.setdefault("comments", "")
                event["comments"] += text
            else:
                name, _, value = text.partition(":")
                event[name] = value.removeprefix(" ")
    finally:
        connection.close()


class TestServerSentEvents:
    def test_watch_escalation_delivers_an_update_after_a_new_report(
        self, dashboard: Dashboard
    ) -> None:
        """A watch open over HTTP gets the change a new report makes (within the socket's
        generous timeout: speed is the benchmark's business)."""
        path = "/flashpoint.v1.QueryService/WatchEscalation"
        countries = ["ARM", "AZE"]
        events = sse_events(dashboard.http_port, path, {"countries": countries})
        with FlashpointClient(dashboard.grpc_address) as client:
            from service.domain import commands as c
            from tests.factories import command

            client.execute(
                command(
                    c.ReportClash,
                    actor={"country": "AZE"},
                    target={"country": "ARM"},
                    fatalities=12,
                )
            )
        for event in events:
            assert event.get("event") != "error", event
            message = json.loads(event["data"])
            if message["country"] in countries:
                assert event["id"] == message["position"]
                break

    def test_subscribe_events_resumes_after_last_event_id(self, dashboard: Dashboard) -> None:
        path = "/flashpoint.v1.AuditService/SubscribeEvents"
        first = next(e for e in sse_events(dashboard.http_port, path, {}, {"Last-Event-ID": "3"}))
        assert first["id"] == "4"
        assert json.loads(first["data"])["event"]["position"] == "4"

    def test_a_stream_error_is_an_error_event(self, dashboard: Dashboard) -> None:
        events = list(
            sse_events(
                dashboard.http_port,
                "/flashpoint.v1.QueryService/WatchEscalation",
                {"countries": ["XXX"]},
            )
        )
        assert [e.get("event") for e in events] == ["error"]
        assert json.loads(events[0]["data"])["code"] == "invalid_argument"

    def test_a_bad_request_or_unknown_stream_answers_before_streaming(
        self, dashboard: Dashboard
    ) -> None:
        status, _, body = request(
            dashboard.http_port,
            "GET",
            "/api/stream/flashpoint.v1.AuditService/SubscribeEvents?message=%7B",
        )
        assert status == 400
        assert json.loads(body)["code"] == "invalid_argument"
        status, _, body = request(
            dashboard.http_port, "GET", "/api/stream/flashpoint.v1.QueryService/ListIncidents"
        )
        assert status == 404

    def test_a_quiet_stream_sends_keep_alive_comments(
        self, dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A watch of a country nothing happens to still sends ``: keep-alive`` comments
        (every 15 s; a fraction of a second here), so proxies keep the stream open."""
        monkeypatch.setattr(http_server, "KEEPALIVE_SECONDS", 0.2)
        events = sse_events(
            dashboard.http_port, "/flashpoint.v1.QueryService/WatchEscalation",
            {"countries": ["ISL"], "fromPosition": str(dashboard.head)},
            until=lambda event: "comments" in event,
        )  # fmt: skip
        comments = [event for event in events if "comments" in event]
        assert comments[0]["comments"] == ": keep-alive"

    def test_a_client_that_lags_is_dropped_not_waited_for(self) -> None:
        """A stream's queue is bounded: when full, the client's connection is closed and
        the stream ends, so the producer never blocks on it."""

        class Transport:
            aborted = False

            def abort(self) -> None:
                self.aborted = True

        async def run() -> tuple[bool, list[bytes | None]]:
            transport = Transport()
            stream = http_server._Stream(asyncio.get_running_loop(), transport)
            for index in range(http_server.SSE_QUEUE_MESSAGES + 5):
                stream.offer(b"frame %d" % index)
            frames = []
            while not stream.queue.empty():
                frames.append(stream.queue.get_nowait())
            return transport.aborted and stream.overflowed, frames

        dropped, frames = asyncio.run(run())
        assert dropped
        assert frames[-1] is None  # the writer ends the response
        assert len(frames) == http_server.SSE_QUEUE_MESSAGES


# ------------------------------------------------------------------ export, health, static


class TestExportHealthStatic:
    def test_the_export_is_flashpoint_exports_lines(self, dashboard: Dashboard) -> None:
        status, headers, body = request(dashboard.http_port, "GET", "/api/export")
        assert status == 200
        assert headers["content-type"] == "application/x-ndjson"
        assert body.decode() == "".join(export_lines(dashboard.service.log_tables))

    def test_healthz_answers_serving(self, dashboard: Dashboard) -> None:
        status, headers, body = request(dashboard.http_port, "GET", "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "SERVING"})
        assert headers["content-type"] == "application/json"

    def test_index_html_for_the_root_with_security_headers(self, dashboard: Dashboard) -> None:
        status, headers, body = request(dashboard.http_port, "GET", "/")
        assert status == 200
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert b"<html" in body
        assert "default-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-cache"
        status, _, _ = request(
            dashboard.http_port, "GET", "/", headers={"If-None-Match": headers["etag"]}
        )
        assert status == 304

    @pytest.mark.parametrize(
        "path",
        [
            "/../pyproject.toml",
            "/%2e%2e/%2e%2e/pyproject.toml",
            "/..%2f..%2fserver.py",
            "/static/../server.py",
            "/%2e%2e%2fserver.py",
            "/.hidden",
            "/nope.js",
            "/index.html%00.js",
            "/..\\server.py",
        ],
    )
    def test_no_file_outside_the_static_root_is_served(
        self, dashboard: Dashboard, path: str
    ) -> None:
        status, _, body = request(dashboard.http_port, "GET", path)
        assert status in (400, 404), (path, status)
        assert b"import" not in body

    def test_the_request_id_is_echoed_or_made(self, dashboard: Dashboard) -> None:
        _, headers, _ = request(
            dashboard.http_port, "GET", "/healthz", headers={"x-request-id": "abc-123"}
        )
        assert headers["x-request-id"] == "abc-123"
        _, headers, _ = post(
            dashboard.http_port,
            "/api/flashpoint.v1.AuditService/ListSeals",
            {},
            {"x-request-id": "abc-456"},
        )
        assert headers["x-request-id"] == "abc-456"
        _, headers, _ = request(dashboard.http_port, "GET", "/healthz")
        assert len(headers["x-request-id"]) == 32


# ------------------------------------------------------------------ auth


@dataclass
class SecuredDashboard:
    server: Dashboard
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredDashboard]:
    tokens: dict[str, str] = {}
    lines = [_ADMIN_LINE]
    for role in ("reporter", "analyst", "auditor"):
        token, line = new_token(f"{role}-user", [role])
        tokens[role] = token
        lines.append(line)
    store = f"sqlite:///{tmp_path_factory.mktemp('secured')}/flashpoint.db"
    with dashboard_server(store, token_entries(*lines)) as server:
        yield SecuredDashboard(server, tokens)


class TestAuth:
    QUERY = "/flashpoint.v1.QueryService/ListSeals"

    @pytest.mark.parametrize(
        ("role", "path", "allowed"),
        [
            ("analyst", "/flashpoint.v1.QueryService/ListIncidents", True),
            ("auditor", "/flashpoint.v1.QueryService/ListIncidents", False),
            ("auditor", "/flashpoint.v1.AuditService/ListSeals", True),
            ("analyst", "/flashpoint.v1.AuditService/ListSeals", False),
            ("reporter", "/flashpoint.v1.QueryService/ListIncidents", False),
            ("auditor", "/flashpoint.v1.AuditService/SealLog", False),
        ],
    )
    def test_roles_decide_as_for_grpc(
        self, secured: SecuredDashboard, role: str, path: str, allowed: bool
    ) -> None:
        token = secured.tokens[role]
        ok, expected = grpc_call(secured.server.grpc_address, path, {}, token)
        status, _, body = post(
            secured.server.http_port, f"/api{path}", {}, {"Authorization": f"Bearer {token}"}
        )
        assert ok is allowed
        if allowed:
            assert status == 200
        else:
            assert (status, json.loads(body)) == (403, expected)

    @pytest.mark.parametrize("authorization", [None, "Bearer fp_wrong", "Token x"])
    def test_no_or_a_wrong_token_is_401_as_grpcs_unauthenticated(
        self, secured: SecuredDashboard, authorization: str | None
    ) -> None:
        headers = {"Authorization": authorization} if authorization else {}
        path = "/flashpoint.v1.QueryService/ListIncidents"
        status, _, body = post(secured.server.http_port, f"/api{path}", {"limit": "bad"}, headers)
        assert status == 401
        assert json.loads(body)["code"] == "unauthenticated"
        for stream in ("/api/stream/flashpoint.v1.AuditService/SubscribeEvents", "/api/export"):
            status, _, body = request(secured.server.http_port, "GET", stream, headers=headers)
            assert status == 401, stream

    def test_the_export_needs_the_auditor_role(self, secured: SecuredDashboard) -> None:
        analyst = {"Authorization": f"Bearer {secured.tokens['analyst']}"}
        status, _, _ = request(secured.server.http_port, "GET", "/api/export", headers=analyst)
        assert status == 403
        auditor = {"Authorization": f"Bearer {secured.tokens['auditor']}"}
        status, _, body = request(secured.server.http_port, "GET", "/api/export", headers=auditor)
        assert status == 200 and body.startswith(b'{"format":"flashpoint-log"')

    def test_static_files_and_health_need_no_token(self, secured: SecuredDashboard) -> None:
        for path in ("/", "/index.html", "/healthz"):
            status, _, _ = request(secured.server.http_port, "GET", path)
            assert status == 200, path

    def test_a_reporter_posts_a_command(self, secured: SecuredDashboard) -> None:
        from service.domain import commands as c
        from tests.factories import command

        data = json_format.MessageToDict(
            tr.request_from_command(
                command(c.ReportClash, actor={"country": "IND"}, target={"country": "PAK"})
            )
        )
        status, _, body = post(
            secured.server.http_port,
            "/api/flashpoint.v1.CommandService/ReportClash",
            data,
            {"Authorization": f"Bearer {secured.tokens['reporter']}"},
        )
        assert status == 200, body


# ------------------------------------------------------------------ serve --http


class TestServe:
    def test_a_non_loopback_http_address_without_tokens_is_refused(self) -> None:
        settings = Settings(http="0.0.0.0:8080")
        with pytest.raises(ServeRefused, match="without authentication"):
            check_http(settings, Authenticator([]), share_port=False)
        check_http(Settings(http="0.0.0.0:0", insecure=True), Authenticator([]), share_port=False)

    def test_workers_need_a_fixed_http_port(self) -> None:
        with pytest.raises(ServeRefused, match="fixed port"):
            check_http(Settings(http="127.0.0.1:0", workers=2), Authenticator([]), share_port=False)

    def test_serve_http_answers_health_and_the_api_then_stops(self, tmp_path: Any) -> None:
        """The real CLI: ``flashpoint serve --http`` serves HTTP beside gRPC."""
        grpc_port, http_port = free_port(), free_port()
        process = subprocess.Popen(
            [
                flashpoint(),
                "serve",
                "--store",
                f"sqlite:///{tmp_path}/f.db",
                "--listen",
                f"127.0.0.1:{grpc_port}",
                "--http",
                f"127.0.0.1:{http_port}",
            ],
            env=clean_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stderr is not None
            for line in process.stderr:
                if '"server.started"' in line or "server.started" in line:
                    break
            status, _, body = request(http_port, "GET", "/healthz")
            assert (status, json.loads(body)) == (200, {"status": "SERVING"})
            status, _, body = post(http_port, "/api/flashpoint.v1.QueryService/ListIncidents", {})
            assert status == 200, body
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0

    def test_serve_workers_serve_http_on_one_port(self, tmp_path: Any) -> None:
        """``serve --workers 2 --http``: each worker serves HTTP on the shared port, and
        every one answers (connections spread among them; each asked until both did)."""
        grpc_port, http_port = free_port(), free_port()
        process = subprocess.Popen(
            [flashpoint(), "serve", "--store", f"sqlite:///{tmp_path}/f.db", "--workers", "2",
             "--listen", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}"],
            env=clean_env(), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert process.stderr is not None
            started = 0
            for line in process.stderr:
                started += "server.started" in line
                if started == 2:
                    break
            assert started == 2, "both workers started"
            for _ in range(20):
                status, _, body = post(http_port, "/api/flashpoint.v1.AuditService/ListSeals", {})
                assert (status, json.loads(body)) == (200, {})
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0


def test_the_placeholder_page_is_packaged() -> None:
    assert (http_server.STATIC_ROOT / "index.html").is_file()
    assert os.path.isdir(http_server.STATIC_ROOT)


class TestJsonMapping:
    def test_message_json_is_json_formats_message_to_dict(self, dashboard: Dashboard) -> None:
        """The HTTP side's planned converter answers json_format's mapping exactly, key
        order included, over real answers and the values json_format spells specially."""
        from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb

        messages: list[Any] = []
        with grpc.insecure_channel(dashboard.grpc_address) as channel:
            stub = query_grpc.QueryServiceStub(channel)
            messages.append(stub.ListIncidents(query_pb.ListIncidentsRequest(page_size=50)))
            messages.append(stub.ListProjections(query_pb.ListProjectionsRequest()))
            at = query_pb.ListEscalationsRequest()
            at.at.FromJsonString(AT)
            messages.append(stub.ListEscalations(at))
        special = query_pb.Escalation(score=float("nan"), earlier_score=float("-inf"),
                                      actor_score=float("inf"), level=0)  # fmt: skip
        special.at.FromJsonString("2025-09-13T12:00:00.120Z")
        messages.append(special)
        for message in messages:
            expected = json_format.MessageToDict(message)
            assert json_api.message_json(message) == expected
            assert list(json_api.message_json(message)) == list(expected)
            assert json_api.response_json(message) == json_api.encode_json(expected)


class TestHostCheck:
    def test_an_open_loopback_server_refuses_a_foreign_host_name(
        self, dashboard: Dashboard
    ) -> None:
        """DNS rebinding: a page of evil.example resolved to 127.0.0.1 reads nothing."""
        path = "/api/flashpoint.v1.QueryService/ListIncidents"
        status, _, body = request(
            dashboard.http_port, "GET", path, headers={"Host": "evil.example"}
        )
        assert status == 403
        assert json.loads(body)["code"] == "permission_denied"
        for host in ("localhost:8080", "127.0.0.1", "[::1]:8080", "app.localhost"):
            status, _, _ = request(dashboard.http_port, "GET", path, headers={"Host": host})
            assert status == 200, host

    def test_a_server_with_tokens_answers_any_host(self, secured: SecuredDashboard) -> None:
        status, _, _ = request(
            secured.server.http_port, "GET", "/healthz", headers={"Host": "flashpoint.example"}
        )
        assert status == 200
