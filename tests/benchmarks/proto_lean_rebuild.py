"""Prototype (not the service's code): how fast a leaner escalation store could be rebuilt.

    PYTHONPATH=. .venv/bin/python -m tests.benchmarks.proto_lean_rebuild LOG.db

It measures, in one run over the rebuild benchmark's log, the stages a rebuild cannot do
without, each beside the plain scan: the scan; the scan and ``orjson`` decode of each
payload; the same plus the decode to ``RawEvent`` the projections get; a lean fold of
incidents straight into tuples (no version dicts, states in a bounded in-memory map, facts as
tuples); and that fold writing a leaner design: ONE row per version (rowid = the position
that opened it, appended) with its subjects as text, one narrow row per (country, version)
indexed once at the end, buckets summed in memory. No per-pair rows, no state JSON
per batch (a state is written when it leaves the bounded map).

The prototype handles the incident events the generated log holds (reports, corroborations,
disputes, retractions); it exists to show where the floor of a rebuild on this stack is,
not to serve queries.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections import OrderedDict
from typing import Any

import orjson

from projections import parameters as p
from projections.base import INCIDENT_REPORTED, epoch
from projections.escalation import CREDIBILITY, RELIABILITY, contribution, incident_size
from projections.escalation import weight_key as weight_key_of
from projections.escalation_store import CLASSES, DAY, era_of, era_start
from service.adapters.eventlog import dashed_uuid, decode

BATCH = 10_000
UPSERT_STATE = (
    "INSERT INTO state VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET data = excluded.data"
)
CACHE = 100_000


def scan(path: str, work: Any = None) -> tuple[int, float]:
    started = time.process_time()
    connection = sqlite3.connect(path)
    cursor = connection.execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
    )
    total = 0
    while batch := cursor.fetchmany(BATCH):
        total += len(batch)
        if work is not None:
            work(batch)
    connection.close()
    return total, time.process_time() - started


def lean(path: str, out: str, write: bool) -> tuple[int, float, dict[str, int]]:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(out + suffix):
            os.unlink(out + suffix)
    db = sqlite3.connect(out, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-65536")
    db.execute(
        "CREATE TABLE version (vid INTEGER PRIMARY KEY, key TEXT, class INTEGER, occurred REAL,"
        " base REAL, known_from REAL, known_to REAL, live INTEGER, subjects TEXT)"
    )
    db.execute(
        "CREATE TABLE subject (subject TEXT, class INTEGER, day INTEGER, occurred REAL,"
        " scaled REAL, acted INTEGER, vid INTEGER)"
    )
    db.execute("CREATE TABLE state (key TEXT PRIMARY KEY, data BLOB)")
    states: OrderedDict[str, list[Any]] = OrderedDict()
    buckets: dict[tuple[str, int, int, int], list[float]] = {}
    counts = {"versions": 0, "subject_rows": 0, "misses": 0}
    versions: list[tuple[Any, ...]] = []
    subjects: list[tuple[Any, ...]] = []
    closes: list[tuple[float, int]] = []
    evicted: list[tuple[str, bytes]] = []
    classes = {h: CLASSES[h] for h in CLASSES}

    def open_version(position: int, key: str, facts: list[Any], known_from: float) -> None:
        weight, size, fat, rel, cred, occurred, actors, targets, located, disputes = facts
        graded = RELIABILITY[rel] * CREDIBILITY[cred]
        confidence = graded
        for denial in disputes.values():
            confidence *= p.DENIAL_FACTOR if denial else p.DISPUTE_FACTOR
        confidence = max(confidence, graded * p.CONFIDENCE_FLOOR)
        base = contribution(weight, size, fat, confidence)
        half_life = p.half_life_of(weight)
        klass = classes[half_life]
        day = int(occurred // DAY)
        era = era_of(day, half_life)
        scaled = base * 2.0 ** ((occurred - era_start(era, half_life)) / (half_life * DAY))
        versions.append(
            (
                position,
                key,
                klass,
                occurred,
                base,
                known_from,
                None,
                1,
                ",".join(actors) + "|" + ",".join(targets) + "|" + ",".join(located),
            )
        )
        for country, acted, share in (
            [(c, 1, 1.0) for c in actors]
            + [(c, 0, 1.0) for c in targets if c not in actors]
            + [(c, 0, p.LOCATION_SHARE) for c in located if c not in actors and c not in targets]
        ):
            subjects.append((country, klass, day, occurred, share * scaled, acted, position))
            bucket = buckets.get((country, klass, day, era))
            if bucket is None:
                bucket = buckets[(country, klass, day, era)] = [0.0, 0.0, 0]
            bucket[0 if acted else 1] += share * scaled
            bucket[2] += 1
        facts_state = states.get(key)
        if facts_state is not None:
            facts_state[1] = position

    def flush() -> None:
        if write:
            db.execute("BEGIN")
            db.executemany("INSERT INTO version VALUES (?,?,?,?,?,?,?,?,?)", versions)
            db.executemany("INSERT INTO subject VALUES (?,?,?,?,?,?,?)", subjects)
            db.executemany("UPDATE version SET known_to = ?, live = 0 WHERE vid = ?", closes)
            db.executemany(
                UPSERT_STATE,
                evicted,
            )
            db.execute("COMMIT")
        counts["versions"] += len(versions)
        counts["subject_rows"] += len(subjects)
        versions.clear()
        subjects.clear()
        closes.clear()
        evicted.clear()

    def work(batch: list[Any]) -> None:
        for position, raw_id, _version, topic, state in batch:
            payload = orjson.loads(state)
            key = dashed_uuid(raw_id) if isinstance(raw_id, str) else raw_id
            recorded = epoch(payload["timestamp"]["_data_"])
            if topic in INCIDENT_REPORTED:
                kind, report, details = payload["kind"], payload["report"], payload["details"]
                evidence = report["evidence"]
                size, fat = incident_size(kind, details)
                located = [report["location"]["country"]] if report.get("location") else []
                facts = [
                    weight_key_of(kind, details),
                    size,
                    fat,
                    evidence["reliability"],
                    int(evidence["credibility"]),
                    epoch(evidence["occurred_at"]),
                    [report["actor"]["country"], *details.get("participants", [])],
                    [report["target"]["country"]] if report.get("target") else [],
                    [*located, *details.get("border_with", [])],
                    {},
                ]
                states[key] = [facts, position]
                open_version(position, key, facts, recorded)
                if len(states) > CACHE:
                    old_key, old = states.popitem(last=False)
                    evicted.append((old_key, orjson.dumps(old)))
                continue
            entry = states.get(key)
            if entry is None:
                counts["misses"] += 1
                continue
            states.move_to_end(key)
            facts, open_vid = entry
            closes.append((recorded, open_vid))
            if topic == "IncidentCorroborated":
                better, graded = payload.get("reliability"), payload.get("credibility")
                if better and RELIABILITY[better] > RELIABILITY[facts[3]]:
                    facts[3] = better
                if graded and CREDIBILITY[graded] > CREDIBILITY[facts[4]]:
                    facts[4] = graded
            elif topic == "IncidentDisputed":
                facts[9] = {**facts[9], payload["party"]: bool(payload["denial"])}
            elif topic == "IncidentRetracted":
                del states[key]
                continue
            open_version(position, key, facts, recorded)
        if len(versions) >= BATCH:
            flush()

    started = time.process_time()
    total, _ = scan(path, work)
    flush()
    if write:
        db.execute("CREATE INDEX subject_day ON subject (subject, class, day, occurred)")
        db.execute(
            "CREATE TABLE bucket (subject TEXT, class INTEGER, day INTEGER, era INTEGER,"
            " s_act REAL, s_tgt REAL, n INTEGER, PRIMARY KEY (subject, class, day, era))"
        )
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO bucket VALUES (?,?,?,?,?,?,?)",
            [(*k, *v) for k, v in sorted(buckets.items())],
        )
        db.executemany(UPSERT_STATE, [(k, orjson.dumps(v)) for k, v in states.items()])
        db.execute("COMMIT")
    db.close()
    return total, time.process_time() - started, counts


def main() -> int:
    path = sys.argv[1]
    out = path.replace(".db", ".lean.db")
    rows: list[tuple[str, int, float]] = []
    total, seconds = scan(path)
    rows.append(("baseline: sqlite3 scan", total, seconds))
    total, seconds = scan(path, lambda batch: [orjson.loads(row[4]) for row in batch])
    rows.append(("scan + orjson.loads", total, seconds))
    total, seconds = scan(
        path,
        lambda batch: [
            decode(r[0], r[3].decode() if isinstance(r[3], bytes) else r[3], str(r[1]), r[2], r[4])
            for r in batch
        ],
    )
    rows.append(("scan + decode to RawEvent", total, seconds))
    total, seconds, _ = lean(path, out, write=False)
    rows.append(("scan + lean fold (no writes)", total, seconds))
    total, seconds, counts = lean(path, out, write=True)
    rows.append(("scan + lean fold + lean writes + index", total, seconds))
    sys.stdout.write(
        f"{f'(CPU seconds of this process; load {os.getloadavg()[0]:.1f})':44}"
        f"{'events/s':>12}{'seconds':>10}{'x scan':>8}\n"
    )
    scan_rate = rows[0][1] / rows[0][2]
    for label, events, secs in rows:
        sys.stdout.write(
            f"{label:44}{events / secs:12,.0f}{secs:10.2f}{(events / secs) / scan_rate:8.3f}\n"
        )
    sys.stdout.write(f"lean store: {counts}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
