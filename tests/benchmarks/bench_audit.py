"""``verify`` and ``export`` over a generated log, against a raw scan that hashes the same bytes.

    scripts/bench audit [--events 1000000] [--dir DIR]

The log is the one bench_rebuild generates (real domain events written straight into the
events table); it is chained first (that time is reported too). Each measurement runs in a
fresh subprocess so its peak RSS is its own; memory is also measured on a quarter-size log.
Besides the elapsed time, each measurement's CPU time (user + system, its own and its child
processes': verify checks a long log's second half in a second process) is reported with its
own ratio: on a machine other processes share, CPU time is the steadier figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.benchmarks.bench_rebuild import ensure_log


def _tables(path: str) -> tuple[object, object]:
    from service.adapters.store import FlashpointApplication
    from service.adapters.store_url import store_environment
    from service.audit.tables import LogTables

    app = FlashpointApplication(env=store_environment(f"sqlite:///{path}"))
    return app, LogTables(app.recorder)


def cpu_seconds() -> float:
    """This process's CPU time and its finished children's: verify's second process
    (``service.audit.segment``) counts as much as its own."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def peak_rss_mb() -> float:
    """The larger peak of this process and of its largest finished child."""
    return (
        max(
            resource.getrusage(who).ru_maxrss
            for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        / 1024
    )


def measure(kind: str, path: str) -> dict[str, float]:
    """One measurement: elapsed and CPU time (user + system) of the work alone, the
    imports and the opening of the store done before the clocks start."""
    from service.audit.chain import Chainer
    from service.audit.export import export_lines
    from service.audit.tables import LogTables
    from service.audit.verify import verify

    tables: LogTables | None = None
    if kind != "baseline":
        _app, opened = _tables(path)
        assert isinstance(opened, LogTables)
        tables = opened
    started, cpu = time.perf_counter(), cpu_seconds()

    def done(count: int) -> dict[str, float]:
        return {
            "events": count,
            "seconds": time.perf_counter() - started,
            "cpu_seconds": cpu_seconds() - cpu,
        }

    if tables is None:
        # What any verifier must at least do: read every row and hash its bytes.
        connection = sqlite3.connect(path)
        cursor = connection.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
        )
        count = 0
        while rows := cursor.fetchmany(10_000):
            for row in rows:
                hashlib.sha256(
                    f"{row[0]}\x00{row[1]}\x00{row[2]}\x00{row[3]}\x00".encode() + row[4]
                ).digest()
            count += len(rows)
        return done(count)
    if kind == "chain":
        return done(Chainer(tables).catch_up())
    if kind == "verify":
        report = verify(tables)
        if not report.intact:
            raise SystemExit(f"the benchmark log does not verify: {report.summary()}")
        return done(report.events)
    count = -2  # header and trailer lines
    with open(os.devnull, "w") as sink:
        for line in export_lines(tables):
            sink.write(line)
            count += 1
    return done(count)


def in_subprocess(kind: str, path: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_audit", "--measure", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def chain_once(path: Path) -> float:
    with sqlite3.connect(path) as connection:
        try:
            chained = connection.execute("SELECT COUNT(*) FROM fp_chain").fetchone()[0]
        except sqlite3.OperationalError:
            chained = 0
        events = connection.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]
    if chained == events:
        return 0.0
    return in_subprocess("chain", path)["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/flashpoint-bench")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        result = measure(*args.measure)
        result["peak_rss_mb"] = peak_rss_mb()
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    out = sys.stdout
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    results = {}
    for label, events in (("full", args.events), ("quarter", max(args.events // 4, 1))):
        path = folder / f"log-{events}.db"
        generated = ensure_log(path, events)
        if generated:
            out.write(f"generated {events:,} events in {generated:.1f} s\n")
        chained = chain_once(path)
        if chained:
            out.write(f"chained {events:,} events in {chained:.1f} s ({events / chained:,.0f}/s)\n")
        results[label] = {
            kind: in_subprocess(kind, path) for kind in ("baseline", "verify", "export")
        }
    full, quarter = results["full"], results["quarter"]
    base_rate = full["baseline"]["events"] / full["baseline"]["seconds"]
    base_cpu_rate = full["baseline"]["events"] / full["baseline"]["cpu_seconds"]
    out.write(f"\naudit over {args.events:,} events (embedded SQLite store)\n")
    out.write(
        f"{'':40}{'events/s':>12}{'seconds':>10}{'ratio':>8}{'CPU s':>8}{'CPU ratio':>10}"
        f"{'peak RSS MB':>14}\n"
    )
    for kind, label in (("baseline", "baseline: sqlite3 scan + sha256"),
                        ("verify", "verify (chain + content, streamed)"),
                        ("export", "export (JSON Lines)")):  # fmt: skip
        figures = full[kind]
        rate = figures["events"] / figures["seconds"]
        cpu_rate = figures["events"] / figures["cpu_seconds"]
        out.write(
            f"{label:40}{rate:12,.0f}{figures['seconds']:10.2f}{rate / base_rate:8.2f}"
            f"{figures['cpu_seconds']:8.2f}{cpu_rate / base_cpu_rate:10.2f}"
            f"{figures['peak_rss_mb']:14.1f}\n"
        )
    for kind in ("verify", "export"):
        out.write(
            f"{kind} peak RSS: {quarter[kind]['peak_rss_mb']:.1f} MB at {args.events // 4:,} "
            f"events, {full[kind]['peak_rss_mb']:.1f} MB at {args.events:,}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
