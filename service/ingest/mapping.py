"""A source-neutral development (what GDELT and ACLED rows both say) to its command."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from service.domain import vocabulary
from service.ingest import cameo
from service.ingest.records import Mapped, Skip, build


@dataclass(frozen=True)
class Party:
    country: str
    organisation: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"country": self.country}
        if self.organisation:
            data["organisation"] = self.organisation
        return data


@dataclass(frozen=True)
class Development:
    """One row, in the domain's terms but not yet a command."""

    request_id: str
    cameo_code: str
    occurred_at: datetime
    evidence: dict[str, Any]
    #: None: the actor is not known as a country (a region, no code at all).
    actor: Party | None
    #: Why the actor is unknown, when it is (``actor-is-a-region``, ``no-actor``).
    unknown_actor: str = ""
    target: Party | None = None
    location: dict[str, Any] | None = None
    goldstein: float | None = None
    fatalities: int = 0
    #: How to call the development where a command wants a name (an exercise's).
    label: str = ""
    #: What happened, in a line (the coded development's description).
    description: str = ""


def command_for(development: Development) -> Mapped:
    """The command recording ``development`` by the CAMEO table (raises :class:`Skip`).

    A row with neither a known actor, nor a target, nor a place concerns nobody the
    escalation model can score: it is skipped. An unknown actor is reported as unknown
    where the domain has unknown actors (incident reports only; sanctions and talks need
    their parties)."""
    if development.actor is None and development.target is None and not development.location:
        raise Skip(development.unknown_actor or "no-actor", "and no target or place")
    entry = cameo.entry_for(development.cameo_code)
    if entry.kind is not None:
        filler = cameo.FILLERS[entry.kind]
        opens_resource = entry.kind in OPENING
        has_actor = development.actor is not None or (unknown_actors() and not opens_resource)
        if has_actor and (development.target or not filler.needs_target):
            return _kind_command(development, entry, filler)
    return _coded_command(development)


#: Kinds that open a regime or track: their parties must be countries.
OPENING = frozenset({"sanctions_imposed", "negotiations_proposed"})


def _actor(development: Development) -> dict[str, Any]:
    if development.actor is not None:
        return development.actor.as_dict()
    return {"unknown": True}


def _kind_command(development: Development, entry: cameo.Entry, filler: cameo.Filler) -> Mapped:
    kind = vocabulary.by_kind(entry.kind or "")
    data: dict[str, Any] = {"request_id": development.request_id, "evidence": development.evidence}
    if kind.kind in OPENING:
        assert development.actor is not None and development.target is not None
        if kind.kind == "sanctions_imposed":
            data.update(authority=development.actor.country, target=development.target.country)
        else:
            parties = [development.actor.country, development.target.country]
            data.update(parties=parties, proposed_by=parties[0])
    else:
        data["actor"] = _actor(development)
        if development.target is not None:
            data["target"] = development.target.as_dict()
        if development.location is not None:
            data["location"] = development.location
        data.update(filler.fixed)
        data.update(entry.details)
        if filler.fatalities:
            data[filler.fatalities] = development.fatalities
        if filler.name:
            who = development.actor.country if development.actor else "unknown actor"
            data[filler.name] = development.label or f"{who} exercise"
        if filler.starts_at:
            data[filler.starts_at] = development.occurred_at
    return build(kind.command, data, kind.kind)


def _coded_command(development: Development) -> Mapped:
    if cameo.CODED_COMMAND not in _available():
        # Without the coded development such a row has no command.
        raise Skip("no-command-for-code", development.cameo_code)
    if development.actor is None and not unknown_actors():
        raise Skip(development.unknown_actor or "no-actor")
    if development.goldstein is None:
        raise Skip("malformed-row", "no Goldstein value")
    data: dict[str, Any] = {
        "request_id": development.request_id,
        "evidence": development.evidence,
        "actor": _actor(development),
        "event_code": development.cameo_code,
        "goldstein": development.goldstein,
        "description": development.description[:500],
    }
    if development.target is not None:
        data["target"] = development.target.as_dict()
    if development.location is not None:
        data["location"] = development.location
    return build(cameo.CODED_COMMAND, data, "coded")


@cache
def _available() -> frozenset[str]:
    from service.domain.commands import COMMANDS

    return frozenset(COMMANDS)


@cache
def unknown_actors() -> bool:
    """Whether the domain can record a report whose actor is not known."""
    from service.domain.commands import Party as DomainParty

    return "unknown" in DomainParty.model_fields
