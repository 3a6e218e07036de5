"""``flashpoint verify | seal | export | import | replay | rebuild | keygen``: audits at a terminal.

All of them work on the store directly (``--store``), so an auditor needs no running server;
``verify`` and ``export`` only read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from projections.readmodels import ALL
from service import bootstrap
from service.api import translation as tr
from service.bootstrap import Flashpoint
from service.cli.client import add_client_flags
from service.settings import Settings

#: The projections a rebuild or retry can name.
PROJECTIONS = tuple(projection.name for projection in ALL)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_audit_parsers(commands: Any) -> None:
    verify = commands.add_parser("verify", help="check the log's hash chain and seals")
    verify.add_argument("--against", help="seal file(s) kept elsewhere: JSON or JSON Lines")
    verify.add_argument("--public-key", help="trusted Ed25519 key (PEM) the seals must carry")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(handler=run_verify)

    seal = commands.add_parser("seal", help="chain what is new and seal the log now")
    seal.add_argument("--output", help="also append the seal to this file (JSON Lines)")
    seal.add_argument("--seal-key", help="Ed25519 private key (PEM) to sign with")
    seal.set_defaults(handler=run_seal)

    export = commands.add_parser("export", help="write the log as JSON Lines")
    export.add_argument("--output", help="file to write (default: standard output)")
    export.set_defaults(handler=run_export)

    load = commands.add_parser("import", help="load an export into an empty store")
    load.add_argument("file")
    load.set_defaults(handler=run_import)

    replay = commands.add_parser("replay", help="stream the log (filtered) as JSON Lines")
    replay.add_argument("--from", dest="from_position", type=int, default=1)
    replay.add_argument("--limit", type=int, default=0)
    replay.add_argument("--resource", help="incidents/ID, sanctions/ID or negotiations/ID")
    replay.add_argument("--type", dest="types", action="append", default=[])
    replay.add_argument("--recorded-after")
    replay.add_argument("--recorded-before")
    replay.add_argument("--occurred-after")
    replay.add_argument("--occurred-before")
    replay.add_argument("--country", help="only events concerning this country (ISO alpha-3)")
    replay.add_argument("--output", help="file to write (default: standard output)")
    replay.add_argument(
        "--follow",
        action="store_true",
        help="after the log's end, keep printing events as they are recorded (Ctrl-C ends)",
    )
    replay.add_argument("--server", help="read from a running server (HOST:PORT; auditor)")
    add_client_flags(replay)
    replay.set_defaults(handler=run_replay)

    rebuild = commands.add_parser("rebuild", help="rebuild a projection from the log")
    rebuild.add_argument("name", choices=list(PROJECTIONS))
    rebuild.set_defaults(handler=run_rebuild)

    retry = commands.add_parser(
        "retry-quarantined",
        help="fold again the events a projection set aside (after a fix), release those "
        "that now fold",
    )
    retry.add_argument("name", choices=list(PROJECTIONS))
    retry.add_argument("--server", help="ask a running server (HOST:PORT; admin)")
    add_client_flags(retry)
    retry.set_defaults(handler=run_retry_quarantined)

    keygen = commands.add_parser("keygen", help="make an Ed25519 key for signing seals")
    keygen.add_argument("path", help="where to write the private key (PEM, mode 0600)")
    keygen.set_defaults(handler=run_keygen)


def _service(settings: Settings, **overrides: Any) -> Flashpoint:
    """The service on an existing store (these commands never create one)."""
    if overrides:
        settings = settings.model_copy(update=overrides)
    return bootstrap.build(settings, create=False, one_shot=True)


def _read_seals(path: str) -> list[dict[str, Any]]:
    from service.audit.seals import check_seal_shape

    text = Path(path).read_text().strip()
    loaded: Any = (
        json.loads(text)
        if text.startswith("[")
        else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    return [check_seal_shape(seal) for seal in loaded]


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    from service.audit.seals import load_public_key
    from service.audit.verify import verify
    from service.cli.query import json_text

    try:
        against = _read_seals(args.against) if args.against else None
        public_key = load_public_key(args.public_key) if args.public_key else None
    except (OSError, ValueError) as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE
    log = bootstrap.build_log(settings, create=False, one_shot=True)
    try:
        report = verify(log.log_tables, against=against, public_key=public_key)
    finally:
        log.close()
    if args.json:
        sys.stdout.write(json_text(report.as_dict()) + "\n")
    else:
        sys.stdout.write(report.summary() + "\n")
    return EXIT_OK if report.intact else EXIT_FAILED


def run_seal(args: argparse.Namespace, settings: Settings) -> int:
    from service.audit.hashing import canonical_json

    service = _service(settings, **({"seal_key": args.seal_key} if args.seal_key else {}))
    try:
        service.chainer.catch_up()
        seal = service.chainer.seal()
    finally:
        service.close()
    if seal is None:
        sys.stderr.write("flashpoint: the log is empty; nothing to seal\n")
        return EXIT_FAILED
    line = canonical_json(seal)
    sys.stdout.write(line + "\n")
    if args.output:
        with open(args.output, "a", encoding="utf-8") as file:
            file.write(line + "\n")
    return EXIT_OK


def _output(path: str | None) -> TextIO:
    return open(path, "w", encoding="utf-8") if path else sys.stdout


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from service.audit.export import export_lines

    log = bootstrap.build_log(settings, create=False, one_shot=True)
    out = _output(args.output)
    try:
        for line in export_lines(log.log_tables):
            out.write(line)
    finally:
        if out is not sys.stdout:
            out.close()
        log.close()
    return EXIT_OK


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    from service.audit.export import ImportRefused, import_log

    if not Path(args.file).is_file():
        # Before the store is opened: a mistyped file must not leave an empty store behind.
        sys.stderr.write(f"flashpoint: import refused: no file {args.file}\n")
        return EXIT_USAGE
    # An import is how a store is restored: into a new one, typically.
    log = bootstrap.build_log(settings, create=True, one_shot=True)
    try:
        count = import_log(log.log_tables, Path(args.file))
    except (ImportRefused, OSError, ValueError, KeyError) as error:
        sys.stderr.write(f"flashpoint: import refused: {error}\n")
        return EXIT_FAILED
    finally:
        log.close()
    sys.stdout.write(json.dumps({"imported": count}) + "\n")
    return EXIT_OK


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    """The log's events as JSON Lines, read through the same ReadEvents call a server
    answers (so the filters mean the same)."""
    from service.cli.backend import open_backend
    from service.cli.query import json_text, parse_time, write_error
    from service.client import ApiError

    try:
        # A time without an offset is read as UTC, as everywhere in Flashpoint.
        times = {
            name: parse_time(getattr(args, name), name)
            for name in ("recorded_after", "recorded_before", "occurred_after", "occurred_before")
        }
    except ValueError as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE
    if args.follow:
        return _follow(args, settings, times)
    request = tr.request_of(
        "audit", "ReadEvents", from_position=args.from_position, limit=args.limit,
        resource=args.resource, types=args.types, country=args.country, **times,
    )  # fmt: skip
    out = _output(args.output)
    try:
        with open_backend(args, settings, catch_up=False) as backend:
            for event in backend.stream("audit", "ReadEvents", request):
                data = tr.log_event_data(event.event)
                out.write(json_text(data, indent=None) + "\n")
    except ApiError as error:
        return write_error(error)
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_OK


def _follow(args: argparse.Namespace, settings: Settings, times: dict[str, Any]) -> int:
    """``replay --follow``: SubscribeEvents, one JSON line per event, flushed as it comes,
    until Ctrl-C or SIGTERM (exit 0) or ``--limit`` events. Against a server, a lost
    connection is resumed from the last position received."""
    import signal

    from service.cli.backend import open_backend
    from service.cli.client import make_client
    from service.cli.query import json_text, write_error
    from service.client import ApiError

    if times["recorded_after"] or times["recorded_before"]:
        # What is followed is being recorded now: a recorded window has no live meaning.
        sys.stderr.write("flashpoint: --follow takes no --recorded-after/--recorded-before\n")
        return EXIT_USAGE
    if args.limit < 0:
        sys.stderr.write("flashpoint: --limit must not be negative\n")
        return EXIT_USAGE

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    filters = {
        "resource": args.resource or None, "types": args.types, "country": args.country,
        "occurred_after": times["occurred_after"], "occurred_before": times["occurred_before"],
    }  # fmt: skip
    after = max(args.from_position, 1) - 1
    out = _output(args.output)
    written = 0
    try:
        # A subscription runs for hours: a per-call deadline would end it.
        args.timeout = None
        if getattr(args, "server", None):
            client = make_client(args)
            responses: Any = client.subscribe_events(after, **filters)
            closing: Any = client
        else:
            request = tr.request_of("audit", "SubscribeEvents", after_position=after, **filters)
            closing = open_backend(args, settings, catch_up=False)
            responses = closing.stream("audit", "SubscribeEvents", request)
        with closing:
            for response in responses:
                if not response.HasField("event"):
                    continue
                out.write(json_text(tr.log_event_data(response.event), indent=None) + "\n")
                out.flush()
                written += 1
                if args.limit and written >= args.limit:
                    break
            responses.close()
    except KeyboardInterrupt:
        return EXIT_OK
    except ApiError as error:
        return write_error(error)
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_OK


def run_rebuild(args: argparse.Namespace, settings: Settings) -> int:
    from projections.runner import Progress

    service = _service(settings)
    terminal = sys.stderr.isatty()

    def show(progress: Progress) -> None:
        if not terminal:
            return
        share = progress.position / progress.total if progress.total else 1.0
        bar = "█" * int(30 * share)
        eta = f"{progress.eta_seconds:.0f}s" if progress.eta_seconds is not None else "?"
        sys.stderr.write(
            f"\r{progress.projection} [{bar:<30}] {progress.position:,}/{progress.total:,} "
            f"{progress.events_per_second:,.0f} ev/s ETA {eta} "
        )

    try:
        position = service.worker.rebuild(args.name, on_progress=show)
    finally:
        service.close()
    if terminal:
        sys.stderr.write("\n")
    sys.stdout.write(json.dumps({"rebuilt": args.name, "position": position}) + "\n")
    return EXIT_OK


def run_retry_quarantined(args: argparse.Namespace, settings: Settings) -> int:
    """Through the same RetryQuarantinedEvents call a server answers."""
    from service.cli.backend import open_backend
    from service.cli.query import json_text, write_error
    from service.client import ApiError

    request = tr.request_of("audit", "RetryQuarantinedEvents", projection=args.name)
    try:
        with open_backend(args, settings, catch_up=False) as backend:
            response = backend.unary("audit", "RetryQuarantinedEvents", request)
    except ApiError as error:
        return write_error(error)
    sys.stdout.write(json_text(tr.message_to_json(response, zeros=True)) + "\n")
    return EXIT_OK


def run_keygen(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(args.path)
    if path.exists():
        sys.stderr.write(f"flashpoint: {path} exists; not overwriting a key\n")
        return EXIT_USAGE
    # Keys belong outside the repository (~/.config/flashpoint/…), in a folder only the
    # owner can read.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    sys.stdout.write(public.decode())
    return EXIT_OK
