"""ACLED exports (CSV with a header, columns from ACLED's public codebook).

Rules (the README's "Importing GDELT and ACLED" says the same):

- ``event_type``/``sub_event_type`` give a CAMEO code (:data:`CAMEO_OF`), and that code the
  command, by the same CAMEO table as GDELT's; sub-event types with no CAMEO equivalent
  (a change to a group, "Other") are skipped.
- Actors: ``Military Forces of X`` and ``Police Forces of X`` are country X (sector
  military, police); an actor written ``Name (X)`` is country X with ``Name`` as its
  organisation; any other actor is unknown (an armed group of no stated country).
- Location: ``iso`` (numeric ISO 3166) with ``location`` as the place and its coordinates.
- ``event_date`` is ``occurred_at`` (day precision), ``timestamp`` is ``reported_at``,
  ``fatalities`` the development's fatalities, ``acled-<event_id_cnty>`` the request id.
- Admiralty grade: reliability B (researchers code each event from vetted sources);
  credibility 2 when ``source`` names two or more sources, else 3.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, TextIO

import pycountry

from service.ingest.mapping import Development, Party, command_for
from service.ingest.records import Outcome, Skip, Skipped, coordinate, utc_day

#: The columns a file must have (the others of the codebook are read where present).
REQUIRED: Final = ("event_id_cnty", "event_date", "event_type", "sub_event_type", "actor1")

#: ACLED (event type, sub-event type) -> CAMEO event code; None: no CAMEO equivalent.
CAMEO_OF: Final[Mapping[tuple[str, str], str | None]] = {
    ("Battles", "Armed clash"): "190",
    ("Battles", "Government regains territory"): "192",
    ("Battles", "Non-state actor overtakes territory"): "192",
    ("Explosions/Remote violence", "Air/drone strike"): "195",
    ("Explosions/Remote violence", "Shelling/artillery/missile attack"): "194",
    ("Explosions/Remote violence", "Remote explosive/landmine/IED"): "183",
    ("Explosions/Remote violence", "Grenade"): "183",
    ("Explosions/Remote violence", "Suicide bomb"): "1831",
    ("Explosions/Remote violence", "Chemical weapon"): "2041",
    ("Violence against civilians", "Attack"): "180",
    ("Violence against civilians", "Abduction/forced disappearance"): "181",
    ("Violence against civilians", "Sexual violence"): "1821",
    ("Protests", "Peaceful protest"): "141",
    ("Protests", "Protest with intervention"): "141",
    ("Protests", "Excessive force against protesters"): "175",
    ("Riots", "Violent demonstration"): "145",
    ("Riots", "Mob violence"): "145",
    ("Strategic developments", "Agreement"): "057",
    ("Strategic developments", "Arrests"): "173",
    ("Strategic developments", "Looting/property destruction"): "171",
    ("Strategic developments", "Headquarters or base established"): "154",
    ("Strategic developments", "Change to group/activity"): None,
    ("Strategic developments", "Disrupted weapons use"): None,
    ("Strategic developments", "Non-violent transfer of territory"): None,
    ("Strategic developments", "Other"): None,
}

#: The Goldstein value of each code above, as GDELT scores it in the shared 2017 export;
#: codes absent there take the value of their root's nearest code in it (194, 195 as 190;
#: 181, 183, 1831 as 180; 145 as 141; 2041 as 201). ACLED rows carry no Goldstein value.
GOLDSTEIN: Final[Mapping[str, float]] = {
    "190": -10.0, "192": -9.5, "194": -10.0, "195": -10.0, "183": -9.0, "1831": -9.0,
    "2041": -9.5, "180": -9.0, "181": -9.0, "1821": -9.0, "141": -6.5, "175": -9.0,
    "145": -6.5, "057": 8.0, "173": -5.0, "171": -9.2, "154": -7.2,
}  # fmt: skip

#: ACLED's spellings of country names that ISO 3166 spells otherwise.
ALIASES: Final[Mapping[str, str]] = {
    "democratic republic of congo": "COD", "republic of congo": "COG",
    "ivory coast": "CIV", "palestine": "PSE", "eswatini": "SWZ", "russia": "RUS",
    "syria": "SYR", "iran": "IRN", "south korea": "KOR", "north korea": "PRK",
    "czech republic": "CZE", "turkey": "TUR", "laos": "LAO", "vietnam": "VNM",
    "bolivia": "BOL", "venezuela": "VEN", "tanzania": "TZA", "moldova": "MDA",
}  # fmt: skip

_FORCES: Final = re.compile(r"^(Military|Police) Forces of (.+?)(?: \([^)]*\))*$")
_SUFFIX: Final = re.compile(r"^(.+?) \(([^()]+)\)$")


class FormatError(ValueError):
    """The file is not an ACLED export (a required column is missing)."""


@lru_cache(maxsize=512)
def country_code(name: str) -> str | None:
    """The ISO alpha-3 code of a country as ACLED names it, or None."""
    key = name.strip().lower()
    if key in ALIASES:
        return ALIASES[key]
    try:
        return str(pycountry.countries.lookup(key).alpha_3)
    except LookupError:
        return None


def rows_of(text: TextIO) -> Iterator[dict[str, str]]:
    reader = csv.DictReader(text)
    missing = [name for name in REQUIRED if name not in (reader.fieldnames or [])]
    if missing:
        raise FormatError(f"not an ACLED export: no column {', '.join(missing)}")
    yield from reader


def read(path: Path) -> Iterator[dict[str, str]]:
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as text:
        yield from rows_of(text)


def map_row(row: Mapping[str, str | None]) -> Outcome:
    def get(name: str) -> str:
        return (row.get(name) or "").strip()

    row_id = get("event_id_cnty")
    try:
        return command_for(development_of(get))
    except Skip as skip:
        return Skipped(skip.reason, skip.detail, row_id)


def party(name: str) -> tuple[Party | None, str]:
    if not name:
        return None, "no-actor"
    forces = _FORCES.match(name)
    if forces:
        code = country_code(forces.group(2))
        if code:
            return Party(code, forces.group(1).lower()), ""
    suffix = _SUFFIX.match(name)
    if suffix:
        code = country_code(suffix.group(2))
        if code:
            return Party(code, suffix.group(1)[:100]), ""
    return None, "actor-not-a-country"


def development_of(get: Any) -> Development:
    event_id = get("event_id_cnty")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", event_id):
        raise Skip("malformed-row", f"event_id_cnty {event_id!r}")
    types = (get("event_type"), get("sub_event_type"))
    if types not in CAMEO_OF:
        raise Skip("unknown-event-type", " / ".join(types))
    code = CAMEO_OF[types]
    if code is None:
        raise Skip("no-cameo-equivalent", " / ".join(types))
    occurred_at = _date(get("event_date"))
    actor, why = party(get("actor1"))
    target, _ = party(get("actor2"))
    if actor is not None and target is not None and target.country == actor.country:
        target = None
    fatalities = get("fatalities")
    if fatalities and not fatalities.isdigit():
        raise Skip("malformed-row", f"fatalities {fatalities!r}")
    return Development(
        request_id=f"acled-{event_id}",
        cameo_code=code,
        occurred_at=occurred_at,
        evidence=_evidence(get, occurred_at),
        actor=actor,
        unknown_actor=why,
        target=target,
        location=_location(get),
        fatalities=int(fatalities or 0),
        label=f"{get('actor1')} ({event_id})"[:200],
        goldstein=GOLDSTEIN.get(code),
        description=f"{types[0]}: {types[1]}",
    )


def _date(text: str) -> datetime:
    # The codebook's ISO dates, and the "15 January 2023" of older exports.
    try:
        return datetime.strptime(text, "%d %B %Y").replace(tzinfo=UTC)
    except ValueError:
        return utc_day(text)


def _location(get: Any) -> dict[str, Any] | None:
    code = None
    if get("iso").isdigit():
        country = pycountry.countries.get(numeric=f"{int(get('iso')):03d}")
        code = country.alpha_3 if country is not None else None
    code = code or (country_code(get("country")) if get("country") else None)
    if code is None:
        if get("iso") or get("country"):
            raise Skip("location-not-iso", f"iso {get('iso')!r}, country {get('country')!r}")
        return None
    data: dict[str, Any] = {"country": code}
    place = ", ".join(part for part in (get("location"), get("admin1")) if part)[:200]
    if place:
        data["place"] = place
    latitude, longitude = coordinate(get("latitude"), 90), coordinate(get("longitude"), 180)
    if latitude is not None and longitude is not None:
        data.update(latitude=latitude, longitude=longitude)
    return data


def _evidence(get: Any, occurred_at: datetime) -> dict[str, Any]:
    names = [name.strip()[:200] for name in get("source").split(";") if name.strip()][:20]
    data: dict[str, Any] = {
        "occurred_at": occurred_at,
        "precision": "day",
        "sources": [{"name": name} for name in names] or [{"name": "ACLED"}],
        "reliability": "B",
        "credibility": 2 if len(names) >= 2 else 3,
        "summary": get("notes")[:4000],
    }
    if get("timestamp").isdigit():
        reported_at = datetime.fromtimestamp(int(get("timestamp")), UTC)
        if reported_at >= occurred_at:
            data["reported_at"] = reported_at
    return data


def table_markdown() -> str:
    """The ACLED table as the README shows it (a test holds the README to this)."""
    lines = ["| ACLED event type | sub-event type | CAMEO code |", "|---|---|---|"]
    for (event_type, sub_event_type), code in CAMEO_OF.items():
        shown = code or "skipped (`no-cameo-equivalent`)"
        lines.append(f"| {event_type} | {sub_event_type} | {shown} |")
    return "\n".join(lines) + "\n"
