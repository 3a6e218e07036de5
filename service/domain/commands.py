"""Commands: what a client asks Flashpoint to record, validated once at the edge.

Every command is a frozen pydantic model with an imperative name. Validation here is the
only place a report's shape is checked: country codes against ISO 3166 (``pycountry``),
counts, time order, clock skew, string lengths. A rejected command raises
:class:`CommandValidationError`, whose violations name the offending fields.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property, lru_cache
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar
from uuid import UUID

import orjson
import pycountry
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    model_serializer,
    model_validator,
)

from service.domain import vocabulary

#: How far into the future a reported time may lie before it is refused (clocks drift).
CLOCK_SKEW = timedelta(minutes=5)

#: Organisations that act like countries in reports (sanctioning authorities, alliances).
#: ISO 3166 has no codes for them; these are the short forms newsrooms and datasets use.
ORGANISATIONS: frozenset[str] = frozenset(
    {"EU", "UN", "NATO", "G7", "AU", "ASEAN", "OSCE", "ECOWAS", "CSTO", "OAS", "GCC"}
)


#: The command classes the vocabulary declares, by command name (filled as they are defined).
_DECLARED: dict[str, type[Command]] = {}


class FieldViolation(BaseModel):
    model_config = ConfigDict(frozen=True)
    field: str
    description: str


class InvalidField(ValueError):
    """Raised by cross-field validators so the violation names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class CommandValidationError(ValueError):
    """A command (or a query) is malformed; each violation names its field."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))

    @classmethod
    def single(cls, field: str, description: str) -> CommandValidationError:
        return cls([FieldViolation(field=field, description=description)])

    @classmethod
    def from_pydantic(cls, error: ValidationError, prefix: str = "") -> CommandValidationError:
        violations = []
        for item in error.errors(include_url=False):
            path = field_path(item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            cause = item.get("ctx", {}).get("error")
            if isinstance(cause, InvalidField):
                path = f"{path}.{cause.field}" if path else cause.field
            if prefix:
                path = f"{prefix}.{path}" if path else prefix
            violations.append(FieldViolation(field=path or "(request)", description=message))
        return cls(violations)


def field_path(loc: Iterable[int | str]) -> str:
    """``("evidence", "sources", 0, "url")`` -> ``evidence.sources[0].url``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-after", "function-before")):
            continue
        else:
            path = f"{path}.{part}" if path else part
    return path


@lru_cache(maxsize=1)
def _iso_alpha3() -> frozenset[str]:
    return frozenset(country.alpha_3 for country in pycountry.countries)


def _country_code(value: str) -> str:
    code = value.upper()
    if code not in _iso_alpha3():
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-3 country code")
    return code


def country_or_organisation(value: str) -> str:
    code = value.upper()
    if code in ORGANISATIONS or code in _iso_alpha3():
        return code
    raise ValueError(
        f"{value!r} is neither an ISO 3166-1 alpha-3 country code nor a known organisation "
        f"({', '.join(sorted(ORGANISATIONS))})"
    )


def _not_in_future(value: datetime) -> datetime:
    value = value.astimezone(UTC)
    if value > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError(f"{value.isoformat()} lies in the future")
    return value


def _at_least(count: int) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    # An after-validator runs only when every item was valid, so one bad item is reported
    # as itself rather than also as "too few items".
    def check(items: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(items) < count:
            raise ValueError(f"needs at least {count} item{'s' if count > 1 else ''}")
        return items

    return check


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


CountryCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=3),
    AfterValidator(_country_code),
]
ActorCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=2, max_length=6),
    AfterValidator(country_or_organisation),
]
PastTime = Annotated[AwareDatetime, AfterValidator(_not_in_future)]
UtcTime = Annotated[AwareDatetime, AfterValidator(_utc)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=4000)]
Url = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2000, pattern=r"^https?://[^\s]+$")
]
RequestId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/@+=-]+$")
]
Count = Annotated[int, Field(ge=0, le=10_000_000)]
Reliability = Literal["A", "B", "C", "D", "E", "F"]
Credibility = Annotated[int, Field(ge=1, le=6)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Party(Model):
    """Who acted or was acted upon: a country (or organisation), optionally a sector.

    A report's actor may be ``unknown`` (drones over an airport, nobody named yet): then it
    has no country, and the development counts for its target and location only until a
    correction attributes it.
    """

    country: ActorCode | None = None
    organisation: Annotated[str, StringConstraints(max_length=100)] | None = None
    unknown: bool = False

    @model_validator(mode="after")
    def _country_or_unknown(self) -> Self:
        if self.unknown and self.country is not None:
            raise InvalidField("unknown", "an unknown party has no country; leave country unset")
        if not self.unknown and self.country is None:
            raise InvalidField("country", "Field required (or set unknown for an unknown actor)")
        return self

    @model_serializer(mode="wrap")
    def _known_stays_as_before(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # A known party is stored (and fingerprinted) exactly as before ``unknown`` existed,
        # so earlier receipts still match their retries and stored reports keep one shape.
        data: dict[str, Any] = handler(self)
        if not self.unknown:
            data.pop("unknown", None)
        return data


class Location(Model):
    country: CountryCode
    region: Annotated[str, StringConstraints(max_length=200)] | None = None
    place: Annotated[str, StringConstraints(max_length=200)] | None = None
    latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    longitude: Annotated[float, Field(ge=-180, le=180)] | None = None

    @model_validator(mode="after")
    def _both_coordinates(self) -> Self:
        if (self.latitude is None) != (self.longitude is None):
            raise InvalidField("latitude", "latitude and longitude go together")
        return self


class Source(Model):
    name: Name
    url: Url | None = None


class Evidence(Model):
    """When it happened and how sure we are (Admiralty grading, NATO STANAG 2511)."""

    occurred_at: PastTime
    precision: Literal["day", "hour", "minute"] = "minute"
    reported_at: PastTime | None = None
    sources: Annotated[tuple[Source, ...], Field(max_length=20), AfterValidator(_at_least(1))]
    reliability: Reliability
    credibility: Credibility
    summary: LongText = ""


class Command(Model):
    """Base of every command: an optional AIP-155 request id for safe retries."""

    command_name: ClassVar[str]
    cli_name: ClassVar[str]
    request_id: RequestId | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "command_name" not in cls.__dict__:
            cls.command_name = cls.__name__
        # Names on other surfaces come from the vocabulary, never from the class itself.
        entry = vocabulary.BY_COMMAND.get(cls.command_name)
        if entry is not None:
            cls.cli_name = entry.cli
            _DECLARED[cls.command_name] = cls

    @cached_property
    def json_data(self) -> dict[str, Any]:
        """The command as JSON data, dumped once: its fingerprint, its report and its
        details are all read from this one dump (the model is frozen, so it stays true).
        Treat it as read-only; parts of it end up in events."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """A digest of what the command asks, so a reused request id can be told apart.

        Versioned (``v2:`` and 64 hex digits): receipts keep the fingerprint they were
        recorded with, and :meth:`fingerprint_matches` reads every version. v2 is the
        SHA-256 of ``[command_name, body]`` as orjson writes it with sorted keys; v1 (64
        hex digits, no prefix) the same through ``json.dumps`` (see
        :meth:`fingerprint_v1`), whose bytes differ for non-ASCII text and some floats.
        """
        body = {key: value for key, value in self.json_data.items() if key != "request_id"}
        for name in _json_shaped_fields(type(self)):
            body[name] = _canonical_numbers(body[name])
        try:
            canonical = orjson.dumps([self.command_name, body], option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            # An integer beyond 64 bits (in ``changes``), which orjson does not write: the
            # same command always lands here, so its fingerprint is still its own.
            canonical = json.dumps(
                [self.command_name, body], sort_keys=True, separators=(",", ":")
            ).encode()
        return FINGERPRINT_V2 + hashlib.sha256(canonical).hexdigest()

    def fingerprint_v1(self) -> str:
        """The fingerprint as receipts recorded it before versions (64 hex digits)."""
        body = _canonical_numbers(self.model_dump(mode="json", exclude={"request_id"}))
        canonical = json.dumps([self.command_name, body], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def fingerprint_matches(self, recorded: str) -> bool:
        """Whether a receipt's fingerprint, of whichever version, is this command's."""
        if recorded.startswith(FINGERPRINT_V2):
            return recorded == self.fingerprint()
        return recorded == self.fingerprint_v1()


#: The prefix of the current fingerprint version.
FINGERPRINT_V2 = "v2:"


@cache
def _json_shaped_fields(command_class: type[Command]) -> tuple[str, ...]:
    # The fields that cross protobuf as Struct (``changes``), the only ones whose numbers
    # may arrive as doubles: found once per class, so the others are not walked.
    return tuple(
        name
        for name, info in command_class.model_fields.items()
        if getattr(info.annotation, "__origin__", info.annotation) is dict
    )


def _canonical_numbers(value: Any) -> Any:
    # JSON-shaped fields (``changes``) cross protobuf as Struct, where every number is a
    # double: 21 arrives as 21.0. The same request must fingerprint the same either way.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _canonical_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical_numbers(item) for item in value]
    return value


class ExistingResourceCommand(Command):
    """A command on an existing resource; ``expected_version`` is its optimistic lock."""

    expected_version: Annotated[int, Field(ge=1)] | None = None


# ---------------------------------------------------------------------------- incidents


#: The parts of a report common to every kind, in the order they are stored.
_REPORT_FIELDS = ("actor", "target", "location", "evidence")


class ReportDevelopment(Command):
    """Base of the commands that report a new incident (one per incident kind of the
    vocabulary, which gives each its ``kind``)."""

    kind: ClassVar[str]
    actor: Party
    target: Party | None = None
    location: Location | None = None
    evidence: Evidence

    COMMON_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"request_id", "actor", "target", "location", "evidence"}
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        entry = vocabulary.BY_COMMAND.get(cls.command_name)
        if not isinstance(entry, vocabulary.Kind) or entry.collection != "incidents":
            raise TypeError(
                f"{cls.command_name} reports an incident but the vocabulary declares no "
                "incident kind with that command"
            )
        cls.kind = entry.kind

    def report(self) -> dict[str, Any]:
        data = self.json_data
        return {name: data[name] for name in _REPORT_FIELDS}

    def details(self) -> dict[str, Any]:
        return {
            name: value for name, value in self.json_data.items() if name not in self.COMMON_FIELDS
        }

    @model_validator(mode="after")
    def _actor_is_not_target(self) -> Self:
        if self.target is not None and self.target.unknown:
            raise InvalidField("target.unknown", "only the actor of a report may be unknown")
        if self.target is not None and self.target.country == self.actor.country:
            raise InvalidField("target.country", "must differ from actor.country")
        return self


class ReportIncursion(ReportDevelopment):
    """Aircraft, drones or missiles entered another country's airspace."""

    target: Party
    platform: Literal["drone", "aircraft", "missile", "helicopter", "balloon"] = "drone"
    count: Annotated[int, Field(ge=1, le=100_000)]
    intercepted: Count = 0
    shots_fired: bool = False

    @model_validator(mode="after")
    def _intercepted_within_count(self) -> Self:
        if self.intercepted > self.count:
            raise InvalidField(
                "intercepted", f"intercepted ({self.intercepted}) exceeds count ({self.count})"
            )
        return self


class ReportStrike(ReportDevelopment):
    """An air, missile or drone strike."""

    weapon: Literal["missile", "drone", "aircraft", "artillery", "mixed"] = "mixed"
    munitions_count: Count = 0
    target_kind: Annotated[str, StringConstraints(max_length=100)] = ""
    fatalities: Count = 0
    injured: Count = 0


class ReportClash(ReportDevelopment):
    """Armed forces of two parties fought."""

    target: Party
    fatalities: Count = 0
    injured: Count = 0
    ceasefire_violation: bool = False


class StartMilitaryExercise(ReportDevelopment):
    """A military exercise began (its end is a separate command)."""

    name: Name
    participants: Annotated[tuple[ActorCode, ...], Field(max_length=50)] = ()
    troop_count: Count = 0
    starts_at: UtcTime
    planned_end_at: UtcTime | None = None
    border_with: Annotated[tuple[CountryCode, ...], Field(max_length=20)] = ()
    distance_to_border_km: Annotated[float, Field(ge=0, le=20_000)] | None = None

    @model_validator(mode="after")
    def _ends_after_start(self) -> Self:
        if self.planned_end_at is not None and self.planned_end_at < self.starts_at:
            raise InvalidField("planned_end_at", "planned_end_at is before starts_at")
        return self


class DeployTroops(ReportDevelopment):
    """Troops were deployed, e.g. to a border region."""

    troop_count: Annotated[int, Field(ge=1, le=10_000_000)]
    region: Annotated[str, StringConstraints(max_length=200)] = ""
    border_with: Annotated[tuple[CountryCode, ...], Field(max_length=20)] = ()
    distance_to_border_km: Annotated[float, Field(ge=0, le=20_000)] | None = None


class RaiseAlert(ReportDevelopment):
    """Forces put on alert, jets scrambled."""

    alert_kind: Literal["jets_scrambled", "air_defence", "readiness", "other"] = "jets_scrambled"
    aircraft_count: Count = 0


class ReportThreat(ReportDevelopment):
    """A military threat or ultimatum was made."""

    threat_kind: Literal["military", "ultimatum", "other"] = "other"
    quote: LongText = ""


class RecordStatement(ReportDevelopment):
    """A public statement by an official (speaker and quote)."""

    speaker: Name
    quote: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class IssueCondemnation(ReportDevelopment):
    """A condemnation or accusation, with the co-signing countries."""

    co_signers: Annotated[tuple[ActorCode, ...], Field(max_length=200)] = ()
    accusation: bool = False
    text: LongText = ""

    @model_validator(mode="after")
    def _co_signers_distinct(self) -> Self:
        if len(set(self.co_signers)) != len(self.co_signers):
            raise InvalidField("co_signers", "contains duplicates")
        return self


class SummonEnvoy(ReportDevelopment):
    """The actor summoned the target country's ambassador or envoy."""

    target: Party
    envoy_title: Annotated[str, StringConstraints(max_length=200)] = "ambassador"
    reason: ShortText = ""


class ExpelDiplomats(ReportDevelopment):
    """The actor expelled the target country's diplomats."""

    target: Party
    count: Annotated[int, Field(ge=1, le=10_000)]
    reason: ShortText = ""


class ReportCyberAttack(ReportDevelopment):
    """A cyber attack attributed to the actor."""

    attack_kind: Annotated[str, StringConstraints(max_length=100)] = ""
    systems_affected: ShortText = ""


class ReportCeasefireViolation(ReportDevelopment):
    """The actor broke a ceasefire with the target (fire, an advance, a strike)."""

    target: Party
    agreement: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    fatalities: Count = 0
    injured: Count = 0


class ImposeBlockade(ReportDevelopment):
    """The actor's navy blocked the target's ports or waters."""

    target: Party
    vessels_count: Count = 0
    waters: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""
    ports: Annotated[tuple[Name, ...], Field(max_length=50)] = ()


def _cameo_code(value: str) -> str:
    if not value.isdigit() or not 2 <= len(value) <= 4:
        raise ValueError(f'{value!r} is not a CAMEO event code (2 to 4 digits, e.g. "042")')
    if not 1 <= int(value[:2]) <= 20:
        raise ValueError(f"{value!r} is not a CAMEO event code: its root {value[:2]} is not 01..20")
    return value


CameoCode = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_cameo_code)]


class ReportCodedEvent(ReportDevelopment):
    """A CAMEO-coded development with no command of its own (e.g. a row of GDELT)."""

    event_code: CameoCode
    goldstein: Annotated[float, Field(ge=-10, le=10, allow_inf_nan=False)]
    description: ShortText = ""


class IncidentCommand(ExistingResourceCommand):
    incident_id: UUID


class EndMilitaryExercise(IncidentCommand):
    """A reported military exercise ended."""

    ended_at: PastTime
    sources: Annotated[tuple[Source, ...], Field(max_length=20)] = ()


class CorroborateIncident(IncidentCommand):
    """A further source confirms the incident; it may raise the grading."""

    source: Source
    reliability: Reliability | None = None
    credibility: Credibility | None = None
    note: ShortText = ""


class DisputeIncident(IncidentCommand):
    """A party disputes the report or (``denial``) denies responsibility."""

    party: ActorCode
    denial: bool = False
    statement: LongText = ""
    sources: Annotated[tuple[Source, ...], Field(max_length=20)] = ()


class CorrectIncident(IncidentCommand):
    """Supersede some reported values; ``changes`` has the shape of the original report."""

    changes: Annotated[dict[str, Any], Field(min_length=1)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _changes_are_small(self) -> Self:
        if len(json.dumps(self.changes, default=str)) > 64_000:
            raise InvalidField("changes", "larger than 64 kB")
        return self


class RetractIncident(IncidentCommand):
    """Withdraw a report; it stays readable but counts for nothing from now on."""

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


# ---------------------------------------------------------------------------- sanctions


class ImposeSanctions(Command):
    """An authority imposed sanctions on a target country (a new regime)."""

    authority: ActorCode
    target: CountryCode
    programme: Annotated[str, StringConstraints(max_length=200)] = ""
    entities_count: Count = 0
    entity_names: Annotated[tuple[Name, ...], Field(max_length=5000)] = ()
    sectors: Annotated[tuple[Name, ...], Field(max_length=100)] = ()
    effective_from: UtcTime | None = None
    expires_at: UtcTime | None = None
    evidence: Evidence

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(self.entity_names) > self.entities_count:
            raise InvalidField(
                "entity_names",
                f"entity_names lists {len(self.entity_names)} names but entities_count is "
                f"{self.entities_count}",
            )
        start = self.effective_from or self.evidence.occurred_at
        if self.expires_at is not None and self.expires_at <= start:
            raise InvalidField("expires_at", "must be after effective_from")
        return self


class SanctionsCommand(ExistingResourceCommand):
    regime_id: UUID
    evidence: Evidence


class ExtendSanctions(SanctionsCommand):
    """A regime was extended: entities or sectors added, expiry moved later."""

    entities_added: Count = 0
    entity_names_added: Annotated[tuple[Name, ...], Field(max_length=5000)] = ()
    sectors_added: Annotated[tuple[Name, ...], Field(max_length=100)] = ()
    expires_at: UtcTime | None = None

    @model_validator(mode="after")
    def _extends_something(self) -> Self:
        if not (self.entities_added or self.sectors_added or self.expires_at):
            raise InvalidField(
                "entities_added",
                "an extension adds entities, adds sectors or moves expires_at; this one does none",
            )
        if len(self.entity_names_added) > self.entities_added:
            raise InvalidField("entity_names_added", "lists more names than entities_added")
        return self


class EaseSanctions(SanctionsCommand):
    """A regime was eased: entities or sectors removed."""

    entities_removed: Count = 0
    entity_names_removed: Annotated[tuple[Name, ...], Field(max_length=5000)] = ()
    sectors_removed: Annotated[tuple[Name, ...], Field(max_length=100)] = ()

    @model_validator(mode="after")
    def _eases_something(self) -> Self:
        if not (self.entities_removed or self.sectors_removed):
            raise InvalidField(
                "entities_removed",
                "an easing removes entities or sectors; this one removes neither",
            )
        if len(self.entity_names_removed) > self.entities_removed:
            raise InvalidField("entity_names_removed", "lists more names than entities_removed")
        return self


class LiftSanctions(SanctionsCommand):
    """A regime was lifted; it accepts nothing afterwards."""

    reason: ShortText = ""


# ---------------------------------------------------------------------------- negotiations


class ProposeNegotiations(Command):
    """Talks between parties were proposed (a new negotiation track)."""

    parties: Annotated[tuple[ActorCode, ...], Field(max_length=50), AfterValidator(_at_least(2))]
    mediator: ActorCode | None = None
    subject: ShortText = ""
    proposed_by: ActorCode
    evidence: Evidence

    @model_validator(mode="after")
    def _distinct_parties(self) -> Self:
        if len(set(self.parties)) != len(self.parties):
            raise InvalidField("parties", "contains duplicates")
        if self.mediator is not None and self.mediator in self.parties:
            raise InvalidField("mediator", "the mediator cannot also be a party")
        if self.proposed_by not in self.parties and self.proposed_by != self.mediator:
            raise InvalidField("proposed_by", "must be one of the parties or the mediator")
        return self


class NegotiationCommand(ExistingResourceCommand):
    track_id: UUID
    evidence: Evidence


class HoldNegotiationRound(NegotiationCommand):
    """A round of talks was held."""

    location: Annotated[str, StringConstraints(max_length=200)] = ""


class PauseNegotiations(NegotiationCommand):
    """A party paused the talks."""

    paused_by: ActorCode
    reason: ShortText = ""


class ResumeNegotiations(NegotiationCommand):
    """Paused talks resumed."""

    resumed_by: ActorCode


class RejectNegotiations(NegotiationCommand):
    """A party rejected the talks; the track ends."""

    rejected_by: ActorCode
    reason: ShortText = ""


class SignAgreement(NegotiationCommand):
    """An agreement (ceasefire, deal) was signed; the track ends."""

    title: Name
    signatories: Annotated[
        tuple[ActorCode, ...], Field(max_length=50), AfterValidator(_at_least(2))
    ]


def _commands() -> dict[str, type[Command]]:
    missing = [e.command for e in vocabulary.ENTRIES if e.command not in _DECLARED]
    if missing:
        raise TypeError(f"the vocabulary declares commands no class defines: {missing}")
    return {entry.command: _DECLARED[entry.command] for entry in vocabulary.ENTRIES}


#: Every command, in the vocabulary's order: one RPC, one ``flashpoint report`` subcommand.
COMMANDS: dict[str, type[Command]] = _commands()

REPORT_COMMANDS: dict[str, type[ReportDevelopment]] = {
    cls.kind: cls for cls in COMMANDS.values() if issubclass(cls, ReportDevelopment)
}


C = TypeVar("C", bound=Command)
T = TypeVar("T")


def parse_command(command_class: type[C], data: Any) -> C:
    """Validate raw data into a command, or raise :class:`CommandValidationError`."""
    try:
        return command_class.model_validate(data)
    except ValidationError as error:
        raise CommandValidationError.from_pydantic(error) from None


def validating(build: Callable[[], T], prefix: str = "") -> T:
    """Run ``build`` and turn pydantic's error into ours, with field paths under ``prefix``."""
    try:
        return build()
    except ValidationError as error:
        raise CommandValidationError.from_pydantic(error, prefix) from None
