"""The one CAMEO mapping table: which command records an event of a CAMEO code.

Derived from the vocabulary: each kind a single row can report declares its CAMEO code
(and its refinements' codes, with the details that select them) in
:mod:`service.domain.vocabulary`, so the table here only says which kinds a row can fill
(:data:`FILLERS`) and how codes without an entry of their own fall back. A code with no
entry is recorded as the generic coded development, which keeps the code itself.

Lookup order for an event code: the code itself, its three-digit base code, then (for the
roots in :data:`FAMILY_ROOTS` only) the root's generic code; otherwise the coded
development.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from service.domain import vocabulary
from service.domain.vocabulary import DetailValue, When

#: The generic development for codes that have no command of their own.
CODED_COMMAND: Final = "ReportCodedEvent"


@dataclass(frozen=True)
class Filler:
    """What a row must and may give a kind's command beyond the common report parts.

    ``fixed`` are values a row never carries but the command needs; each is the floor
    the event's CAMEO definition implies (an expulsion expels at least one person)."""

    needs_target: bool = False
    fixed: Mapping[str, DetailValue] = field(default_factory=dict)
    #: The command's field for the row's fatalities, where it has one.
    fatalities: str | None = None
    #: The command's field for a name the row does not give (made from its actors).
    name: str | None = None
    #: The command's field for the time the development began (its occurrence).
    starts_at: str | None = None


#: The kinds one row of event data can report, and how. Kinds absent here cannot be made
#: from a row: an incursion needs its platform and count, a statement its speaker and
#: quote, a summons shares CAMEO 111 with the condemnation listed first, a cyber attack
#: has no CAMEO code, and the steps of sanctions and negotiations need the regime or track
#: they continue (a row names none): those go to the coded development.
FILLERS: Final[Mapping[str, Filler]] = {
    "strike": Filler(fatalities="fatalities"),
    "armed_clash": Filler(needs_target=True, fatalities="fatalities"),
    "military_exercise": Filler(name="name", starts_at="starts_at"),
    "troop_deployment": Filler(fixed={"troop_count": 1}),
    "alert": Filler(fixed={"alert_kind": "readiness"}),
    "threat": Filler(),
    "condemnation": Filler(),
    "diplomats_expelled": Filler(needs_target=True, fixed={"count": 1}),
    "ceasefire_violation": Filler(needs_target=True, fatalities="fatalities"),
    "naval_blockade": Filler(needs_target=True),
    "sanctions_imposed": Filler(needs_target=True),
    "negotiations_proposed": Filler(needs_target=True),
}

#: Roots whose every code is a variant of the root's generic act (a threat, a use of
#: conventional force), so a code without an entry falls back to the root's ``X0`` entry.
#: In other roots the codes are distinct acts (police alert vs. military exercise in 15).
FAMILY_ROOTS: Final = frozenset({"13", "19"})


@dataclass(frozen=True)
class Entry:
    """Events of CAMEO ``code`` are reported as ``kind`` with ``details`` (None: coded)."""

    code: str
    kind: str | None
    details: Mapping[str, DetailValue] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return vocabulary.by_kind(self.kind).command if self.kind else CODED_COMMAND


def _selecting(when: When) -> dict[str, DetailValue]:
    # The details a report carries so the vocabulary's refinement (and its code) applies.
    if when.equals is None:
        return {when.field: True}
    (value,) = when.equals
    return {when.field: value}


def _derive() -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for kind in vocabulary.KINDS:
        if kind.kind not in FILLERS:
            continue
        codes: list[tuple[str, dict[str, DetailValue]]] = [(kind.coding.cameo, {})] + [
            (r.cameo, _selecting(r.when)) for r in kind.refinements if r.cameo is not None
        ]
        for code, details in codes:
            # The first kind the vocabulary declares with a code keeps it.
            if code and code not in entries:
                entries[code] = Entry(code, kind.kind, details)
    return dict(sorted(entries.items()))


#: CAMEO code -> entry, for the codes a kind of the vocabulary records.
TABLE: Final[Mapping[str, Entry]] = _derive()


def entry_for(code: str) -> Entry:
    """The entry recording an event of CAMEO ``code`` (``"042"``, ``"1383"``)."""
    code = code.strip()
    for candidate in (code, code[:3]):
        if candidate in TABLE:
            return TABLE[candidate]
    generic = code[:2] + "0"
    if code[:2] in FAMILY_ROOTS and generic in TABLE:
        return TABLE[generic]
    return Entry(code, None)


def table_markdown() -> str:
    """The table as the README shows it (a test holds the README to this)."""
    lines = [
        "| CAMEO code | Recorded as | Command | Details set |",
        "|---|---|---|---|",
    ]
    for code, entry in TABLE.items():
        shown = code
        if code.endswith("0") and code[:2] in FAMILY_ROOTS:
            shown = f"{code}, other {code[:2]}x"
        filler = FILLERS[entry.kind or ""]
        details = {**filler.fixed, **entry.details}
        extra = [f"`{key}={value}`" for key, value in details.items()]
        if filler.needs_target:
            extra.append("needs a target")
        lines.append(
            f"| {shown} (and its sub-codes) | `{entry.kind}` | `{entry.command}` "
            f"| {', '.join(extra) or '-'} |"
        )
    lines.append(f"| any other code | coded development | `{CODED_COMMAND}` | the code itself |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ actors

#: CAMEO's regional "country" codes: they name no state, so an actor coded with one is not
#: known as a country. ``WST`` (the West) is also ISO's code for Samoa, which CAMEO codes
#: ``WSM``: CAMEO's meaning wins in CAMEO-coded columns.
REGIONS: Final[Mapping[str, str]] = {
    "AFR": "Africa", "ASA": "Asia", "BLK": "Balkans", "CRB": "Caribbean",
    "CAU": "Caucasus", "CFR": "Central Africa", "CAS": "Central Asia",
    "CEU": "Central Europe", "EIN": "East Indies", "EAF": "East Africa",
    "EEU": "Eastern Europe", "EUR": "Europe", "LAM": "Latin America", "MEA": "Middle East",
    "MDT": "Mediterranean", "NAF": "North Africa", "NMR": "North America",
    "PGS": "Persian Gulf", "SCN": "Scandinavia", "SAM": "South America",
    "SAS": "South Asia", "SEA": "Southeast Asia", "SAF": "Southern Africa",
    "WAF": "West Africa", "WST": "the West",
}  # fmt: skip

#: CAMEO known-group codes of the organisations the domain accepts as actors.
ORGANISATIONS: Final[Mapping[str, str]] = {"UNO": "UN", "NAT": "NATO", "EEC": "EU"}

#: CAMEO actor type codes, as the organisation (sector) of a party.
SECTORS: Final[Mapping[str, str]] = {
    "GOV": "government", "MIL": "military", "COP": "police", "JUD": "judiciary",
    "LEG": "legislature", "SPY": "intelligence", "REB": "rebels", "OPP": "opposition",
    "BUS": "business", "CVL": "civilians", "MED": "media", "NGO": "NGO", "IGO": "IGO",
    "REF": "refugees", "EDU": "education", "HLH": "health", "LAB": "labour",
    "CRM": "criminals", "UAF": "armed forces (unaligned)", "INS": "insurgents",
    "SEP": "separatists", "ELI": "elites", "MOD": "moderates", "RAD": "radicals",
    "ENV": "environment", "AGR": "agriculture", "HRI": "human rights", "DEV": "development",
}  # fmt: skip
