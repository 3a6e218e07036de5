"""Sequential ReportIncursion calls per second against a running server on the embedded store.

    scripts/bench api [--calls 2000]

Starts ``flashpoint serve`` as a subprocess on a fresh SQLite file (projections and the audit
chain following in-process, as in production), then one client sends reports one after
another, each with its own request id and a deadline. The baseline, in the same run and
over the same channel, is the gRPC health check: the transport's own round trip.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.domain import commands as c
from tests.api_support import free_port
from tests.factories import command


def wait_serving(stub: health_pb2_grpc.HealthStub, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                return
        except grpc.RpcError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def timed(calls: int, call: object) -> list[float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        latencies.append(time.perf_counter() - started)
    return latencies


def report(label: str, latencies: list[float], baseline: float | None) -> float:
    rate = len(latencies) / sum(latencies)
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    ratio = f"{rate / baseline:8.2f}" if baseline else f"{'1.00':>8}"
    sys.stdout.write(f"{label:34}{rate:10,.0f}{ratio}{p50:9.2f}{p99:9.2f}\n")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="flashpoint-bench-api-"))
    port = free_port()
    flashpoint = shutil.which("flashpoint", path=os.path.dirname(sys.executable)) or "flashpoint"
    server = subprocess.Popen(
        [flashpoint, "--store", f"sqlite:///{folder}/bench.db", "--log-level", "warning",
         "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            wait_serving(health)
            stub = command_grpc.CommandServiceStub(channel)
            template = command(c.ReportIncursion)

            def report_once() -> None:
                request = tr.request_from_command(
                    template.model_copy(update={"request_id": uuid.uuid4().hex})
                )
                stub.ReportIncursion(request, timeout=10)  # type: ignore[arg-type]

            def check_once() -> None:
                health.Check(health_pb2.HealthCheckRequest(), timeout=10)

            timed(100, check_once)  # warm up both paths
            timed(100, report_once)
            sys.stdout.write(
                f"sequential calls, one client, embedded SQLite store ({args.calls:,} each)\n"
                f"{'':34}{'calls/s':>10}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}\n"
            )
            baseline = report("baseline: gRPC health check", timed(args.calls, check_once), None)
            report("ReportIncursion", timed(args.calls, report_once), baseline)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
