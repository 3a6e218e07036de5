"""CPU time of one ReportIncursion inside the server process, stage by stage, no transport.

    scripts/bench command [--commands 3000]

Single-threaded and in-process, so the figures are CPU microseconds per command with no
contention, no gRPC and no client: the floor under what a server spends per call. Baseline,
measured in the same run: parsing and serialising the request's protobuf bytes, the least
any server does with a call. Compare the stages with the echo service's CPU time per call
in ``scripts/bench throughput`` (its ``server µs/call`` column).

Stages, each including the ones before it:
  1. translate  the request bytes into a validated command (protobuf -> pydantic)
  2. fingerprint  the command, as its receipt records it
  3. decide  the aggregate's events and the receipt, and map the events to stored records
  4. look up  the receipt of the request id, as every command with one does first (one
     statement on the receipts table, which also finds receipts of the old kind)
  5. record  the whole command on a SQLite file, the receipt in the events' transaction,
     one transaction per command (WAL, synchronous=FULL); CPU time only, the fsync's
     wait is not CPU (stage 5 is ``execute``: it repeats stages 1-4, not adds to them)

Then the mapping alone (a command's stored records encoded, and decoded back), with the
library's stdlib JSON transcoder beside the application's orjson one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventsourcing.persistence import JSONTranscoder, Mapper

from service.adapters.mapper import StableNameMapper
from service.adapters.store import FlashpointApplication
from service.adapters.store_url import store_environment
from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2 as pb
from service.domain import commands as c
from service.domain.receipt import Receipt, receipt_id
from service.domain.submitter import submitted_by
from tests.factories import command


def per_command(count: int, action: Callable[[int], Any]) -> float:
    """CPU microseconds per call of ``action(0..count-1)``, after a warm-up on other
    indices (so that recording never meets a request id twice)."""
    for index in range(count, count + 200):
        action(index)
    started = time.process_time()
    for index in range(count):
        action(index)
    return (time.process_time() - started) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=3000)
    args = parser.parse_args()
    count: int = args.commands
    folder = Path(tempfile.mkdtemp(prefix="flashpoint-bench-command-"))
    app = FlashpointApplication(env=store_environment(f"sqlite:///{folder}/bench.db"))
    try:
        requests = []
        for _ in range(count + 200):
            request = tr.request_from_command(
                command(c.ReportIncursion, request_id=uuid.uuid4().hex)
            )
            requests.append(request.SerializeToString())

        def baseline(index: int) -> Any:
            request = pb.ReportIncursionRequest.FromString(requests[index])
            return request.SerializeToString()

        def translate(index: int) -> c.ReportIncursion:
            request = pb.ReportIncursionRequest.FromString(requests[index])
            return tr.command_from_request(c.ReportIncursion, request)

        def fingerprint(index: int) -> str:
            return translate(index).fingerprint()

        def decide(index: int) -> Any:
            cmd = translate(index)
            stamp = submitted_by("bench", None, cmd.request_id)
            key = receipt_id("bench", cmd.request_id or "")
            aggregate = app._decide(cmd, stamp, key)
            receipt = Receipt(
                receipt_id=key,
                principal="bench",
                request_id=cmd.request_id or "",
                command=cmd.command_name,
                fingerprint=cmd.fingerprint(),
                resource=f"incidents/{aggregate.id}",
                resource_version=aggregate.version,
            )
            return receipt, [app.mapper.to_stored_event(e) for e in aggregate.collect_events()]

        def look_up(index: int) -> Any:
            decided = decide(index)
            return decided, app.find_receipt(decided[0].receipt_id)

        def record(index: int) -> Any:
            return app.execute(translate(index))

        stages: list[tuple[str, Callable[[int], Any]]] = [
            ("baseline: protobuf parse + serialise", baseline),
            ("1. translate (protobuf -> pydantic)", translate),
            ("2. + fingerprint", fingerprint),
            ("3. + decide and map to stored records", decide),
            ("4. + look the receipt up (a retry?)", look_up),
            ("5. + record on SQLite (execute)", record),
        ]
        sys.stdout.write(
            f"{count} commands per stage, single thread, {sys.version.split()[0]}\n"
            f"{'':42}{'CPU µs/command':>15}{'ratio':>9}\n"
        )
        base = 0.0
        for label, action in stages:
            cost = per_command(count, action)
            base = base or cost
            sys.stdout.write(f"{label:42}{cost:15,.1f}{cost / base:9.1f}\n")
            sys.stdout.flush()
        mapping(app, decide, count)
    finally:
        app.close()
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def mapping(app: FlashpointApplication, decide: Callable[[int], Any], count: int) -> None:
    """The mapping of each command's records, with either transcoder, against the library's."""
    records = [decide(index)[1] for index in range(count + 200)]
    events = [[app.mapper.to_domain_event(record) for record in batch] for batch in records]
    library = JSONTranscoder()
    app.register_transcodings(library)
    mappers = (("library JSON", StableNameMapper(transcoder=library)), ("orjson", app.mapper))
    sys.stdout.write(f"\nmapping, per command{'':10}{'CPU µs/command':>15}{'ratio':>9}\n")
    for direction in ("encode", "decode"):
        base = 0.0
        for name, mapper in mappers:

            def encode(index: int, mapper: Mapper[uuid.UUID] = mapper) -> Any:
                return [mapper.to_stored_event(event) for event in events[index]]

            def decode(index: int, mapper: Mapper[uuid.UUID] = mapper) -> Any:
                return [mapper.to_domain_event(record) for record in records[index]]

            cost = per_command(count, encode if direction == "encode" else decode)
            base = base or cost
            label = f"{direction} ({name} transcoder)"
            sys.stdout.write(f"{label:42}{cost:15,.1f}{cost / base:9.1f}\n")


if __name__ == "__main__":
    raise SystemExit(main())
