"""Crash safety under load: `flashpoint serve` (embedded projections: its follower process
follows the log) is SIGKILLed while client threads send commands, then started again on the
same store and port. The clients retry every transient failure under the same request id,
so each command is eventually acknowledged; afterwards every acknowledged command is in the
log exactly once (one receipt per request id, each acknowledged version once, nothing
else), the killed server's follower ended by itself, and the new one catches up the read
models and the audit chain. On SQLite, and on PostgreSQL when FLASHPOINT_TEST_POSTGRES is
set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.api import translation as tr
from service.audit.verify import verify
from service.bootstrap import Flashpoint, build
from service.client import FlashpointClient
from service.domain import commands as c
from service.settings import Settings
from tests.api_support import clean_env, flashpoint, free_port
from tests.factories import command
from tests.test_cli_serve import Served, wait_serving
from tests.test_projection_runtime import positions, wait_until
from tests.test_scale_out import Acks, check_log, send

pytestmark = pytest.mark.slow

THREADS = 6
#: Commands per client thread.
PER_THREAD = 120
#: How long the restarted follower may take to catch the read models and chain up.
CATCH_UP_SECONDS = 60.0


class Server:
    """`flashpoint serve` with its default, embedded projections, on a fixed port."""

    def __init__(self, store_url: str, stderr: Path) -> None:
        self.store_url = store_url
        self.address = f"127.0.0.1:{free_port()}"
        self.stderr = stderr
        self.process = self.spawn()

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.stderr.open("ab") as sink:
            process = subprocess.Popen(
                [
                    flashpoint(), "--store", self.store_url, "--log-level", "warning",
                    "serve", "--listen", self.address,
                ],
                stdout=subprocess.DEVNULL,
                stderr=sink,
                env=clean_env(),
            )  # fmt: skip
        wait_serving(Served(process=process, address=self.address, stderr=self.stderr))
        return process

    def followers(self) -> list[int]:
        """The pids of this server's follower processes (its children following the log)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid and (
                b"run_follower" in argv
            ):
                found.append(int(entry))
        return found

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def client_thread(address: str, index: int, progress: list[int], acks: Acks) -> None:
    """PER_THREAD commands (reports, and corroborations of this thread's incidents), each
    retried under its request id until acknowledged."""
    clients = [FlashpointClient(address, timeout=10.0, attempts=3)]
    mine: list[uuid.UUID] = []
    try:
        for turn in range(PER_THREAD):
            cmd: c.Command
            if mine and turn % 4 == 3:
                cmd = command(
                    c.CorroborateIncident, incident_id=mine[-1], request_id=uuid.uuid4().hex,
                    source={"name": f"source {index}-{turn}"},
                )  # fmt: skip
            else:
                cmd = command(c.ReportIncursion, request_id=uuid.uuid4().hex)
            result = send(clients, 0, cmd, acks)
            assert cmd.request_id is not None
            acks.results[cmd.request_id] = result
            if isinstance(cmd, c.ReportIncursion):
                mine.append(result.id)
            progress[index] = turn + 1
    except Exception as error:  # reported by the test, not lost in the thread
        acks.errors.append(f"thread {index}: {type(error).__name__}: {error}")
    finally:
        clients[0].close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/fp.db"
    if not os.environ.get("FLASHPOINT_TEST_POSTGRES"):
        pytest.skip("FLASHPOINT_TEST_POSTGRES is not set")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def service(store_url: str) -> Iterator[Flashpoint]:
    # Made first, so the servers and this reader share one schema of tables.
    made = build(Settings(store=store_url))
    try:
        yield made
    finally:
        made.close()


def test_sigkill_under_load_loses_and_duplicates_no_acknowledged_command(
    store_url: str, service: Flashpoint, tmp_path: Path
) -> None:
    server = Server(store_url, tmp_path / "serve.log")
    progress = [0] * THREADS
    acks = [Acks() for _ in range(THREADS)]
    threads = [
        threading.Thread(
            target=client_thread, args=(server.address, i, progress, acks[i]), daemon=True
        )
        for i in range(THREADS)
    ]
    try:
        for thread in threads:
            thread.start()
        total = THREADS * PER_THREAD
        assert wait_until(lambda: sum(progress) >= total // 3, 120), progress
        followers = server.followers()
        assert len(followers) == 1, followers
        server.process.send_signal(signal.SIGKILL)
        assert server.process.wait(timeout=30) == -signal.SIGKILL
        at_kill = sum(progress)
        # Its follower is not left behind holding the store: it sees its server gone.
        assert wait_until(lambda: not alive(followers[0]), 30), "the follower outlived its server"
        time.sleep(0.5)  # clients meet a dead port for a while, as in a real crash
        server.process = server.spawn()

        for thread in threads:
            thread.join(timeout=180)
        assert not any(thread.is_alive() for thread in threads), f"clients stuck: {progress}"
        errors = [error for a in acks for error in a.errors]
        assert not errors, errors
        assert progress == [PER_THREAD] * THREADS
        assert at_kill < total, "the kill came after the clients ended"

        head = service.app.head_position()
        assert wait_until(
            lambda: (
                all(p >= head for p in positions(service.views).values())
                and service.log_tables.chain_head()[0] >= head
            ),
            CATCH_UP_SECONDS,
        ), (positions(service.views), service.log_tables.chain_head(), head)
        assert server.stop() == 0, server.stderr.read_text()[-3000:]

        results = {rid: result for a in acks for rid, result in a.results.items()}
        assert len(results) == total
        check_log(service, results)
        report = verify(service.log_tables)
        assert report.intact, report.summary()
        assert report.events == head, report.summary()
        print(  # noqa: T201 - a record of the run in -s output
            f"{total} commands acknowledged, {head} events, {at_kill} before the kill, "
            f"{sum(a.transient for a in acks)} transient failures retried"
        )
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=30)
        for thread in threads:
            thread.join(timeout=15)


def test_a_follower_that_dies_is_restarted_and_catches_up(tmp_path: Path) -> None:
    """SIGKILL the follower process alone: the server logs it, starts another, and a
    query waiting for the position of a command made meanwhile is answered."""
    server = Server(f"sqlite:///{tmp_path}/fp.db", tmp_path / "serve.log")
    client = FlashpointClient(server.address, timeout=30.0)
    try:
        client.execute(command(c.ReportIncursion, request_id="before"))
        (first,) = server.followers()
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: not alive(first), 10)
        made = client.execute(command(c.ReportIncursion, request_id="meanwhile"))
        assert wait_until(lambda: len(server.followers()) == 1, 30), server.stderr.read_text()
        assert server.followers() != [first]
        # Answered only once the new follower has folded it (min_position waits).
        answer = client.unary(
            "query", "GetEscalation",
            tr.query_pb.GetEscalationRequest(country="POL", min_position=made.position),
        )  # fmt: skip
        assert answer.position >= made.position
        assert answer.escalation.score > 0
        assert "projections.process_exited" in server.stderr.read_text()
    finally:
        client.close()
        assert server.stop() == 0, server.stderr.read_text()[-3000:]
