"""A source-neutral development (what GDELT and ACLED rows both say) to its command."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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


def command_for(development: Development) -> Mapped:
    """The command recording ``development`` by the CAMEO table (raises :class:`Skip`)."""
    entry = cameo.entry_for(development.cameo_code)
    if entry.kind is not None:
        filler = cameo.FILLERS[entry.kind]
        if development.actor is not None and (development.target or not filler.needs_target):
            return _kind_command(development, entry, filler)
    return _coded_command(development)


def _kind_command(development: Development, entry: cameo.Entry, filler: cameo.Filler) -> Mapped:
    assert development.actor is not None
    kind = vocabulary.by_kind(entry.kind or "")
    data: dict[str, Any] = {"request_id": development.request_id, "evidence": development.evidence}
    if kind.kind == "sanctions_imposed":
        assert development.target is not None
        data.update(authority=development.actor.country, target=development.target.country)
    elif kind.kind == "negotiations_proposed":
        assert development.target is not None
        parties = [development.actor.country, development.target.country]
        data.update(parties=parties, proposed_by=parties[0])
    else:
        data["actor"] = development.actor.as_dict()
        if development.target is not None:
            data["target"] = development.target.as_dict()
        if development.location is not None:
            data["location"] = development.location
        data.update(filler.fixed)
        data.update(entry.details)
        if filler.fatalities:
            data[filler.fatalities] = development.fatalities
        if filler.name:
            data[filler.name] = development.label or f"{development.actor.country} exercise"
        if filler.starts_at:
            data[filler.starts_at] = development.occurred_at
    return build(kind.command, data, kind.kind)


def _coded_command(development: Development) -> Mapped:
    if cameo.CODED_COMMAND not in _available():
        # Without the coded development (and unknown actors) such a row has no command.
        raise Skip("no-command-for-code", development.cameo_code)
    if development.actor is None:
        raise Skip(development.unknown_actor or "no-actor")
    data: dict[str, Any] = {
        "request_id": development.request_id,
        "evidence": development.evidence,
        "actor": development.actor.as_dict(),
        "cameo_code": development.cameo_code,
    }
    if development.target is not None:
        data["target"] = development.target.as_dict()
    if development.location is not None:
        data["location"] = development.location
    if development.goldstein is not None:
        data["goldstein"] = development.goldstein
    return build(cameo.CODED_COMMAND, data, "coded")


def _available() -> frozenset[str]:
    from service.domain.commands import COMMANDS

    return frozenset(COMMANDS)
