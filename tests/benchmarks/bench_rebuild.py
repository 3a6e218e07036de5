"""Rebuild of the escalation projection over a generated log, against a raw sqlite3 scan.

    scripts/bench rebuild [--events 1000000] [--dir DIR]

The log is generated with the real domain and mapper (so the stored JSON is exactly what
the service writes): incident reports of every kind across many countries, plus
corroborations, disputes, corrections and retractions of earlier ones. Each measurement
runs in a fresh subprocess, so its peak RSS is its own. Memory is also measured for a
quarter-size log: flat memory means the two peaks are close.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

COUNTRIES = ["RUS", "UKR", "POL", "BLR", "LTU", "LVA", "EST", "FIN", "DEU", "FRA", "GBR",
             "USA", "CHN", "TWN", "JPN", "KOR", "PRK", "IRN", "ISR", "SYR", "TUR", "IND", "PAK",
             "ARM", "AZE", "SRB", "MDA", "GEO", "VEN", "GUY"]  # fmt: skip


def country_codes(count: int | None) -> list[str]:
    """``COUNTRIES``, then (for a larger ``count``) more ISO 3166 alpha-3 codes in order."""
    if count is None or count == len(COUNTRIES):
        return COUNTRIES
    import pycountry

    others = sorted(c.alpha_3 for c in pycountry.countries if c.alpha_3 not in COUNTRIES)
    codes = [*COUNTRIES, *others][:count]
    if len(codes) < max(count, 2):
        raise ValueError(f"between 2 and {len(COUNTRIES) + len(others)} countries, not {count}")
    return codes


def _template_commands(
    rng: random.Random, count: int, countries: list[str] = COUNTRIES
) -> list[Any]:
    from service.domain import commands as c
    from tests.factories import raw_command

    kinds = list(c.REPORT_COMMANDS.values())
    base = datetime(2025, 6, 1, tzinfo=UTC)
    templates = []
    for index in range(count):
        command_class = kinds[index % len(kinds)]
        raw = raw_command(command_class)
        actor, target = rng.sample(countries, 2)
        raw["actor"] = {"country": actor}
        if "target" in raw or command_class in (c.ReportIncursion, c.ReportClash):
            raw["target"] = {"country": target}
        raw["evidence"] = {
            **raw["evidence"],
            "occurred_at": (base + timedelta(minutes=rng.randrange(0, 200 * 24 * 60))).isoformat(),
            "reliability": rng.choice("ABCDF"),
            "credibility": rng.randint(1, 6),
        }
        if "count" in raw and command_class is c.ReportIncursion:
            raw["count"] = rng.randint(1, 60)
            raw["intercepted"] = rng.randint(0, raw["count"])
        templates.append(c.parse_command(command_class, raw))
    return templates


def generate(path: Path, events: int, seed: int = 7, countries: int | None = None) -> None:
    """A log of ``events`` stored events, written straight into the events table, among
    ``countries`` countries (default: the 30 of ``COUNTRIES``, the output of old)."""
    from service.adapters.store import FlashpointApplication
    from service.adapters.store_url import store_environment
    from service.domain import commands as c
    from service.domain.incident import Incident
    from service.domain.submitter import submitted_by

    rng = random.Random(seed)
    app = FlashpointApplication(env=store_environment(f"sqlite:///{path}"))
    mapper = app.mapper
    app.close()
    stamp = submitted_by("bench", "generator", None)
    codes = country_codes(countries)
    templates = _template_commands(rng, 500, codes)
    lifecycle = [c.CorroborateIncident, c.DisputeIncident, c.RetractIncident]
    rows: list[tuple[str, int, str, bytes]] = []
    open_incidents: list[tuple[UUID, int]] = []
    connection = sqlite3.connect(path)
    written = 0

    def flush() -> None:
        nonlocal written
        connection.executemany("INSERT INTO stored_events VALUES (?,?,?,?)", rows)
        connection.commit()
        written += len(rows)
        rows.clear()

    while written + len(rows) < events:
        if open_incidents and rng.random() < 0.2:
            slot = rng.randrange(len(open_incidents))
            incident_id, version = open_incidents[slot]
            step = rng.choice(lifecycle)
            incident = Incident.__new__(Incident)
            incident.__dict__.update(
                _id=incident_id, _version=version, _created_on=None, _modified_on=None,
                _pending_events=[], retracted=False, report={"evidence": {
                    "reliability": "C", "credibility": 3}}, sources=[], corroborations=0,
                disputes=[],
            )  # fmt: skip
            if step is c.CorroborateIncident:
                incident.corroborate(source={"name": "AP", "url": None}, reliability="A",
                                     credibility=2, note="", submitted_by=stamp)  # fmt: skip
            elif step is c.DisputeIncident:
                incident.dispute(party=rng.choice(codes), denial=True, statement="",
                                 sources=[], submitted_by=stamp)  # fmt: skip
            else:
                incident.retract(reason="withdrawn", submitted_by=stamp)
            event = incident.collect_events()[0]
            if step is c.RetractIncident:
                open_incidents[slot] = open_incidents[-1]
                open_incidents.pop()
            else:
                open_incidents[slot] = (incident_id, version + 1)
        else:
            command = rng.choice(templates)
            incident = Incident.report_development(
                incident_id=uuid4(), kind=command.kind, report=command.report(),
                details=command.details(), submitted_by=stamp,
            )  # fmt: skip
            event = incident.collect_events()[0]
            if len(open_incidents) < 50_000:
                open_incidents.append((incident.id, 1))
        stored = mapper.to_stored_event(event)
        rows.append(
            (UUID(str(stored.originator_id)).hex, stored.originator_version, stored.topic,
             stored.state)
        )  # fmt: skip
        if len(rows) >= 20_000:
            flush()
    flush()
    connection.close()


def count_events(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as connection:
        try:
            return int(connection.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def ensure_log(path: Path, events: int, countries: int | None = None) -> float:
    if count_events(path) == events:
        return 0.0
    for stale in path.parent.glob(path.stem + "*"):
        stale.unlink()
    started = time.perf_counter()
    generate(path, events, countries=countries)
    return time.perf_counter() - started


# ---------------------------------------------------------------------- measurements


def measure_scan(path: str) -> dict[str, float]:
    """Baseline: read every row of the events table with plain sqlite3, nothing else."""
    started, cpu = time.perf_counter(), time.process_time()
    connection = sqlite3.connect(path)
    cursor = connection.execute(
        "SELECT rowid, topic, originator_id, originator_version, state FROM stored_events"
    )
    total = 0
    while batch := cursor.fetchmany(50_000):
        total += len(batch)
    seconds = time.perf_counter() - started
    return {"events": total, "seconds": seconds, "cpu": time.process_time() - cpu}


def measure_rebuild(path: str) -> dict[str, float]:
    from projections.escalation import EscalationProjection
    from projections.runner import ProjectionWorker
    from projections.store import ViewStore
    from service.adapters.eventlog import RecorderEventSource
    from service.adapters.store import FlashpointApplication
    from service.adapters.store_url import store_environment

    env = store_environment(f"sqlite:///{path}")
    app = FlashpointApplication(env=env)
    store = ViewStore.open(env)
    worker = ProjectionWorker(RecorderEventSource(app.recorder), store, [EscalationProjection()])
    started, cpu = time.perf_counter(), time.process_time()
    position = worker.rebuild("escalation")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    generation = store.live_generation("escalation") or 0
    table = store.state_table(EscalationProjection.table, generation)
    states = store.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]  # noqa: S608 - our table
    # What else the model stores: its contribution rows and buckets (this design), or the
    # links from countries to states (the one before).
    stem = f"{EscalationProjection.table.stem}_g{generation}"
    tables = {row["name"] for row in store.query("SELECT name FROM sqlite_master")}
    counted = {
        name: store.query(f"SELECT COUNT(*) AS n FROM {stem}_{name}")[0]["n"]  # noqa: S608
        for name in ("contrib", "bucket", "link")
        if f"{stem}_{name}" in tables
    }
    store.close()
    app.close()
    return {"events": position, "seconds": seconds, "cpu": cpu, "states": states, **counted}


def in_subprocess(kind: str, path: Path) -> dict[str, float]:
    """Run one measurement in a fresh interpreter; its figures and its own peak RSS."""
    output = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_rebuild", "--measure", kind, str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/flashpoint-bench")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        kind, path = args.measure
        result = measure_scan(path) if kind == "scan" else measure_rebuild(path)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sys.stdout.write(json.dumps(result) + "\n")
        return 0

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    out = sys.stdout
    sizes = {"full": args.events, "quarter": max(args.events // 4, 1)}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, events in sizes.items():
        path = folder / f"log-{events}.db"
        generated = ensure_log(path, events)
        if generated:
            out.write(f"generated {events:,} events in {generated:.1f} s ({path})\n")
        results[label] = {
            "scan": in_subprocess("scan", path),
            "rebuild": in_subprocess("rebuild", path),
        }
    full = results["full"]
    scan_rate = full["scan"]["events"] / full["scan"]["seconds"]
    rebuild_rate = full["rebuild"]["events"] / full["rebuild"]["seconds"]
    # The machine may be shared: CPU time says what the work itself costs, elapsed time
    # what a user waits; both are shown for both rows.
    scan_cpu_rate = full["scan"]["events"] / max(full["scan"]["cpu"], 1e-9)
    rebuild_cpu_rate = full["rebuild"]["events"] / max(full["rebuild"]["cpu"], 1e-9)
    out.write(
        f"\nescalation rebuild over {args.events:,} events (embedded SQLite store); "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n"
    )
    out.write(
        f"{'':34}{'events/s':>12}{'seconds':>10}{'ev/CPU-s':>12}{'CPU s':>8}{'peak RSS MB':>14}\n"
    )
    for label, entry, rate, cpu_rate in (
        ("baseline: sqlite3 scan", full["scan"], scan_rate, scan_cpu_rate),
        ("rebuild (decode+fold+write+track)", full["rebuild"], rebuild_rate, rebuild_cpu_rate),
    ):
        out.write(
            f"{label:34}{rate:12,.0f}{entry['seconds']:10.2f}{cpu_rate:12,.0f}"
            f"{entry['cpu']:8.2f}{entry['peak_rss_mb']:14.1f}\n"
        )
    out.write(
        f"ratio rebuild/scan: {rebuild_rate / scan_rate:.3f} elapsed, "
        f"{rebuild_cpu_rate / scan_cpu_rate:.3f} CPU  (goal: >= 50,000 events/s)\n"
    )
    quarter = results["quarter"]["rebuild"]
    out.write(
        f"peak RSS: {quarter['peak_rss_mb']:.1f} MB at {sizes['quarter']:,} events, "
        f"{full['rebuild']['peak_rss_mb']:.1f} MB at {sizes['full']:,} events "
        f"(x{full['rebuild']['peak_rss_mb'] / quarter['peak_rss_mb']:.2f} for x4 the log)\n"
    )
    out.write(
        f"rows written: {full['rebuild']['states']:,} states, "
        f"{full['rebuild'].get('contrib', 0):,} contribution rows, "
        f"{full['rebuild'].get('bucket', 0):,} buckets, "
        f"{full['rebuild'].get('link', 0):,} links\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
