"""CommandService.SubmitDevelopments, the bulk stream, over a real server and client.

Each command is answered on its own, in order, with what its own RPC would answer; one
bad command never ends the stream or fails its neighbours; a client that loses the stream
and re-sends records nothing twice; a client that sends without reading is held back by
the window, not buffered without bound.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import grpc
import pytest
from google.rpc import error_details_pb2

from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.servicers import servicers_for
from service.api.translation import commands as bulk_tr
from service.cli.backend import LocalContext
from service.client import (
    AlreadyExistsError,
    AuthError,
    ConflictError,
    FlashpointClient,
    InvalidArgument,
    NotFoundError,
    PreconditionError,
)
from service.domain import commands as c
from service.domain import vocabulary
from tests.api_support import ServerUnderTest, run_flashpoint, running_server, token_entries
from tests.factories import command

TIMEOUT = 60.0


@pytest.fixture(params=["sqlite_url", "postgres_url"], ids=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerUnderTest]:
    store_url: str = request.getfixturevalue(request.param)
    with running_server(store_url) as running:
        yield running


def incursion(request_id: str, **fields: Any) -> c.ReportIncursion:
    return command(c.ReportIncursion, request_id=request_id, **fields)


def stored_reports(server: ServerUnderTest) -> Counter[str]:
    """How many times each request id's report was recorded (by its submitted_by stamp)."""
    counts: Counter[str] = Counter()
    for notification in server.app.read_log():
        if notification.topic.endswith("IncursionReported"):
            counts[str(notification.originator_id)] += 1
    return counts


def events_in(server: ServerUnderTest) -> int:
    return sum(1 for _ in server.app.read_log())


# ---------------------------------------------------------------------- the contract


def test_the_stream_takes_every_command_the_vocabulary_and_the_rpcs_declare() -> None:
    """Each command of the vocabulary (and so each unary RPC) has its field in the request's
    oneof and in the response's, of its own request and response types: a command added
    later cannot be forgotten here."""
    declared = {entry.command for entry in vocabulary.ENTRIES}
    rpcs = {
        method.name
        for method in command_pb.DESCRIPTOR.services_by_name["CommandService"].methods
        if not method.client_streaming
    }
    assert declared == rpcs == set(c.COMMANDS)
    by_request = {cls.command_name for cls in bulk_tr.BULK_REQUEST_FIELDS.values()}
    by_response = {cls.command_name for cls in bulk_tr.BULK_RESPONSE_FIELDS.values()}
    assert by_request == by_response == declared
    assert bulk_tr.BULK_REQUEST_FIELDS == bulk_tr.BULK_RESPONSE_FIELDS


def test_a_command_survives_the_bulk_request_and_keeps_its_fingerprint() -> None:
    for command_class in c.COMMANDS.values():
        original = command(command_class, request_id=f"bulk-{command_class.command_name}")
        back = bulk_tr.bulk_command(bulk_tr.bulk_request(original))
        assert back == original
        assert back.fingerprint() == original.fingerprint()


# ---------------------------------------------------------------------- one stream


class TestABurst:
    def test_good_invalid_conflicting_and_repeated_commands_are_answered_each_on_its_own(
        self, server: ServerUnderTest
    ) -> None:
        first = incursion("burst-1")
        commands: list[c.Command] = [
            first,
            incursion("burst-2", count=5),
            # Invalid: intercepted exceeds count (a cross-field rule).
            c.ReportIncursion.model_construct(
                **{**incursion("burst-bad").__dict__, "count": 1, "intercepted": 9}
            ),
            first,  # repeated: replayed, nothing recorded
            incursion("burst-1", count=7),  # the id reused for another request
            command(c.CorroborateIncident, request_id="burst-missing", incident_id=uuid4()),
            incursion("burst-3"),
        ]
        with FlashpointClient(server.address, timeout=TIMEOUT) as client:
            results = list(client.submit_many(commands))
            created = results[0].result
            assert created is not None
            # Conflicting: a stale expected_version on the incident just created.
            late = list(
                client.submit_many(
                    [
                        command(
                            c.RetractIncident, request_id="burst-stale",
                            incident_id=created.id, expected_version=3,
                        ),
                        command(c.RetractIncident, request_id="burst-ok",
                                incident_id=created.id),
                        command(c.RetractIncident, request_id="burst-again",
                                incident_id=created.id),
                    ]
                )
            )  # fmt: skip

        assert [r.command.request_id for r in results] == [
            "burst-1", "burst-2", "burst-bad", "burst-1", "burst-1", "burst-missing", "burst-3",
        ]  # fmt: skip
        ok = [r for r in results if r.ok]
        assert [r.command.request_id for r in ok] == ["burst-1", "burst-2", "burst-1", "burst-3"]
        assert results[3].result is not None and results[3].result.replayed
        assert results[3].result.id == created.id
        assert isinstance(results[2].error, InvalidArgument)
        assert [v.field for v in results[2].error.violations] == ["intercepted"]
        assert isinstance(results[4].error, AlreadyExistsError)
        assert isinstance(results[5].error, NotFoundError)
        assert isinstance(late[0].error, ConflictError)
        assert late[1].ok
        assert isinstance(late[2].error, PreconditionError)
        # Three reports and one retraction: nothing else was recorded.
        assert events_in(server) == 4

    def test_a_request_without_a_command_or_undecodable_fails_alone(
        self, server: ServerUnderTest
    ) -> None:
        def requests() -> Iterator[bytes]:
            yield bulk_tr.bulk_request(incursion("raw-1")).SerializeToString()
            yield command_pb.SubmitDevelopmentsRequest().SerializeToString()
            yield b"\xff\xff\xff"
            yield bulk_tr.bulk_request(incursion("raw-2")).SerializeToString()

        with server.channel() as channel:
            call = channel.stream_stream(
                "/flashpoint.v1.CommandService/SubmitDevelopments",
                request_serializer=lambda data: data,
                response_deserializer=command_pb.SubmitDevelopmentsResponse.FromString,
            )
            answers = list(call(requests(), timeout=TIMEOUT))
        assert [a.index for a in answers] == [0, 1, 2, 3]
        assert [a.WhichOneof("result") for a in answers] == [
            "report_incursion", "error", "error", "report_incursion",
        ]  # fmt: skip
        for answer, field in ((answers[1], "command"), (answers[2], "(request)")):
            assert bulk_tr.status_code(answer.error) is grpc.StatusCode.INVALID_ARGUMENT
            bad = error_details_pb2.BadRequest()
            assert answer.error.details[0].Unpack(bad)
            assert [v.field for v in bad.field_violations] == [field]
        assert events_in(server) == 2

    def test_a_batch_is_answered_in_one_message_each_command_on_its_own(
        self, server: ServerUnderTest
    ) -> None:
        """A DevelopmentBatch beside single commands: its commands counted in the stream's
        indexes, answered in one response in their order, an empty or nested one refused
        alone (INVALID_ARGUMENT naming the field) while its neighbours are recorded."""
        batch = bulk_tr.bulk_batch_request([incursion("batch-1"), incursion("batch-2")])
        batch.batch.commands.add()  # holds no command
        batch.batch.commands.add().batch.SetInParent()  # a batch inside the batch
        batch.batch.commands.append(bulk_tr.bulk_request(incursion("batch-3")))
        requests = [
            bulk_tr.bulk_request(incursion("batch-0")),
            batch,
            bulk_tr.bulk_batch_request([]),
            bulk_tr.bulk_request(incursion("batch-4")),
        ]
        with server.channel() as channel:
            stub = command_grpc.CommandServiceStub(channel)
            answers = list(stub.SubmitDevelopments(iter(requests), timeout=TIMEOUT))
        assert [a.WhichOneof("result") for a in answers] == [
            "report_incursion", "batch", "batch", "report_incursion",
        ]  # fmt: skip
        assert [a.index for a in answers] == [0, 1, 6, 6]
        results = answers[1].batch.results
        assert [r.index for r in results] == [1, 2, 3, 4, 5]
        assert [r.request_id for r in results] == ["batch-1", "batch-2", "", "", "batch-3"]
        assert [r.WhichOneof("result") for r in results] == [
            "report_incursion", "report_incursion", "error", "error", "report_incursion",
        ]  # fmt: skip
        for answer, field in ((results[2], "command"), (results[3], "batch")):
            assert bulk_tr.status_code(answer.error) is grpc.StatusCode.INVALID_ARGUMENT
            bad = error_details_pb2.BadRequest()
            assert answer.error.details[0].Unpack(bad)
            assert [v.field for v in bad.field_violations] == [field]
        assert not answers[2].batch.results
        assert sum(stored_reports(server).values()) == 5

    def test_a_batch_beyond_the_limit_is_refused_command_by_command(
        self, server: ServerUnderTest
    ) -> None:
        commands = [incursion(f"huge-{n}") for n in range(bulk_tr.MAX_BATCH + 1)]
        with server.channel() as channel:
            stub = command_grpc.CommandServiceStub(channel)
            (answer,) = stub.SubmitDevelopments(
                iter([bulk_tr.bulk_batch_request(commands)]), timeout=TIMEOUT
            )
        results = answer.batch.results
        assert len(results) == len(commands)
        codes = {bulk_tr.status_code(r.error) for r in results}
        assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
        assert results[-1].request_id == f"huge-{bulk_tr.MAX_BATCH}"
        assert events_in(server) == 0

    def test_a_batch_sent_again_is_answered_from_its_receipts_recording_nothing(
        self, server: ServerUnderTest
    ) -> None:
        commands: list[c.Command] = [incursion(f"again-{n}") for n in range(300)]
        with FlashpointClient(server.address, timeout=TIMEOUT) as client:
            first = list(client.submit_many(commands, batch=100))
            recorded = events_in(server)
            changed = incursion("again-7", count=99)  # the id reused for another request
            again = list(client.submit_many([*commands[:150], changed, *commands[150:]]))
        assert all(r.ok and r.result and not r.result.replayed for r in first)
        assert [r.result for r in again if r.result] == [
            dataclasses.replace(r.result, replayed=True) for r in first if r.result
        ]
        assert isinstance(again[150].error, AlreadyExistsError)
        assert events_in(server) == recorded == 300

    def test_a_source_that_fails_is_raised_after_the_commands_before_it(
        self, server: ServerUnderTest
    ) -> None:
        def source() -> Iterator[c.Command]:
            yield incursion("source-1")
            yield incursion("source-2")
            raise ValueError("the file broke")

        answered: list[bool] = []

        def submit(client: FlashpointClient) -> None:
            answered.extend(result.ok for result in client.submit_many(source()))

        with (
            FlashpointClient(server.address, timeout=TIMEOUT) as client,
            pytest.raises(ValueError, match="the file broke"),
        ):
            submit(client)
        assert answered == [True, True]
        assert sum(stored_reports(server).values()) == 2

    def test_commands_on_one_resource_keep_their_order_in_the_stream(
        self, server: ServerUnderTest
    ) -> None:
        """A report and the steps on it in one stream: each step after the one before,
        though the stream decides commands concurrently."""
        with FlashpointClient(server.address, timeout=TIMEOUT) as client:
            report = incursion("ordered-report")
            (made,) = list(client.submit_many([report]))
            assert made.result is not None
            incident_id = made.result.id
        # The same again on a fresh id, with the steps in the same stream as the report
        # (the incident's id derives from the request id and the principal).
        fresh = incursion("ordered-fresh")
        from service.application.handlers import resource_key

        fresh_id = resource_key(fresh, "local")
        steps: list[c.Command] = [fresh] + [
            command(
                c.CorroborateIncident, request_id=f"ordered-{n}", incident_id=fresh_id,
                expected_version=n,
            )
            for n in range(1, 30)
        ]  # fmt: skip
        with FlashpointClient(server.address, timeout=TIMEOUT) as client:
            results = list(client.submit_many(steps))
        assert all(r.ok for r in results), [r.error for r in results if r.error]
        assert [r.result.version for r in results if r.result] == list(range(1, 31))
        assert incident_id != fresh_id

    def test_the_stream_needs_the_reporter_role(self, sqlite_url: str) -> None:
        tokens = token_entries(
            "ann analyst sha256:" + __import__("hashlib").sha256(b"ann-token").hexdigest()
        )
        with (
            running_server(sqlite_url, tokens=tokens) as server,
            FlashpointClient(server.address, token="ann-token", timeout=TIMEOUT) as client,  # noqa: S106
        ):
            with pytest.raises(AuthError) as raised:
                list(client.submit_many([incursion("denied")]))
            assert raised.value.code is grpc.StatusCode.PERMISSION_DENIED
            assert events_in(server) == 0


# ---------------------------------------------------------------------- flow control


def test_the_server_reads_no_further_ahead_than_its_window(sqlite_url: str) -> None:
    """The servicer itself, read slowly: however many requests wait, it has taken at most
    the window beyond the answers it has given (its memory is bounded by the window)."""
    window = 16
    with running_server(sqlite_url) as server:
        servicer = servicers_for(server.service).commands
        servicer._window = window
        pulled = 0

        def requests() -> Iterator[command_pb.SubmitDevelopmentsRequest]:
            nonlocal pulled
            for n in range(400):
                pulled += 1
                yield bulk_tr.bulk_request(incursion(f"window-{n}"))

        answers = servicer.SubmitDevelopments(requests(), LocalContext(None))
        seen = 0
        for _ in answers:
            seen += 1
            # Read ahead: the answers given, the window, and the one the reader holds.
            assert pulled <= seen + window + 1
        assert seen == 400


def test_a_client_that_sends_ten_thousand_without_reading_still_completes(
    sqlite_url: str,
) -> None:
    with running_server(sqlite_url) as server, server.channel() as channel:
        stub = command_grpc.CommandServiceStub(channel)
        requests = [bulk_tr.bulk_request(incursion(f"flood-{n}")) for n in range(10_000)]
        answers = stub.SubmitDevelopments(iter(requests), timeout=600)
        indexes = [answer.index for answer in answers]
        assert indexes == list(range(10_000))
        assert sum(stored_reports(server).values()) == 10_000


# ---------------------------------------------------------------------- losing the stream

#: A client in its own process: sends N reports over the bulk stream and prints each
#: request id as it is answered, until the test kills it.
CLIENT = textwrap.dedent(
    """
    import sys
    from service.client import FlashpointClient
    from tests.test_bulk_stream import killed

    address, count = sys.argv[1], int(sys.argv[2])
    commands = (killed(n) for n in range(count))
    with FlashpointClient(address, timeout=600) as client:
        for result in client.submit_many(commands):
            assert result.ok, result.error
            print(result.command.request_id, flush=True)
    """
)


def killed(n: int) -> c.ReportIncursion:
    """The n-th command of the killed client, the same in every process (the factories'
    times are each process's own)."""
    evidence = {
        "occurred_at": "2025-09-10T00:00:00+00:00",
        "sources": [{"name": "Reuters"}],
        "reliability": "B",
        "credibility": 2,
    }
    return command(c.ReportIncursion, request_id=f"killed-{n}", evidence=evidence)


def test_a_client_killed_mid_stream_and_resumed_records_every_command_once(
    server: ServerUnderTest,
) -> None:
    count = 3000
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, server.address, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    for line in child.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) == 500:
            child.send_signal(signal.SIGKILL)
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    # Resume from the last acknowledged command: the rest, commands the server may have
    # recorded without the dead client hearing it among them.
    last = int(acknowledged[-1].rsplit("-", 1)[1])
    rest = [killed(n) for n in range(last + 1, count)]
    with FlashpointClient(server.address, timeout=TIMEOUT) as client:
        results = list(client.submit_many(rest))
    assert all(r.ok for r in results), {str(r.error) for r in results if r.error}
    counts = stored_reports(server)
    assert len(counts) == count
    assert set(counts.values()) == {1}
    assert events_in(server) == count


def test_a_lost_stream_is_resumed_by_the_client_from_its_first_unanswered_command(
    sqlite_url: str,
) -> None:
    """The server goes away mid-stream and another comes up on its port: submit_many
    re-sends what was not answered, and every command is recorded once."""
    from service.api.auth import Authenticator
    from service.api.server import create_server
    from service.settings import Settings

    count = 600
    restarted: list[Any] = []
    with running_server(sqlite_url) as server:
        results: list[Any] = []
        try:
            with FlashpointClient(server.address, timeout=TIMEOUT, attempts=50) as client:
                for result in client.submit_many(incursion(f"lost-{n}") for n in range(count)):
                    results.append(result)
                    if len(results) == 200 and not restarted:
                        server.running.server.stop(grace=None).wait()
                        config = Settings(store=sqlite_url, listen=server.address)
                        again = create_server(config, server.service, Authenticator([]))
                        again.start()
                        restarted.append(again)
        finally:
            for running in restarted:
                running.stop(grace=1.0)
        assert [r.command.request_id for r in results] == [f"lost-{n}" for n in range(count)]
        assert all(r.ok for r in results), [r.error for r in results if r.error][:3]
        assert len(stored_reports(server)) == count
        assert set(stored_reports(server).values()) == {1}


def test_an_open_bulk_stream_holds_one_of_the_long_lived_stream_slots(sqlite_url: str) -> None:
    """A two-thread server gives long-lived streams one thread: while a bulk stream is open
    a second is refused at once (RESOURCE_EXHAUSTED), and unary commands still answer."""
    with running_server(sqlite_url, threads=2) as server, server.channel() as channel:
        stub = command_grpc.CommandServiceStub(channel)
        gate = threading.Event()

        def held_open() -> Iterator[command_pb.SubmitDevelopmentsRequest]:
            yield bulk_tr.bulk_request(incursion("slot-1"))
            gate.wait(TIMEOUT)

        first = iter(stub.SubmitDevelopments(held_open(), timeout=TIMEOUT))
        assert next(first).request_id == "slot-1"
        second = stub.SubmitDevelopments(iter([bulk_tr.bulk_request(incursion("slot-2"))]))
        with pytest.raises(grpc.RpcError) as raised:
            list(second)
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "SubmitDevelopments" in (raised.value.details() or "")
        with FlashpointClient(server.address, timeout=TIMEOUT) as client:
            assert not client.execute(incursion("slot-unary")).replayed
        gate.set()
        assert list(first) == []


def test_flashpoint_submit_records_json_lines_and_a_second_run_records_nothing(
    tmp_path: Any,
) -> None:
    """`flashpoint submit FILE`: each line answered on its own, counted by outcome; the same
    file again is all replays."""
    good = [
        {"command": "ReportIncursion", **killed(n).model_dump(mode="json", exclude_none=True)}
        for n in range(5)
    ]
    lines = [
        *(json.dumps(line) for line in good),
        "not json",
        json.dumps({"command": "ReportIncursion", "request_id": "x", "count": 0}),
        json.dumps({"command": "LaunchRocket"}),
        json.dumps(good[0]),
    ]
    path = tmp_path / "commands.jsonl"
    path.write_text("\n".join(lines) + "\n")
    store = f"sqlite:///{tmp_path}/fp.db"
    first = run_flashpoint("--store", store, "submit", str(path), "--json")
    assert first.returncode == 1, first.stderr
    summary = json.loads(first.stdout)
    assert summary["outcomes"] == {"recorded": 5, "replayed": 1, "skipped": 3}
    assert [s["line"] for s in summary["skipped"]] == [6, 7, 8]
    again = run_flashpoint("--store", store, "submit", str(path), "--json")
    assert json.loads(again.stdout)["outcomes"] == {"replayed": 6, "skipped": 3}


@pytest.mark.parametrize("name", list(c.COMMANDS))
def test_the_direct_request_writer_makes_the_message_the_json_path_makes(name: str) -> None:
    """A client writes each command's request field by field (bulk loads write one per
    command): the same message as ParseDict over its JSON dump, for every field."""
    from google.protobuf import json_format

    from tests.test_translation import full_command

    for original in (command(c.COMMANDS[name]), full_command(c.COMMANDS[name])):
        expected = bulk_tr.request_class(c.COMMANDS[name])()
        json_format.ParseDict(original.model_dump(mode="json", exclude_none=True), expected)
        assert bulk_tr.request_from_command(original) == expected
