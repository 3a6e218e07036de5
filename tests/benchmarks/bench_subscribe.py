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


def until(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("the subscribers did not keep up within a minute")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phase:
    """One way of running the writers, measured over the rounds."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.rates: list[float] = []
        self.cpu_per_command: list[float] = []

    def measure(self, server: int, run: Callable[[], float], commands: int) -> None:
        cpu = cpu_seconds(server)
        self.rates.append(run())
        self.cpu_per_command.append((cpu_seconds(server) - cpu) / commands)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1500)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--subscribers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
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
    commands, writers = args.commands, args.writers
    baseline = Phase("no subscriber (baseline)")
    live = Phase(f"{args.subscribers} live subscribers")
    stalled = Phase("1 stalled subscriber")
    after_commit: list[float] = []
    after_send: list[float] = []
    memory: list[tuple[int, int]] = []
    #: The head of the log: the last position the writers were answered with (only they
    #: write), so no phase pays for reading the log to find it.
    last = [0]

    def baseline_run() -> float:
        rate, answered = write(address, writers, commands)
        last[0] = max(answered)
        return rate

    def with_readers() -> float:
        start = last[0]
        readers = [Reader(address, start).start() for _ in range(args.subscribers)]
        for reader in readers:
            if not reader.live.wait(60):
                raise SystemExit("a subscriber did not catch up")
        rate, answered = write(address, writers, commands)
        last[0] = max(answered)
        until(lambda: all(set(answered) <= set(r.received) for r in readers))
        after_commit.extend(
            r.received[p] - done for r in readers for p, (_, done) in answered.items()
        )
        after_send.extend(
            r.received[p] - sent for r in readers for p, (sent, _) in answered.items()
        )
        for reader in readers:
            reader.close()
        return rate

    def with_a_stalled_reader() -> float:
        before = resident_kib(server.pid)
        narrow = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]
        reader = Reader(address, last[0], narrow)
        next(iter(reader.call))  # its first message (live); then it reads nothing
        rate, answered = write(address, writers, commands)
        last[0] = max(answered)
        memory.append((before, resident_kib(server.pid)))
        reader.close()
        return rate

    try:
        with grpc.insecure_channel(address) as channel:
            wait_serving(health_pb2_grpc.HealthStub(channel))
        # Warm up: connections, pages, the projections.
        last[0] = max(write(address, writers, 500)[1])
        # The phases take turns, round after round, so that the machine's other load and the
        # log's growth fall on each alike; medians are reported.
        for _ in range(args.rounds):
            baseline.measure(server.pid, baseline_run, commands)
            live.measure(server.pid, with_readers, commands)
            stalled.measure(server.pid, with_a_stalled_reader, commands)
        out = sys.stdout.write
        out(f"{commands} ReportIncursion commands from {writers} writers per run, "
            f"{args.rounds} rounds, medians\n")  # fmt: skip
        out(f"{'':34}{'commands/s':>11}{'ratio':>7}{'server CPU ms/cmd':>19}{'ratio':>7}\n")
        rate0 = statistics.median(baseline.rates)
        cpu0 = statistics.median(baseline.cpu_per_command)
        for phase in (baseline, live, stalled):
            rate = statistics.median(phase.rates)
            cpu = statistics.median(phase.cpu_per_command)
            runs = ", ".join(f"{r:,.0f}" for r in phase.rates)
            out(f"{phase.label:34}{rate:11,.0f}{rate / rate0:7.2f}{cpu * 1000:19.2f}"
                f"{cpu / cpu0:7.2f}   (runs: {runs})\n")  # fmt: skip
        p50, p99 = percentiles(after_commit)
        out(f"\ndelivery to {args.subscribers} subscribers, {len(after_commit)} deliveries\n")
        out(f"  after the writer's answer:  p50 {p50:7.2f} ms   p99 {p99:7.2f} ms\n")
        p50, p99 = percentiles(after_send)
        out(f"  after the command was sent: p50 {p50:7.2f} ms   p99 {p99:7.2f} ms\n")
        spans = ", ".join(f"{a / 1024:.1f} -> {b / 1024:.1f}" for a, b in memory)
        out(f"server resident memory (MiB) around each stalled run: {spans}\n")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
