"""The read-model disk fills up under a running server, and space comes back.

The views database lives on a tiny tmpfs of its own (the events database beside it does
not), filled to the last byte with a filler file: the projection worker's writes then fail
with "database or disk is full". The server must not spin on it (bounded log lines and
CPU), must report NOT_SERVING while it lasts, and must recover and catch up by itself once
the filler is removed. Needs root (to mount); skipped otherwise.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.domain import commands as c
from tests.api_support import free_port
from tests.factories import command
from tests.test_cli_serve import serving
from tests.test_metrics import scrape, value

pytestmark = pytest.mark.slow

#: How long health may take to notice the full disk, and the recovery.
NOTICE_SECONDS = 20.0
#: The window over which log lines and CPU are counted while the disk is full.
WINDOW_SECONDS = 3.0
TIMEOUT = 20.0
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at ``tmp_path / "tiny"``."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        pytest.skip("mounting a size-limited tmpfs needs root and mount(8)")
    folder = tmp_path / "tiny"
    folder.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run([umount, "-l", str(folder)], timeout=30, check=False)


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until the file system has no byte left."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(descriptor, chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(descriptor)
    return filler


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        status: int = answer.status
        return status


def wait_health(address: str, wanted: int) -> float:
    started = time.monotonic()
    while time.monotonic() - started < NOTICE_SECONDS:
        if health(address) == wanted:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"health did not become {wanted} within {NOTICE_SECONDS} s")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(stub: object, count: int) -> int:
    """Send ``count`` reports; how many were acknowledged."""
    acknowledged = 0
    template = command(c.ReportIncursion)
    for _ in range(count):
        request = tr.request_from_command(
            template.model_copy(update={"request_id": uuid.uuid4().hex})
        )
        try:
            stub.ReportIncursion(request, timeout=TIMEOUT)  # type: ignore[attr-defined]
        except grpc.RpcError:
            continue
        acknowledged += 1
    return acknowledged


def test_full_disk_backs_off_reports_not_serving_and_recovers(
    tmp_path: Path, tiny_disk: Path
) -> None:
    (tmp_path / "fp.views.db").symlink_to(tiny_disk / "fp.views.db")
    metrics = free_port()
    with serving(tmp_path, "--metrics-port", str(metrics)) as served:
        stderr, process = served.stderr, served.process
        with grpc.insecure_channel(served.address) as channel:
            stub = command_grpc.CommandServiceStub(channel)
            assert report(stub, 3) == 3
            filler = fill(tiny_disk)
            acknowledged = 3 + report(stub, 40)  # the events database still has room
            noticed = wait_health(served.address, NOT_SERVING)

            time.sleep(1.0)  # into the steady state of the failure
            lines_before = len(stderr.read_bytes().splitlines())
            cpu_before = cpu_seconds(process.pid)
            time.sleep(WINDOW_SECONDS)
            lines = len(stderr.read_bytes().splitlines()) - lines_before
            cpu = cpu_seconds(process.pid) - cpu_before
            assert health(served.address) == NOT_SERVING
            sys.stdout.write(
                f"disk full: NOT_SERVING after {noticed:.2f} s; {lines} log lines and "
                f"{cpu:.2f} s CPU in {WINDOW_SECONDS} s\n"
            )
            assert lines < 50, stderr.read_text()[-3000:]
            assert cpu < WINDOW_SECONDS / 3, cpu

            filler.unlink()
            recovered = wait_health(served.address, SERVING)
            deadline = time.monotonic() + NOTICE_SECONDS
            while time.monotonic() < deadline:
                samples = scrape(metrics)
                lags = [
                    sample for key, sample in samples.items()
                    if key[0] == "flashpoint_projection_lag_events"
                ]  # fmt: skip
                if lags and max(lags) == 0:
                    break
                time.sleep(0.2)
            assert lags and max(lags) == 0, samples
            assert value(samples, "flashpoint_log_head") >= acknowledged
            sys.stdout.write(f"space back: SERVING after {recovered:.2f} s\n")
            assert report(stub, 2) == 2
        events = [json.loads(line).get("event") for line in stderr.read_text().splitlines()]
        assert events.count("projections.store_failing") == 1, events[-50:]
        assert events.count("projections.store_recovered") == 1, events[-50:]
        assert served.stop() == 0
