"""``flashpoint query …``: the read models at a terminal, from the local store or a server.

Each query is one request message, answered by the same servicer method in this process or
by a server (``--server``; see ``service.cli.backend``), so both ways print the same: the
response's JSON mapping (``--json``), or tables made from it (escalations, and their
history as a bar chart); everything else prints as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from service.api import translation as tr
from service.cli.backend import Backend, open_backend
from service.client import ApiError, InvalidArgument, NotFoundError
from service.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace, Settings], int]


def add_query_parser(commands: Any, add_client_flags: Callable[..., None]) -> None:
    query = commands.add_parser("query", help="read escalations, incidents, sanctions, talks")
    query.add_argument("--server", help="ask a running server (HOST:PORT) instead of the store")
    query.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_client_flags(query)
    what = query.add_subparsers(title="read models", metavar="WHAT")

    def sub(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = what.add_parser(name, help=help_text)
        parser.set_defaults(handler=run_query, query=name)
        # After the read model as well as before it (`query ranking --server X --json`).
        parser.add_argument("--server", default=argparse.SUPPRESS, help="HOST:PORT")
        parser.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON"
        )
        add_client_flags(parser, inner=True)
        parser.add_argument(
            "--min-position",
            type=int,
            default=0,
            help="wait until the read models have processed this position",
        )
        return parser

    def as_of(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--as-of", help="knowledge time: as it was known then (ISO 8601; default now)"
        )
        return parser

    def times(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--at", help="valid time (ISO 8601; default now)")
        as_of(parser)

    times(sub("escalation", "one country's escalation level, trend and why"))
    what.choices["escalation"].add_argument("country")
    pair = sub("pair", "escalation between two countries")
    pair.add_argument("actor")
    pair.add_argument("target")
    pair.add_argument("--both-ways", action="store_true", help="count target -> actor too")
    times(pair)
    ranking = sub("ranking", "countries ranked by escalation")
    ranking.add_argument("--min-level", type=int, default=1)
    ranking.add_argument("--limit", type=int, default=0)
    times(ranking)
    history = sub("history", "a country's escalation over time (table and chart)")
    history.add_argument("country")
    history.add_argument("--since", default="90d", help="how far back: 90d, 12w, 2025-09-01")
    history.add_argument("--until", help="the last point: 2025-09-15 or ISO 8601 (default now)")
    history.add_argument("--step", default="1d", help="between points: 1d, 12h, 1w")
    as_of(history)

    incident = sub("incident", "one incident: incidents/ID or ID")
    incident.add_argument("name")
    incidents = sub("incidents", "incidents, newest first")
    for flag in ("country", "actor", "target", "kind", "occurred-after", "occurred-before"):
        incidents.add_argument(f"--{flag}")
    incidents.add_argument("--min-confidence", type=float)
    incidents.add_argument("--include-retracted", action="store_true", default=None)
    incidents.add_argument("--page-size", type=int, default=0)
    incidents.add_argument("--page-token", default="")
    incidents.add_argument(
        "--all", dest="all_pages", action="store_true", help="follow every page to the last"
    )
    as_of(incidents)
    regime = sub("sanctions-regime", "one sanctions regime: sanctions/ID or ID")
    regime.add_argument("name")
    sanctions = sub("sanctions", "the sanctions register")
    sanctions.add_argument("--authority")
    sanctions.add_argument("--target")
    sanctions.add_argument("--in-force-on", help="only regimes in force on this date")
    sanctions.add_argument("--include-lifted", action="store_true")
    as_of(sanctions)
    negotiation = as_of(sub("negotiation", "one negotiation track with its history"))
    negotiation.add_argument("name")
    negotiations = as_of(sub("negotiations", "negotiation tracks"))
    negotiations.add_argument("--party")
    negotiations.add_argument("--status")
    posture = sub("posture", "exercises and deployments in progress")
    posture.add_argument("--country")
    times(posture)
    events = sub("events", "every event of one resource (its audit history)")
    events.add_argument("name", help="incidents/ID, sanctions/ID or negotiations/ID")
    sub("projections", "how far behind the log each read model and the audit chain are")


def add_watch_parser(commands: Any, add_client_flags: Callable[..., None]) -> None:
    watch = commands.add_parser(
        "watch", help="print a line whenever a country's escalation level changes (Ctrl-C ends)"
    )
    watch.add_argument("countries", nargs="*", metavar="COUNTRY", help="default: every country")
    watch.add_argument("--server", help="watch a running server (HOST:PORT)")
    watch.add_argument(
        "--from-position", type=int, default=0, help="resume after this log position"
    )
    add_client_flags(watch)
    watch.set_defaults(handler=run_watch)


# ---------------------------------------------------------------------- time arguments


def parse_time(text: str | None, field: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--{field.replace('_', '-')}: {text!r} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([hdw])$")


def parse_span(text: str, field: str) -> timedelta:
    match = _SPAN.match(text.strip())
    if not match:
        raise ValueError(f"--{field}: {text!r} is not a span like 12h, 90d or 2w")
    amount, unit = float(match.group(1)), match.group(2)
    return (
        timedelta(hours=amount)
        if unit == "h"
        else timedelta(days=amount * (7 if unit == "w" else 1))
    )


def since_time(text: str, now: datetime) -> datetime:
    if _SPAN.match(text.strip()):
        return now - parse_span(text, "since")
    value = parse_time(text, "since")
    if value is None:  # pragma: no cover - text is not None
        raise ValueError("--since is required")
    return value


# ---------------------------------------------------------------------- running


@dataclass(frozen=True)
class Query:
    """One ``flashpoint query`` as the call that answers it."""

    service: tr.Service
    method: str
    request: tr.Message
    #: The field of the response that holds the resource asked for (printed alone), or
    #: None to print the whole response.
    part: str | None = None
    #: Print fields at their zero value too (where 0 is news, as in a lag).
    zeros: bool = False


def _qualified(collection: str, name: str) -> str:
    return name if "/" in name else f"{collection}/{name}"


def query_for(args: argparse.Namespace, now: datetime) -> Query:
    """The request ``args`` ask for (ValueError for an unreadable time or span)."""
    at = parse_time(getattr(args, "at", None), "at")
    as_of = parse_time(getattr(args, "as_of", None), "as_of")
    mp = args.min_position

    def query(method: str, part: str | None = None, **values: Any) -> Query:
        request = tr.request_of("query", method, **values)
        return Query("query", method, request, part=part)

    match args.query:
        case "escalation":
            return query(
                "GetEscalation", "escalation",
                country=args.country, at=at, as_of=as_of, min_position=mp,
            )  # fmt: skip
        case "pair":
            return query(
                "GetPairEscalation", "escalation", actor=args.actor, target=args.target,
                unordered=args.both_ways, at=at, as_of=as_of, min_position=mp,
            )  # fmt: skip
        case "ranking":
            return query(
                "ListEscalations", at=at, as_of=as_of, min_level=args.min_level,
                limit=args.limit, min_position=mp,
            )  # fmt: skip
        case "history":
            return query(
                "GetEscalationHistory", country=args.country,
                start_time=since_time(args.since, now),
                end_time=parse_time(args.until, "until"), step=parse_span(args.step, "step"),
                as_of=as_of, min_position=mp,
            )  # fmt: skip
        case "incident":
            return query(
                "GetIncident", "incident", name=_qualified("incidents", args.name), min_position=mp
            )
        case "incidents":
            filters = _incident_filters(args)
            for key in ("occurred_after", "occurred_before"):
                if key in filters:
                    filters[key] = parse_time(filters[key], key)
            return query(
                "ListIncidents", page_size=args.page_size, page_token=args.page_token,
                min_position=mp, as_of=as_of, **filters,
            )  # fmt: skip
        case "sanctions-regime":
            return query(
                "GetSanctionsRegime", "regime",
                name=_qualified("sanctions", args.name), min_position=mp,
            )  # fmt: skip
        case "sanctions":
            return query(
                "ListSanctions", authority=args.authority, target=args.target,
                in_force_on=parse_time(args.in_force_on, "in_force_on"),
                include_lifted=args.include_lifted, min_position=mp, as_of=as_of,
            )  # fmt: skip
        case "negotiation":
            return query(
                "GetNegotiation", "negotiation",
                name=_qualified("negotiations", args.name), min_position=mp, as_of=as_of,
            )  # fmt: skip
        case "negotiations":
            return query(
                "ListNegotiations", party=args.party, status=args.status, min_position=mp,
                as_of=as_of,
            )  # fmt: skip
        case "posture":
            return query(
                "GetForcePosture", country=args.country, at=at, as_of=as_of, min_position=mp
            )
        case "projections":
            request = tr.request_of("query", "ListProjections")
            return Query("query", "ListProjections", request, zeros=True)
        case _:
            return Query(
                "audit", "GetHistory", tr.request_of("audit", "GetHistory", name=args.name)
            )


def _incident_filters(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "country",
        "actor",
        "target",
        "kind",
        "occurred_after",
        "occurred_before",
        "min_confidence",
        "include_retracted",
    )
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def answer(backend: Backend, query: Query) -> dict[str, Any]:
    """The answer to ``query`` as the proto's JSON mapping (raises ApiError)."""
    response = backend.unary(query.service, query.method, query.request)
    shown = getattr(response, query.part) if query.part else response
    return tr.message_to_json(shown, zeros=query.zeros)


def run_query(args: argparse.Namespace, settings: Settings) -> int:
    try:
        query = query_for(args, datetime.now(UTC))
    except ValueError as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE
    try:
        # Catching up first would hide the lag ``projections`` is asked to show.
        with open_backend(args, settings, catch_up=args.query != "projections") as backend:
            result = answer(backend, query)
            if getattr(args, "all_pages", False):
                result = _every_page(backend, query, result)
    except ApiError as error:
        return write_error(error)
    write(args, result)
    return EXIT_OK


def _every_page(backend: Backend, query: Query, first: dict[str, Any]) -> dict[str, Any]:
    """``ListIncidents`` followed through every ``next_page_token``: one answer of them all."""
    result = dict(first)
    items = list(first.get("incidents") or [])
    token = first.get("next_page_token")
    while token:
        request = type(query.request)()
        request.CopyFrom(query.request)
        setattr(request, "page_token", token)  # noqa: B010 - a Message, typed generically
        page = answer(backend, Query(query.service, query.method, request))
        items += page.get("incidents") or []
        token = page.get("next_page_token")
        result["position"] = page.get("position", result.get("position"))
    result["incidents"] = items
    result.pop("next_page_token", None)
    return result


def run_watch(args: argparse.Namespace, settings: Settings) -> int:
    """One line per change of level (or trend), until Ctrl-C or SIGTERM; both exit 0."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts a background command with it ignored, and "until Ctrl-C"
    # should hold however the watch was started.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    request = tr.request_of(
        "query", "WatchEscalation", countries=args.countries, from_position=args.from_position
    )
    try:
        # A watch runs for hours: a per-call deadline would end it.
        args.timeout = None
        # Locally the read models follow the log, as a server's do, so appends made by
        # other processes while this watches are seen.
        with open_backend(args, settings, follow=True) as backend:
            for change in backend.stream("query", "WatchEscalation", request):
                sys.stdout.write(watch_line(tr.message_to_json(change, zeros=True)) + "\n")
                sys.stdout.flush()
    except KeyboardInterrupt:
        return EXIT_OK
    except ApiError as error:
        return write_error(error)
    return EXIT_OK


def watch_line(change: dict[str, Any]) -> str:
    previous = int(change.get("previous_level", 0))
    was = f" (was {previous})" if previous else ""
    return (
        f"{change.get('at', '')}  {change.get('country', ''):<5} level {change.get('level', 0)} "
        f"{change.get('level_name', '')}{was}, score {fixed(change.get('score'))}, "
        f"trend {change.get('trend', '')}, position {change.get('position', 0)}"
    )


def write_error(error: ApiError) -> int:
    """Say what failed on stderr, the same for a local and a remote answer; the exit code."""
    if isinstance(error, InvalidArgument):
        violations = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
        sys.stderr.write(f"flashpoint: {violations or error.message}\n")
        return EXIT_USAGE
    if isinstance(error, NotFoundError):
        sys.stderr.write(f"flashpoint: {error.message}\n")
        return EXIT_FAILED
    sys.stderr.write(f"flashpoint: {error}\n")
    return EXIT_FAILED


# ---------------------------------------------------------------------- output

#: How many contributions the API explains an escalation with (its largest).
TOP_CONTRIBUTIONS = 5
_OFFSET_UTC = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?)\+00:00$")


def zulu(value: Any) -> Any:
    """``value`` with every UTC time written ``…Z`` (the proto JSON mapping's form), not
    ``…+00:00``, so all CLI output writes times one way."""
    if isinstance(value, str):
        match = _OFFSET_UTC.match(value)
        return f"{match.group(1)}Z" if match else value
    if isinstance(value, dict):
        return {key: zulu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [zulu(item) for item in value]
    return value


def json_text(value: Any, *, indent: int | None = 2) -> str:
    separators = (",", ":") if indent is None else None
    return json.dumps(zulu(value), indent=indent, separators=separators, default=str)


def fixed(value: Any, width: int = 0) -> str:
    """A score with two decimals; one that rounds to zero is 0.00, never -0.00."""
    number = float(value or 0)
    if abs(number) < 0.005:
        number = 0.0
    return f"{number:{width}.2f}"


def write(args: argparse.Namespace, result: Any) -> None:
    out = sys.stdout
    if args.json:
        out.write(json_text(result) + "\n")
        return
    out.write(TABLES[args.query](result))


def escalation_text(view: dict[str, Any]) -> str:
    lines = [
        f"{view.get('subject', '')}: level {view.get('level', 0)} ({view.get('level_name', '')}), "
        f"score {fixed(view.get('score'))} (as actor {fixed(view.get('actor_score'))}, "
        f"as target {fixed(view.get('target_score'))}), trend {view.get('trend', '')} "
        f"(30 days earlier {fixed(view.get('earlier_score'))})",
        f"at {view.get('at', '')}, as known at {view.get('as_of', '')}; "
        f"parameters {view.get('parameters_version', '')}",
    ]
    contributions = view.get("contributions") or []
    if contributions:
        lines.append("")
        lines.append(f"{'contribution':>12}  {'kind':<24} {'occurred':<20} resource")
        for item in contributions:
            lines.append(
                f"{fixed(item.get('contribution'), 12)}  {item.get('kind', ''):<24} "
                f"{item.get('occurred_at', '')!s:<20} {item.get('resource', '')}"
            )
        if len(contributions) >= TOP_CONTRIBUTIONS:
            # The API sends the largest few, not how many there are in all.
            lines.append(f"(top {TOP_CONTRIBUTIONS} shown)")
    return "\n".join(lines) + "\n"


def ranking_text(ranking: dict[str, Any]) -> str:
    rows = ranking.get("escalations") or []
    lines = [
        f"{'#':>3}  {'country':<8} {'level':<20} {'score':>8} {'as actor':>9} "
        f"{'as target':>9}  trend"
    ]
    for rank, view in enumerate(rows, 1):
        level = f"{view.get('level', 0)} {view.get('level_name', '')}"
        lines.append(
            f"{rank:>3}  {view.get('subject', ''):<8} {level:<20} {fixed(view.get('score'), 8)} "
            f"{fixed(view.get('actor_score'), 9)} {fixed(view.get('target_score'), 9)}  "
            f"{view.get('trend', '')}"
        )
    if not rows:
        lines.append("  (no escalation recorded)")
    lines.append(f"parameters {ranking.get('parameters_version', '')}")
    return "\n".join(lines) + "\n"


def level_legend() -> str:
    """The levels and the scores they start at, from the parameters table."""
    from projections.parameters import LEVEL_NAMES, THRESHOLDS

    starts = (0.0, *THRESHOLDS)
    return "levels: " + ", ".join(
        f"L{level} {LEVEL_NAMES[level]} from {start:g}"
        for level, start in zip(sorted(LEVEL_NAMES), starts, strict=True)
    )


def history_text(history: dict[str, Any], width: int = 50) -> str:
    points = history.get("points") or []
    peak = max((float(point.get("score", 0)) for point in points), default=0.0)
    lines = [
        f"{history.get('subject', '')} escalation, {len(points)} points "
        f"(as known at {history.get('as_of', '')}; parameters "
        f"{history.get('parameters_version', '')})",
        f"{'at':<20}  {'level':<5}  {'score':>8}  chart",
    ]
    for point in points:
        score = float(point.get("score", 0))
        bar = "█" * round(width * score / peak) if peak > 0 and score > 0 else ""
        lines.append(
            f"{point.get('at', '')!s:<20}  L{point.get('level', 1):<4}  {fixed(score, 8)}  {bar}"
        )
    lines.append(level_legend())
    return "\n".join(lines) + "\n"


# -------------------------------------------------- the other read models, as tables


#: A column's header and its cell: the row's value under a key, or what a function makes of
#: the row.
Column = tuple[str, str | Callable[[dict[str, Any]], Any]]


def table(rows: list[dict[str, Any]], columns: list[Column], empty: str) -> list[str]:
    """``rows`` as aligned columns (each cell at most 40 characters), or ``empty``."""
    if not rows:
        return [f"  ({empty})"]
    cells = [[_cell(_value(row, get)) for _, get in columns] for row in rows]
    widths = [
        max(len(header), *(len(line[index]) for line in cells))
        for index, (header, _) in enumerate(columns)
    ]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(columns, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    return lines


def _value(row: dict[str, Any], get: str | Callable[[dict[str, Any]], Any]) -> Any:
    return row.get(get) if isinstance(get, str) else get(row)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return fixed(value)
    if isinstance(value, list | tuple):
        return ",".join(_cell(item) for item in value)
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def details_text(resource: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """One ``field: value`` line per field (nested fields dotted, lists joined)."""
    lines: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
            for index, item in enumerate(value):
                pairs = ", ".join(
                    f"{k}={_cell(v) if not isinstance(v, dict) else json_text(v, indent=None)}"
                    for k, v in item.items()
                )
                lines.append(f"{prefix}[{index}]: {pairs}")
        else:
            lines.append(f"{prefix}: {_full(value)}")

    for key, value in resource.items():
        if key not in skip:
            walk(key, value)
    return lines


def _full(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _country(party: Any) -> str:
    return str(party.get("country", "")) if isinstance(party, dict) else ""


def incidents_text(result: dict[str, Any]) -> str:
    rows = result.get("incidents") or []
    lines = table(
        rows,
        [
            ("incident", "name"),
            ("kind", "kind"),
            ("occurred", lambda i: (i.get("evidence") or {}).get("occurred_at")),
            ("actor", lambda i: _country(i.get("actor"))),
            ("target", lambda i: _country(i.get("target"))),
            ("location", lambda i: _country(i.get("location"))),
            ("confidence", lambda i: float(i.get("confidence", 0))),
            ("retracted", lambda i: bool(i.get("retracted"))),
        ],
        "no incident",
    )
    if result.get("next_page_token"):
        lines.append(f"more: --page-token {result['next_page_token']} (or --all)")
    return "\n".join(lines) + "\n"


def sanctions_text(result: dict[str, Any]) -> str:
    lines = table(
        result.get("regimes") or [],
        [
            ("regime", "name"),
            ("authority", "authority"),
            ("target", "target"),
            ("programme", "programme"),
            ("entities", lambda r: r.get("entities_count", 0)),
            ("effective from", "effective_from"),
            ("expires", "expires_at"),
            ("lifted", lambda r: bool(r.get("lifted"))),
        ],
        "no sanctions regime",
    )
    return "\n".join(lines) + "\n"


def negotiations_text(result: dict[str, Any]) -> str:
    lines = table(
        result.get("negotiations") or [],
        [
            ("track", "name"),
            ("parties", "parties"),
            ("mediator", "mediator"),
            ("status", "status"),
            ("rounds", lambda n: n.get("rounds", 0)),
            ("subject", "subject"),
        ],
        "no negotiation track",
    )
    return "\n".join(lines) + "\n"


def negotiation_text(track: dict[str, Any]) -> str:
    lines = details_text(track, skip=("history",))
    lines += ["", "history:"]
    lines += table(
        track.get("history") or [],
        [
            ("occurred", "occurred_at"),
            ("event", "event"),
            ("status", "status"),
            ("by", "by"),
            ("reason", "reason"),
            ("position", "position"),
        ],
        "no history",
    )
    return "\n".join(lines) + "\n"


def posture_text(result: dict[str, Any]) -> str:
    rows = result.get("deployments") or []
    lines = table(
        rows,
        [
            ("incident", "incident"),
            ("kind", "kind"),
            ("actor", "actor"),
            ("title", "title"),
            ("troops", lambda d: d.get("troop_count", 0)),
            ("starts", "starts_at"),
            ("ends", "ends_at"),
            ("border with", "border_with"),
        ],
        "no exercise or deployment",
    )
    return "\n".join(lines) + "\n"


def events_text(result: dict[str, Any]) -> str:
    lines = table(
        result.get("events") or [],
        [
            ("position", "position"),
            ("recorded", "recorded_at"),
            ("type", "type"),
            ("version", "version"),
            ("resource", "resource"),
        ],
        "no event",
    )
    return "\n".join(lines) + "\n"


def projections_text(status: dict[str, Any]) -> str:
    followers = [*(status.get("projections") or []), status.get("audit_chain") or {}]
    lines = [f"head of the log: position {status.get('head', 0)}"]
    lines += table(
        [follower for follower in followers if follower],
        [
            ("name", "name"),
            ("generation", "generation"),
            ("position", "position"),
            ("lag events", "lag_events"),
            ("lag seconds", lambda f: float(f.get("lag_seconds", 0))),
            ("quarantined", "quarantined_events"),
        ],
        "no projection",
    )
    return "\n".join(lines) + "\n"


def _details(resource: dict[str, Any]) -> str:
    return "\n".join(details_text(resource)) + "\n"


#: How each query prints without ``--json``.
TABLES: dict[str, Callable[[dict[str, Any]], str]] = {
    "escalation": escalation_text,
    "pair": escalation_text,
    "ranking": ranking_text,
    "history": history_text,
    "incident": _details,
    "incidents": incidents_text,
    "sanctions-regime": _details,
    "sanctions": sanctions_text,
    "negotiation": negotiation_text,
    "negotiations": negotiations_text,
    "posture": posture_text,
    "events": events_text,
    "projections": projections_text,
}
