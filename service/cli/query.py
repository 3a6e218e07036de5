"""``flashpoint query …``: the read models at a terminal, from the local store or a server.

Both ways give the same data (the server's messages and the local views share field names);
escalations print as tables, their history also as a bar chart, everything else as JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Handler = Callable[[argparse.Namespace, Any], int]


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


def run_query(args: argparse.Namespace, settings: Any) -> int:
    try:
        backend: Backend = (
            RemoteBackend(args)
            if args.server
            # Catching up first would hide the lag this query is asked to show.
            else LocalBackend(settings, catch_up=args.query != "projections")
        )
    except ValueError as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE
    try:
        result = backend.answer(args)
    except ValueError as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_USAGE
    except LookupError as error:
        sys.stderr.write(f"flashpoint: {error}\n")
        return EXIT_FAILED
    finally:
        backend.close()
    write(args, result)
    return EXIT_OK


class Backend:
    def answer(self, args: argparse.Namespace) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _qualified(collection: str, name: str) -> str:
    return name if "/" in name else f"{collection}/{name}"


class LocalBackend(Backend):
    """Reads the store directly, after bringing the read models up to date."""

    def __init__(self, settings: Any, *, catch_up: bool = True) -> None:
        from service.bootstrap import build

        self._service = build(settings, follow=False)
        if catch_up:
            self._service.worker.catch_up()

    def close(self) -> None:
        self._service.close()

    def answer(self, args: argparse.Namespace) -> Any:
        from service.adapters import log_views
        from service.application import queries
        from service.application.errors import CommandValidationError, NotFound

        read, app = self._service.read_models, self._service.app
        now = datetime.now(UTC)
        try:
            at = _epoch(parse_time(getattr(args, "at", None), "at"))
            as_of = _epoch(parse_time(getattr(args, "as_of", None), "as_of"))
            match args.query:
                case "escalation":
                    country = queries.country(args.country, "country")
                    return read.escalation(country, at=at, as_of=as_of).model_dump(mode="json")
                case "pair":
                    actor = queries.country(args.actor, "actor")
                    target = queries.country(args.target, "target")
                    view = read.escalation(
                        actor, pair=(target, not args.both_ways), at=at, as_of=as_of
                    )
                    return view.model_dump(mode="json")
                case "ranking":
                    ranking = read.ranking(
                        at=at, as_of=as_of, min_level=args.min_level, limit=args.limit
                    )
                    return ranking.model_dump(mode="json")
                case "history":
                    country = queries.country(args.country, "country")
                    history = read.escalation_history(
                        country,
                        start=since_time(args.since, now).timestamp(),
                        step=parse_span(args.step, "step").total_seconds(),
                        as_of=as_of,
                    )
                    return history.model_dump(mode="json")
                case "incident":
                    incident = queries.get_incident(app, _qualified("incidents", args.name))
                    return incident.model_dump(mode="json")
                case "incidents":
                    chosen = queries.incident_filter(**_incident_filters(args))
                    states, token = read.incidents(
                        **chosen.arguments(), page_size=args.page_size, page_token=args.page_token
                    )
                    return {"incidents": states, "next_page_token": token}
                case "sanctions-regime":
                    regime = queries.get_sanctions_regime(app, _qualified("sanctions", args.name))
                    return regime.model_dump(mode="json")
                case "sanctions":
                    return {
                        "regimes": read.sanctions(
                            authority=args.authority,
                            target=args.target,
                            in_force_on=_epoch(parse_time(args.in_force_on, "in_force_on")),
                            include_lifted=args.include_lifted,
                        )
                    }
                case "negotiation":
                    track = queries.parse_name(
                        _qualified("negotiations", args.name), "negotiations"
                    )
                    state = read.negotiation(str(track))
                    if state is None:
                        raise NotFound(_qualified("negotiations", args.name))
                    return state
                case "negotiations":
                    return {"negotiations": read.negotiations(party=args.party, status=args.status)}
                case "posture":
                    return {"deployments": read.force_posture(country=args.country, at=at)}
                case "projections":
                    from service.api.translation import log_status_to_proto, message_to_json
                    from service.status import log_status

                    status = log_status_to_proto(log_status(self._service))
                    return message_to_json(status, zeros=True)
                case _:
                    events = log_views.history(app, args.name)
                    return {"events": [event.model_dump(mode="json") for event in events]}
        except CommandValidationError as error:
            raise ValueError(str(error)) from None
        except NotFound as error:
            raise LookupError(str(error)) from None


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value else None


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


class RemoteBackend(Backend):
    """Asks a running server through the typed client."""

    def __init__(self, args: argparse.Namespace) -> None:
        from service.cli.main import make_client

        self._client = make_client(args)

    def close(self) -> None:
        self._client.close()

    def answer(self, args: argparse.Namespace) -> Any:
        from google.protobuf.duration_pb2 import Duration
        from google.protobuf.timestamp_pb2 import Timestamp

        from service.api.gen.flashpoint.v1 import query_service_pb2 as q
        from service.api.translation import message_to_json
        from service.client import ApiError, InvalidArgument, NotFoundError

        def stamp(value: datetime | None) -> Timestamp | None:
            if value is None:
                return None
            result = Timestamp()
            result.FromDatetime(value)
            return result

        c = self._client
        now = datetime.now(UTC)
        at = stamp(parse_time(getattr(args, "at", None), "at"))
        as_of = stamp(parse_time(getattr(args, "as_of", None), "as_of"))
        mp = args.min_position
        try:
            match args.query:
                case "escalation":
                    return message_to_json(
                        c.call(
                            c.queries.GetEscalation,
                            q.GetEscalationRequest(
                                country=args.country, at=at, as_of=as_of, min_position=mp
                            ),
                        ).escalation
                    )
                case "pair":
                    return message_to_json(
                        c.call(
                            c.queries.GetPairEscalation,
                            q.GetPairEscalationRequest(
                                actor=args.actor,
                                target=args.target,
                                unordered=args.both_ways,
                                at=at,
                                as_of=as_of,
                                min_position=mp,
                            ),
                        ).escalation
                    )
                case "ranking":
                    return message_to_json(
                        c.call(
                            c.queries.ListEscalations,
                            q.ListEscalationsRequest(
                                at=at,
                                as_of=as_of,
                                min_level=args.min_level,
                                limit=args.limit,
                                min_position=mp,
                            ),
                        )
                    )
                case "history":
                    step = Duration()
                    step.FromTimedelta(parse_span(args.step, "step"))
                    return message_to_json(
                        c.call(
                            c.queries.GetEscalationHistory,
                            q.GetEscalationHistoryRequest(
                                country=args.country,
                                start_time=stamp(since_time(args.since, now)),
                                step=step,
                                as_of=as_of,
                                min_position=mp,
                            ),
                        )
                    )
                case "incident":
                    return message_to_json(c.get_incident(_qualified("incidents", args.name)))
                case "incidents":
                    fields: dict[str, Any] = _incident_filters(args)
                    for key in ("occurred_after", "occurred_before"):
                        if key in fields:
                            fields[key] = stamp(parse_time(fields[key], key))
                    return message_to_json(
                        c.list_incidents(
                            page_size=args.page_size,
                            page_token=args.page_token,
                            min_position=mp,
                            **fields,
                        )
                    )
                case "sanctions-regime":
                    return message_to_json(
                        c.get_sanctions_regime(_qualified("sanctions", args.name))
                    )
                case "sanctions":
                    return message_to_json(
                        c.call(
                            c.queries.ListSanctions,
                            q.ListSanctionsRequest(
                                authority=args.authority or "",
                                target=args.target or "",
                                in_force_on=stamp(parse_time(args.in_force_on, "in_force_on")),
                                include_lifted=args.include_lifted,
                                min_position=mp,
                            ),
                        )
                    )
                case "negotiation":
                    return message_to_json(
                        c.call(
                            c.queries.GetNegotiation,
                            q.GetNegotiationRequest(
                                name=_qualified("negotiations", args.name), min_position=mp
                            ),
                        ).negotiation
                    )
                case "negotiations":
                    return message_to_json(
                        c.call(
                            c.queries.ListNegotiations,
                            q.ListNegotiationsRequest(
                                party=args.party or "", status=args.status or "", min_position=mp
                            ),
                        )
                    )
                case "posture":
                    return message_to_json(
                        c.call(
                            c.queries.GetForcePosture,
                            q.GetForcePostureRequest(
                                country=args.country or "", at=at, min_position=mp
                            ),
                        )
                    )
                case "projections":
                    return message_to_json(
                        c.call(c.queries.ListProjections, q.ListProjectionsRequest()), zeros=True
                    )
                case _:
                    return {"events": [message_to_json(e) for e in c.history(args.name)]}
        except InvalidArgument as error:
            raise ValueError(
                "; ".join(f"{v.field}: {v.description}" for v in error.violations) or str(error)
            ) from None
        except NotFoundError as error:
            raise LookupError(error.message) from None
        except ApiError as error:
            raise LookupError(str(error)) from None


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
        f"{view['subject']}: level {view['level']} ({view['level_name']}), "
        f"score {float(view.get('score', 0)):.2f}, trend {view['trend']} "
        f"(30 days earlier {float(view.get('earlier_score', 0)):.2f})",
        f"at {view['at']}, as known at {view['as_of']}; parameters {view['parameters_version']}",
    ]
    contributions = view.get("contributions") or []
    if contributions:
        lines.append("")
        lines.append(f"{'contribution':>12}  {'kind':<24} {'occurred':<20} resource")
        for item in contributions:
            lines.append(
                f"{float(item['contribution']):12.2f}  {item['kind']:<24} "
                f"{str(item['occurred_at'])[:19]:<20} {item['resource']}"
            )
    return "\n".join(lines) + "\n"


def ranking_text(ranking: dict[str, Any]) -> str:
    rows = ranking.get("escalations") or []
    lines = [f"{'#':>3}  {'country':<8} {'level':<20} {'score':>8}  trend"]
    for rank, view in enumerate(rows, 1):
        level = f"{view['level']} {view['level_name']}"
        lines.append(
            f"{rank:>3}  {view['subject']:<8} {level:<20} {float(view.get('score', 0)):8.2f}  "
            f"{view['trend']}"
        )
    if not rows:
        lines.append("  (no escalation recorded)")
    lines.append(f"parameters {ranking.get('parameters_version', '')}")
    return "\n".join(lines) + "\n"


def history_text(history: dict[str, Any], width: int = 50) -> str:
    points = history.get("points") or []
    peak = max((float(point.get("score", 0)) for point in points), default=0.0)
    lines = [f"{history['subject']} escalation (parameters {history['parameters_version']})"]
    for point in points:
        score = float(point.get("score", 0))
        bar = "█" * round(width * score / peak) if peak > 0 and score > 0 else ""
        lines.append(f"{str(point['at'])[:16]:<16}  L{point['level']}  {score:8.2f}  {bar}")
    return "\n".join(lines) + "\n"
