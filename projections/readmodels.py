"""Queries over the projections' stored states: what the QueryService and the CLI answer."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from projections import escalation_store as es
from projections import parameters as p
from projections.base import State
from projections.escalation import DAY, Check, EscalationProjection
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


def _figure(value: float) -> float:
    # Rounded as published; + 0.0 turns a -0.0 (a sum of cancelling terms) into 0.0.
    return round(value, 6) + 0.0


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

    def reading(self) -> AbstractContextManager[None]:
        """Within it, this thread's queries share one read transaction (and its position:
        the ``position`` of an answer is that of the data it was computed from)."""
        return self.store.reading()

    def position(self, name: str | None = None) -> int:
        names = [name] if name else [projection.name for projection in ALL]
        positions = self.store.live_positions()
        return min(positions.get(each, 0) for each in names)

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

    def _escalation_generation(self) -> int:
        generation = self.store.live_generation(ESCALATION.name)
        if generation is None:
            raise InvalidQuery("projection", f"{ESCALATION.name} has not been built yet")
        return generation

    def _current(self, generation: int, as_of: float) -> bool:
        """Whether ``as_of`` knows every version stored (the fast path answers it)."""
        return as_of >= es.known_max(self.store, ESCALATION.table, generation)

    @staticmethod
    def _times(at: float | None, as_of: float | None) -> tuple[float, float]:
        now = _now()
        at = now if at is None else at
        as_of = now if as_of is None else as_of
        return at, as_of

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

        As known now: the live rows (buckets for a country); as known at a past ``as_of``:
        the versions known then. ``check`` is called between units of work and may raise
        to stop it.
        """
        with self.store.reading():
            return self._escalation(country, at=at, as_of=as_of, pair=pair, check=check)

    def _escalation(
        self,
        country: str,
        *,
        at: float | None,
        as_of: float | None,
        pair: tuple[str, bool] | None,
        check: Check,
    ) -> EscalationView:
        at, as_of = self._times(at, as_of)
        table, generation = ESCALATION.table, self._escalation_generation()
        earlier_at = at - p.TREND_DAYS * DAY
        keep = 5
        if pair is None:
            subject = country
            # As known now (the usual question): the sums and whether they answer it, in one
            # statement; else the full path.
            sums = es.current_country_sums(
                self.store, table, generation, at, [country], as_of=as_of
            )
            if sums is not None:
                now, then = sums.get(country, (es.Sums(), es.Sums()))
                check()
                candidates = es.top_rows(
                    self.store, table, generation, at, [country], keep, now.by_class
                )
                best = es.top(candidates, at, keep)
            else:
                rows = es.window_rows(self.store, table, generation, [country], earlier_at, at,
                                      live_only=False, as_of=as_of)  # fmt: skip
                check()
                rows = es.known_at(rows, as_of)
                now, then = es.score_rows(rows, at), es.score_rows(rows, earlier_at)
                best = es.top(rows, at, keep)
        else:
            current = self._current(generation, as_of)
            target, ordered = pair
            subject = f"{country}{'->' if ordered else '<->'}{target}"
            subjects = [f"{country}>{target}"] + ([] if ordered else [f"{target}>{country}"])
            rows = es.window_rows(self.store, table, generation, subjects, earlier_at, at,
                                  live_only=current, as_of=None if current else as_of)  # fmt: skip
            check()
            if not current:
                rows = es.known_at(rows, as_of)
            rows = es.pair_rows(rows, country, target, ordered)
            now, then = es.score_rows(rows, at), es.score_rows(rows, earlier_at)
            best = es.top(rows, at, keep)
        check()
        level = p.level_of(now.score)
        return EscalationView(
            subject=subject,
            score=_figure(now.score),
            actor_score=_figure(now.actor),
            target_score=_figure(now.target),
            level=level,
            level_name=p.LEVEL_NAMES[level],
            trend=p.trend_of(
                now.score, then.score, counted=now.developments, counted_earlier=then.developments
            ),
            earlier_score=_figure(then.score),
            at=_dt(at),
            as_of=_dt(as_of),
            contributions=[
                ContributionView(
                    resource=row.resource,
                    development=row.development,
                    kind=row.kind,
                    occurred_at=_dt(row.occurred),
                    contribution=_figure(value),
                )
                for row, value in best
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
        with self.store.reading():
            return self._ranking(at, as_of, min_level, countries, limit, check)

    def _ranking(
        self,
        at: float | None,
        as_of: float | None,
        min_level: int,
        countries: list[str] | None,
        limit: int,
        check: Check,
    ) -> RankingView:
        at, as_of = self._times(at, as_of)
        table, generation = ESCALATION.table, self._escalation_generation()
        earlier_at = at - p.TREND_DAYS * DAY
        found = es.current_country_sums(
            self.store, table, generation, at, countries or None, as_of=as_of
        )
        scores: dict[str, tuple[es.Sums, es.Sums]]
        if found is not None:
            scores = found
        else:
            rows = es.window_rows(self.store, table, generation, countries or [], earlier_at, at,
                                  live_only=False, as_of=as_of)  # fmt: skip
            check()
            rows = es.known_at(rows, as_of)
            current, earlier = es.country_totals(rows, at), es.country_totals(rows, earlier_at)
            scores = {
                country: (current.get(country, es.Sums()), earlier.get(country, es.Sums()))
                for country in set(current) | set(earlier)
            }
        check()
        wanted = set(countries or [])
        views = []
        for country, (now, then) in scores.items():
            if wanted and country not in wanted:
                continue
            level = p.level_of(now.score)
            if level < min_level:
                continue
            views.append(
                EscalationView(
                    subject=country,
                    score=_figure(now.score),
                    actor_score=_figure(now.actor),
                    target_score=_figure(now.target),
                    level=level,
                    level_name=p.LEVEL_NAMES[level],
                    trend=p.trend_of(
                        now.score,
                        then.score,
                        counted=now.developments,
                        counted_earlier=then.developments,
                    ),
                    earlier_score=_figure(then.score),
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
        with self.store.reading():
            return self._history(country, start, end, step_us, count, as_of, check)

    def _history(
        self,
        country: str,
        start: float,
        end: float,
        step_us: int,
        count: int,
        as_of: float,
        check: Check,
    ) -> HistoryView:
        table, generation = ESCALATION.table, self._escalation_generation()
        current = self._current(generation, as_of)
        rows: list[es.Row] = []
        if not current:
            rows = es.known_at(
                es.window_rows(self.store, table, generation, [country], start, end,
                               live_only=False, as_of=as_of),
                as_of,
            )  # fmt: skip
        points = []
        for index in range(count):
            check()
            moment = start + index * step_us / _MICROS
            if current:
                sums = es.fast_country_sums(self.store, table, generation, moment, [country])
                score = sums.get(country, (es.Sums(), es.Sums()))[0].score
            else:
                score = es.score_rows(rows, moment).score
            points.append(
                HistoryPoint(at=_dt(moment), score=_figure(score), level=p.level_of(score))
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
