"""PostgreSQL going away under a running server, and coming back.

The cluster is a throwaway one made here with ``initdb`` in a temporary folder on a free
port (never the shared test server, which other tests use): stopping it with
``pg_ctl stop -m immediate`` is a crash as far as the server can tell. Commands during the
outage must answer UNAVAILABLE, never OK; health must turn NOT_SERVING and back to SERVING
by itself; and every acknowledged command must be in the log exactly once afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.domain import commands as c
from service.domain.receipt import receipt_id
from tests.api_support import ServerUnderTest, free_port, running_server
from tests.factories import command
from tests.test_metrics import metrics_port, scrape, value

pytestmark = pytest.mark.slow

#: How long health may take to notice the outage, and the recovery.
NOTICE_SECONDS = 15.0
#: Deadline of each command (a command caught mid-outage waits out the store's retries).
TIMEOUT = 60.0
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


def _tool(name: str) -> str | None:
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


class Cluster:
    """A PostgreSQL cluster of our own, run as the ``postgres`` OS user when we are root."""

    def __init__(self, folder: Path, initdb: str, pg_ctl: str, as_user: list[str]) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self._initdb = initdb
        self._pg_ctl = pg_ctl
        self._as_user = as_user
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=1"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({done.returncode}):\n{done.stderr}")

    def create(self) -> None:
        self._run(self._initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "postgres.log")
        self._run(self._pg_ctl, "start", "-w", "-D", str(self.data), "-o", options, "-l", log)

    def stop(self, mode: str = "fast") -> None:
        self._run(self._pg_ctl, "stop", "-w", "-D", str(self.data), "-m", mode)

    def running(self) -> bool:
        done = subprocess.run(
            [*self._as_user, self._pg_ctl, "status", "-D", str(self.data)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("initdb and pg_ctl (PostgreSQL server binaries) are not installed")
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            pytest.skip("running as root needs runuser and a 'postgres' OS user")
        as_user = [runuser, "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="flashpoint-pg-"))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    made = Cluster(folder, initdb, pg_ctl, as_user)
    try:
        made.create()
        made.start()
        yield made
    finally:
        if made.data.exists() and made.running():
            made.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


def health_of(server: ServerUnderTest) -> dict[str, Any]:
    """Status of the overall health and of the command service."""
    with server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {
            name: stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            for name in ("", "flashpoint.v1.CommandService")
        }


def wait_health(server: ServerUnderTest, wanted: Any) -> float:
    """Seconds until every checked service reports ``wanted``; fails after NOTICE_SECONDS."""
    started = time.monotonic()
    while time.monotonic() - started < NOTICE_SECONDS:
        if set(health_of(server).values()) == {wanted}:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(
        f"health did not become {health_pb2.HealthCheckResponse.ServingStatus.Name(wanted)} "
        f"within {NOTICE_SECONDS} s: {health_of(server)}"
    )


class Sender:
    """Sends incursion reports with fresh request ids; remembers what was acknowledged."""

    def __init__(self, server: ServerUnderTest) -> None:
        self.channel = server.channel()
        self.stub: Any = command_grpc.CommandServiceStub(self.channel)
        #: request id -> resource id, for every OK answer.
        self.acknowledged: dict[str, str] = {}
        self.lock = threading.Lock()

    def send(self, request_id: str | None = None) -> grpc.StatusCode:
        request_id = request_id or uuid.uuid4().hex
        cmd = command(c.ReportIncursion, request_id=request_id)
        try:
            answer = self.stub.ReportIncursion(tr.request_from_command(cmd), timeout=TIMEOUT)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
        with self.lock:
            self.acknowledged[request_id] = answer.id
        return grpc.StatusCode.OK


def test_outage_answers_unavailable_and_recovers_by_itself(cluster: Cluster) -> None:
    with running_server(cluster.url, metrics_port=free_port()) as server:
        sender = Sender(server)
        try:
            assert [sender.send() for _ in range(3)] == [grpc.StatusCode.OK] * 3
            assert set(health_of(server).values()) == {SERVING}
            samples = scrape(metrics_port(server))
            assert value(samples, "flashpoint_store_up") == 1
            assert value(samples, "flashpoint_store_pool_max") >= 1
            assert value(samples, "flashpoint_log_head") == server.app.head_position()

            cluster.stop("immediate")
            # A command already on its way when the store went: it waits out the store
            # client's retries, then must not claim success.
            caught: list[grpc.StatusCode] = []
            in_flight = threading.Thread(target=lambda: caught.append(sender.send()))
            in_flight.start()
            wait_health(server, NOT_SERVING)
            during = [sender.send() for _ in range(5)]
            assert during == [grpc.StatusCode.UNAVAILABLE] * 5
            assert value(scrape(metrics_port(server)), "flashpoint_store_up") == 0
            in_flight.join(timeout=TIMEOUT + 10)
            assert caught == [grpc.StatusCode.UNAVAILABLE]
            assert len(sender.acknowledged) == 3

            cluster.start()
            wait_health(server, SERVING)
            assert [sender.send() for _ in range(3)] == [grpc.StatusCode.OK] * 3
            # A retry of a command acknowledged before the outage is answered, not redone.
            first = next(iter(sender.acknowledged))
            assert sender.send(first) == grpc.StatusCode.OK
        finally:
            sender.channel.close()

        originators = Counter(str(n.originator_id) for n in server.app.read_log())
        assert len(sender.acknowledged) == 6
        for request_id, resource_id in sender.acknowledged.items():
            assert originators[resource_id] == 1, f"{resource_id} is in the log {originators}"
            receipt = server.app.find_receipt(receipt_id("local", request_id))
            assert receipt is not None, f"no receipt of {request_id}"
            assert str(receipt.resource_id) == resource_id
        assert len(list(server.app.receipts())) == 6


#: Bounds of the three outage figures (measured ones are far below; these are generous).
IN_FLIGHT_SECONDS = 10.0
NOTICE_BOUND_SECONDS = 4.0
RECOVERY_BOUND_SECONDS = 5.0


def test_outage_is_noticed_and_recovered_from_quickly(cluster: Cluster) -> None:
    """The three figures of an outage: how long a command in flight when the database
    stops takes to answer UNAVAILABLE, how long health stays SERVING into the outage, and
    how long calls stay UNAVAILABLE once the database is back."""
    with running_server(cluster.url) as server:
        sender = Sender(server)
        try:
            assert [sender.send() for _ in range(3)] == [grpc.StatusCode.OK] * 3
            cluster.stop("immediate")
            stopped = time.monotonic()
            caught: list[tuple[grpc.StatusCode, float]] = []

            def in_flight() -> None:
                code = sender.send()
                caught.append((code, time.monotonic() - stopped))

            thread = threading.Thread(target=in_flight)
            thread.start()
            wait_health(server, NOT_SERVING)
            noticed = time.monotonic() - stopped
            thread.join(timeout=TIMEOUT + 10)
            assert caught and caught[0][0] == grpc.StatusCode.UNAVAILABLE, caught

            cluster.start()
            restarted = time.monotonic()
            while sender.send() != grpc.StatusCode.OK:
                assert time.monotonic() - restarted < NOTICE_SECONDS, "no recovery"
                time.sleep(0.05)
            recovered = time.monotonic() - restarted
            sys.stdout.write(
                f"outage: in-flight answered {caught[0][0].name} after {caught[0][1]:.2f} s; "
                f"NOT_SERVING after {noticed:.2f} s; OK again {recovered:.2f} s after restart\n"
            )
            assert caught[0][1] < IN_FLIGHT_SECONDS
            assert noticed < NOTICE_BOUND_SECONDS
            assert recovered < RECOVERY_BOUND_SECONDS
        finally:
            sender.channel.close()
