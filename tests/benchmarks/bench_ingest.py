"""Ingesting the shared GDELT export into a running server on the embedded store.

    scripts/bench ingest [--file PATH] [--repeat 3] [--rounds 3]

Starts ``flashpoint serve`` as a subprocess on a fresh SQLite file (projections and the
audit chain following in-process, as in production) and measures, in one run:

- parsing and mapping the file alone (no server): the baseline, rows/s;
- the file through unary calls (one ``execute`` per mapped row), rows/s and commands/s;
- the file through the bulk stream (``submit_many``), when the client has it;
- a re-import of the file (every command replays), through each path;
- the lag of the escalation projection after the last ingest: how long after the last
  answer it reached the head of the log;
- the CPU time per row of the client, the server and its follower process during each run
  (on a machine of two cores their sum bounds the rate: 400 µs a row for 5,000 rows/s).

Each figure is printed beside the parse-only rate measured in the same round, and the
stream's beside unary's. The file is read and mapped as it is sent, as ``flashpoint ingest``
does. ``--rounds`` (3) repeat it all on fresh servers, and a summary gives each figure's
median and range: on a shared machine one round can be a third off the next.
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
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2_grpc

from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.cli.ingest import SAMPLE, SubmitMany, Tally, gdelt_outcomes, ingest, ingest_stream
from service.client import FlashpointClient
from service.ingest.records import Mapped, Outcome
from tests.api_support import free_port
from tests.benchmarks.bench_api import wait_serving
from tests.benchmarks.bench_throughput import cpu_seconds

QUICK_ARGS = ["--rounds", "1", "--repeat", "1"]

SERVE = "import sys; from service.cli.main import main; sys.exit(main(sys.argv[1:]))"


def serve(folder: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, "--store", f"sqlite:///{folder}/{name}.db",
         "--log-level", "warning", "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    with grpc.insecure_channel(address) as channel:
        wait_serving(health_pb2_grpc.HealthStub(channel))
    return server, address


def escalation_lag(address: str, seconds: float = 120.0) -> float:
    """Seconds until the escalation projection reached the head of the log."""
    started = time.perf_counter()
    with grpc.insecure_channel(address) as channel:
        stub = query_grpc.QueryServiceStub(channel)
        while True:
            status = stub.ListProjections(query_pb.ListProjectionsRequest(), timeout=30)
            escalation = next(p for p in status.projections if p.name == "escalation")
            if escalation.position >= status.head:
                return time.perf_counter() - started
            if time.perf_counter() - started > seconds:
                raise SystemExit(f"escalation not caught up after {seconds:g} s")
            time.sleep(0.005)


def line(label: str, rows: int, elapsed: float, baseline: float, extra: str = "") -> float:
    rate = rows / elapsed
    sys.stdout.write(f"{label:40}{rate:12,.0f}{rate / baseline:10.3f}  {extra}\n")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--file", type=Path, default=SAMPLE)
    parser.add_argument("--repeat", type=int, default=3, help="parse-only runs (best kept)")
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="rounds, each on fresh servers (the summary gives their medians)",
    )  # fmt: skip
    args = parser.parse_args()
    if not args.file.exists():
        raise SystemExit(f"{args.file}: no such file (the shared GDELT sample)")
    folder = Path(tempfile.mkdtemp(prefix="flashpoint-bench-ingest-"))
    try:
        outcomes: list[Outcome] = list(gdelt_outcomes(args.file))
        rows = len(outcomes)
        commands = sum(1 for o in outcomes if isinstance(o, Mapped))
        load = os.getloadavg()
        sys.stdout.write(
            f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
            f"{args.file.name}: {rows} rows, {commands} mapped to commands; "
            f"{args.rounds} rounds, each on fresh servers\n"
        )
        paths: list[tuple[str, Callable[[FlashpointClient, Iterable[Outcome]], Tally]]] = [
            ("unary", lambda client, items: ingest(items, client.execute)),
        ]
        submit_many = getattr(FlashpointClient, "submit_many", None)
        if submit_many is not None:
            paths.insert(0, ("stream", _streamed))
        figures: dict[str, list[float]] = {}
        for round_number in range(1, args.rounds + 1):
            sys.stdout.write(f"round {round_number}{'rows/s':>42}{'x parse':>10}\n")
            parse = min(_timed(lambda: list(gdelt_outcomes(args.file))) for _ in range(args.repeat))
            baseline = line("parse and map alone (baseline)", rows, parse, rows / parse)
            figures.setdefault("parse and map alone (baseline)", []).append(baseline)
            for name, run in paths:
                _measure_path(
                    folder, f"{name}-{round_number}", name, run, args.file, rows, commands,
                    baseline, figures,
                )  # fmt: skip
            if submit_many is not None:
                ratio = figures["ingest through stream"][-1] / figures["ingest through unary"][-1]
                figures.setdefault("stream / unary", []).append(ratio)
                sys.stdout.write(f"{'stream / unary':40}{ratio:11.1f}x\n")
        sys.stdout.write(f"median of {args.rounds} rounds\n")
        for label, values in figures.items():
            unit = "x" if label == "stream / unary" else (" ms" if "lag" in label else " rows/s")
            spread = f"  (from {min(values):,.1f} to {max(values):,.1f})" if len(values) > 1 else ""
            sys.stdout.write(f"{label:40}{statistics.median(values):12,.1f}{unit}{spread}\n")
        load = os.getloadavg()
        sys.stdout.write(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
        if submit_many is None:
            sys.stdout.write("stream: the client has no submit_many yet (bulk stream not merged)\n")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _measure_path(
    folder: Path,
    store: str,
    name: str,
    run: Callable[[FlashpointClient, Iterable[Outcome]], Tally],
    file: Path,
    rows: int,
    commands: int,
    baseline: float,
    figures: dict[str, list[float]],
) -> None:
    """An import of ``file`` and a re-import through ``name`` on a fresh server: rows/s,
    CPU per row of each process and, after the import, the escalation projection's lag.
    The rows are read and mapped as they are sent, as ``flashpoint ingest`` does."""
    server, address = serve(folder, store)
    try:
        with FlashpointClient(address, timeout=300) as client:
            for attempt in ("ingest", "re-import"):
                cpu_before = _cpu(server.pid)
                started = time.perf_counter()
                tally = run(client, gdelt_outcomes(file))
                elapsed = time.perf_counter() - started
                cpu = [a - b for a, b in zip(_cpu(server.pid), cpu_before, strict=True)]
                expect = (commands, 0) if attempt == "ingest" else (0, commands)
                if (tally.recorded, tally.replayed) != expect:
                    raise SystemExit(f"{name} {attempt}: unexpected {tally.as_json()}")
                label = f"{attempt} through {name}"
                rate = line(label, rows, elapsed, baseline, f"{commands / elapsed:,.0f} commands/s")
                figures.setdefault(label, []).append(rate)
                sys.stdout.write(
                    f"{'  CPU µs per row: client, server, follower':40}"
                    f"{cpu[0] * 1e6 / rows:12,.0f}{cpu[1] * 1e6 / rows:10,.0f}"
                    f"{cpu[2] * 1e6 / rows:10,.0f}\n"
                )
                if attempt == "ingest":
                    lag = escalation_lag(address)
                    figures.setdefault(f"escalation lag after the {name} ingest", []).append(
                        lag * 1000
                    )
                    sys.stdout.write(
                        f"{'  escalation lag after the ingest':40}{lag * 1000:12,.0f} ms\n"
                    )
    finally:
        server.terminate()
        server.wait(30)


def _streamed(client: FlashpointClient, items: Iterable[Outcome]) -> Tally:
    submit_many: SubmitMany = getattr(client, "submit_many")  # noqa: B009 - not there before the bulk stream
    return ingest_stream(items, submit_many)


def _cpu(server: int) -> tuple[float, float, float]:
    """CPU seconds so far of this process (the client: reading, mapping, sending), of the
    server's serving process and of its follower (projections and chain): the follower's
    share is what the ingest costs the log later, even when it runs beside it."""
    ours = time.process_time()
    whole = cpu_seconds(server)
    follower = cpu_seconds(server, followers_only=True)
    return ours, whole - follower, follower


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


if __name__ == "__main__":
    raise SystemExit(main())
