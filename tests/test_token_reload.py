"""The tokens file is read again when it changes (and on SIGHUP): a removed user is refused
within a bound, a new one admitted, and a file that does not parse keeps the tokens in force."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import structlog

from service.api.auth import Authenticator, new_token
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.server import create_server
from service.bootstrap import build
from service.settings import Settings
from tests.test_cli_serve import serving

#: How long a change of the tokens file may take to apply (the check runs about every second).
APPLY_SECONDS = 10.0
TIMEOUT = 10.0


def code_of(address: str, token: str) -> grpc.StatusCode:
    """The status of one analyst's query with ``token`` (OK once authenticated)."""
    with grpc.insecure_channel(address) as channel:
        stub = query_grpc.QueryServiceStub(channel)
        try:
            stub.ListIncidents(
                query_pb.ListIncidentsRequest(page_size=1),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=TIMEOUT,
            )
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
    return grpc.StatusCode.OK


def eventually(address: str, token: str, wanted: grpc.StatusCode) -> float:
    """Seconds until ``token``'s calls answer ``wanted``; fails after APPLY_SECONDS."""
    started = time.monotonic()
    while time.monotonic() - started < APPLY_SECONDS:
        if code_of(address, token) == wanted:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{token[:8]}... did not get {wanted.name} within {APPLY_SECONDS} s")


def rewrite(path: Path, *lines: str) -> None:
    """Replace the file as editors and deploy tools do: a new file renamed over the old."""
    fresh = path.with_suffix(".new")
    fresh.write_text("".join(line + "\n" for line in lines))
    os.replace(fresh, path)


@contextmanager
def server_with_tokens(tmp_path: Path, tokens_file: Path) -> Iterator[str]:
    settings = Settings(
        store=f"sqlite:///{tmp_path}/fp.db", listen="127.0.0.1:0", tokens_file=str(tokens_file)
    )
    service = build(settings, follow=True)
    running = create_server(settings, service, Authenticator.load(str(tokens_file), None))
    running.start()
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        running.stop(grace=1.0)
        service.close()


def test_removed_user_is_refused_and_new_user_admitted(tmp_path: Path) -> None:
    alice, alice_line = new_token("alice", ["analyst"])
    bob, bob_line = new_token("bob", ["analyst"])
    carol, carol_line = new_token("carol", ["analyst"])
    tokens_file = tmp_path / "tokens"
    rewrite(tokens_file, alice_line, bob_line)
    with server_with_tokens(tmp_path, tokens_file) as address:
        assert code_of(address, alice) == grpc.StatusCode.OK
        assert code_of(address, carol) == grpc.StatusCode.UNAUTHENTICATED

        rewrite(tokens_file, bob_line, carol_line)
        eventually(address, alice, grpc.StatusCode.UNAUTHENTICATED)
        assert code_of(address, carol) == grpc.StatusCode.OK
        assert code_of(address, bob) == grpc.StatusCode.OK

        # Everyone removed: nobody is admitted (auth does not turn off).
        rewrite(tokens_file, "# nobody")
        eventually(address, bob, grpc.StatusCode.UNAUTHENTICATED)
        assert code_of(address, carol) == grpc.StatusCode.UNAUTHENTICATED


def test_a_file_that_does_not_parse_keeps_the_tokens_in_force(tmp_path: Path) -> None:
    alice, alice_line = new_token("alice", ["analyst"])
    bob, bob_line = new_token("bob", ["analyst"])
    tokens_file = tmp_path / "tokens"
    rewrite(tokens_file, alice_line)
    with server_with_tokens(tmp_path, tokens_file) as address:
        assert code_of(address, alice) == grpc.StatusCode.OK
        with structlog.testing.capture_logs() as logs:
            rewrite(tokens_file, bob_line, "this is not a token line")
            time.sleep(2.5)  # beyond the check interval: the broken file was read
            assert code_of(address, alice) == grpc.StatusCode.OK
            assert code_of(address, bob) == grpc.StatusCode.UNAUTHENTICATED
        failures = [entry for entry in logs if entry["event"] == "auth.tokens_reload_failed"]
        assert len(failures) == 1, logs  # once per change of the file, not per call
        assert failures[0]["log_level"] == "error"
        # Fixed: it applies.
        rewrite(tokens_file, bob_line)
        eventually(address, alice, grpc.StatusCode.UNAUTHENTICATED)
        assert code_of(address, bob) == grpc.StatusCode.OK


def test_sighup_reloads_the_tokens_file_of_a_cli_server(tmp_path: Path) -> None:
    alice, alice_line = new_token("alice", ["analyst"])
    bob, bob_line = new_token("bob", ["analyst"])
    tokens_file = tmp_path / "tokens"
    rewrite(tokens_file, alice_line)
    with serving(tmp_path, "--tokens-file", str(tokens_file)) as served:
        process, stderr = served.process, served.stderr
        assert code_of(served.address, alice) == grpc.StatusCode.OK
        rewrite(tokens_file, bob_line)
        process.send_signal(signal.SIGHUP)
        eventually(served.address, bob, grpc.StatusCode.OK)
        assert code_of(served.address, alice) == grpc.StatusCode.UNAUTHENTICATED
        assert process.poll() is None, stderr.read_text()[-2000:]
        events = [line.get("event") for line in served.log_lines()]
        assert "auth.tokens_reloaded" in events, events
        assert served.stop() == 0
