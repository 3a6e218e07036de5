"""The ``flashpoint`` console script end to end, as real processes: serve, report over the
wire, read back, stop on SIGTERM; and the refusals a user sees at the command line."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api.auth import parse_tokens
from service.cli.main import EXIT_FAILED, EXIT_USAGE
from tests.api_support import clean_env, flashpoint, free_port, run_flashpoint

#: How long a server may take to start answering, and to stop after SIGTERM.
START_SECONDS = 20.0
STOP_SECONDS = 20.0
#: How long any one short-lived CLI command may run.
COMMAND_SECONDS = 60.0

INCURSION_FLAGS = [
    "--actor", "RUS", "--target", "POL", "--count", "19", "--intercepted", "3",
    "--source", "Reuters", "--reliability", "B", "--credibility", "2",
]  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_flashpoint(*args, timeout=COMMAND_SECONDS)


def store_url(directory: Path) -> str:
    return f"sqlite:///{directory}/fp.db"


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    address: str
    stderr: Path

    def log_lines(self) -> list[dict[str, Any]]:
        """The server's stderr, every line of which is a JSON object."""
        lines = [line for line in self.stderr.read_text().splitlines() if line.strip()]
        return [json.loads(line) for line in lines]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_SECONDS)


def wait_serving(served: Served) -> None:
    deadline = time.monotonic() + START_SECONDS
    with grpc.insecure_channel(served.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if served.process.poll() is not None:
                raise AssertionError(
                    f"the server exited with {served.process.returncode} before serving:\n"
                    + served.stderr.read_text()
                )
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                time.sleep(0.1)
                continue
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
            time.sleep(0.1)
    raise AssertionError(f"{served.address} did not report SERVING within {START_SECONDS} s")


@contextmanager
def serving(directory: Path, *serve_flags: str) -> Iterator[Served]:
    """``flashpoint --store ... serve --listen 127.0.0.1:<free port>``, SERVING; killed after."""
    port = free_port()
    stderr = directory / "serve.stderr"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [
                flashpoint(), "--store", store_url(directory),
                "serve", "--listen", f"127.0.0.1:{port}", *serve_flags,
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env=clean_env(),
        )  # fmt: skip
    served = Served(process=process, address=f"127.0.0.1:{port}", stderr=stderr)
    try:
        wait_serving(served)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_SECONDS)


class TestServe:
    def test_report_read_back_and_stop_on_sigterm(self, tmp_path: Path) -> None:
        """A served report reads back over the wire; SIGTERM stops the server with status 0
        and a final server.stopped log line."""
        with serving(tmp_path) as served:
            reported = run("report", "incursion", "--server", served.address, *INCURSION_FLAGS)
            assert reported.returncode == 0, reported.stderr
            result = json.loads(reported.stdout)
            assert result["resource"] == f"incidents/{result['id']}"
            assert result["version"] == 1
            assert result["position"] >= 1
            assert result["replayed"] is False

            read = run("query", "--server", served.address, "--json", "incident", result["id"])
            assert read.returncode == 0, read.stderr
            incident = json.loads(read.stdout)
            assert incident["name"] == result["resource"]
            assert incident["kind"] == "airspace_incursion"
            assert incident["actor"]["country"] == "RUS"
            assert incident["target"]["country"] == "POL"
            assert incident["details"]["count"] == 19
            assert incident["details"]["intercepted"] == 3
            assert incident["evidence"]["reliability"] == "B"
            assert incident["evidence"]["credibility"] == 2
            assert [source["name"] for source in incident["sources"]] == ["Reuters"]
            assert incident["reported_by"]["client"] == "flashpoint-cli"

            assert served.stop() == 0
            events = [line.get("event") for line in served.log_lines()]
            assert "server.started" in events
            assert "server.stopped" in events, events[-5:]
            assert events.index("server.started") < events.index("server.stopped")

    def test_the_server_logs_each_rpc_as_one_json_line(self, tmp_path: Path) -> None:
        """Each call leaves one canonical 'rpc' line with its method and final status code."""
        with serving(tmp_path) as served:
            missing = "incidents/00000000-0000-0000-0000-000000000001"
            read = run("query", "--server", served.address, "incident", missing)
            assert read.returncode == EXIT_FAILED
            assert missing in read.stderr
            assert served.stop() == 0
            rpcs = [line for line in served.log_lines() if line.get("event") == "rpc"]
        assert [(r["method"], r["code"]) for r in rpcs] == [
            ("/flashpoint.v1.QueryService/GetIncident", "NOT_FOUND")
        ]
        # The fields the line had through structlog.stdlib, kept by the native logger.
        (line,) = rpcs
        fields = "event level logger timestamp request_id principal method code duration_ms"
        assert {*fields.split(), "peer", "error"} <= set(line)
        assert line["level"] == "info"
        assert line["logger"] == "service.api.interceptors"
        assert len(line["request_id"]) == 32

    def test_a_cli_made_token_admits_its_holder_only(self, tmp_path: Path) -> None:
        """`flashpoint token` prints a tokens-file line; a server reading it admits the token
        and refuses a report without one."""
        made = run("token", "osint-pipeline", "reporter")
        assert made.returncode == 0, made.stderr
        line = made.stdout.strip()
        token = made.stderr.strip().splitlines()[-1]
        assert parse_tokens(line)[0].principal.name == "osint-pipeline"
        tokens_file = tmp_path / "tokens"
        tokens_file.write_text(line + "\n")
        with serving(tmp_path, "--tokens-file", str(tokens_file)) as served:
            refused = run("report", "incursion", "--server", served.address, *INCURSION_FLAGS)
            assert refused.returncode == EXIT_FAILED
            assert "UNAUTHENTICATED" in refused.stderr
            admitted = run(
                "report", "incursion", "--server", served.address, "--token", token,
                *INCURSION_FLAGS,
            )  # fmt: skip
            assert admitted.returncode == 0, admitted.stderr
            assert json.loads(admitted.stdout)["version"] == 1
            assert served.stop() == 0

    def test_a_public_address_without_tokens_is_refused(self, tmp_path: Path) -> None:
        """serve --listen 0.0.0.0:PORT without tokens exits at once, pointing to --insecure."""
        process = subprocess.run(
            [flashpoint(), "--store", store_url(tmp_path), "serve", "--listen",
             f"0.0.0.0:{free_port()}"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=COMMAND_SECONDS,
            check=False,
        )  # fmt: skip
        assert process.returncode == EXIT_USAGE
        assert "--insecure" in process.stderr


class TestCommandLine:
    def test_intercepted_above_count_is_a_usage_error(self, tmp_path: Path) -> None:
        """A local report with --count 2 --intercepted 3 exits 2 naming 'intercepted' and
        prints no result."""
        flags = [f if f != "19" else "2" for f in INCURSION_FLAGS]
        assert flags[flags.index("--count") + 1] == "2"
        process = run("--store", store_url(tmp_path), "report", "incursion", *flags)
        assert process.returncode == EXIT_USAGE
        assert "intercepted" in process.stderr
        assert process.stdout == ""

    def test_a_valid_local_report_is_recorded(self, tmp_path: Path) -> None:
        """The same report with a consistent count is recorded in the local store (exit 0)."""
        process = run("--store", store_url(tmp_path), "report", "incursion", *INCURSION_FLAGS)
        assert process.returncode == 0, process.stderr
        assert json.loads(process.stdout)["version"] == 1
        assert (tmp_path / "fp.db").exists()

    def test_help_lists_the_commands(self) -> None:
        """`flashpoint --help` exits 0 and names its commands."""
        process = run("--help")
        assert process.returncode == 0, process.stderr
        for name in ("report", "serve", "query", "token"):
            assert name in process.stdout
