"""``flashpoint serve --workers N``: N server processes on one port, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import grpc

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.domain import commands as c
from tests.api_support import clean_env, flashpoint, free_port
from tests.factories import command
from tests.test_cli_serve import STOP_SECONDS, Served, wait_serving


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_two_workers_serve_one_port_and_stop_on_sigterm(tmp_path: Path) -> None:
    """Two workers start and answer on one port; commands over several connections are all
    recorded; SIGTERM to the parent stops every worker and the parent exits with 0."""
    port = free_port()
    stderr = tmp_path / "serve.stderr"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [
                flashpoint(), "--store", f"sqlite:///{tmp_path}/fp.db",
                "serve", "--listen", f"127.0.0.1:{port}", "--workers", "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=clean_env(),
        )  # fmt: skip
    served = Served(process=process, address=f"127.0.0.1:{port}", stderr=stderr)
    try:
        wait_serving(served)
        deadline = time.monotonic() + 20
        while len(children_of(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = children_of(process.pid)
        assert len(workers) == 2, (workers, process.poll(), stderr.read_text()[-3000:])
        # The first worker may answer while the second is still starting (a loaded
        # machine): SIGTERM then stops a worker that never served.
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and [line.get("event") for line in served.log_lines()].count("server.started") < 2
        ):
            time.sleep(0.1)
        # Every worker binds the port: wait until both answer (each connection goes to one).
        template = command(c.ReportIncursion)
        results = []
        for _ in range(8):
            with grpc.insecure_channel(served.address) as channel:
                stub = command_grpc.CommandServiceStub(channel)
                request = tr.request_from_command(
                    template.model_copy(update={"request_id": uuid.uuid4().hex})
                )
                results.append(stub.ReportIncursion(request, timeout=20))  # type: ignore[arg-type]
        assert len({result.name for result in results}) == 8
        assert all(result.version == 1 for result in results)

        assert served.stop() == 0, stderr.read_text()[-2000:]
        assert not any(alive(pid) for pid in workers)
        events = [line.get("event") for line in served.log_lines()]
        assert events.count("server.started") == 2, events
        assert "server.workers_started" in events
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
        for pid in children_of(process.pid):  # pragma: no cover - only after a failure
            os.kill(pid, signal.SIGKILL)


def test_workers_refuse_port_zero(tmp_path: Path) -> None:
    """Workers need a fixed port to share: port 0 is refused at once."""
    refused = subprocess.run(
        [flashpoint(), "--store", f"sqlite:///{tmp_path}/fp.db", "serve",
         "--listen", "127.0.0.1:0", "--workers", "2"],
        capture_output=True, text=True, env=clean_env(), timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "fixed port" in refused.stderr


def test_a_stop_while_the_workers_start_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM as soon as the workers are started (before they can handle it) stops with 0."""
    port = free_port()
    stderr = tmp_path / "serve.stderr"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [
                flashpoint(), "--store", f"sqlite:///{tmp_path}/fp.db",
                "serve", "--listen", f"127.0.0.1:{port}", "--workers", "2",
            ],
            stdout=subprocess.DEVNULL, stderr=sink, env=clean_env(),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "server.workers_started" not in stderr.read_text():
            assert time.monotonic() < deadline and process.poll() is None, stderr.read_text()
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_SECONDS) == 0, stderr.read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_SECONDS)
