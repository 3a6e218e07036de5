"""The README's two set-up commands stay true: CI runs the test one, the serve one serves."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.api_support import free_port

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> tuple[str, str]:
    """The first shell block after 'Run the service' and after 'Run the tests'."""
    text = (ROOT / "README.md").read_text()
    blocks = {}
    for heading in ("Run the service", "Run the tests"):
        after = text[text.index(heading) :]
        match = re.search(r"```sh\n(.+?)\n```", after, re.DOTALL)
        assert match, f"no command block after {heading!r}"
        blocks[heading] = match.group(1).strip()
    return blocks["Run the service"], blocks["Run the tests"]


def wait_serving(address: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert process.poll() is None, "the server exited before serving"
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise AssertionError(f"{address} did not report SERVING within {seconds} s")


class TestReadme:
    def test_ci_runs_exactly_the_readme_test_command(self) -> None:
        _, test_command = readme_commands()
        ci = (ROOT / ".ci" / "run").read_text().splitlines()
        assert test_command in [line.strip() for line in ci]

    def test_the_readme_serve_command_serves_on_the_embedded_store(self, tmp_path: Path) -> None:
        """`scripts/serve` installs, opens a SQLite file, serves, and stops cleanly."""
        serve_command, _ = readme_commands()
        port = free_port()
        process = subprocess.Popen(
            [*serve_command.split(), "--listen", f"127.0.0.1:{port}"],
            cwd=tmp_path if serve_command.startswith("/") else ROOT,
            env={**os.environ, "FLASHPOINT_STORE": f"sqlite:///{tmp_path}/readme.db"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_serving(f"127.0.0.1:{port}", process, seconds=120)
            assert (tmp_path / "readme.db").exists()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def readme_cli_commands() -> list[list[str]]:
    """Every ``.venv/bin/flashpoint …`` command of the README's shell blocks, as arguments
    (continuation lines joined, comments and redirections dropped)."""
    import shlex

    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.+?)\n```", text, re.DOTALL):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" # ", 1)[0].split(">", 1)[0].strip()
            if line.startswith(".venv/bin/flashpoint"):
                commands.append(shlex.split(line)[1:])
    return commands


class TestReadmeCommands:
    def test_every_documented_cli_command_parses(self) -> None:
        """Flags in the README exist where the README puts them (argparse exits 2 on one
        that does not)."""
        from service.cli.main import build_parser

        commands = readme_cli_commands()
        assert len(commands) > 20, commands
        for args in commands:
            if args == ["--version"]:
                continue  # argparse prints it and exits 0
            args = [arg.replace("<id>", "00000000-0000-0000-0000-000000000001") for arg in args]
            try:
                parsed = build_parser().parse_args(args)
            except SystemExit as exit_:
                raise AssertionError(
                    f"the README's `flashpoint {' '.join(args)}` does not parse"
                ) from exit_
            assert getattr(parsed, "handler", None) is not None, args

    def test_the_documented_new_commands_are_there(self) -> None:
        documented = [" ".join(args) for args in readme_cli_commands()]
        for needle in ("--until", "watch ", "--version", "--all"):
            assert any(needle in command for command in documented), needle
