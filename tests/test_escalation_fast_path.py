"""The stored escalation answers exactly what the full scan of the fold's states answers.

A randomised log (reports of many kinds with locations and participants, corroborations,
disputes and denials, corrections that move an incident to other countries, retractions,
sanctions regimes and negotiation tracks, events recorded out of occurrence order) is folded
into a real view store batch by batch, or loaded by a rebuild. Then every country, every
pair both ways and the ranking are asked at many valid times, as known now (the fast path:
buckets and live rows) and as known at past knowledge times (the full path over stored
versions), and compared with ``score_states`` over the pure fold's states, which keep every
version. Figures agree to 1e-9 (sums are taken in another order); levels, trends, counts and
the top contributions (resource, kind, order) are the same.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from projections import escalation_store as es
from projections import parameters as p
from projections.base import State, epoch
from projections.escalation import EscalationProjection, country_scores, score_states
from projections.readmodels import ReadModels
from projections.runner import ProjectionWorker, apply_batch
from projections.store import ViewStore
from service.adapters.eventlog import RawEvent
from service.adapters.store_url import store_environment
from tests.test_projections_fold import DAY, Log, fold_states, report, ts

ESCALATION = EscalationProjection()
COUNTRIES = ["RUS", "UKR", "POL", "BLR", "LTU", "FRA", "GBR", "USA"]
KINDS: list[tuple[str, Callable[[random.Random], dict[str, Any]]]] = [
    ("airspace_incursion", lambda r: {"count": r.randint(0, 40), "intercepted": 0}),
    ("strike", lambda r: {"munitions_count": r.randint(0, 900), "fatalities": r.randint(0, 9)}),
    ("armed_clash", lambda r: {"fatalities": r.randint(0, 5)}),
    ("troop_deployment", lambda r: {"troop_count": r.randint(0, 50_000)}),
    ("alert", lambda r: {"aircraft_count": r.randint(0, 8)}),
    ("threat", lambda r: {"threat_kind": r.choice(["military", "verbal"])}),
    ("statement", lambda r: {}),
    ("condemnation", lambda r: {}),
    ("envoy_summoned", lambda r: {}),
    ("diplomats_expelled", lambda r: {"count": r.randint(1, 9)}),
    ("cyber_attack", lambda r: {}),
]
GRADES = [f"{rel}{cred}" for rel in "ABCDEF" for cred in range(1, 7)]


def random_log(seed: int, size: int = 260) -> Log:
    """Developments over ~400 days, recorded in bursts that do not follow occurrence order."""
    rng = random.Random(seed)
    log = Log()
    incidents: list[str] = []
    regimes: list[str] = []
    tracks: list[tuple[str, list[str]]] = []
    clock = 0.0
    for index in range(size):
        clock += rng.choice([0.01, 0.2, 1.0, 3.0])
        roll = rng.random()
        if roll < 0.55 or not incidents:
            oid = f"i{index:04d}"
            actor, target = rng.sample(COUNTRIES, 2)
            occurred = clock - rng.choice([0.0, 0.5, 2.0, 20.0, 150.0])
            if rng.random() < 0.15:
                details = {
                    "participants": rng.sample(COUNTRIES, 2),
                    "troop_count": rng.randint(0, 30_000),
                    "border_with": rng.sample(COUNTRIES, 2),
                }
                log.reported(
                    oid,
                    "military_exercise",
                    details,
                    actor=actor,
                    target=rng.choice([None, target]),
                    occurred=occurred,
                    recorded=clock,
                    grade=rng.choice(GRADES),
                )
            else:
                kind, details_of = rng.choice(KINDS)
                log.reported(
                    oid,
                    kind,
                    details_of(rng),
                    actor=actor,
                    target=target,
                    location=rng.choice([None, None, rng.choice(COUNTRIES)]),
                    occurred=occurred,
                    recorded=clock,
                    grade=rng.choice(GRADES),
                )
            incidents.append(oid)
        elif roll < 0.85:
            oid = rng.choice(incidents)
            step = rng.random()
            if step < 0.25:
                log.corroborated(oid, clock, rng.choice("ABC"), rng.randint(1, 3))
            elif step < 0.55:
                log.disputed(oid, clock, rng.choice(COUNTRIES), rng.random() < 0.5)
            elif step < 0.8:
                actor, target = rng.sample(COUNTRIES, 2)
                moved = report(
                    actor,
                    target,
                    rng.choice([None, rng.choice(COUNTRIES)]),
                    clock - rng.choice([0.0, 5.0, 60.0]),
                    rng.choice(GRADES),
                )
                log.corrected(oid, clock, moved, {"count": rng.randint(0, 30), "intercepted": 0})
            else:
                log.retracted(oid, clock)
        elif roll < 0.93:
            if regimes and rng.random() < 0.6:
                oid = rng.choice(regimes)
                occurred = clock - rng.choice([0.0, 3.0])
                if rng.random() < 0.7:
                    log.extended(oid, occurred, rng.randint(1, 50), rng.choice(GRADES))
                else:
                    log.eased(oid, occurred, rng.randint(1, 5), rng.choice(GRADES))
            else:
                oid = f"r{index:04d}"
                authority, target = rng.sample(COUNTRIES, 2)
                log.imposed(
                    oid,
                    clock - 1.0,
                    authority=authority,
                    target=target,
                    entities=rng.randint(0, 300),
                    grade=rng.choice(GRADES),
                    recorded=clock,
                )
                regimes.append(oid)
        else:
            if tracks and rng.random() < 0.6:
                oid, parties = rng.choice(tracks)
                event = rng.choice(
                    ["NegotiationRoundHeld", "NegotiationsPaused", "NegotiationsResumed"]
                )
                fields: dict[str, Any] = {"location": "Istanbul"}
                if event == "NegotiationsPaused":
                    fields = {"paused_by": rng.choice(parties), "reason": "no progress"}
                elif event == "NegotiationsResumed":
                    fields = {"resumed_by": rng.choice(parties)}
                log.negotiation(event, oid, clock, rng.choice(GRADES), **fields)
            else:
                oid = f"n{index:04d}"
                parties = rng.sample(COUNTRIES, 2)
                mediator = rng.choice([None, "USA"])
                log.proposed(
                    oid,
                    clock,
                    parties=parties,
                    mediator=mediator,
                    proposed_by=rng.choice([*parties, "USA"]),
                    grade=rng.choice(GRADES),
                )
                tracks.append((oid, parties))
    return log


@pytest.fixture(params=["sqlite", "postgresql"])
def views(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[ViewStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'events.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = ViewStore.open(store_environment(url))
    try:
        yield store
    finally:
        store.close()


def follow(store: ViewStore, events: list[RawEvent], seed: int) -> None:
    """Fold ``events`` into generation 1 in batches of random sizes, as a follower does."""
    rng = random.Random(seed)
    store.create_generation(ESCALATION.table, 1)
    with store.transaction() as cursor:
        store.set_live(cursor, ESCALATION.name, 1, ESCALATION.version)
    after = 0
    while after < len(events):
        size = rng.choice([1, 2, 7, 40])
        batch = events[after : after + size]
        apply_batch(ESCALATION, store, 1, batch, batch[-1].position, after, report=False)
        after = batch[-1].position


class _Source:
    """The events as a log source for a rebuild."""

    def __init__(self, events: list[RawEvent]) -> None:
        self.events = events

    def head(self) -> int:
        return len(self.events)

    def read(self, after: int, limit: int, stop: int | None = None) -> list[RawEvent]:
        end = len(self.events) if stop is None else min(stop, len(self.events))
        return self.events[after : min(after + limit, end)]


def close(got: float, expected: float) -> bool:
    return abs(got - expected) <= 1e-9 * max(1.0, abs(expected))


def scanned(log: Log) -> list[State]:
    """The fold's states in the order the full scan reads them (by key)."""
    folded = fold_states(ESCALATION, log.events)
    return [folded[key] for key in sorted(folded)]


def assert_same(models: ReadModels, log: Log, rng: random.Random) -> None:
    states = scanned(log)
    # After the last recording the fast path answers; before it, the full path.
    known_now = max(epoch(event.recorded_at) for event in log.events) + 1.0
    for as_of in [known_now, *(ts(rng.uniform(0, 300)) for _ in range(3))]:
        knowledge = as_of
        for at in [ts(rng.uniform(-10, 450)) for _ in range(5)]:
            for country in COUNTRIES:
                view = models.escalation(country, at=at, as_of=as_of)
                expected = score_states(states, at=at, as_of=knowledge, country=country)
                earlier = score_states(
                    states, at=at - p.TREND_DAYS * DAY, as_of=knowledge, country=country, keep=0
                )
                where = (country, at, as_of)
                assert close(view.score, round(expected.score, 6)), where
                assert close(view.actor_score, round(expected.actor, 6)), where
                assert close(view.target_score, round(expected.target, 6)), where
                assert close(view.earlier_score, round(earlier.score, 6)), where
                assert view.level == p.level_of(expected.score), where
                assert view.trend == p.trend_of(
                    expected.score,
                    earlier.score,
                    counted=expected.developments,
                    counted_earlier=earlier.developments,
                ), where
                assert [(c.resource, c.development, c.kind) for c in view.contributions] == [
                    (c.resource, c.development, c.kind) for c in expected.contributions
                ], where
                for got, want in zip(view.contributions, expected.contributions, strict=True):
                    assert close(got.contribution, round(want.value, 6)), where
            for actor, target in [("RUS", "POL"), ("UKR", "RUS"), ("POL", "LTU"), ("USA", "FRA")]:
                for ordered in (True, False):
                    view = models.escalation(actor, pair=(target, ordered), at=at, as_of=as_of)
                    expected = score_states(
                        states, at=at, as_of=knowledge, pair=(actor, target, ordered)
                    )
                    assert view.subject == expected.subject
                    assert close(view.score, round(expected.score, 6)), (actor, target, at)
                    assert close(view.actor_score, round(expected.actor, 6))
                    assert [c.development for c in view.contributions] == [
                        c.development for c in expected.contributions
                    ]
            history = models.escalation_history(
                "POL", start=at - 40 * DAY, end=at, step=10 * DAY, as_of=as_of
            )
            for point in history.points:
                moment = point.at.timestamp()
                point_score = score_states(
                    states, at=moment, as_of=knowledge, country="POL", keep=0
                )
                assert close(point.score, round(point_score.score, 6)), moment
            ranking = models.ranking(at=at, as_of=as_of)
            now = country_scores(states, at=at, as_of=knowledge)
            then = country_scores(states, at=at - p.TREND_DAYS * DAY, as_of=knowledge)
            assert {view.subject for view in ranking.escalations} == set(now) | set(then)
            for view in ranking.escalations:
                found = now.get(view.subject)
                assert close(view.score, round(found.score if found else 0.0, 6)), view.subject
                assert close(view.target_score, round(found.target if found else 0.0, 6))


@pytest.mark.parametrize(
    ("seed", "sparse", "prefix"), [(1, 64, 16), (2, 0, 16), (3, 64, 16), (4, 0, 16), (6, 0, 1)]
)
def test_followed_store_answers_as_the_full_scan(
    views: ViewStore, seed: int, sparse: int, prefix: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folded batch by batch (buckets recomputed as rows change), every figure is the full
    scan's, as known now and as known at past times; top contributions read by day
    (sparse classes) or by rank (every class taken as dense), and with a prefix by rank of
    one row, nearly always by block of days as well."""
    monkeypatch.setattr(es, "SPARSE_CLASS", sparse)
    monkeypatch.setattr(es, "RANK_PREFIX", prefix)
    log = random_log(seed)
    follow(views, log.events, seed)
    assert_same(ReadModels(views), log, random.Random(seed))


def test_rebuilt_store_answers_as_the_full_scan(views: ViewStore) -> None:
    """A rebuild (rows loaded in bulk, buckets made at the end by SQL) answers the same."""
    log = random_log(11, size=400)
    worker = ProjectionWorker(_Source(log.events), views, [ESCALATION])
    worker.rebuild(ESCALATION.name, batch_size=37)
    assert_same(ReadModels(views), log, random.Random(11))


def test_retracting_everything_leaves_nothing_counted(views: ViewStore) -> None:
    """After every incident is retracted, as known now nothing counts (no float residue)."""
    log = random_log(5, size=60)
    for oid in sorted({e.originator_id for e in log.events if e.originator_id.startswith("i")}):
        if not any(e.originator_id == oid and e.type == "IncidentRetracted" for e in log.events):
            log.retracted(oid, 400.0)
    follow(views, log.events, 5)
    models = ReadModels(views)
    known_now = ts(401)
    for at in (ts(10), ts(200), ts(400)):
        ranking = models.ranking(at=at, as_of=known_now)
        states = scanned(log)
        now = country_scores(states, at=at, as_of=ts(2000))
        assert {view.subject for view in ranking.escalations} == set(now) | set(
            country_scores(states, at=at - p.TREND_DAYS * DAY, as_of=ts(2000))
        )
        for view in ranking.escalations:
            assert close(
                view.score, round(now[view.subject].score if view.subject in now else 0, 6)
            )


def test_top_contributions_of_a_window_outranked_by_older_rows(
    views: ViewStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window holding fewer non-zero contributions than are shown (statements count zero)
    while many older, larger ones of the class rank above them: the first rows by rank
    hold too few in the window, and the window's are read by block of days (by rank alone,
    the scan passed every older row: 100 ms for one country at 1M events)."""
    monkeypatch.setattr(es, "SPARSE_CLASS", 0)
    log = Log()
    for index in range(40):
        log.reported(f"i{index:04d}", "condemnation", {}, actor="DEU", target="FRA",
                     occurred=float(index), recorded=float(index), grade="A1")  # fmt: skip
    for index, (kind, grade) in enumerate(
        [("statement", "A1"), ("condemnation", "C3"), ("statement", "B2"),
         ("condemnation", "D4"), ("statement", "A2"), ("statement", "C1")]
    ):  # fmt: skip
        moment = 395.0 + index / 2
        log.reported(f"j{index:04d}", kind, {}, actor="DEU", target="POL",
                     occurred=moment, recorded=moment, grade=grade)  # fmt: skip
    follow(views, log.events, 7)
    models = ReadModels(views)
    states = scanned(log)
    known_now = ts(500)
    for at in (ts(398.2), ts(399.0), ts(400.0), ts(420.0)):
        view = models.escalation("DEU", at=at, as_of=known_now)
        expected = score_states(states, at=at, as_of=known_now, country="DEU")
        assert len(expected.contributions) == 5
        assert [(c.development, c.kind) for c in view.contributions] == [
            (c.development, c.kind) for c in expected.contributions
        ], at
        assert close(view.score, round(expected.score, 6))
