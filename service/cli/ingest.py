"""``flashpoint ingest gdelt|acled``: published event data into the ledger.

Rows are mapped by :mod:`service.ingest` (a row maps to a command or is skipped with its
reason) and sent through the backend of every CLI command (the local store, or
``--server``). Each command's request id is the row's own id, so importing a file twice
records nothing new (every row replays). The summary counts every row by outcome:
recorded, replayed, skipped by reason, rejected by the server by its status code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import zipfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TextIO

import structlog

from service.application.handlers import CommandResult
from service.client import ApiError, BulkResult
from service.domain.commands import Command
from service.ingest import acled, gdelt
from service.ingest.records import Mapped, Outcome, Skipped
from service.settings import Settings

log = structlog.get_logger()

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Examples kept per skip reason or rejection code, for the summary.
EXAMPLES = 3


@dataclass
class Tally:
    """Every row's outcome, counted."""

    rows: int = 0
    recorded: int = 0
    replayed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    last_position: int = 0

    def skip(self, outcome: Skipped) -> None:
        self.skipped[outcome.reason] += 1
        self._example(outcome.reason, f"{outcome.row_id}: {outcome.detail}".rstrip(": "))

    def reject(self, row_id: str, error: ApiError) -> None:
        self.rejected[error.code.name] += 1
        self._example(error.code.name, f"{row_id}: {error.message}")

    def _example(self, key: str, text: str) -> None:
        shown = self.examples.setdefault(key, [])
        if len(shown) < EXAMPLES:
            shown.append(text)

    def add(self, other: Tally) -> None:
        self.rows += other.rows
        self.recorded += other.recorded
        self.replayed += other.replayed
        self.skipped.update(other.skipped)
        self.rejected.update(other.rejected)
        self.by_kind.update(other.by_kind)
        for key, shown in other.examples.items():
            for text in shown:
                self._example(key, text)
        self.files += other.files
        self.last_position = max(self.last_position, other.last_position)

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "skipped": dict(self.skipped.most_common()),
            "rejected": dict(self.rejected.most_common()),
            "recorded_by_kind": dict(self.by_kind.most_common()),
            "examples": self.examples,
            "files": self.files,
        }

    def text(self) -> str:
        skipped, rejected = sum(self.skipped.values()), sum(self.rejected.values())
        lines = [
            f"{self.rows} rows: {self.recorded} recorded, {self.replayed} replayed, "
            f"{skipped} skipped, {rejected} rejected"
        ]
        if self.by_kind:
            kinds = ", ".join(f"{kind} {count}" for kind, count in self.by_kind.most_common())
            lines.append(f"  sent by kind: {kinds}")
        for title, counts in (
            ("skipped", self.skipped),
            ("rejected by the server", self.rejected),
        ):
            if counts:
                lines.append(f"{title}:")
                for key, count in counts.most_common():
                    example = "; ".join(self.examples.get(key, [])[:1])
                    lines.append(f"  {key:<24} {count:>7}   e.g. {example}")
        return "\n".join(lines) + "\n"


class Progress:
    """A one-line progress report on stderr, only when it is a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._on = self._stream.isatty()
        self._shown = 0.0
        self._started = time.monotonic()

    def update(self, tally: Tally, force: bool = False) -> None:
        now = time.monotonic()
        if not self._on or (not force and now - self._shown < 0.2):
            return
        self._shown = now
        rate = tally.rows / max(now - self._started, 1e-9)
        self._stream.write(
            f"\r{tally.rows} rows  {tally.recorded} recorded  {tally.replayed} replayed  "
            f"{sum(tally.skipped.values())} skipped  {sum(tally.rejected.values())} rejected"
            f"  {rate:,.0f} rows/s\x1b[K"
        )
        self._stream.flush()

    def done(self, tally: Tally) -> None:
        if self._on:
            self.update(tally, force=True)
            self._stream.write("\n")


Execute = Callable[[Command], CommandResult]


def ingest(
    outcomes: Iterable[Outcome],
    execute: Execute,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Tally:
    """Send every mapped row through ``execute``; count every row's outcome."""
    tally = Tally()
    for outcome in outcomes:
        if stop is not None and stop.is_set():
            break
        tally.rows += 1
        if isinstance(outcome, Skipped):
            tally.skip(outcome)
        else:
            _send(outcome, execute, tally)
        if progress is not None:
            progress.update(tally)
    if progress is not None:
        progress.done(tally)
    return tally


#: The bulk stream: commands in, each one's result (or error) out, in order.
SubmitMany = Callable[[Iterable[Command]], Iterable[BulkResult]]


def ingest_stream(
    outcomes: Iterable[Outcome],
    submit_many: SubmitMany,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Tally:
    """As :func:`ingest`, through the bulk stream: rows are mapped as the stream takes
    commands (the client may pull them from its own thread), answers counted as they come."""
    tally = Tally()
    sent: deque[Mapped] = deque()

    failed: list[Exception] = []

    def commands() -> Iterator[Command]:
        rows = iter(outcomes)
        while stop is None or not stop.is_set():
            try:
                outcome = next(rows, None)
            except Exception as error:
                # Reading the file failed (not a zip, not ACLED's header): end the stream
                # cleanly and raise here, not inside the stream, where it would read as
                # the server's failure.
                failed.append(error)
                return
            if outcome is None:
                return
            tally.rows += 1
            if isinstance(outcome, Skipped):
                tally.skip(outcome)
                continue
            sent.append(outcome)
            yield outcome.command

    for answer in submit_many(commands()):
        outcome = sent.popleft()
        if answer.command.request_id != outcome.command.request_id:  # pragma: no cover
            raise RuntimeError("the bulk stream answered out of order")
        _count(outcome, answer.error or answer.result, tally)
        if progress is not None:
            progress.update(tally)
    if failed:
        raise failed[0]
    if progress is not None:
        progress.done(tally)
    return tally


class Sends(Protocol):
    """A backend or client: ``execute`` always, ``submit_many`` once the bulk stream is in."""

    def execute(self, command: Command) -> CommandResult: ...


def send_all(
    to: Sends,
    outcomes: Iterable[Outcome],
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> Tally:
    """Every row through ``to``'s bulk stream where it has one, else one call per row."""
    submit_many: SubmitMany | None = getattr(to, "submit_many", None)
    if submit_many is not None:
        return ingest_stream(outcomes, submit_many, progress=progress, stop=stop)
    return ingest(outcomes, to.execute, progress=progress, stop=stop)


def _send(outcome: Mapped, execute: Execute, tally: Tally) -> None:
    try:
        result: CommandResult | ApiError = execute(outcome.command)
    except ApiError as error:
        result = error
    _count(outcome, result, tally)


#: Codes that say nothing about a row but about the server or the caller: the import stops
#: (a re-run resumes, the rows sent before replaying) rather than refuse every row alike.
STOPPING = frozenset({"UNAVAILABLE", "UNAUTHENTICATED", "PERMISSION_DENIED"})


def _count(outcome: Mapped, result: CommandResult | ApiError | None, tally: Tally) -> None:
    assert result is not None
    if isinstance(result, ApiError):
        if result.code.name in STOPPING:
            raise result
        tally.reject(outcome.command.request_id or "", result)
        return
    if result.replayed:
        tally.replayed += 1
    else:
        tally.recorded += 1
        tally.by_kind[outcome.via] += 1
    tally.last_position = max(tally.last_position, result.position)


def gdelt_outcomes(source: str | Path) -> Iterator[Outcome]:
    for line in gdelt.lines_of(source):
        yield gdelt.map_line(line)


def acled_outcomes(path: Path) -> Iterator[Outcome]:
    for row in acled.read(path):
        yield acled.map_row(row)


# ---------------------------------------------------------------------- --follow


class FollowState:
    """The exports already ingested from a folder, kept in a small JSON file so a restart
    resumes. Written whole to a temporary file and renamed, so a crash leaves the old
    state or the new one, never half of one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            data = json.loads(path.read_text())
            self.done = dict(data.get("done", {}))

    def record(self, name: str, tally: Tally) -> None:
        self.done[name] = {
            "rows": tally.rows,
            "recorded": tally.recorded,
            "at": datetime.now(UTC).isoformat(),
        }
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps({"done": self.done}, indent=1, sort_keys=True))
        os.replace(temporary, self.path)


def follow(
    directory: Path,
    state: FollowState,
    to: Sends,
    stop: threading.Event,
    *,
    poll: float = 10.0,
    settle: float = 2.0,
    on_file: Callable[[str, Tally], None] | None = None,
) -> Tally:
    """Ingest each export that appears in ``directory`` once, until ``stop`` is set.

    A file is taken once it has not changed for ``settle`` seconds (GDELT's files land
    whole, a copy in progress does not); one stopped midway is not marked done, and its
    next ingest replays the rows already sent."""
    total = Tally()
    while not stop.is_set():
        for path in gdelt.export_files(directory):
            if stop.is_set():
                break
            if path.name in state.done:
                continue
            try:
                if time.time() - path.stat().st_mtime < settle:
                    continue
                tally = send_all(to, gdelt_outcomes(path), stop=stop)
            except (OSError, zipfile.BadZipFile) as error:
                log.warning("ingest.file_unreadable", file=path.name, error=str(error))
                continue
            except ApiError as error:
                # The server is away: the file stays to do, taken again at the next look.
                log.warning("ingest.server_unavailable", file=path.name, error=str(error))
                break
            if stop.is_set():
                break
            tally.files.append(path.name)
            state.record(path.name, tally)
            log.info("ingest.file_done", file=path.name, **_counts(tally))
            total.add(tally)
            if on_file is not None:
                on_file(path.name, tally)
        stop.wait(poll)
    return total


def _counts(tally: Tally) -> dict[str, int]:
    return {
        "rows": tally.rows,
        "recorded": tally.recorded,
        "replayed": tally.replayed,
        "skipped": sum(tally.skipped.values()),
        "rejected": sum(tally.rejected.values()),
    }


# ---------------------------------------------------------------------- the command


def add_ingest_parser(
    commands: Any, add_client_flags: Callable[[argparse.ArgumentParser], None]
) -> None:
    ingest_parser = commands.add_parser(
        "ingest", help="import published event data (GDELT 2.0 exports, ACLED CSV)"
    )
    formats = ingest_parser.add_subparsers(title="formats", metavar="FORMAT")
    gdelt_parser = formats.add_parser(
        "gdelt", help="GDELT 2.0 event exports: a .CSV or .zip, a folder of them, or - (stdin)"
    )
    gdelt_parser.add_argument("source", nargs="?", help="FILE, DIR or - (stdin)")
    gdelt_parser.add_argument(
        "--follow", metavar="DIR", help="watch DIR for new 15-minute exports, ingest each once"
    )
    gdelt_parser.add_argument(
        "--state", help="--follow's state file (default DIR/.flashpoint-ingest.json)"
    )
    gdelt_parser.add_argument(
        "--poll", type=float, default=10.0, help="--follow: seconds between looks (default 10)"
    )
    acled_parser = formats.add_parser("acled", help="an ACLED export (CSV with its header)")
    acled_parser.add_argument("source", help="FILE.csv")
    for parser in (gdelt_parser, acled_parser):
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")
        parser.add_argument("--server", help="send to a running server (HOST:PORT)")
        add_client_flags(parser)
        parser.set_defaults(handler=run_ingest, format=parser.prog.split()[-1])


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli.backend import open_backend

    if args.format == "gdelt" and not (args.source or args.follow):
        sys.stderr.write("flashpoint: ingest gdelt needs FILE, DIR, - or --follow DIR\n")
        return EXIT_USAGE
    if args.format == "gdelt" and args.follow and not Path(args.follow).is_dir():
        sys.stderr.write(f"flashpoint: --follow {args.follow}: not a directory\n")
        return EXIT_USAGE
    source = args.source
    if source and source != "-" and not Path(source).exists():
        sys.stderr.write(f"flashpoint: {source}: no such file or directory\n")
        return EXIT_USAGE
    try:
        with open_backend(args, settings, create=True, catch_up=False) as backend:
            if args.format == "gdelt" and args.follow:
                tally = _follow(args, backend)
            elif args.format == "gdelt":
                tally = send_all(backend, gdelt_outcomes(source), progress=Progress())
                tally.files.append(source)
            else:
                tally = send_all(backend, acled_outcomes(Path(source)), progress=Progress())
                tally.files.append(source)
    except acled.FormatError as error:
        sys.stderr.write(f"flashpoint: {source}: {error}\n")
        return EXIT_USAGE
    except zipfile.BadZipFile as error:
        sys.stderr.write(f"flashpoint: {source}: {error}\n")
        return EXIT_USAGE
    except ApiError as error:
        # The server went away (or refused us) for every row alike: not a row's outcome.
        sys.stderr.write(
            f"flashpoint: {error}\nthe import stopped; run it again to resume (the rows "
            "already recorded replay)\n"
        )
        return EXIT_FAILED
    sys.stdout.write(json.dumps(tally.as_json(), indent=2) + "\n" if args.json else tally.text())
    return EXIT_FAILED if tally.rejected else EXIT_OK


def _follow(args: argparse.Namespace, to: Sends) -> Tally:
    directory = Path(args.follow)
    state = FollowState(Path(args.state) if args.state else directory / ".flashpoint-ingest.json")
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        log.info("ingest.stopping", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info("ingest.following", directory=str(directory), done=len(state.done))
        return follow(directory, state, to, stop, poll=args.poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------- demo --gdelt

#: The GDELT export the repository's tests use, beside the checkout (see the issue).
SAMPLE = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "gdelt" / "20170601234500.export.CSV"
)
#: Countries whose top contributors the demo explains.
EXPLAINED = 3


def load_gdelt_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Ingest a GDELT export, then show the escalation ranking the day after its newest
    event and what drives the first few countries, as an analyst would read it."""
    from service.api import translation as tr
    from service.cli.backend import open_backend
    from service.cli.query import Query, answer, ranking_text, write_error

    source = Path(args.gdelt) if args.gdelt else SAMPLE
    if not source.exists():
        sys.stderr.write(
            f"flashpoint: {source}: no such file; give an export: demo --gdelt FILE "
            "(GDELT publishes one every 15 minutes at data.gdeltproject.org/gdeltv2/)\n"
        )
        return EXIT_USAGE
    outcomes = list(gdelt_outcomes(source))
    newest = max(
        (o.command.evidence.occurred_at for o in outcomes if isinstance(o, Mapped)),  # type: ignore[attr-defined]
        default=datetime.now(UTC),
    )
    at = newest.replace(hour=23, minute=59)
    try:
        with open_backend(args, settings, create=True) as backend:
            tally = send_all(backend, outcomes, progress=Progress())
            request = tr.request_of(
                "query", "ListEscalations", at=at, limit=10, min_position=tally.last_position
            )
            ranking = answer(backend, Query("query", "ListEscalations", request))
            explained = []
            for view in (ranking.get("escalations") or [])[:EXPLAINED]:
                country = view.get("subject", "")
                detail = tr.request_of("query", "GetEscalation", country=country, at=at)
                escalation = answer(backend, Query("query", "GetEscalation", detail, "escalation"))
                explained.append((country, _contributors(backend, escalation)))
    except ApiError as error:
        return write_error(error)
    out = sys.stdout
    out.write(f"Ingested {source.name}: {tally.text()}\n")
    out.write(f"Escalation on {at:%Y-%m-%d} (GDELT-coded news, graded C2-C4):\n\n")
    out.write(ranking_text(ranking))
    for country, lines in explained:
        out.write(f"\nWhat drives {country}:\n")
        out.write("".join(lines) or "  (nothing recorded)\n")
    out.write(
        f"\nTry: flashpoint query escalation {explained[0][0] if explained else 'USA'} "
        f"--at {at:%Y-%m-%dT%H:%M:%SZ}\n"
    )
    return EXIT_OK


def _contributors(backend: Any, escalation: dict[str, Any]) -> list[str]:
    from service.api import translation as tr
    from service.cli.query import Query, answer, fixed

    lines = []
    for item in escalation.get("contributions") or []:
        resource = item.get("resource", "")
        summary = ""
        if resource.startswith("incidents/"):
            request = tr.request_of("query", "GetIncident", name=resource)
            incident = answer(backend, Query("query", "GetIncident", request, "incident"))
            evidence = incident.get("evidence") or {}
            summary = evidence.get("summary", "")
            sources = evidence.get("sources") or []
            if sources and sources[0].get("url"):
                summary += f"\n{'':>10}{sources[0]['url']}"
        lines.append(
            f"  {fixed(item.get('contribution'), 6)}  {item.get('kind', ''):<22} "
            f"{str(item.get('occurred_at', ''))[:10]}  {summary or resource}\n"
        )
    return lines
