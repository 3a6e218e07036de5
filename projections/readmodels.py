"""Queries over the projections' stored states: what the QueryService and the CLI answer."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from projections import parameters as p
from projections.base import State
from projections.escalation import (
    DAY,
    Check,
    CountryScore,
    EscalationProjection,
    country_scores,
    score_states,
)
from projections.negotiations import NegotiationsProjection
from projections.posture import PostureProjection
from projections.sanctions import SanctionsProjection
from projections.store import Table, ViewStore
from projections.timeline import TimelineProjection

ESCALATION = EscalationProjection()
TIMELINE = TimelineProjection()
NEGOTIATIONS = NegotiationsProjection()
SANCTIONS = SanctionsProjection()
POSTURE = PostureProjection()
ALL = (ESCALATION, TIMELINE, NEGOTIATIONS, SANCTIONS, POSTURE)

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
MAX_HISTORY_POINTS = 2000
#: The finest step of a history: levels move with decay over days, and a finer step only
#: multiplies the work.
MIN_HISTORY_STEP_SECONDS = 1.0
#: Points of a history are placed to the microsecond (timestamps carry no finer meaning
#: here, and integer microseconds never accumulate error however many steps are taken).
_MICROS = 1_000_000


class InvalidQuery(ValueError):
    """A query argument is wrong; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class ContributionView(View):
    resource: str
    development: str
    kind: str
    occurred_at: datetime
    contribution: float


class EscalationView(View):
    subject: str
    score: float
    #: The part of ``score`` from developments the subject took part in as actor or
    #: participant; ``target_score`` the part it was the target or location of.
    actor_score: float = 0.0
    target_score: float = 0.0
    level: int
    level_name: str
    trend: str
    earlier_score: float
    at: datetime
    as_of: datetime
    parameters_version: str = p.VERSION
    contributions: list[ContributionView] = Field(default_factory=list)


class RankingView(View):
    at: datetime
    as_of: datetime
    parameters_version: str = p.VERSION
    escalations: list[EscalationView]


class HistoryPoint(View):
    at: datetime
    score: float
    level: int


class HistoryView(View):
    subject: str
    as_of: datetime
    parameters_version: str = p.VERSION
    points: list[HistoryPoint]


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _now() -> float:
    return time.time()


def _never() -> None:
    return None


class ReadModels:
    """The read side's query API over one view store."""

    def __init__(self, store: ViewStore) -> None:
        self.store = store

    # ------------------------------------------------------------------ plumbing

    def _tables(self, table: Table, name: str) -> tuple[str, str]:
        generation = self.store.live_generation(name)
        if generation is None:
            raise InvalidQuery("projection", f"{name} has not been built yet")
        return self.store.state_table(table, generation), self.store.link_table(table, generation)

    def _states(self, statement: str, params: tuple[Any, ...]) -> list[State]:
        return [orjson.loads(row["data"]) for row in self.store.query(statement, params)]

    def position(self, name: str | None = None) -> int:
        names = [name] if name else [projection.name for projection in ALL]
        positions = []
        for each in names:
            generation = self.store.live_generation(each)
            positions.append(self.store.position(each, generation) if generation else 0)
        return min(positions)

    def wait_for(
        self, position: int, timeout: float, nudge: Callable[[], None] | None = None
    ) -> bool:
        deadline = time.monotonic() + timeout
        while self.position() < position:
            if time.monotonic() >= deadline:
                return False
            if nudge is not None:
                nudge()
            time.sleep(0.02)
        return True

    # ------------------------------------------------------------------ escalation

    def _escalation_states(self, countries: list[str], since: float) -> list[State]:
        state, link = self._tables(ESCALATION.table, ESCALATION.name)
        statement = f"SELECT s.data FROM {state} s WHERE s.occurred_max >= ?"
        params: list[Any] = [since]
        for country in countries:
            statement += f" AND s.key IN (SELECT key FROM {link} WHERE country = ?)"
            params.append(country)
        # A fixed order keeps the float sums, and so the figures, identical on every run.
        return self._states(statement + " ORDER BY s.key", tuple(params))

    @staticmethod
    def _times(at: float | None, as_of: float | None) -> tuple[float, float]:
        now = _now()
        at = now if at is None else at
        as_of = now if as_of is None else as_of
        return at, as_of

    @staticmethod
    def _horizon(at: float) -> float:
        return at - (p.TREND_DAYS + p.HORIZON_HALF_LIVES * p.MAX_HALF_LIFE_DAYS) * DAY

    def escalation(
        self,
        country: str,
        *,
        at: float | None = None,
        as_of: float | None = None,
        pair: tuple[str, bool] | None = None,
        check: Check = _never,
    ) -> EscalationView:
        """``country``'s escalation, or the pair ``country -> pair[0]`` (ordered if pair[1]).

        ``check`` is called between units of work and may raise to stop it.
        """
        at, as_of = self._times(at, as_of)
        countries = [country] if pair is None else [country, pair[0]]
        states = self._escalation_states(countries, self._horizon(at))
        check()
        pair_arg = None if pair is None else (country, pair[0], pair[1])
        now_score = score_states(
            states, at=at, as_of=as_of, country=country, pair=pair_arg, check=check
        )
        earlier = score_states(
            states, at=at - p.TREND_DAYS * DAY, as_of=as_of, country=country, pair=pair_arg,
            keep=0, check=check,
        )  # fmt: skip
        level = p.level_of(now_score.score)
        return EscalationView(
            subject=now_score.subject,
            score=round(now_score.score, 6),
            actor_score=round(now_score.actor, 6),
            target_score=round(now_score.target, 6),
            level=level,
            level_name=p.LEVEL_NAMES[level],
            trend=p.trend_of(
                now_score.score,
                earlier.score,
                counted=now_score.developments,
                counted_earlier=earlier.developments,
            ),
            earlier_score=round(earlier.score, 6),
            at=_dt(at),
            as_of=_dt(as_of),
            contributions=[
                ContributionView(
                    resource=c.resource,
                    development=c.development,
                    kind=c.kind,
                    occurred_at=_dt(c.occurred),
                    contribution=round(c.value, 6),
                )
                for c in now_score.contributions
            ],
        )

    def ranking(
        self,
        *,
        at: float | None = None,
        as_of: float | None = None,
        min_level: int = 1,
        countries: list[str] | None = None,
        limit: int = 0,
        check: Check = _never,
    ) -> RankingView:
        """Countries by score, highest first; ``check`` as for :meth:`escalation`."""
        at, as_of = self._times(at, as_of)
        states = self._escalation_states([], self._horizon(at))
        check()
        current = country_scores(states, at=at, as_of=as_of, check=check)
        earlier = country_scores(states, at=at - p.TREND_DAYS * DAY, as_of=as_of, check=check)
        wanted = set(countries or [])
        views = []
        nothing = CountryScore()
        for index, country in enumerate(set(current) | set(earlier)):
            if index % 256 == 255:
                check()
            if wanted and country not in wanted:
                continue
            now, then = current.get(country, nothing), earlier.get(country, nothing)
            level = p.level_of(now.score)
            if level < min_level:
                continue
            views.append(
                EscalationView(
                    subject=country,
                    score=round(now.score, 6),
                    actor_score=round(now.actor, 6),
                    target_score=round(now.target, 6),
                    level=level,
                    level_name=p.LEVEL_NAMES[level],
                    trend=p.trend_of(
                        now.score,
                        then.score,
                        counted=now.developments,
                        counted_earlier=then.developments,
                    ),
                    earlier_score=round(then.score, 6),
                    at=_dt(at),
                    as_of=_dt(as_of),
                )
            )
        views.sort(key=lambda view: (-view.score, view.subject))
        if limit:
            views = views[:limit]
        return RankingView(at=_dt(at), as_of=_dt(as_of), escalations=views)

    def escalation_history(
        self,
        country: str,
        *,
        start: float,
        end: float | None = None,
        step: float = DAY,
        as_of: float | None = None,
        check: Check = _never,
    ) -> HistoryView:
        """Points from ``start`` every ``step`` seconds up to ``end``; ``check`` as for
        :meth:`escalation`, called before every point."""
        end, as_of = self._times(end, as_of)
        if not step >= MIN_HISTORY_STEP_SECONDS:
            raise InvalidQuery("step", f"must be at least {MIN_HISTORY_STEP_SECONDS:g} s")
        if start > end:
            raise InvalidQuery("start_time", "is after end_time")
        # Counted in integers: adding a small float step to an epoch near 1.7e9 may leave it
        # unchanged, and a loop on the sum would never end.
        step_us = round(step * _MICROS)
        span_us = round((end - start) * _MICROS)
        count = span_us // step_us + 1
        if count > MAX_HISTORY_POINTS:
            raise InvalidQuery(
                "step", f"gives {count} points, more than {MAX_HISTORY_POINTS}; widen it"
            )
        states = self._escalation_states([country], self._horizon(start))
        points = []
        for index in range(count):
            check()
            moment = start + index * step_us / _MICROS
            score = score_states(
                states, at=moment, as_of=as_of, country=country, keep=0, check=check
            ).score
            points.append(
                HistoryPoint(at=_dt(moment), score=round(score, 6), level=p.level_of(score))
            )
        return HistoryView(subject=country, as_of=_dt(as_of), points=points)

    # ------------------------------------------------------------------ incidents

    def incidents(
        self,
        *,
        country: str | None = None,
        actor: str | None = None,
        target: str | None = None,
        kind: str | None = None,
        occurred_after: float | None = None,
        occurred_before: float | None = None,
        min_confidence: float = 0.0,
        include_retracted: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[list[State], str]:
        """Incidents newest first (by occurrence), keyset-paginated with opaque tokens."""
        if page_size < 0:
            raise InvalidQuery("page_size", "must not be negative")
        if not 0 <= min_confidence <= 1:
            raise InvalidQuery("min_confidence", "must be between 0 and 1")
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        filters = (country, actor, target, kind, occurred_after, occurred_before,
                   min_confidence, include_retracted)  # fmt: skip
        digest = hashlib.sha256(repr(filters).encode()).hexdigest()[:16]
        state, link = self._tables(TIMELINE.table, TIMELINE.name)
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        if country:
            clauses.append(f"s.key IN (SELECT key FROM {link} WHERE country = ?)")
            params.append(country)
        for column, value in (("actor", actor), ("target", target), ("kind", kind)):
            if value:
                clauses.append(f"s.{column} = ?")
                params.append(value)
        if occurred_after is not None:
            clauses.append("s.occurred >= ?")
            params.append(occurred_after)
        if occurred_before is not None:
            clauses.append("s.occurred < ?")
            params.append(occurred_before)
        if min_confidence:
            clauses.append("s.confidence >= ?")
            params.append(min_confidence)
        if not include_retracted:
            clauses.append("s.retracted = 0")
        if page_token:
            occurred, key = _decode_token(page_token, digest)
            clauses.append("(s.occurred < ? OR (s.occurred = ? AND s.key < ?))")
            params += [occurred, occurred, key]
        rows = self.store.query(
            f"SELECT s.key, s.occurred, s.data FROM {state} s WHERE {' AND '.join(clauses)} "
            "ORDER BY s.occurred DESC, s.key DESC LIMIT ?",
            (*params, size + 1),
        )
        page = rows[:size]
        token = ""
        if len(rows) > size:
            last = page[-1]
            token = _encode_token(float(last["occurred"]), str(last["key"]), digest)
        return [orjson.loads(row["data"]) for row in page], token

    # ------------------------------------------------------------------ negotiations, sanctions

    def negotiation(self, track_id: str) -> State | None:
        state, _ = self._tables(NEGOTIATIONS.table, NEGOTIATIONS.name)
        found = self._states(f"SELECT data FROM {state} WHERE key = ?", (track_id,))
        return found[0] if found else None

    def negotiations(self, *, party: str | None = None, status: str | None = None) -> list[State]:
        state, link = self._tables(NEGOTIATIONS.table, NEGOTIATIONS.name)
        statement = f"SELECT s.data FROM {state} s WHERE 1 = 1"
        params: list[Any] = []
        if party:
            statement += f" AND s.key IN (SELECT key FROM {link} WHERE country = ?)"
            params.append(party)
        if status:
            statement += " AND s.status = ?"
            params.append(status)
        return self._states(statement + " ORDER BY s.updated DESC, s.key", tuple(params))

    def sanctions(
        self,
        *,
        authority: str | None = None,
        target: str | None = None,
        in_force_on: float | None = None,
        include_lifted: bool = False,
    ) -> list[State]:
        """Regimes; with ``in_force_on`` only those in force on that date."""
        state, _ = self._tables(SANCTIONS.table, SANCTIONS.name)
        statement = f"SELECT s.data FROM {state} s WHERE 1 = 1"
        params: list[Any] = []
        if authority:
            statement += " AND s.authority = ?"
            params.append(authority)
        if target:
            statement += " AND s.target = ?"
            params.append(target)
        if in_force_on is not None:
            statement += (
                " AND s.effective <= ? AND (s.expires IS NULL OR s.expires > ?)"
                " AND (s.lifted IS NULL OR s.lifted > ?)"
            )
            params += [in_force_on, in_force_on, in_force_on]
        elif not include_lifted:
            statement += " AND s.lifted IS NULL"
        return self._states(statement + " ORDER BY s.effective DESC, s.key", tuple(params))

    def force_posture(self, *, country: str | None = None, at: float | None = None) -> list[State]:
        """Exercises and deployments in progress at ``at`` involving or bordering ``country``."""
        at = _now() if at is None else at
        state, link = self._tables(POSTURE.table, POSTURE.name)
        statement = (
            f"SELECT s.data FROM {state} s WHERE s.retracted = 0 AND s.starts <= ? "
            "AND (s.ends IS NULL OR s.ends > ?)"
        )
        params: list[Any] = [at, at]
        if country:
            statement += f" AND s.key IN (SELECT key FROM {link} WHERE country = ?)"
            params.append(country)
        return self._states(statement + " ORDER BY s.starts DESC, s.key", tuple(params))


def _encode_token(occurred: float, key: str, digest: str) -> str:
    body = orjson.dumps({"o": occurred, "k": key, "f": digest})
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def _decode_token(token: str, digest: str) -> tuple[float, str]:
    try:
        body = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        occurred, key, issued_for = float(body["o"]), str(body["k"]), str(body["f"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise InvalidQuery("page_token", "is not a token this API issued") from None
    if issued_for != digest:
        raise InvalidQuery(
            "page_token", "was issued for different filters; start again without a token"
        )
    return occurred, key
