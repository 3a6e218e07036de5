"""ReportIncursion through the bulk stream against the same command through unary calls.

    scripts/bench bulk [--commands 100000] [--unary 3000] [--threads 32]
                       [--projections embedded|external]

Starts ``flashpoint serve`` as a subprocess on a fresh SQLite file (projections and the audit
chain following in-process, as in production). In the same run, against that server:
``--unary`` reports sent one after another by one client (each its own call, as a script
would load them before the stream existed), the same number from ``--threads`` client
threads at once (a channel each), then ``--commands`` reports through one
``SubmitDevelopments`` stream with the typed client's ``submit_many``. Every command has
its own request id; each figure is commands per second of wall time, the ratio to the
sequential unary calls beside it. Afterwards every answer is checked: as many reports in
the log as were answered OK. ``--projections external`` serves without the in-process
projection followers (``serve --projections external``), to show what they cost the writes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2_grpc

from service.client import FlashpointClient
from service.domain import commands as c
from tests.api_support import free_port
from tests.benchmarks.bench_api import wait_serving
from tests.factories import command

#: One report, copied with a fresh request id for each command (building each from raw
#: data would time the client's validation, which both paths pay alike).
TEMPLATE = command(c.ReportIncursion)


def reports(prefix: str, count: int) -> Iterator[c.Command]:
    for n in range(count):
        yield TEMPLATE.model_copy(update={"request_id": f"{prefix}-{n}"})


def unary_sequential(address: str, count: int) -> float:
    with FlashpointClient(address, timeout=30) as client:
        started = time.perf_counter()
        for report in reports("unary", count):
            client.execute(report)
        return time.perf_counter() - started


def unary_threads(address: str, count: int, threads: int) -> float:
    share = count // threads
    errors: list[BaseException] = []

    def send(worker: int) -> None:
        try:
            with FlashpointClient(address, timeout=60) as client:
                for report in reports(f"threads-{worker}", share):
                    client.execute(report)
        except BaseException as error:  # reported below, not lost in a thread
            errors.append(error)

    workers = [threading.Thread(target=send, args=(n,)) for n in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"a unary client failed: {errors[0]}")
    return elapsed


def stream(address: str, count: int) -> tuple[float, int]:
    failed = 0
    with FlashpointClient(address, timeout=60) as client:
        started = time.perf_counter()
        for result in client.submit_many(reports("stream", count)):
            failed += not result.ok
        return time.perf_counter() - started, failed


def stored_reports(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master")]
        table = next(t for t in tables if t.endswith("events") and "stored" in t)
        (count,) = db.execute(
            f"SELECT count(*) FROM {table} WHERE topic LIKE '%IncursionReported'"  # noqa: S608
        ).fetchone()
        return int(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--unary", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--projections", choices=["embedded", "external"], default="embedded")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="flashpoint-bench-bulk-"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    flashpoint = shutil.which("flashpoint", path=os.path.dirname(sys.executable)) or "flashpoint"
    server = subprocess.Popen(
        [flashpoint, "--store", f"sqlite:///{folder}/bench.db", "--log-level", "warning",
         "serve", "--listen", address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "FLASHPOINT_PROJECTIONS": args.projections},
    )  # fmt: skip
    try:
        with grpc.insecure_channel(address) as channel:
            wait_serving(health_pb2_grpc.HealthStub(channel))
        load = os.getloadavg()
        sequential = unary_sequential(address, args.unary)
        threaded = unary_threads(address, args.unary, args.threads)
        streamed, failed = stream(address, args.commands)
        after = os.getloadavg()
    finally:
        server.terminate()
        server.wait(timeout=60)
    base = args.unary / sequential
    threads_count = args.unary // args.threads * args.threads
    rows = [
        ("unary calls, one client", args.unary, sequential),
        (f"unary calls, {args.threads} client threads", threads_count, threaded),
        ("SubmitDevelopments, one stream", args.commands, streamed),
    ]
    sys.stdout.write(
        f"ReportIncursion on the embedded store (SQLite), `flashpoint serve`, projections "
        f"{args.projections}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before, "
        f"{after[0]:.2f} {after[1]:.2f} {after[2]:.2f} after\n\n"
        f"{'path':40}{'commands':>10}{'seconds':>10}{'commands/s':>12}{'ratio':>8}\n"
    )
    for label, count, seconds in rows:
        rate = count / seconds
        sys.stdout.write(f"{label:40}{count:10,}{seconds:10.2f}{rate:12,.0f}{rate / base:8.2f}\n")
    recorded = stored_reports(folder / "bench.db")
    expected = args.unary + threads_count + args.commands - failed
    sys.stdout.write(
        f"\nchecked: {recorded:,} reports in the log, {expected:,} answered OK"
        f" ({failed} stream commands failed)\n"
    )
    shutil.rmtree(folder, ignore_errors=True)
    return 0 if recorded == expected and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
