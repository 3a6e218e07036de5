"""Scale-out on PostgreSQL, end to end: three real `flashpoint serve` processes and two
`flashpoint project` workers share one store while client threads submit thousands of
commands across the servers; the owning worker is SIGKILLed and a server restarted mid-way.
Afterwards every acknowledged command is in the log exactly once, the log verifies, and
every read model equals a clean rebuild.

Nothing is mocked: the processes are the installed console script, the store a real server.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import grpc
import pytest

from projections.readmodels import ALL
from service.adapters.eventlog import RecorderEventSource
from service.application.handlers import CommandResult
from service.audit.verify import verify
from service.bootstrap import Flashpoint, build
from service.client import ApiError, FlashpointClient
from service.domain import commands as c
from service.settings import Settings
from tests.api_support import clean_env, flashpoint, free_port
from tests.factories import command
from tests.test_cli_serve import Served, wait_serving
from tests.test_projection_runtime import (
    PROCESS_SECONDS,
    live,
    positions,
    snapshot,
    wait_until,
)
from tests.test_projection_workers import NAMES, Worker, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SERVERS = 3
THREADS = 6
#: Commands per client thread (before the deliberate retries).
PER_THREAD = 500
#: Failures a client retries under the same request id on another server.
TRANSIENT = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)
#: How long one command may keep failing transiently (a restart is far shorter).
RETRY_SECONDS = 60.0
#: How long the surviving worker may take to catch up once the clients stop.
CATCH_UP_SECONDS = 90.0
RECEIPT_TYPE = "CommandAccepted"
#: New incidents, and changes to an incident its thread reported earlier.
REPORTS: list[type[c.Command]] = [c.ReportIncursion, c.ReportStrike]
LIFECYCLE: list[type[c.Command]] = [c.CorroborateIncident, c.DisputeIncident]


class Server:
    """A `flashpoint serve --projections external` subprocess on a fixed port."""

    def __init__(self, store_url: str, port: int, stderr: Path) -> None:
        self.store_url = store_url
        self.address = f"127.0.0.1:{port}"
        self.stderr = stderr
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.stderr.open("ab") as sink:
            return subprocess.Popen(
                [
                    flashpoint(), "--store", self.store_url, "--log-level", "warning",
                    "serve", "--listen", self.address, "--projections", "external",
                ],
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env=clean_env(),
            )  # fmt: skip

    def wait_serving(self) -> None:
        """Block until the health service reports SERVING (bounded)."""
        wait_serving(Served(process=self.process, address=self.address, stderr=self.stderr))

    def stop(self) -> int:
        """SIGTERM, then wait (bounded) for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def restart(self) -> None:
        """Stop on SIGTERM and start again on the same port."""
        code = self.stop()
        assert code == 0, f"{self.address} exited {code}:\n{self.stderr.read_text()}"
        self.process = self._spawn()
        self.wait_serving()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@dataclass
class Acks:
    """What one client thread was told: every result, keyed by its request id."""

    results: dict[str, CommandResult] = field(default_factory=dict)
    replays: list[tuple[CommandResult, CommandResult]] = field(default_factory=list)
    transient: int = 0
    errors: list[str] = field(default_factory=list)


def send(clients: list[FlashpointClient], turn: int, cmd: c.Command, acks: Acks) -> CommandResult:
    """Send ``cmd`` (its request id fixed), moving to the next server on transient failure."""
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        client = clients[turn % len(clients)]
        try:
            return client.execute(cmd)
        except ApiError as error:
            if error.code not in TRANSIENT or time.monotonic() > deadline:
                raise
            acks.transient += 1
            turn += 1
            time.sleep(0.05)


def client_thread(
    addresses: list[str], index: int, stop: threading.Event, progress: list[int], acks: Acks
) -> None:
    """Submit PER_THREAD commands round-robin over the servers; record every answer."""
    rng = random.Random(index)
    clients = [FlashpointClient(address, timeout=10.0, attempts=3) for address in addresses]
    mine: list[UUID] = []
    sent: list[c.Command] = []
    try:
        for turn in range(PER_THREAD):
            if stop.is_set():
                return
            roll = rng.random()
            cmd: c.Command
            if mine and roll < 0.3:
                incident = rng.choice(mine)
                change: type[c.Command] = rng.choice(LIFECYCLE)
                cmd = command(change, incident_id=incident, request_id=uuid.uuid4().hex)
            elif mine and roll < 0.33:
                incident = mine.pop(rng.randrange(len(mine)))
                cmd = command(c.RetractIncident, incident_id=incident, request_id=uuid.uuid4().hex)
            else:
                report: type[c.Command] = rng.choice(REPORTS)
                cmd = command(report, request_id=uuid.uuid4().hex)
            result = send(clients, turn, cmd, acks)
            assert cmd.request_id is not None
            acks.results[cmd.request_id] = result
            sent.append(cmd)
            if isinstance(cmd, c.ReportIncursion | c.ReportStrike):
                mine.append(result.id)
            if turn % 25 == 24:  # a deliberate retry of an earlier, acknowledged request
                again = rng.choice(sent)
                assert again.request_id is not None
                replayed = send(clients, turn + 1, again, acks)
                acks.replays.append((acks.results[again.request_id], replayed))
            progress[index] = turn + 1
    except Exception as error:  # reported by the test, not lost in the thread
        acks.errors.append(f"thread {index}: {type(error).__name__}: {error}")
    finally:
        for client in clients:
            client.close()


def start_workers(store_url: str, tmp_path: Path, started: list[Worker]) -> tuple[Worker, Worker]:
    """An owner of every projection (started first) and a standby."""
    owner = Worker(store_url, tmp_path / "owner.log")
    started.append(owner)
    wait_for(lambda: owner.acquired() == set(NAMES), PROCESS_SECONDS, owner)
    standby = Worker(store_url, tmp_path / "standby.log")
    started.append(standby)
    wait_for(standby.standing_by, PROCESS_SECONDS, owner, standby)
    return owner, standby


@pytest.fixture
def service(postgres_url: str) -> Iterator[Flashpoint]:
    service = build(Settings(store=postgres_url), follow=False)
    try:
        yield service
    finally:
        service.close()


def test_servers_and_workers_scale_out_without_losing_or_duplicating_a_command(
    postgres_url: str, service: Flashpoint, tmp_path: Path
) -> None:
    """Thousands of commands over 3 servers and 2 workers, with a kill and a restart."""
    workers: list[Worker] = []
    servers: list[Server] = []
    threads: list[threading.Thread] = []
    stop = threading.Event()
    try:
        owner, standby = start_workers(postgres_url, tmp_path, workers)
        for number in range(SERVERS):
            servers.append(Server(postgres_url, free_port(), tmp_path / f"serve{number}.log"))
        for server in servers:
            server.wait_serving()

        addresses = [server.address for server in servers]
        progress = [0] * THREADS
        acks = [Acks() for _ in range(THREADS)]
        threads = [
            threading.Thread(
                target=client_thread, args=(addresses, i, stop, progress, acks[i]), daemon=True
            )
            for i in range(THREADS)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()

        total = THREADS * PER_THREAD

        def reached(count: int) -> bool:
            return sum(progress) >= count or any(a.errors for a in acks)

        assert wait_until(lambda: reached(total // 3), 60), progress
        owner.process.send_signal(signal.SIGKILL)
        assert owner.process.wait(timeout=30) == -signal.SIGKILL
        assert wait_until(lambda: reached(total // 2), 60), progress
        assert not [a.errors for a in acks if a.errors]
        servers[1].restart()
        at_restart = sum(progress)
        # The restarted server must see traffic again, so it is back before the clients end.
        assert at_restart < total * 0.95, f"the restart ended too late: {progress}"

        for thread in threads:
            thread.join(timeout=max(1.0, 110 - (time.monotonic() - started)))
        assert not any(thread.is_alive() for thread in threads), f"clients stuck: {progress}"
        errors = [error for a in acks for error in a.errors]
        assert not errors, errors
        assert progress == [PER_THREAD] * THREADS

        # The standby took everything over and caught up with the log, and the chain too.
        wait_for(lambda: standby.acquired() == set(NAMES), 30, standby)
        head = service.app.head_position()
        wait_for(
            lambda: (
                all(p >= head for p in positions(service.views).values())
                and service.log_tables.chain_head()[0] >= head
            ),
            CATCH_UP_SECONDS,
            standby,
        )
        for server in servers:
            assert server.stop() == 0, server.stderr.read_text()
        standby.process.send_signal(signal.SIGTERM)
        assert standby.process.wait(timeout=30) == 0, standby.describe()
        assert service.app.head_position() == head, "nothing is appended after the clients"

        results = {rid: result for a in acks for rid, result in a.results.items()}
        assert len(results) == total, "request ids are unique"
        check_log(service, results)
        for original, replayed in (pair for a in acks for pair in a.replays):
            assert replayed.replayed
            assert (replayed.resource, replayed.id, replayed.version) == (
                original.resource,
                original.id,
                original.version,
            )
            assert replayed.position == original.position, (original, replayed)

        report = verify(service.log_tables)
        assert report.intact, report.summary()
        assert report.events == head and report.unchained == 0, report.summary()

        views = service.views
        followed = {p.name: snapshot(views, p, live(views, p.name)) for p in ALL}
        for projection in ALL:
            service.worker.rebuild(projection.name)
            rebuilt = snapshot(views, projection, live(views, projection.name))
            assert followed[projection.name] == rebuilt, projection.name
        assert any(followed[p.name][0] for p in ALL), "the views are not empty"
        print(  # noqa: T201 - a record of the run's scale in -s output
            f"{total} commands, {head} events, "
            f"{sum(a.transient for a in acks)} transient failures retried, "
            f"{at_restart} done at the restart, "
            f"{time.monotonic() - started:.1f}s"
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        for server in servers:
            server.kill()
        for worker in workers:
            worker.kill()


def check_log(service: Flashpoint, results: dict[str, CommandResult]) -> None:
    """Each acknowledged (resource, version) is in the log once; nothing else is; one
    receipt per request id, naming the acknowledged resource and version."""
    versions: dict[str, list[int]] = defaultdict(list)
    receipts: dict[str, tuple[str, int, int]] = {}
    receipt_count: Counter[str] = Counter()
    for event in RecorderEventSource(service.app.recorder).iterate():
        # Receipts are recorded beside the log now, never in it.
        assert not event.type.endswith(RECEIPT_TYPE), event
        versions[event.originator_id].append(event.version)
    for receipt in service.app.receipts():
        receipt_count[receipt.request_id] += 1
        assert receipt.position is not None, receipt
        receipts[receipt.request_id] = (
            receipt.resource,
            receipt.resource_version,
            receipt.position,
        )

    assert not [rid for rid, n in receipt_count.items() if n > 1], "a receipt is duplicated"
    assert set(receipts) == set(results), "receipts differ from acknowledged request ids"
    acknowledged: dict[str, set[int]] = defaultdict(set)
    for request_id, result in results.items():
        acknowledged[str(result.id)].add(result.version)
        resource, version, position = receipts[request_id]
        assert (resource, version) == (result.resource, result.version), request_id
        assert position == result.position, (request_id, position, result)
    for resource_id, stored in versions.items():
        assert len(stored) == len(set(stored)), f"{resource_id} has a version twice"
    assert {k: set(v) for k, v in versions.items()} == dict(acknowledged), (
        "the log holds exactly the acknowledged (resource, version) pairs"
    )
