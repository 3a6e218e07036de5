"""Escalation per country and per pair of countries (DESIGN.md section 3).

The fold keeps, for each aggregate, its developments and every *known version* of each:
a version holds the development's score contribution as it was known from one recording
time (``known_from``) until the next change (``known_to``). A corroboration, dispute or
correction closes the current version and opens another; a retraction closes it and opens
none, so from then on it counts as zero. Scoring then needs no replay: the level at valid
time ``at`` as known at ``as_of`` sums, over the versions known at ``as_of`` whose
development had occurred by ``at``, the decayed contributions.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from projections import parameters as p
from projections.base import (
    INCIDENT_EVENTS,
    INCIDENT_REPORTED,
    NEGOTIATION_EVENTS,
    SANCTIONS_EVENTS,
    Projection,
    State,
    epoch,
)
from projections.escalation_store import STORAGE
from projections.store import Table
from service.adapters.eventlog import RawEvent
from service.domain import vocabulary
from service.domain.vocabulary import kinds_in

DAY = 86_400.0

RELIABILITY = {"A": 1.0, "B": 0.75, "C": 0.5, "D": 0.25, "E": 0.0, "F": 0.5}
CREDIBILITY = {1: 1.0, 2: 0.75, 3: 0.5, 4: 0.25, 5: 0.0, 6: 0.5}

#: Stored event type -> kind, for the steps of regimes and tracks (each step is a kind).
NEGOTIATION_KINDS: Final[dict[str, str]] = {k.event: k.kind for k in kinds_in("negotiations")}
SANCTIONS_KINDS: Final[dict[str, str]] = {k.event: k.kind for k in kinds_in("sanctions")}


def graded_confidence(evidence: dict[str, Any]) -> float:
    return RELIABILITY[evidence["reliability"]] * CREDIBILITY[int(evidence["credibility"])]


def weight_key(kind: str, details: dict[str, Any]) -> str:
    """The parameter table's weight for a development (UnknownKind for an unknown kind)."""
    return vocabulary.by_kind(kind).weight_key_for(details)


def incident_size(kind: str, details: dict[str, Any]) -> tuple[float, float]:
    """(size, fatalities) that set an incident's magnitude."""
    return vocabulary.by_kind(kind).size_of(details)


def contribution(weight: str, size: float, fatalities: float, confidence: float) -> float:
    """s = -weight x magnitude x confidence: positive escalates, negative calms."""
    return -p.weight_of(weight) * p.magnitude(size, fatalities) * confidence


def _version(
    event: RawEvent,
    *,
    weight: str,
    base: float,
    occurred_at: str,
    actors: Iterable[str],
    targets: Iterable[str],
    located: Iterable[str],
) -> dict[str, Any]:
    actor_set, target_set = sorted(set(actors)), sorted(set(targets))
    involved = set(actor_set) | set(target_set)
    return {
        "known_from": epoch(event.recorded_at),
        "known_from_position": event.position,
        "known_to": None,
        "known_to_position": None,
        "base": base,
        "occurred": epoch(occurred_at),
        "half_life": p.half_life_of(weight),
        "actors": actor_set,
        "targets": target_set,
        "located": sorted(set(located) - involved),
    }


def _close(version: dict[str, Any], event: RawEvent) -> dict[str, Any]:
    return {**version, "known_to": epoch(event.recorded_at), "known_to_position": event.position}


def incident_facts(kind: str, report: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    """What an incident's score depends on (kept small: it is stored with every state)."""
    evidence = report["evidence"]
    size, fatalities = incident_size(kind, details)
    located = [report["location"]["country"]] if report.get("location") else []
    # An unknown actor (no country) counts for nobody: the target and location only.
    actor = (report.get("actor") or {}).get("country")
    facts = {
        "weight": weight_key(kind, details),
        "size": size,
        "fatalities": fatalities,
        "reliability": evidence["reliability"],
        "credibility": int(evidence["credibility"]),
        "occurred_at": evidence["occurred_at"],
        "actors": [*([actor] if actor else []), *details.get("participants", [])],
        "targets": [report["target"]["country"]] if report.get("target") else [],
        "located": [*located, *details.get("border_with", [])],
        # party -> whether its latest word was a denial (each party counts once).
        "disputes": {},
        "retracted": False,
    }
    goldstein = vocabulary.by_kind(kind).goldstein_of(details)
    if goldstein is not None:
        # Only kinds that carry their own weight store it (other states keep their shape).
        facts["goldstein"] = goldstein
    return facts


def incident_version(facts: dict[str, Any], event: RawEvent) -> dict[str, Any]:
    graded = RELIABILITY[facts["reliability"]] * CREDIBILITY[facts["credibility"]]
    confidence = graded
    for denial in facts["disputes"].values():
        confidence *= p.DENIAL_FACTOR if denial else p.DISPUTE_FACTOR
    confidence = max(confidence, graded * p.CONFIDENCE_FLOOR)
    weight = facts["weight"]
    if "goldstein" in facts:
        base = (
            -p.goldstein_weight(facts["goldstein"])
            * p.magnitude(facts["size"], facts["fatalities"])
            * confidence
        )
    else:
        base = contribution(weight, facts["size"], facts["fatalities"], confidence)
    return _version(
        event,
        weight=weight,
        base=base,
        occurred_at=facts["occurred_at"],
        actors=facts["actors"],
        targets=facts["targets"],
        located=facts["located"],
    )


def better_grading(evidence: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    # As on the write side, a corroboration only ever raises the grading.
    evidence = dict(evidence)
    if payload.get("reliability") and (
        RELIABILITY[payload["reliability"]] > RELIABILITY[evidence["reliability"]]
    ):
        evidence["reliability"] = payload["reliability"]
    if payload.get("credibility") and (
        CREDIBILITY[payload["credibility"]] > CREDIBILITY[int(evidence["credibility"])]
    ):
        evidence["credibility"] = payload["credibility"]
    return evidence


def fold_incident(state: State | None, event: RawEvent) -> State | None:
    payload = event.payload
    if event.type in INCIDENT_REPORTED:
        facts = incident_facts(payload["kind"], payload["report"], payload["details"])
        development = {
            "id": event.originator_id,
            "resource": f"incidents/{event.originator_id}",
            "kind": payload["kind"],
            "versions": [incident_version(facts, event)],
        }
        return {"facts": facts, "developments": [development]}
    if state is None or state["facts"]["retracted"]:
        return state
    facts = dict(state["facts"])
    if event.type == "IncidentCorroborated":
        facts.update(better_grading(facts, payload))
    elif event.type == "IncidentDisputed":
        facts["disputes"] = {**facts["disputes"], payload["party"]: bool(payload["denial"])}
    elif event.type == "IncidentCorrected":
        kind = state["developments"][0]["kind"]
        facts = {
            **incident_facts(kind, payload["report"], payload["details"]),
            "disputes": facts["disputes"],
        }
    elif event.type == "IncidentRetracted":
        facts["retracted"] = True
    else:
        return state
    development = dict(state["developments"][0])
    versions = list(development["versions"])
    versions[-1] = _close(versions[-1], event)
    if not facts["retracted"]:
        versions.append(incident_version(facts, event))
    development["versions"] = versions
    return {"facts": facts, "developments": [development]}


def fold_sanctions(state: State | None, event: RawEvent) -> State | None:
    payload = event.payload
    kind = vocabulary.kind_of_event(event.type)
    if kind.kind == "sanctions_imposed":
        facts = {"authority": payload["authority"], "target": payload["target"]}
        developments: list[dict[str, Any]] = []
    elif state is None:
        return None
    else:
        facts, developments = state["facts"], state["developments"]
    size, _ = kind.size_of(payload)
    weight = kind.weight_key
    evidence = payload["evidence"]
    version = _version(
        event,
        weight=weight,
        base=contribution(weight, size, 0, graded_confidence(evidence)),
        occurred_at=evidence["occurred_at"],
        actors=[facts["authority"]],
        targets=[facts["target"]],
        located=[],
    )
    development = {
        "id": f"{event.originator_id}:{event.version}",
        "resource": f"sanctions/{event.originator_id}",
        "kind": kind.kind,
        "versions": [version],
    }
    return {"facts": facts, "developments": [*developments, development]}


def fold_negotiation(state: State | None, event: RawEvent) -> State | None:
    payload = event.payload
    if event.type == "NegotiationsProposed":
        facts = {"parties": payload["parties"]}
        developments: list[dict[str, Any]] = []
        by = payload["proposed_by"]
    elif state is None:
        return None
    else:
        facts, developments = state["facts"], state["developments"]
        by = payload.get("paused_by") or payload.get("resumed_by") or payload.get("rejected_by")
    parties = facts["parties"]
    if by in parties:
        actors, targets = [by], [party for party in parties if party != by]
    else:
        # Rounds and agreements are mutual (and a mediator's proposal binds the parties).
        actors, targets = parties, parties
    kind = vocabulary.kind_of_event(event.type)
    weight = kind.weight_key
    evidence = payload["evidence"]
    version = _version(
        event,
        weight=weight,
        base=contribution(weight, 0, 0, graded_confidence(evidence)),
        occurred_at=evidence["occurred_at"],
        actors=actors,
        targets=targets,
        located=[],
    )
    development = {
        "id": f"{event.originator_id}:{event.version}",
        "resource": f"negotiations/{event.originator_id}",
        "kind": kind.kind,
        "versions": [version],
    }
    return {"facts": facts, "developments": [*developments, development]}


class EscalationProjection(Projection):
    """Stored as contribution rows by subject (:mod:`projections.escalation_store`): the
    state table keeps only what the next fold needs, and nothing links states to countries."""

    name: ClassVar[str] = "escalation"
    table: ClassVar[Table] = Table("esc", {}, links=False, storage=STORAGE)
    #: 3: contribution rows and day buckets instead of every version in each state.
    #: 4: top contributions indexed by block of days and rank (not by rank alone).
    version: ClassVar[int] = 4

    def key_of(self, event: RawEvent) -> str | None:
        if (
            event.type in INCIDENT_EVENTS
            or event.type in SANCTIONS_EVENTS
            or (event.type in NEGOTIATION_EVENTS)
        ):
            return event.originator_id
        return None

    def fold(self, state: State | None, event: RawEvent) -> State | None:
        if event.type in INCIDENT_EVENTS:
            return fold_incident(state, event)
        if event.type in SANCTIONS_EVENTS:
            return fold_sanctions(state, event)
        return fold_negotiation(state, event)

    def columns(self, state: State) -> dict[str, Any]:
        return {}

    def countries(self, state: State) -> set[str]:
        # A stored version keeps only its id (its countries are in its rows).
        return {
            country
            for development in state["developments"]
            for version in development["versions"]
            for part in ("actors", "targets", "located")
            for country in version.get(part, ())
        }


# ---------------------------------------------------------------------- scoring (pure)


#: Called between units of a query's work; it raises to stop the work (the caller's
#: deadline passed, or it went away). Projections know nothing of calls: the API passes it.
Check = Callable[[], None]

#: Developments scored between two calls of a ``Check``: often enough to stop within a few
#: milliseconds, rarely enough to cost nothing next to the scoring.
CHECK_EVERY = 256


def _never() -> None:
    return None


@dataclass(frozen=True)
class Contribution:
    resource: str
    development: str
    kind: str
    occurred: float
    value: float


@dataclass
class Score:
    subject: str
    score: float
    contributions: list[Contribution] = field(default_factory=list)
    #: The part of ``score`` from developments the subject took part in as actor or
    #: participant (for a pair: those of its first country against the second).
    actor: float = 0.0
    #: The part from developments it was the target or location of; actor + target = score.
    target: float = 0.0
    #: How many developments counted (a zero contribution counts): none means nothing was
    #: known of the subject in the window, which a trend reads as "new", not as a change.
    developments: int = 0


@dataclass
class CountryScore:
    """One country's total of a ranking, split as ``Score`` is."""

    score: float = 0.0
    actor: float = 0.0
    target: float = 0.0
    developments: int = 0


def version_known_at(versions: list[dict[str, Any]], as_of: float) -> dict[str, Any] | None:
    for version in versions:
        if version["known_from"] <= as_of and (
            version["known_to"] is None or as_of < version["known_to"]
        ):
            return version
    return None


def share(version: dict[str, Any], country: str) -> tuple[float, bool]:
    """The share of a development ``country`` takes, and whether as actor.

    A country both actor and target of one development (mutual talks, a mediator's party)
    counts it as actor: what it did comes first.
    """
    if country in version["actors"]:
        return 1.0, True
    if country in version["targets"]:
        return 1.0, False
    if country in version["located"]:
        return p.LOCATION_SHARE, False
    return 0.0, False


def pair_share(
    version: dict[str, Any], actor: str, target: str, ordered: bool
) -> tuple[float, bool]:
    """The pair's share of a development, and whether ``actor`` acted in it (else the
    development went the other way, which only an unordered pair counts)."""
    if actor in version["actors"] and target in version["targets"]:
        return 1.0, True
    if not ordered and target in version["actors"] and actor in version["targets"]:
        return 1.0, False
    return 0.0, False


def in_window(version: dict[str, Any], at: float) -> bool:
    """Occurred by ``at``, and not more than HORIZON_HALF_LIVES of its half-lives before."""
    age_days: float = (at - version["occurred"]) / DAY
    limit: float = p.HORIZON_HALF_LIVES * version["half_life"]
    return 0 <= age_days <= limit


def decayed(version: dict[str, Any], at: float) -> float:
    age_days = (at - version["occurred"]) / DAY
    return float(version["base"] * 0.5 ** (age_days / version["half_life"]))


def score_states(
    states: Iterable[State],
    *,
    at: float,
    as_of: float,
    country: str | None = None,
    pair: tuple[str, str, bool] | None = None,
    keep: int = 5,
    check: Check = _never,
) -> Score:
    """The escalation of ``country`` (or ``pair``) at ``at`` as known at ``as_of``."""
    total = actor_part = target_part = 0.0
    top: list[tuple[float, int, Contribution]] = []
    counter = scored = 0
    for state in states:
        for development in state["developments"]:
            scored += 1
            if scored % CHECK_EVERY == 0:
                check()
            version = version_known_at(development["versions"], as_of)
            if version is None or not in_window(version, at):
                continue
            if pair is not None:
                factor, acted = pair_share(version, *pair)
            else:
                factor, acted = share(version, country or "")
            if not factor:
                continue
            value = factor * decayed(version, at)
            total += value
            if acted:
                actor_part += value
            else:
                target_part += value
            counter += 1
            if not keep:
                continue
            item = Contribution(
                development["resource"], development["id"], development["kind"],
                version["occurred"], value,
            )  # fmt: skip
            if len(top) < keep:
                heapq.heappush(top, (abs(value), counter, item))
            else:
                heapq.heappushpop(top, (abs(value), counter, item))
    subject = (country or "") if pair is None else f"{pair[0]}{'->' if pair[2] else '<->'}{pair[1]}"
    ranked = [item for _, _, item in sorted(top, key=lambda entry: (-entry[0], entry[1]))]
    return Score(
        subject=subject,
        score=total,
        contributions=ranked,
        actor=actor_part,
        target=target_part,
        developments=counter,
    )


def country_scores(
    states: Iterable[State], *, at: float, as_of: float, check: Check = _never
) -> dict[str, CountryScore]:
    """Every country's score at once (for rankings), with its actor and target parts."""
    totals: dict[str, CountryScore] = {}
    scored = 0
    for state in states:
        for development in state["developments"]:
            scored += 1
            if scored % CHECK_EVERY == 0:
                check()
            version = version_known_at(development["versions"], as_of)
            if version is None or not in_window(version, at):
                continue
            value = decayed(version, at)
            actors = set(version["actors"])
            for country in actors | set(version["targets"]):
                entry = totals.setdefault(country, CountryScore())
                entry.score += value
                entry.developments += 1
                if country in actors:
                    entry.actor += value
                else:
                    entry.target += value
            for country in version["located"]:
                entry = totals.setdefault(country, CountryScore())
                entry.score += p.LOCATION_SHARE * value
                entry.target += p.LOCATION_SHARE * value
                entry.developments += 1
    return totals


def scores_by_country(states: Iterable[State], *, at: float, as_of: float) -> dict[str, float]:
    """Every country's score at once (for rankings)."""
    return {
        country: entry.score
        for country, entry in country_scores(states, at=at, as_of=as_of).items()
    }
