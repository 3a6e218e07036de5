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


def add_query_parser(commands: Any, add_client_flags: Callable[[Any], None]) -> None:
    query = commands.add_parser("query", help="read escalations, incidents, sanctions, talks")
    query.add_argument("--server", help="ask a running server (HOST:PORT) instead of the store")
    query.add_argument("--json", action="store_true", help="print JSON instead of tables")
    add_client_flags(query)
    what = query.add_subparsers(title="read models", metavar="WHAT")

    def sub(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = what.add_parser(name, help=help_text)
        parser.set_defaults(handler=run_query, query=name)
        parser.add_argument(
            "--min-position",
            type=int,
            default=0,
            help="wait until the read models have processed this position",
        )
        return parser

    def times(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--at", help="valid time (ISO 8601; default now)")
        parser.add_argument("--as-of", help="knowledge time (ISO 8601; default now)")

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
    history.add_argument("--step", default="1d", help="between points: 1d, 12h, 1w")
    history.add_argument("--as-of", help="knowledge time (ISO 8601; default now)")

    incident = sub("incident", "one incident: incidents/ID or ID")
    incident.add_argument("name")
    incidents = sub("incidents", "incidents, newest first")
    for flag in ("country", "actor", "target", "kind", "occurred-after", "occurred-before"):
        incidents.add_argument(f"--{flag}")
    incidents.add_argument("--min-confidence", type=float)
    incidents.add_argument("--include-retracted", action="store_true", default=None)
    incidents.add_argument("--page-size", type=int, default=0)
    incidents.add_argument("--page-token", default="")
    regime = sub("sanctions-regime", "one sanctions regime: sanctions/ID or ID")
    regime.add_argument("name")
    sanctions = sub("sanctions", "the sanctions register")
    sanctions.add_argument("--authority")
    sanctions.add_argument("--target")
    sanctions.add_argument("--in-force-on", help="only regimes in force on this date")
    sanctions.add_argument("--include-lifted", action="store_true")
    negotiation = sub("negotiation", "one negotiation track with its history")
    negotiation.add_argument("name")
    negotiations = sub("negotiations", "negotiation tracks")
    negotiations.add_argument("--party")
    negotiations.add_argument("--status")
    posture = sub("posture", "exercises and deployments in progress")
    posture.add_argument("--country")
    posture.add_argument("--at")
    events = sub("events", "every event of one resource (its audit history)")
    events.add_argument("name", help="incidents/ID, sanctions/ID or negotiations/ID")
    sub("projections", "how far behind the log each read model and the audit chain are")


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
                start_time=since_time(args.since, now), step=parse_span(args.step, "step"),
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
                min_position=mp, **filters,
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
                include_lifted=args.include_lifted, min_position=mp,
            )  # fmt: skip
        case "negotiation":
            return query(
                "GetNegotiation", "negotiation",
                name=_qualified("negotiations", args.name), min_position=mp,
            )  # fmt: skip
        case "negotiations":
            return query("ListNegotiations", party=args.party, status=args.status, min_position=mp)
        case "posture":
            return query("GetForcePosture", country=args.country, at=at, min_position=mp)
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
    except ApiError as error:
        return write_error(error)
    write(args, result)
    return EXIT_OK


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


def write(args: argparse.Namespace, result: Any) -> None:
    out = sys.stdout
    if args.json or args.query not in ("escalation", "pair", "ranking", "history"):
        out.write(json.dumps(result, indent=2, default=str) + "\n")
        return
    if args.query in ("escalation", "pair"):
        out.write(escalation_text(result))
    elif args.query == "ranking":
        out.write(ranking_text(result))
    else:
        out.write(history_text(result))


def escalation_text(view: dict[str, Any]) -> str:
    lines = [
        f"{view.get('subject', '')}: level {view.get('level', 0)} ({view.get('level_name', '')}), "
        f"score {float(view.get('score', 0)):.2f}, trend {view.get('trend', '')} "
        f"(30 days earlier {float(view.get('earlier_score', 0)):.2f})",
        f"at {view.get('at', '')}, as known at {view.get('as_of', '')}; "
        f"parameters {view.get('parameters_version', '')}",
    ]
    contributions = view.get("contributions") or []
    if contributions:
        lines.append("")
        lines.append(f"{'contribution':>12}  {'kind':<24} {'occurred':<20} resource")
        for item in contributions:
            lines.append(
                f"{float(item.get('contribution', 0)):12.2f}  {item.get('kind', ''):<24} "
                f"{str(item.get('occurred_at', ''))[:19]:<20} {item.get('resource', '')}"
            )
    return "\n".join(lines) + "\n"


def ranking_text(ranking: dict[str, Any]) -> str:
    rows = ranking.get("escalations") or []
    lines = [f"{'#':>3}  {'country':<8} {'level':<20} {'score':>8}  trend"]
    for rank, view in enumerate(rows, 1):
        level = f"{view.get('level', 0)} {view.get('level_name', '')}"
        lines.append(
            f"{rank:>3}  {view.get('subject', ''):<8} {level:<20} "
            f"{float(view.get('score', 0)):8.2f}  {view.get('trend', '')}"
        )
    if not rows:
        lines.append("  (no escalation recorded)")
    lines.append(f"parameters {ranking.get('parameters_version', '')}")
    return "\n".join(lines) + "\n"


def history_text(history: dict[str, Any], width: int = 50) -> str:
    points = history.get("points") or []
    peak = max((float(point.get("score", 0)) for point in points), default=0.0)
    lines = [
        f"{history.get('subject', '')} escalation "
        f"(parameters {history.get('parameters_version', '')})"
    ]
    for point in points:
        score = float(point.get("score", 0))
        bar = "█" * round(width * score / peak) if peak > 0 and score > 0 else ""
        lines.append(
            f"{str(point.get('at', ''))[:16]:<16}  L{point.get('level', 0)}  {score:8.2f}  {bar}"
        )
    return "\n".join(lines) + "\n"
