"""The vocabulary of developments: every kind declared once, everything else derived.

A kind's names on every surface (command, stored event type, CLI), the collection it is
recorded in, its CAMEO/PLOVER coding and how its details refine that coding, and how the
escalation model reads it (weight key, half-life class, which fields give its size) live in
one :class:`Kind` entry here. The codings, the routing of stored event types to projections,
the Incident's event classes and the escalation fold are built from this table; a test holds
the command models, the proto, the CLI, the parameter table and the README to it.

Stored data depends on these names: an ``event`` or ``kind`` once released is never renamed.

This module imports nothing of ours, so every layer may read it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

#: Where a development is recorded (the resource collection of its aggregate).
Collection = Literal["incidents", "sanctions", "negotiations"]
#: How fast a development's weight fades (the days are in the escalation parameter table).
HalfLifeClass = Literal["verbal", "posture", "material", "economic"]
#: A detail's value as stored in a report's ``details`` (JSON scalars only matter here).
DetailValue = str | int | float | bool | None


class UnknownKind(ValueError):
    """A kind, command or event type name the vocabulary does not declare."""

    def __init__(self, what: str, name: object) -> None:
        super().__init__(f"unknown {what} {name!r}: the vocabulary of developments lacks it")
        self.what = what
        self.name = name


@dataclass(frozen=True)
class Coding:
    """A CAMEO event code and its PLOVER category and mode ("" where there is none)."""

    cameo: str
    plover: str = ""
    mode: str = ""

    def as_dict(self) -> dict[str, str]:
        """The shape recorded with every event (``plover_mode``, as stored since v1)."""
        return {"cameo": self.cameo, "plover": self.plover, "plover_mode": self.mode}


@dataclass(frozen=True)
class When:
    """A condition on one detail: ``field`` is truthy, or (``equals``) one of these values,
    and none of ``unless``."""

    field: str
    equals: frozenset[DetailValue] | None = None
    unless: frozenset[DetailValue] = frozenset()

    def holds(self, details: Mapping[str, object]) -> bool:
        value = details.get(self.field)
        if not isinstance(value, Hashable):  # a list or object never equals a scalar
            return self.equals is None and bool(value) and not self.unless
        if value in self.unless:
            return False
        if self.equals is None:
            return bool(value)
        return value in self.equals


@dataclass(frozen=True)
class Refinement:
    """Where CAMEO codes a detail finer (or the escalation model weighs it differently).

    Each set part replaces the kind's own; ``mode_from_detail`` takes the PLOVER mode from
    the detail's value (an incursion by aircraft is mode ``aircraft``).
    """

    when: When
    cameo: str | None = None
    plover: str | None = None
    mode: str | None = None
    mode_from_detail: bool = False
    weight_key: str | None = None


@dataclass(frozen=True)
class Size:
    """The detail (or payload field) that gives a development's size, and its divisor."""

    field: str
    divisor: float = 1.0

    def of(self, details: Mapping[str, object]) -> float:
        value = details.get(self.field, 0) or 0
        if not isinstance(value, int | float):
            raise TypeError(f"{self.field} is {value!r}, not a number")
        return float(value) / self.divisor


@dataclass(frozen=True)
class Kind:
    """One kind of development, on every surface it appears on."""

    #: Stored as ``kind`` in incident events and read models (``airspace_incursion``).
    kind: str
    #: The command class and RPC (``ReportIncursion``).
    command: str
    #: The stable stored event type name (``IncursionReported``).
    event: str
    #: ``flashpoint report <cli>`` (``incursion``).
    cli: str
    collection: Collection
    coding: Coding
    half_life: HalfLifeClass
    #: The weight in the parameter table; refinements may pick another.
    weight_key: str = ""
    size: Size | None = None
    #: The detail that counts fatalities, where the kind has one.
    fatalities: str | None = None
    refinements: tuple[Refinement, ...] = ()
    #: The detail holding the development's own CAMEO event code, for a kind that records
    #: any code (its PLOVER category then follows the code's root, see ``PLOVER_BY_ROOT``).
    cameo_from: str | None = None
    #: The detail holding the development's own Goldstein value (-10..+10), which the
    #: escalation model weighs it by instead of the table's weight for ``weight_key``.
    goldstein_from: str | None = None

    def __post_init__(self) -> None:
        if not self.weight_key:
            object.__setattr__(self, "weight_key", self.kind)

    def coding_for(self, details: Mapping[str, object] | None = None) -> Coding:
        cameo, plover, mode = self.coding.cameo, self.coding.plover, self.coding.mode
        if self.cameo_from is not None:
            cameo = str((details or {}).get(self.cameo_from) or cameo)
            plover = PLOVER_BY_ROOT.get(cameo[:2], plover)
        for refinement in self._applicable(details or {}):
            cameo = refinement.cameo if refinement.cameo is not None else cameo
            plover = refinement.plover if refinement.plover is not None else plover
            mode = refinement.mode if refinement.mode is not None else mode
            if refinement.mode_from_detail:
                mode = str((details or {})[refinement.when.field])
        return Coding(cameo, plover, mode)

    def weight_key_for(self, details: Mapping[str, object] | None = None) -> str:
        key = self.weight_key
        for refinement in self._applicable(details or {}):
            key = refinement.weight_key or key
        return key

    @property
    def weight_keys(self) -> frozenset[str]:
        """Every weight this kind can be scored with (its own and its refinements')."""
        refined = {r.weight_key for r in self.refinements if r.weight_key is not None}
        return frozenset({self.weight_key, *refined})

    def size_of(self, details: Mapping[str, object]) -> tuple[float, float]:
        """(size, fatalities) that set the development's magnitude."""
        size = self.size.of(details) if self.size is not None else 0.0
        fatalities = Size(self.fatalities).of(details) if self.fatalities else 0.0
        return size, fatalities

    @property
    def size_fields(self) -> tuple[str, ...]:
        return tuple(f for f in (self.size and self.size.field, self.fatalities) if f)

    def goldstein_of(self, details: Mapping[str, object]) -> float | None:
        """The development's own Goldstein value, for a kind that carries one."""
        if self.goldstein_from is None:
            return None
        value = details.get(self.goldstein_from)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"{self.goldstein_from} is {value!r}, not a number")
        return float(value)

    @property
    def detail_fields(self) -> frozenset[str]:
        """The fields this entry reads from a command (size, fatalities, refinements, its
        own code and Goldstein value)."""
        own = (f for f in (self.cameo_from, self.goldstein_from) if f)
        return frozenset({*self.size_fields, *(r.when.field for r in self.refinements), *own})

    def _applicable(self, details: Mapping[str, object]) -> Iterable[Refinement]:
        return (refinement for refinement in self.refinements if refinement.when.holds(details))


@dataclass(frozen=True)
class Step:
    """A later step in the life of a recorded incident (not a development of its own)."""

    command: str
    event: str
    cli: str
    collection: Collection = "incidents"
    #: The coding the step records, where it records one (a denial).
    coding: Coding | None = None


def _set(field: str) -> When:
    return When(field)


def _is(field: str, *values: DetailValue) -> When:
    return When(field, equals=frozenset(values))


#: A party's denial of responsibility (recorded with every dispute).
DENIAL: Final = Coding("016", "REJECT")

# Weight keys default to the kind. Sizes are the counts DESIGN.md section 3 names: drones,
# munitions, troops/1000, aircraft, diplomats, vessels; sanctions entities/10.
KINDS: Final[tuple[Kind, ...]] = (
    # ------------------------------------------------------------------------- incidents
    Kind(
        "airspace_incursion", "ReportIncursion", "IncursionReported", "incursion",
        "incidents", Coding("150", "MOBILIZE", "drone"), "material", size=Size("count"),
        refinements=(
            Refinement(_set("shots_fired"), cameo="190", plover="ASSAULT"),
            Refinement(When("platform", unless=frozenset({"drone"})), mode_from_detail=True),
        ),
    ),
    Kind(
        "strike", "ReportStrike", "StrikeReported", "strike", "incidents",
        Coding("195", "ASSAULT", "aerial"), "material", size=Size("munitions_count"),
        fatalities="fatalities",
    ),
    Kind(
        "armed_clash", "ReportClash", "ClashReported", "clash", "incidents",
        Coding("190", "ASSAULT"), "material", fatalities="fatalities",
        refinements=(Refinement(_set("ceasefire_violation"), mode="ceasefire_violation"),),
    ),
    Kind(
        "military_exercise", "StartMilitaryExercise", "MilitaryExerciseStarted",
        "exercise-start", "incidents", Coding("150", "MOBILIZE", "exercise"), "posture",
        size=Size("troop_count", 1000),
    ),
    Kind(
        "troop_deployment", "DeployTroops", "TroopsDeployed", "troops", "incidents",
        Coding("154", "MOBILIZE", "troops"), "posture", size=Size("troop_count", 1000),
    ),
    Kind(
        "alert", "RaiseAlert", "AlertRaised", "alert", "incidents",
        Coding("152", "MOBILIZE", "weapons"), "posture", size=Size("aircraft_count"),
    ),
    Kind(
        "threat", "ReportThreat", "ThreatReported", "threat", "incidents",
        Coding("130", "THREATEN"), "verbal",
        refinements=(
            Refinement(_is("threat_kind", "military"), cameo="138", weight_key="military_threat"),
            Refinement(_is("threat_kind", "ultimatum"), cameo="139", weight_key="military_threat"),
        ),
    ),
    Kind(
        "statement", "RecordStatement", "StatementRecorded", "statement", "incidents",
        Coding("010"), "verbal",
    ),
    Kind(
        "condemnation", "IssueCondemnation", "CondemnationIssued", "condemnation", "incidents",
        Coding("111", "ACCUSE"), "verbal",
        refinements=(Refinement(_set("accusation"), cameo="112", weight_key="accusation"),),
    ),
    Kind(
        "envoy_summoned", "SummonEnvoy", "EnvoySummoned", "envoy-summoned", "incidents",
        Coding("111", "ACCUSE", "summon"), "verbal",
    ),
    Kind(
        "diplomats_expelled", "ExpelDiplomats", "DiplomatsExpelled", "diplomats-expelled",
        "incidents", Coding("166", "SANCTION", "expel"), "verbal", size=Size("count"),
    ),
    Kind(
        "cyber_attack", "ReportCyberAttack", "CyberAttackReported", "cyber-attack",
        "incidents", Coding("", "COERCE", "cyber"), "material",
    ),
    Kind(
        "ceasefire_violation", "ReportCeasefireViolation", "CeasefireViolationReported",
        "ceasefire-violation", "incidents", Coding("196", "ASSAULT", "ceasefire_violation"),
        "material", fatalities="fatalities",
    ),
    Kind(
        "naval_blockade", "ImposeBlockade", "BlockadeImposed", "blockade", "incidents",
        Coding("191", "COERCE", "blockade"), "material", size=Size("vessels_count"),
    ),
    # Any CAMEO code without a command of its own (GDELT's rows, mostly): its coding is its
    # own code, its weight its own Goldstein value (projections/parameters.py).
    Kind(
        "coded_event", "ReportCodedEvent", "CodedEventReported", "coded-event", "incidents",
        Coding(""), "verbal", cameo_from="event_code", goldstein_from="goldstein",
    ),
    # ------------------------------------------------------------------------- sanctions
    Kind(
        "sanctions_imposed", "ImposeSanctions", "SanctionsImposed", "sanctions-imposed",
        "sanctions", Coding("163", "SANCTION"), "economic", size=Size("entities_count", 10),
    ),
    Kind(
        "sanctions_extended", "ExtendSanctions", "SanctionsExtended", "sanctions-extended",
        "sanctions", Coding("163", "SANCTION"), "economic", size=Size("entities_added", 10),
    ),
    Kind(
        "sanctions_eased", "EaseSanctions", "SanctionsEased", "sanctions-eased", "sanctions",
        Coding("085", "RETREAT"), "economic", size=Size("entities_removed", 10),
    ),
    Kind(
        "sanctions_lifted", "LiftSanctions", "SanctionsLifted", "sanctions-lifted", "sanctions",
        Coding("085", "RETREAT", "lift"), "economic",
    ),
    # ---------------------------------------------------------------------- negotiations
    Kind(
        "negotiations_proposed", "ProposeNegotiations", "NegotiationsProposed",
        "negotiations-proposed", "negotiations", Coding("036", "AGREE"), "verbal",
    ),
    Kind(
        "negotiation_round_held", "HoldNegotiationRound", "NegotiationRoundHeld",
        "negotiation-round", "negotiations", Coding("046", "CONSULT"), "verbal",
    ),
    Kind(
        "negotiations_paused", "PauseNegotiations", "NegotiationsPaused",
        "negotiations-paused", "negotiations", Coding("164", "SANCTION", "withdraw"), "verbal",
    ),
    Kind(
        "negotiations_resumed", "ResumeNegotiations", "NegotiationsResumed",
        "negotiations-resumed", "negotiations", Coding("046", "CONSULT"), "verbal",
    ),
    Kind(
        "negotiations_rejected", "RejectNegotiations", "NegotiationsRejected",
        "negotiations-rejected", "negotiations", Coding("125", "REJECT"), "verbal",
    ),
    Kind(
        "agreement_signed", "SignAgreement", "AgreementSigned", "agreement-signed",
        "negotiations", Coding("057", "AGREE"), "verbal",
    ),
)  # fmt: skip


def _plover_by_root() -> dict[str, str]:
    # The first kind declared with a code of a root names that root's PLOVER category
    # (root 19: a clash's ASSAULT, not a blockade's COERCE, by the order above).
    roots: dict[str, str] = {}
    for kind in KINDS:
        codings = (kind.coding, *(Coding(r.cameo or "", r.plover or "") for r in kind.refinements))
        for coding in codings:
            if len(coding.cameo) >= 2 and coding.plover:
                roots.setdefault(coding.cameo[:2], coding.plover)
    return roots


#: CAMEO root (two digits) -> PLOVER category, where a declared kind maps the root.
PLOVER_BY_ROOT: Final[Mapping[str, str]] = _plover_by_root()

#: The steps of an incident's lifecycle after its report.
STEPS: Final[tuple[Step, ...]] = (
    Step("CorroborateIncident", "IncidentCorroborated", "corroborate"),
    Step("DisputeIncident", "IncidentDisputed", "dispute", coding=DENIAL),
    Step("CorrectIncident", "IncidentCorrected", "correct"),
    Step("RetractIncident", "IncidentRetracted", "retract"),
    Step("EndMilitaryExercise", "MilitaryExerciseEnded", "exercise-end"),
)

#: Codings recorded by something other than a kind's report (``coding_for("denial")``).
NAMED_CODINGS: Final[Mapping[str, Coding]] = {"denial": DENIAL}


T = TypeVar("T", Kind, Kind | Step)


def _index(entries: Iterable[T], name: str, key: str) -> dict[str, T]:
    found: dict[str, T] = {}
    for entry in entries:
        value = getattr(entry, key)
        if value in found:
            raise ValueError(f"the vocabulary declares the {name} {value!r} twice")
        found[value] = entry
    return found


#: Every declared entry: the kinds, then the lifecycle steps.
ENTRIES: Final[tuple[Kind | Step, ...]] = (*KINDS, *STEPS)
BY_KIND: Final[Mapping[str, Kind]] = _index(KINDS, "kind", "kind")
BY_COMMAND: Final[Mapping[str, Kind | Step]] = _index(ENTRIES, "command", "command")
BY_EVENT: Final[Mapping[str, Kind | Step]] = _index(ENTRIES, "event type", "event")
BY_CLI: Final[Mapping[str, Kind | Step]] = _index(ENTRIES, "CLI name", "cli")


def by_kind(kind: str) -> Kind:
    try:
        return BY_KIND[kind]
    except KeyError:
        raise UnknownKind("kind of development", kind) from None


def by_command(command: str) -> Kind | Step:
    try:
        return BY_COMMAND[command]
    except KeyError:
        raise UnknownKind("command", command) from None


def by_event(event_type: str) -> Kind | Step:
    try:
        return BY_EVENT[event_type]
    except KeyError:
        raise UnknownKind("event type", event_type) from None


def kind_of_event(event_type: str) -> Kind:
    """The kind whose report (or sanctions/negotiation step) bears this event type name."""
    entry = by_event(event_type)
    if not isinstance(entry, Kind):
        raise UnknownKind("kind of development for event type", event_type)
    return entry


def kinds_in(collection: Collection) -> tuple[Kind, ...]:
    return tuple(kind for kind in KINDS if kind.collection == collection)


def events_of(entries: Iterable[Kind | Step]) -> frozenset[str]:
    return frozenset(entry.event for entry in entries)
