"""``flashpoint verify | seal | export | import | replay | rebuild | keygen``: audits at a terminal.

All of them work on the store directly (``--store``), so an auditor needs no running server;
``verify`` and ``export`` only read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

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
    replay.add_argument("--output", help="file to write (default: standard output)")
    replay.set_defaults(handler=run_replay)

    rebuild = commands.add_parser("rebuild", help="rebuild a projection from the log")
    rebuild.add_argument(
        "name", choices=["escalation", "timeline", "negotiations", "sanctions", "posture"]
    )
    rebuild.set_defaults(handler=run_rebuild)

    keygen = commands.add_parser("keygen", help="make an Ed25519 key for signing seals")
    keygen.add_argument("path", help="where to write the private key (PEM, mode 0600)")
    keygen.set_defaults(handler=run_keygen)


def _service(settings: Any, **overrides: Any) -> Any:
    from service.bootstrap import build

    if overrides:
        settings = settings.model_copy(update=overrides)
    return build(settings, follow=False)


def _tables(settings: Any) -> tuple[Any, Callable[[], None]]:
    from service.audit.tables import LogTables
    from service.bootstrap import build_application

    app = build_application(settings)
    return LogTables(app.recorder), app.close


def _read_seals(path: str) -> list[dict[str, Any]]:
    from service.audit.seals import check_seal_shape

    text = Path(path).read_text().strip()
    loaded: Any = (
        json.loads(text)
        if text.startswith("[")
        else [json.loads(line) for line in text.splitlines() if line.strip()]
    )
    return [check_seal_shape(seal) for seal in loaded]


def run_verify(args: argparse.Namespace, settings: Any) -> int:
    from service.audit.seals import load_public_key
    from service.audit.verify import verify

    try:
        against = _read_seals(args.against) if args.against else None
        public_key = load_public_key(args.public_key) if args.public_key else None
    except (OSError, ValueError) as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE
    tables, close = _tables(settings)
    try:
        report = verify(tables, against=against, public_key=public_key)
    finally:
        close()
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(report.summary() + "\n")
    return EXIT_OK if report.intact else EXIT_FAILED


def run_seal(args: argparse.Namespace, settings: Any) -> int:
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


def run_export(args: argparse.Namespace, settings: Any) -> int:
    from service.audit.export import export_lines

    tables, close = _tables(settings)
    out = _output(args.output)
    try:
        for line in export_lines(tables):
            out.write(line)
    finally:
        if out is not sys.stdout:
            out.close()
        close()
    return EXIT_OK


def run_import(args: argparse.Namespace, settings: Any) -> int:
    from service.audit.export import ImportRefused, import_log

    tables, close = _tables(settings)
    try:
        count = import_log(tables, Path(args.file))
    except (ImportRefused, OSError, ValueError, KeyError) as error:
        sys.stderr.write(f"flashpoint: import refused: {error}\n")
        return EXIT_FAILED
    finally:
        close()
    sys.stdout.write(json.dumps({"imported": count}) + "\n")
    return EXIT_OK


def run_replay(args: argparse.Namespace, settings: Any) -> int:
    from datetime import UTC, datetime

    from service.adapters import log_views
    from service.application import queries
    from service.application.errors import CommandValidationError
    from service.bootstrap import build_application

    def when(text: str | None) -> datetime | None:
        if not text:
            return None
        value = datetime.fromisoformat(text)
        # A time without an offset is read as UTC, as everywhere in Flashpoint.
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    app = build_application(settings)
    out = _output(args.output)
    try:
        collection, resource_id = (
            queries.parse_any_name(args.resource) if args.resource else (None, None)
        )
        log_filter = log_views.LogFilter(
            resource_id=resource_id,
            collection=collection,
            types=tuple(args.types),
            recorded_after=when(args.recorded_after),
            recorded_before=when(args.recorded_before),
            occurred_after=when(args.occurred_after),
            occurred_before=when(args.occurred_before),
        )
        for view in log_views.read_events(app, args.from_position, args.limit, log_filter):
            out.write(view.model_dump_json() + "\n")
    except (CommandValidationError, ValueError) as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE
    finally:
        if out is not sys.stdout:
            out.close()
        app.close()
    return EXIT_OK


def run_rebuild(args: argparse.Namespace, settings: Any) -> int:
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


def run_keygen(args: argparse.Namespace, settings: Any) -> int:
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(args.path)
    if path.exists():
        sys.stderr.write(f"flashpoint: {path} exists; not overwriting a key\n")
        return EXIT_USAGE
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
