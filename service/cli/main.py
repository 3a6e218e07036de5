"""The ``flashpoint`` command line.

``flashpoint report KIND --flags`` records a development. The flags of each kind come
from its command model, so the CLI can never drift from what the API accepts; ``--json``
takes the whole command as JSON instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime

from service.application.handlers import CommandResult
from service.cli.audit import add_audit_parsers
from service.cli.client import add_client_flags
from service.cli.ingest import add_ingest_parser
from service.cli.query import add_query_parser, add_watch_parser
from service.domain.commands import (
    COMMANDS,
    Command,
    CommandValidationError,
    ReportDevelopment,
    parse_command,
)
from service.settings import Settings

#: Flags handled by hand because they build nested objects: the parties and place of a
#: development (elsewhere ``target`` or ``location`` is a plain field, as in sanctions), and
#: evidence and sources everywhere.
_PARTIES = {"actor", "target", "location"}
_EVIDENCE = {"evidence", "source", "sources"}


def _by_hand(command_class: type[Command], name: str) -> bool:
    return name in _EVIDENCE or (name in _PARTIES and issubclass(command_class, ReportDevelopment))


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from service.bootstrap import SetupError
    from service.logs import configure_logging

    try:
        settings = Settings.load(
            store=args.store, log_level=args.log_level, log_format=args.log_format,
            **_command_settings(args),
        )  # fmt: skip
    except ValueError as error:
        sys.stderr.write(f"flashpoint: {settings_error(error)}\n")
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    handler: Callable[[argparse.Namespace, Any], int] = args.handler
    try:
        return handler(args, settings)
    except SetupError as error:
        # A missing store, an unreachable database, an unreadable key: the user's to fix,
        # said in one line, whichever command met it.
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE
    except OSError as error:
        if error.filename is None:
            raise
        # A file named on the command line (--output, --against …) that cannot be used.
        sys.stderr.write(f"flashpoint: {error.filename}: {error.strerror or error}\n")
        return EXIT_USAGE


def settings_error(error: ValueError) -> str:
    """One line for invalid settings, naming the flag (and its variable), not pydantic's
    report of them."""
    from pydantic import ValidationError

    from service.settings import ENV_PREFIX

    if not isinstance(error, ValidationError):
        return f"invalid settings: {error}"
    parts = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"invalid --{name.replace('_', '-')} ({ENV_PREFIX}{name.upper()}): {message}")
    return "; ".join(parts)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flashpoint")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout, not installed
        return "unknown"


def _command_settings(args: argparse.Namespace) -> dict[str, Any]:
    names = ("listen", "http", "tokens_file", "tls_cert", "tls_key", "tls_client_ca", "insecure",
             "projections", "metrics_port", "metrics_host", "group_commit")  # fmt: skip
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flashpoint",
        description="Flashpoint: an event-sourced ledger of geopolitical incidents.",
    )
    parser.add_argument("--version", action="version", version=f"flashpoint {_version()}")
    _add_global_flags(parser, default=None)
    # The same flags after the subcommand (`flashpoint serve --store ...`) as before it.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_flags(common, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=_parser_with(common)
    )

    report = commands.add_parser(
        "report", help="record a development (incident, sanctions, negotiations)"
    )
    # Before the kind (`report --server X incursion`) as well as after it.
    report.add_argument(
        "--server", help="send to a running server (HOST:PORT) instead of the local store"
    )
    add_client_flags(report)
    kinds = report.add_subparsers(title="developments", metavar="KIND")
    for command_class in COMMANDS.values():
        kind_parser = kinds.add_parser(
            command_class.cli_name,
            help=(command_class.__doc__ or command_class.command_name).strip().splitlines()[0],
            description=f"{command_class.command_name}: {(command_class.__doc__ or '').strip()}",
        )
        _add_command_flags(kind_parser, command_class)
        kind_parser.set_defaults(handler=_run_report, command_class=command_class)

    serve = commands.add_parser("serve", help="run the gRPC server")
    serve.add_argument(
        "--listen", help="HOST:PORT (default 127.0.0.1:50051; env FLASHPOINT_LISTEN)"
    )
    serve.add_argument(
        "--http",
        help="also serve the web dashboard and the HTTP/JSON API on HOST:PORT, e.g. "
        "127.0.0.1:8080 (default off; env FLASHPOINT_HTTP)",
    )
    serve.add_argument("--tokens-file", help="bearer tokens, one 'NAME ROLES sha256:HEX' per line")
    serve.add_argument("--tls-cert", help="server certificate (PEM) for TLS")
    serve.add_argument("--tls-key", help="server private key (PEM) for TLS")
    serve.add_argument("--tls-client-ca", help="CA bundle; clients must present a cert (mTLS)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow serving a non-loopback address without authentication",
    )
    serve.add_argument(
        "--projections",
        choices=["embedded", "external"],
        help="keep read models current in this process (default) or leave it to "
        "`flashpoint project` workers",
    )
    _add_metrics_flags(serve)
    serve.add_argument(
        "--group-commit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="append the events of commands arriving together in one transaction, each "
        "command still answered alone (default on; env FLASHPOINT_GROUP_COMMIT)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the listen port (SO_REUSEPORT), e.g. one per core "
        "(default 1; env FLASHPOINT_WORKERS)",
    )
    serve.set_defaults(handler=_run_serve)

    add_query_parser(commands, add_client_flags)
    add_watch_parser(commands, add_client_flags)
    add_audit_parsers(commands)
    add_ingest_parser(commands, add_client_flags)

    project = commands.add_parser(
        "project", help="run the projection worker: keep the read models current"
    )
    project.add_argument("--once", action="store_true", help="catch up with the log, then exit")
    project.add_argument(
        "--poll-interval",
        type=_positive_seconds,
        metavar="SECONDS",
        help="how often to look for appends no notification announced, and for an owner "
        "gone (default 0.5; PostgreSQL notifies every append, so this bounds only misses)",
    )
    _add_metrics_flags(project)
    project.set_defaults(handler=_run_project)

    migrate = commands.add_parser(
        "migrate", help="create the store's tables (events, chain, read models) and exit"
    )
    migrate.set_defaults(handler=_run_migrate)

    health = commands.add_parser("health", help="ask a server's gRPC health service")
    health.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT")
    health.add_argument("--timeout", type=float, default=3.0)
    health.add_argument("--tls-ca", help="CA certificate when the server uses TLS")
    health.set_defaults(handler=_run_health)

    demo = commands.add_parser(
        "demo", help="load the sample scenario (drones over Poland, Zapad, sanctions, talks)"
    )
    demo.add_argument("--server", help="load it through a running server (HOST:PORT)")
    demo.add_argument(
        "--gdelt",
        nargs="?",
        const="",
        metavar="FILE",
        help="instead, ingest a GDELT export (default: the shared 2017 sample) and rank it",
    )
    add_client_flags(demo)
    demo.set_defaults(handler=_run_demo)

    bulk = commands.add_parser(
        "submit", help="record many commands from JSON lines, through the bulk stream"
    )
    bulk.add_argument(
        "file", help='JSON lines, each {"command": "ReportIncursion", ...} (-: stdin)'
    )
    bulk.add_argument("--server", help="send them to a running server (HOST:PORT)")
    bulk.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_client_flags(bulk)
    bulk.set_defaults(handler=_run_submit)

    token = commands.add_parser("token", help="make a bearer token and its tokens-file line")
    token.add_argument("name", help="the principal, e.g. osint-pipeline")
    token.add_argument("roles", help="comma-separated: reporter, analyst, auditor, admin")
    token.set_defaults(handler=_run_token)
    return parser


def _add_global_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--store",
        default=default,
        help="event store URL: sqlite:///path/file.db (default ./flashpoint.db) or "
        "postgresql://user@host:port/db; env FLASHPOINT_STORE",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=default
    )
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default=default)


def _parser_with(common: argparse.ArgumentParser) -> type[argparse.ArgumentParser]:
    class SubcommandParser(argparse.ArgumentParser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("parents", [common])
            super().__init__(*args, **kwargs)

    return SubcommandParser


# ------------------------------------------------------------------ report


def _add_command_flags(parser: argparse.ArgumentParser, command_class: type[Command]) -> None:
    parser.add_argument("--json", metavar="FILE", help="the whole command as JSON ('-': stdin)")
    parser.add_argument(
        "--server",
        default=argparse.SUPPRESS,
        help="send to a running server (HOST:PORT) instead of the local store",
    )
    add_client_flags(parser, inner=True)
    fields = command_class.model_fields
    if issubclass(command_class, ReportDevelopment):
        parser.add_argument(
            "--actor",
            help="country (ISO alpha-3) or organisation that acted; 'unknown' when not known",
        )
        parser.add_argument("--actor-organisation", help="e.g. military, foreign ministry")
        parser.add_argument("--target", help="country acted upon")
        parser.add_argument("--target-organisation")
        parser.add_argument("--location", help="country where it happened")
        parser.add_argument("--location-region")
        parser.add_argument("--location-place")
        parser.add_argument("--latitude", type=float)
        parser.add_argument("--longitude", type=float)
    if "evidence" in fields:
        parser.add_argument(
            "--occurred-at",
            help="ISO 8601 (UTC without an offset; a date alone is that day, precision day; "
            "default: now)",
        )
        parser.add_argument("--precision", choices=["day", "hour", "minute"])
        parser.add_argument("--reported-at", help="when the source published (ISO 8601)")
        parser.add_argument(
            "--reliability", choices=list("ABCDEF"), help="source reliability (default F)"
        )
        parser.add_argument("--credibility", type=int, help="information credibility 1-6 (6)")
        parser.add_argument("--summary")
    if {"evidence", "source", "sources"} & set(fields):
        parser.add_argument("--source", action="append", help="source name (repeatable)")
        parser.add_argument(
            "--source-url", action="append", help="source URL, paired with --source in order"
        )
    for name, info in fields.items():
        if _by_hand(command_class, name):
            continue
        flag = "--" + name.replace("_", "-")
        annotation = _strip_optional(info.annotation)
        if annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif typing.get_origin(annotation) is tuple:
            parser.add_argument(flag, action="append", help="repeatable or comma-separated")
        else:
            parser.add_argument(flag, help=info.description)


def _strip_optional(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return _strip_optional(args[0])
    return annotation


class FlagError(ValueError):
    """Flags that cannot make a command: one given without the one it qualifies, an id of
    the wrong kind of resource, JSON that does not parse."""


#: The id flags, and the collection of the resource each names (``incidents/{id}``).
_ID_COLLECTIONS = {"incident_id": "incidents", "regime_id": "sanctions", "track_id": "negotiations"}
#: Flags that only qualify another: without it they would be dropped unseen.
_QUALIFIERS = {
    "location": ("location_region", "location_place", "latitude", "longitude"),
    "actor": ("actor_organisation",),
    "target": ("target_organisation",),
}
#: What ``--actor`` says for an actor nobody has named yet.
UNKNOWN_ACTOR = "unknown"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text!r}")
    return seconds


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _time_flag(text: str | None) -> str | None:
    """A time as the queries read it: a date alone is that day at 00:00 UTC, a time without
    an offset is UTC; anything else is left for the command's own validation to refuse."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return text
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _resource_id(name: str, value: str) -> str:
    """The id of an id flag given as ``ID`` or as the name every command prints,
    ``incidents/ID`` (refused if it names another kind of resource)."""
    collection, slash, rest = value.strip().partition("/")
    if not slash:
        return value
    expected = _ID_COLLECTIONS[name]
    if collection != expected:
        raise FlagError(f"invalid {_flag(name)}: {value!r} is not one of the {expected}/ID")
    return rest


def command_data_from_flags(args: argparse.Namespace, command_class: type[Command]) -> Any:
    """The raw command body the flags describe (validated afterwards, like any input);
    FlagError for flags that cannot make one."""
    fields = command_class.model_fields
    data: dict[str, Any] = {}
    if issubclass(command_class, ReportDevelopment):
        for main_flag, qualifiers in _QUALIFIERS.items():
            given = [name for name in qualifiers if getattr(args, name, None) is not None]
            if given and not getattr(args, main_flag, None):
                raise FlagError(f"{_flag(given[0])} needs {_flag(main_flag)}")
        if args.actor and args.actor.strip().lower() == UNKNOWN_ACTOR:
            data["actor"] = _without_none(unknown=True, organisation=args.actor_organisation)
        elif args.actor:
            data["actor"] = _party(args.actor, args.actor_organisation)
        if args.target:
            data["target"] = _party(args.target, args.target_organisation)
        if args.location:
            data["location"] = _without_none(
                country=args.location, region=args.location_region, place=args.location_place,
                latitude=args.latitude, longitude=args.longitude,
            )  # fmt: skip
    sources = _sources(getattr(args, "source", None), getattr(args, "source_url", None))
    if "evidence" in fields:
        day_only = bool(args.occurred_at and _DATE.match(args.occurred_at.strip()))
        data["evidence"] = _without_none(
            occurred_at=_time_flag(args.occurred_at) or datetime.now(UTC).isoformat(),
            precision=args.precision or ("day" if day_only else None),
            reported_at=_time_flag(args.reported_at),
            sources=sources,
            reliability=args.reliability or "F",
            credibility=args.credibility if args.credibility is not None else 6,
            summary=args.summary,
        )
    elif "source" in fields and sources:
        data["source"] = sources[0]
    elif "sources" in fields and sources:
        data["sources"] = sources
    for name, info in fields.items():
        if _by_hand(command_class, name):
            continue
        value = getattr(args, name, None)
        if value is None:
            continue
        annotation = _strip_optional(info.annotation)
        if typing.get_origin(annotation) is tuple:
            value = [item.strip() for chunk in value for item in chunk.split(",") if item.strip()]
        elif typing.get_origin(annotation) is dict or annotation is dict:
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise FlagError(f"invalid {_flag(name)}: not JSON ({error})") from None
        elif annotation in (datetime, AwareDatetime):
            value = _time_flag(value)
        elif name in _ID_COLLECTIONS:
            value = _resource_id(name, value)
        data[name] = value
    return data


def _party(country: str, organisation: str | None) -> dict[str, Any]:
    return _without_none(country=country, organisation=organisation)


def _sources(names: list[str] | None, urls: list[str] | None) -> list[dict[str, Any]]:
    names, urls = names or [], urls or []
    return [
        _without_none(name=name, url=urls[index] if index < len(urls) else None)
        for index, name in enumerate(names)
    ]


def _without_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _run_report(args: argparse.Namespace, settings: Settings) -> int:
    command_class: type[Command] = args.command_class
    if args.json:
        try:
            text = sys.stdin.read() if args.json == "-" else Path(args.json).read_text()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            sys.stderr.write(f"flashpoint: --json {args.json}: {reason or error}\n")
            return EXIT_USAGE
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            sys.stderr.write(f"flashpoint: --json is not valid JSON: {error}\n")
            return EXIT_USAGE
    else:
        try:
            data = command_data_from_flags(args, command_class)
        except FlagError as error:
            sys.stderr.write(f"flashpoint: {error}\n")
            return EXIT_USAGE
    try:
        command = parse_command(command_class, data)
    except CommandValidationError as error:
        _write_violations(error)
        return EXIT_USAGE
    from service.cli.backend import open_backend
    from service.client import ApiError, InvalidArgument

    # The same JSON, and the same refusals, whether the local store or a server records it.
    try:
        with open_backend(args, settings, create=True) as backend:
            result = backend.execute(command)
    except InvalidArgument as error:
        _write_violations(CommandValidationError(error.violations))
        return EXIT_USAGE
    except ApiError as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_FAILED
    _write_result(result)
    return EXIT_OK


def _write_result(result: CommandResult) -> None:
    _write_json(
        {
            "resource": result.resource,
            "id": str(result.id),
            "version": result.version,
            "position": result.position,
            "replayed": result.replayed,
        }
    )


def _write_violations(error: CommandValidationError) -> None:
    for violation in error.violations:
        sys.stderr.write(f"flashpoint: invalid {violation.field}: {violation.description}\n")


def _write_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ serve, query, token


def _run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.api.auth import TokenConfigError
    from service.cli.serve import ServeRefused, serve

    if getattr(args, "workers", None) is not None:
        try:
            settings = Settings.model_validate({**settings.model_dump(), "workers": args.workers})
        except ValueError as error:
            sys.stderr.write(f"flashpoint: invalid settings: {error}\n")
            return EXIT_USAGE
    try:
        return serve(settings)
    except (ServeRefused, TokenConfigError, OSError) as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE


def _add_metrics_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default off; env "
        "FLASHPOINT_METRICS_PORT; 0 = off)",
    )
    parser.add_argument(
        "--metrics-host",
        help="HOST for the metrics (default the --listen host, 127.0.0.1; env "
        "FLASHPOINT_METRICS_HOST)",
    )


def _run_project(args: argparse.Namespace, settings: Settings) -> int:
    import signal

    from service import bootstrap
    from service.metrics import stop_serving

    # One worker owns each projection at a time (PostgreSQL); --once catches up everything.
    service = bootstrap.build(settings, exclusive=not args.once, poll_interval=args.poll_interval)
    if args.once:
        try:
            processed = service.worker.catch_up()
            _write_json({"processed": processed, "positions": service.worker.positions()})
        finally:
            service.close()
        return EXIT_OK

    def stop(signum: int, frame: Any) -> None:
        service.worker.stopping.set()
        service.worker.wakeup.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    metrics_http = bootstrap.serve_worker_metrics(settings, service)
    try:
        service.worker.run()
    finally:
        if metrics_http is not None:
            stop_serving(metrics_http)
        service.close()
    return EXIT_OK


def _run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from service import bootstrap

    # Building the service creates every table it uses (IF NOT EXISTS), then nothing else.
    service = bootstrap.build(settings, one_shot=True)
    try:
        service.worker.ensure_current()
    finally:
        service.close()
    _write_json({"migrated": True})
    return EXIT_OK


def _run_health(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the server reports SERVING (for container health checks)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if args.tls_ca:
        credentials = grpc.ssl_channel_credentials(Path(args.tls_ca).read_bytes())
        channel = grpc.secure_channel(args.server, credentials)
    else:
        channel = grpc.insecure_channel(args.server)
    with channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=args.timeout
            )
        except grpc.RpcError as error:
            sys.stderr.write(f"flashpoint: {args.server}: {error.code().name}\n")
            return EXIT_FAILED
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    sys.stdout.write(("SERVING" if serving else "NOT_SERVING") + "\n")
    return EXIT_OK if serving else EXIT_FAILED


def _run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli.demo import load_demo

    return load_demo(args, settings)


def _run_submit(args: argparse.Namespace, settings: Settings) -> int:
    from service.cli.submit import submit

    return submit(args, settings)


def _run_token(args: argparse.Namespace, settings: Settings) -> int:
    from service.api.auth import TokenConfigError, new_token

    try:
        token, line = new_token(args.name, args.roles.split(","))
    except TokenConfigError as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE
    sys.stdout.write(f"{line}\n")
    sys.stderr.write(
        f"token for {args.name} (shown once; the line above is what the server keeps):\n{token}\n"
    )
    return EXIT_OK
