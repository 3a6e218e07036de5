"""Commands/s with and without live subscribers, and their delivery latency.

    scripts/bench subscribe [--commands 1500] [--writers 8] [--subscribers 8]

Starts ``flashpoint serve`` as a subprocess on a fresh SQLite file (projections and the
audit chain following in-process, as in production). In one run, the same writers (a
thread and a channel each) record ``--commands`` ReportIncursion commands three times:

- with no subscriber: the baseline;
- with ``--subscribers`` live SubscribeEvents streams, each read as fast as it comes: the
  commands/s beside the baseline, and the delivery latency of every event to every
  subscriber (p50/p99), from the moment the writer had its answer (the event was
  committed) and from the moment it sent the command;
- with one stalled subscriber, which opens its stream and then reads nothing (its
  transport takes no more than a kilobyte ahead): the commands/s beside the baseline, and
  the server's resident memory before and after (the subscriber's buffer is bounded; once
  it is full it would read the store at its own pace).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.domain import commands as c
from tests.api_support import free_port
from tests.benchmarks.bench_api import wait_serving
from tests.factories import command


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def write(
    address: str, writers: int, commands: int
) -> tuple[float, dict[int, tuple[float, float]]]:
    """Record ``commands`` reports from ``writers`` threads; the commands/s and, for each
    position, when its command was sent and answered."""
    request = tr.request_from_command(command(c.ReportIncursion))
    answered: dict[int, tuple[float, float]] = {}
    lock = threading.Lock()
    share = [commands // writers + (1 if i < commands % writers else 0) for i in range(writers)]
    barrier = threading.Barrier(writers + 1)

    def run(count: int) -> None:
        with grpc.insecure_channel(address) as channel:
            stub: Any = command_grpc.CommandServiceStub(channel)
            barrier.wait()
            for _ in range(count):
                sent = time.perf_counter()
                response = stub.ReportIncursion(request, timeout=30)
                done = time.perf_counter()
                with lock:
                    answered[response.position] = (sent, done)

    threads = [threading.Thread(target=run, args=(n,)) for n in share]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return commands / (time.perf_counter() - started), answered


class Reader:
    """A subscriber reading its stream as fast as it comes, noting when each event came."""

    def __init__(self, address: str, after: int, options: list[tuple[str, Any]] | None = None):
        self.channel = grpc.insecure_channel(address, options=options or [])
        stub: Any = audit_grpc.AuditServiceStub(self.channel)
        self.call = stub.SubscribeEvents(audit_pb.SubscribeEventsRequest(after_position=after))
        self.received: dict[int, float] = {}
        self.live = threading.Event()

    def read(self) -> None:
        try:
            for response in self.call:
                if response.HasField("event"):
                    self.received[response.event.position] = time.perf_counter()
                elif response.heartbeat.live:
                    self.live.set()
        except grpc.RpcError:
            pass  # cancelled at the end

    def start(self) -> Reader:
        threading.Thread(target=self.read, daemon=True).start()
        return self

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered) * 1000, ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1000


def head(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub: Any = audit_grpc.AuditServiceStub(channel)
        last = 0
        request = audit_pb.ReadEventsRequest(from_position=1)
        for response in stub.ReadEvents(request, timeout=60):
            last = response.event.position
        return last


def until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("the subscribers did not keep up within a minute")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1500)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--subscribers", type=int, default=8)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="flashpoint-bench-subscribe-"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    flashpoint = shutil.which("flashpoint", path=os.path.dirname(sys.executable)) or "flashpoint"
    # Room for every subscriber's stream (half the RPC threads may hold streams).
    env = {**os.environ, "FLASHPOINT_THREADS": str(max(32, 2 * (args.subscribers + 2)))}
    server = subprocess.Popen(
        [flashpoint, "--store", f"sqlite:///{folder}/bench.db", "--log-level", "warning",
         "serve", "--listen", address],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        with grpc.insecure_channel(address) as channel:
            wait_serving(health_pb2_grpc.HealthStub(channel))
        write(address, args.writers, 500)  # warm up: connections, pages, the projections
        out = sys.stdout.write
        out(f"{args.commands} ReportIncursion commands from {args.writers} writers each run\n")
        out(f"{'':40}{'commands/s':>12}{'ratio':>8}\n")
        first, _ = write(address, args.writers, args.commands)
        rows: list[tuple[str, float]] = []

        start = head(address)
        readers = [Reader(address, start).start() for _ in range(args.subscribers)]
        for reader in readers:
            if not reader.live.wait(60):
                raise SystemExit("a subscriber did not catch up")
        rate, answered = write(address, args.writers, args.commands)
        rows.append((f"{args.subscribers} live subscribers", rate))
        until(lambda: all(set(answered) <= set(r.received) for r in readers))
        after_commit = [r.received[p] - done for r in readers for p, (_, done) in answered.items()]
        after_send = [r.received[p] - sent for r in readers for p, (sent, _) in answered.items()]
        for reader in readers:
            reader.close()

        stalled_from = head(address)
        memory_before = resident_kib(server.pid)
        narrow = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]
        stalled = Reader(address, stalled_from, narrow)
        next(iter(stalled.call))  # its first message: live; then it reads nothing
        rate, _ = write(address, args.writers, args.commands)
        memory_after = resident_kib(server.pid)
        rows.append(("1 stalled subscriber", rate))
        stalled.close()
        # The baseline is measured first and last (the log grows as the run goes on): their
        # mean is what the others are compared with.
        last, _ = write(address, args.writers, args.commands)
        baseline = (first + last) / 2
        out(f"{'no subscriber (baseline, first/last)':40}{baseline:12,.0f}{1.0:8.2f}"
            f"   ({first:,.0f} / {last:,.0f})\n")  # fmt: skip
        for label, rate in rows:
            out(f"{label:40}{rate:12,.0f}{rate / baseline:8.2f}\n")

        p50, p99 = percentiles(after_commit)
        out(f"\ndelivery to {args.subscribers} subscribers, {len(after_commit)} deliveries\n")
        out(f"  after the writer's answer:  p50 {p50:7.2f} ms   p99 {p99:7.2f} ms\n")
        p50, p99 = percentiles(after_send)
        out(f"  after the command was sent: p50 {p50:7.2f} ms   p99 {p99:7.2f} ms\n")
        out(
            f"server resident memory around the stalled run: {memory_before / 1024:.1f} MiB "
            f"-> {memory_after / 1024:.1f} MiB\n"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
