"""``flashpoint serve`` on an address it cannot have: a busy port (another server, even on
another store) or an impossible one fails at once with one clear line and exit code 2,
rather than starting silently and splitting connections, or running on a random port."""

from __future__ import annotations

import socket
from pathlib import Path

from service.cli.main import EXIT_USAGE
from tests.api_support import run_flashpoint
from tests.test_cli_serve import serving, store_url

#: How long a refused ``serve`` may take to exit.
REFUSE_SECONDS = 60.0


def flashpoint_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("flashpoint:")]


def test_second_server_on_a_busy_port_is_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with serving(first) as served:
        refused = run_flashpoint(
            "--store", store_url(second), "serve", "--listen", served.address,
            timeout=REFUSE_SECONDS,
        )  # fmt: skip
        assert refused.returncode == EXIT_USAGE, refused.stderr[-2000:]
        errors = flashpoint_errors(refused.stderr)
        assert len(errors) == 1, refused.stderr[-2000:]
        assert served.address in errors[0] and "in use" in errors[0], errors
        assert served.process.poll() is None  # the first one still serves


def test_busy_port_held_by_another_program_is_refused(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        refused = run_flashpoint(
            "--store", store_url(tmp_path), "serve", "--listen", address, timeout=REFUSE_SECONDS
        )
    assert refused.returncode == EXIT_USAGE, refused.stderr[-2000:]
    assert address in refused.stderr and "in use" in refused.stderr


def test_workers_on_a_busy_port_are_refused(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with serving(first) as served:
        refused = run_flashpoint(
            "--store", store_url(second), "serve", "--listen", served.address,
            "--workers", "2", timeout=REFUSE_SECONDS,
        )  # fmt: skip
        assert refused.returncode == EXIT_USAGE, refused.stderr[-2000:]
        assert served.address in refused.stderr and "in use" in refused.stderr


def test_impossible_ports_are_refused(tmp_path: Path) -> None:
    for listen in ("127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:http", "127.0.0.1", ":"):
        refused = run_flashpoint(
            "--store", store_url(tmp_path), "serve", "--listen", listen, timeout=REFUSE_SECONDS
        )
        assert refused.returncode == EXIT_USAGE, (listen, refused.stderr[-2000:])
        errors = flashpoint_errors(refused.stderr)
        assert len(errors) == 1, (listen, refused.stderr[-2000:])
        assert listen in errors[0] and "port" in errors[0].lower(), errors
