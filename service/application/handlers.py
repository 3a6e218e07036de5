"""The write side: command handlers on an ``eventsourcing`` application.

Each command loads or creates its aggregate, lets the aggregate decide (raising on a
broken rule), and saves the new events together with a receipt of the request id in one
transaction (the receipt in its own table, not in the log). The answer names the resource,
its new version and the log position of its last new event.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from uuid import UUID, uuid4

import structlog
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    IntegrityError,
    Notification,
    PersistenceError,
    Recording,
    StoredEvent,
)

from service.application.errors import (
    DomainError,
    NotFound,
    RequestIdReused,
    StoreUnavailable,
    VersionConflict,
)
from service.domain.commands import (
    REPORT_COMMANDS,
    Command,
    CommandValidationError,
    CorrectIncident,
    CorroborateIncident,
    DisputeIncident,
    EaseSanctions,
    EndMilitaryExercise,
    ExistingResourceCommand,
    ExtendSanctions,
    HoldNegotiationRound,
    ImposeSanctions,
    IncidentCommand,
    LiftSanctions,
    NegotiationCommand,
    PauseNegotiations,
    ProposeNegotiations,
    RejectNegotiations,
    ReportDevelopment,
    ResumeNegotiations,
    RetractIncident,
    SanctionsCommand,
    SignAgreement,
    validating,
)
from service.domain.incident import Incident
from service.domain.negotiation import NegotiationTrack
from service.domain.receipt import CommandReceipt, Receipt, name_uuid, receipt_id
from service.domain.sanctions import SanctionsRegime
from service.domain.submitter import submitted_by

log = structlog.get_logger()


A = TypeVar("A", bound=Aggregate)


#: How often a command without an expected version is decided again after losing a race.
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Submitter:
    """Who submits a command: the authenticated principal and the client software."""

    principal: str = "local"
    client: str | None = None


LOCAL = Submitter()


@dataclass(frozen=True)
class CommandResult:
    resource: str
    id: UUID
    version: int
    position: int
    replayed: bool = False


class Committer(Protocol):
    """Appends stored events, maybe together with other commands' (group commit)."""

    def insert(self, events: Sequence[StoredEvent], receipts: Sequence[Receipt] = ()) -> list[int]:
        """The positions of ``events``, recorded with ``receipts`` in one transaction."""
        ...

    def submit(
        self, events: Sequence[StoredEvent], receipts: Sequence[Receipt] = ()
    ) -> Future[list[int]]:
        """``insert`` without waiting: the future answers the positions, or its error."""
        ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class PendingCommand:
    """A command decided and handed to the group committer, not yet known to be recorded
    (see :meth:`CommandHandlers.begin`)."""

    command: Command
    submitter: Submitter
    aggregate: Aggregate
    events: Sequence[Any]
    stored: Sequence[StoredEvent]
    positions: Future[list[int]]


@dataclass(eq=False)
class _BatchPart:
    """Commands of one batch decided together and queued as one append."""

    indexes: list[int] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    aggregates: list[Aggregate] = field(default_factory=list)
    #: How many of ``stored`` each command appended, in order.
    counts: list[int] = field(default_factory=list)
    stored: list[StoredEvent] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)
    resources: set[UUID] = field(default_factory=set)
    positions: Future[list[int]] | None = None

    def add(
        self,
        index: int,
        command: Command,
        aggregate: Aggregate,
        receipts: Sequence[Receipt],
        mapper: Any,
        events: Sequence[Any],
        resource: UUID | None,
    ) -> None:
        self.indexes.append(index)
        self.commands.append(command)
        self.aggregates.append(aggregate)
        self.counts.append(len(events))
        self.stored.extend(mapper.to_stored_event(event) for event in events)
        self.receipts.extend(receipts)
        if resource is not None:
            self.resources.add(resource)


@dataclass(frozen=True)
class PendingCommands:
    """A batch ``CommandHandlers.begin_many`` decided: the outcomes known already (replays,
    refusals) and the parts queued for the committer."""

    submitter: Submitter
    outcomes: list[CommandResult | Exception | None]
    parts: list[_BatchPart]


def _unavailable(error: PersistenceError) -> Exception:
    if isinstance(error, IntegrityError):
        return error
    return StoreUnavailable(f"the event store is unavailable: {error}")


class CommandHandlers(Application[UUID]):
    """The application: decides commands on their aggregates, records them with their
    receipts, and reads aggregates back. What it is stored on (names, pools, deadlines,
    group commit) is the adapters' business: see ``service.adapters.store``."""

    name = "Flashpoint"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        #: Called with the new head position after each append (projections wake on it).
        self.append_listeners: list[Callable[[int], None]] = []
        self._committer: Committer | None = None

    def use_committer(self, committer: Committer) -> None:
        """Append first attempts through ``committer`` (each command still decided and
        answered on its own)."""
        if self._committer is None:
            self._committer = committer
        else:
            committer.stop()

    @property
    def group_commit(self) -> bool:
        return self._committer is not None

    def close(self) -> None:
        committer, self._committer = self._committer, None
        if committer is not None:
            committer.stop()
        super().close()

    def positions_of(self, originator_id: UUID) -> dict[int, int]:
        """The log position of each stored version of one aggregate (the store knows)."""
        raise NotImplementedError

    def find_receipt(self, key: UUID) -> Receipt | None:
        """The receipt recorded under ``key`` with its answer's position, of either kind
        (the receipts table, or a ``CommandAccepted`` event of an older store)."""
        raise NotImplementedError

    def may_hold_legacy_receipts(self) -> bool:
        """Whether the log may hold receipts of the old kind (``CommandAccepted`` events),
        which an append cannot collide with: a retry must then be looked up first."""
        return True

    def find_receipts(self, keys: Sequence[UUID]) -> dict[UUID, Receipt]:
        """The receipts of the receipts table under any of ``keys``, by key (one read)."""
        found = (self.find_receipt(key) for key in keys)
        return {receipt.receipt_id: receipt for receipt in found if receipt is not None}

    # ------------------------------------------------------------------ commands

    def execute(self, command: Command, submitter: Submitter = LOCAL) -> CommandResult:
        """Decide and record ``command``; idempotent per (principal, request id)."""
        try:
            return self._execute(command, submitter)
        except PersistenceError as error:
            if isinstance(error, IntegrityError):
                raise
            raise StoreUnavailable(f"the event store is unavailable: {error}") from error

    def begin(
        self, command: Command, submitter: Submitter = LOCAL
    ) -> PendingCommand | CommandResult:
        """Decide ``command`` and queue its append without waiting for it: many commands of
        one caller (a bulk stream) then share the group committer's transactions from a
        single thread, with no thread held per command. Answers the result at once where
        no append is needed (a replay) or none can be queued (no group commit); raises what
        ``execute`` would for a refused command. ``finish`` gives a pending one's result."""
        committer = self._committer
        if committer is None:
            return self.execute(command, submitter)
        try:
            decided = self._first_decision(command, submitter)
        except PersistenceError as error:
            if isinstance(error, IntegrityError):
                raise
            raise StoreUnavailable(f"the event store is unavailable: {error}") from error
        if isinstance(decided, CommandResult):
            return decided
        aggregate, receipts = decided
        events = aggregate.collect_events()
        stored = [self.mapper.to_stored_event(event) for event in events]
        return PendingCommand(
            command, submitter, aggregate, events, stored, committer.submit(stored, receipts)
        )

    def finish(self, pending: PendingCommand) -> CommandResult:
        """The result of a command ``begin`` queued, once its batch is committed. A batch
        that lost a race (its resource's version, or its receipt, recorded meanwhile) is
        decided again by ``execute``, which answers as the command alone would have been."""
        try:
            ids = pending.positions.result()
        except IntegrityError:
            return self.execute(pending.command, pending.submitter)
        except PersistenceError as error:
            raise StoreUnavailable(f"the event store is unavailable: {error}") from error
        self._cache(pending.aggregate)
        position = max(ids)
        for listener in self.append_listeners:
            listener(position)
        aggregate = pending.aggregate
        return CommandResult(
            resource=resource_name(aggregate),
            id=aggregate.id,
            version=aggregate.version,
            position=position,
        )

    def begin_many(
        self, commands: Sequence[Command], submitter: Submitter = LOCAL
    ) -> PendingCommands:
        """Decide ``commands`` in order as one batch and queue their appends as ONE item of
        the group committer (one transaction: one receipts and one events executemany),
        without waiting; ``finish_many`` answers each as ``execute`` would have alone.

        The batch's receipts are read first in one statement, so a re-sent batch (every
        request recorded) is answered from them with no decision and no write. A command on
        a resource an earlier command of the batch changed waits for that part of the batch
        to be recorded first, so the batch means what its commands would mean one by one.
        """
        outcomes: list[CommandResult | Exception | None] = [None] * len(commands)
        parts: list[_BatchPart] = []
        try:
            keyed = [self._stamp_and_receipt_key(command, submitter) for command in commands]
            recorded = self.find_receipts([key for _, key in keyed if key is not None])
            legacy = bool(len(recorded) < len(commands) and self.may_hold_legacy_receipts())
        except PersistenceError as error:
            unavailable = _unavailable(error)
            return PendingCommands(submitter, [unavailable] * len(commands), [])
        part = _BatchPart()
        for index, command in enumerate(commands):
            stamp, receipt_key = keyed[index]
            try:
                receipt = recorded.get(receipt_key) if receipt_key is not None else None
                if receipt is not None:
                    outcomes[index] = self._replay(receipt, command)
                    continue
                if legacy:
                    replayed = self._legacy_replay(command, receipt_key)
                    if replayed is not None:
                        outcomes[index] = replayed
                        continue
                resource = resource_key(command, submitter.principal)
                if resource is not None and resource in part.resources:
                    # Decided on what the batch's earlier commands recorded.
                    self._record_part(part, outcomes, submitter, parts)
                    part = _BatchPart()
                decided = self._decide_or_replay(command, stamp, receipt_key)
                if isinstance(decided, CommandResult):
                    outcomes[index] = decided
                    continue
                receipts = self._receipts(command, submitter, receipt_key, decided)
                events = decided.collect_events()
                part.add(index, command, decided, receipts, self.mapper, events, resource)
            except PersistenceError as error:
                outcomes[index] = _unavailable(error)
            except Exception as error:
                outcomes[index] = error
        self._submit_part(part, parts)
        return PendingCommands(submitter, outcomes, parts)

    def finish_many(self, pending: PendingCommands) -> list[CommandResult | Exception]:
        """Each command's result or error (see ``begin_many``), once its part is recorded."""
        outcomes = pending.outcomes
        self._settle_parts(pending.parts, outcomes, pending.submitter)
        return [
            outcome if outcome is not None else StoreUnavailable("the command was not decided")
            for outcome in outcomes
        ]

    def _submit_part(self, part: _BatchPart, parts: list[_BatchPart]) -> None:
        if not part.indexes:
            return
        committer = self._committer
        if committer is not None:
            part.positions = committer.submit(part.stored, part.receipts)
        else:
            part.positions = Future()
            try:
                ids = self.recorder.insert_events(part.stored, receipts=part.receipts)
                part.positions.set_result(list(ids or []))
            except BaseException as error:
                part.positions.set_exception(error)
        parts.append(part)

    def _record_part(
        self,
        part: _BatchPart,
        outcomes: list[CommandResult | Exception | None],
        submitter: Submitter,
        parts: list[_BatchPart],
    ) -> None:
        """Record ``part`` (and everything queued before it) now: what follows reads it."""
        self._submit_part(part, parts)
        self._settle_parts(parts, outcomes, submitter)
        parts.clear()

    def _settle_parts(
        self,
        parts: Sequence[_BatchPart],
        outcomes: list[CommandResult | Exception | None],
        submitter: Submitter,
    ) -> None:
        head = 0
        for part in parts:
            assert part.positions is not None
            try:
                ids = part.positions.result()
            except IntegrityError:
                # A race lost to another writer (a version, a receipt): each command is
                # decided again alone, answered as it would have been without the batch.
                for index, command in zip(part.indexes, part.commands, strict=True):
                    outcomes[index] = self._execute_outcome(command, submitter)
                continue
            except PersistenceError as error:
                for index in part.indexes:
                    outcomes[index] = _unavailable(error)
                continue
            except Exception as error:
                for index in part.indexes:
                    outcomes[index] = error
                continue
            start = 0
            for index, aggregate, count in zip(
                part.indexes, part.aggregates, part.counts, strict=True
            ):
                self._cache(aggregate)
                position = ids[start + count - 1]
                start += count
                head = max(head, position)
                outcomes[index] = CommandResult(
                    resource=resource_name(aggregate),
                    id=aggregate.id,
                    version=aggregate.version,
                    position=position,
                )
        if head:
            for listener in self.append_listeners:
                listener(head)

    def _execute_outcome(self, command: Command, submitter: Submitter) -> CommandResult | Exception:
        try:
            return self.execute(command, submitter)
        except Exception as error:
            return error

    def _first_decision(
        self, command: Command, submitter: Submitter
    ) -> CommandResult | tuple[Aggregate, tuple[Receipt, ...]]:
        """A command's first attempt: its replay where its receipt answers it, else its
        aggregate with the new events pending and the receipt to record with them."""
        stamp, receipt_key = self._stamp_and_receipt_key(command, submitter)
        replayed = self._legacy_replay(command, receipt_key)
        if replayed is not None:
            return replayed
        decided = self._decide_or_replay(command, stamp, receipt_key)
        if isinstance(decided, CommandResult):
            return decided
        return decided, self._receipts(command, submitter, receipt_key, decided)

    @staticmethod
    def _stamp_and_receipt_key(
        command: Command, submitter: Submitter
    ) -> tuple[dict[str, Any], UUID | None]:
        request_id = command.request_id
        return (
            submitted_by(submitter.principal, submitter.client, request_id),
            _receipt_key(submitter.principal, request_id) if request_id else None,
        )

    def _legacy_replay(self, command: Command, receipt_key: UUID | None) -> CommandResult | None:
        # A retry of a recorded request collides with its receipt (or, creating, with its
        # resource's first version) and is answered from the receipt then, so the receipt
        # is read first only where old receipts (events, no row to collide with) may be:
        # the read cost every first attempt a transaction queued behind the committer's
        # fsync, where a retry now costs its batch one rollback.
        if receipt_key is not None and self.may_hold_legacy_receipts():
            receipt = self.find_receipt(receipt_key)
            if receipt is not None:
                return self._replay(receipt, command)
        return None

    def _decide_or_replay(
        self, command: Command, stamp: dict[str, Any], receipt_key: UUID | None
    ) -> Aggregate | CommandResult:
        try:
            return self._decide(command, stamp, receipt_key)
        except (DomainError, VersionConflict, NotFound, CommandValidationError):
            # This may be a retry of a recorded request (its first attempt changed the
            # state this decision saw) or a reuse of its id for another request (on
            # another resource, maybe a missing one): the receipt answers either way.
            if receipt_key is not None:
                receipt = self.find_receipt(receipt_key)
                if receipt is not None:
                    return self._replay(receipt, command)
            raise

    def _receipts(
        self,
        command: Command,
        submitter: Submitter,
        receipt_key: UUID | None,
        aggregate: Aggregate,
    ) -> tuple[Receipt, ...]:
        if receipt_key is None or command.request_id is None:
            return ()
        return (
            Receipt(
                receipt_id=receipt_key,
                principal=submitter.principal,
                request_id=command.request_id,
                command=command.command_name,
                fingerprint=command.fingerprint(),
                resource=resource_name(aggregate),
                resource_version=aggregate.version,
            ),
        )

    def _cache(self, aggregate: Aggregate) -> None:
        if self.repository.cache and not self.repository.fastforward:
            self.repository.cache.put(aggregate.id, aggregate)

    def _execute(self, command: Command, submitter: Submitter) -> CommandResult:
        stamp, receipt_key = self._stamp_and_receipt_key(command, submitter)
        replayed = self._legacy_replay(command, receipt_key)
        if replayed is not None:
            return replayed
        for attempt in range(MAX_ATTEMPTS):
            decided = self._decide_or_replay(command, stamp, receipt_key)
            if isinstance(decided, CommandResult):
                return decided
            aggregate = decided
            resource = resource_name(aggregate)
            receipts = self._receipts(command, submitter, receipt_key, aggregate)
            try:
                # A command decided again after losing a race is saved at once, not
                # queued: a batch's wait would widen its window for losing again.
                recordings = self._save(aggregate, receipts, grouped=attempt == 0)
            except IntegrityError:
                if receipt_key is not None:
                    receipt = self.find_receipt(receipt_key)
                    if receipt is not None:
                        return self._replay(receipt, command)
                if isinstance(command, ExistingResourceCommand):
                    if command.expected_version is not None:
                        current: Aggregate = self.repository.get(aggregate.id)
                        raise VersionConflict(
                            resource, command.expected_version, current.version
                        ) from None
                    log.info("command.retry_after_conflict", resource=resource)
                    continue
                raise
            # The domain event's position (the receipt is not in the log).
            position = max(r.notification.id for r in recordings)
            for listener in self.append_listeners:
                listener(position)
            return CommandResult(
                resource=resource,
                id=aggregate.id,
                version=aggregate.version,
                position=position,
            )
        raise StoreUnavailable(
            f"gave up after {MAX_ATTEMPTS} concurrent modifications; retry the command"
        )

    def _save(
        self, aggregate: Aggregate, receipts: Sequence[Receipt], *, grouped: bool
    ) -> list[Recording[UUID]]:
        """Record the pending events of ``aggregate`` and ``receipts`` atomically (raising
        IntegrityError if any would overwrite a recorded version or receipt); with
        ``grouped``, through the group committer when it is on."""
        committer = self._committer
        if committer is None or not grouped:
            return self.save(aggregate, receipts=receipts)
        events = aggregate.collect_events()
        stored = [self.mapper.to_stored_event(event) for event in events]
        ids = committer.insert(stored, receipts)
        recordings: list[Recording[UUID]] = [
            Recording(
                event,
                Notification(
                    originator_id=record.originator_id,
                    originator_version=record.originator_version,
                    topic=record.topic,
                    state=record.state,
                    id=notification_id,
                ),
            )
            for event, record, notification_id in zip(events, stored, ids, strict=True)
        ]
        self._cache(aggregate)
        return recordings

    def _replay(self, receipt: Receipt, command: Command) -> CommandResult:
        if not command.fingerprint_matches(receipt.fingerprint):
            raise RequestIdReused(receipt.request_id, receipt.command)
        if receipt.position is None:  # pragma: no cover - its events were recorded with it
            raise StoreUnavailable("the receipt's position could not be read")
        return CommandResult(
            resource=receipt.resource,
            id=receipt.resource_id,
            version=receipt.resource_version,
            position=receipt.position,
            replayed=True,
        )

    def _decide(
        self, command: Command, stamp: dict[str, Any], receipt_key: UUID | None
    ) -> Aggregate:
        # A new resource's id derives from the request id, so even a store without the
        # receipt (an import, say) cannot hold two resources for one request.
        new_id = _created_id(receipt_key) if receipt_key is not None else uuid4()
        if isinstance(command, ReportDevelopment):
            return Incident.report_development(
                incident_id=new_id,
                kind=command.kind,
                report=command.report(),
                details=command.details(),
                submitted_by=stamp,
            )
        if isinstance(command, ImposeSanctions):
            return SanctionsRegime.impose(
                regime_id=new_id,
                authority=command.authority,
                target=command.target,
                programme=command.programme,
                entities_count=command.entities_count,
                entity_names=list(command.entity_names),
                sectors=list(command.sectors),
                effective_from=command.effective_from or command.evidence.occurred_at,
                expires_at=command.expires_at,
                evidence=command.evidence.model_dump(mode="json"),
                submitted_by=stamp,
            )
        if isinstance(command, ProposeNegotiations):
            return NegotiationTrack.propose(
                track_id=new_id,
                parties=list(command.parties),
                mediator=command.mediator,
                subject=command.subject,
                proposed_by=command.proposed_by,
                evidence=command.evidence.model_dump(mode="json"),
                submitted_by=stamp,
            )
        if isinstance(command, IncidentCommand):
            incident = self._load(Incident, command.incident_id, command.expected_version)
            self._decide_on_incident(incident, command, stamp)
            return incident
        if isinstance(command, SanctionsCommand):
            regime = self._load(SanctionsRegime, command.regime_id, command.expected_version)
            self._decide_on_sanctions(regime, command, stamp)
            return regime
        if isinstance(command, NegotiationCommand):
            track = self._load(NegotiationTrack, command.track_id, command.expected_version)
            self._decide_on_negotiation(track, command, stamp)
            return track
        raise TypeError(f"no handler for {type(command).__name__}")

    def _decide_on_incident(
        self, incident: Incident, command: IncidentCommand, stamp: dict[str, Any]
    ) -> None:
        if isinstance(command, CorroborateIncident):
            incident.corroborate(
                source=command.source.model_dump(mode="json"),
                reliability=command.reliability,
                credibility=command.credibility,
                note=command.note,
                submitted_by=stamp,
            )
        elif isinstance(command, DisputeIncident):
            incident.dispute(
                party=command.party,
                denial=command.denial,
                statement=command.statement,
                sources=[s.model_dump(mode="json") for s in command.sources],
                submitted_by=stamp,
            )
        elif isinstance(command, CorrectIncident):
            corrected = corrected_report(incident, command.changes)
            incident.correct(
                report=corrected.report(),
                details=corrected.details(),
                reason=command.reason,
                submitted_by=stamp,
            )
        elif isinstance(command, RetractIncident):
            incident.retract(reason=command.reason, submitted_by=stamp)
        elif isinstance(command, EndMilitaryExercise):
            incident.end_exercise(
                ended_at=command.ended_at,
                sources=[s.model_dump(mode="json") for s in command.sources],
                submitted_by=stamp,
            )
        else:  # pragma: no cover - every IncidentCommand is handled above
            raise TypeError(f"no handler for {type(command).__name__}")

    def _decide_on_sanctions(
        self, regime: SanctionsRegime, command: SanctionsCommand, stamp: dict[str, Any]
    ) -> None:
        evidence = command.evidence.model_dump(mode="json")
        if isinstance(command, ExtendSanctions):
            regime.extend(
                entities_added=command.entities_added,
                entity_names_added=list(command.entity_names_added),
                sectors_added=list(command.sectors_added),
                expires_at=command.expires_at,
                evidence=evidence,
                submitted_by=stamp,
            )
        elif isinstance(command, EaseSanctions):
            regime.ease(
                entities_removed=command.entities_removed,
                entity_names_removed=list(command.entity_names_removed),
                sectors_removed=list(command.sectors_removed),
                evidence=evidence,
                submitted_by=stamp,
            )
        elif isinstance(command, LiftSanctions):
            regime.lift(reason=command.reason, evidence=evidence, submitted_by=stamp)
        else:  # pragma: no cover
            raise TypeError(f"no handler for {type(command).__name__}")

    def _decide_on_negotiation(
        self, track: NegotiationTrack, command: NegotiationCommand, stamp: dict[str, Any]
    ) -> None:
        evidence = command.evidence.model_dump(mode="json")
        if isinstance(command, HoldNegotiationRound):
            track.hold_round(location=command.location, evidence=evidence, submitted_by=stamp)
        elif isinstance(command, PauseNegotiations):
            track.pause(
                paused_by=command.paused_by,
                reason=command.reason,
                evidence=evidence,
                submitted_by=stamp,
            )
        elif isinstance(command, ResumeNegotiations):
            track.resume(resumed_by=command.resumed_by, evidence=evidence, submitted_by=stamp)
        elif isinstance(command, RejectNegotiations):
            track.reject(
                rejected_by=command.rejected_by,
                reason=command.reason,
                evidence=evidence,
                submitted_by=stamp,
            )
        elif isinstance(command, SignAgreement):
            track.sign_agreement(
                title=command.title,
                signatories=list(command.signatories),
                evidence=evidence,
                submitted_by=stamp,
            )
        else:  # pragma: no cover
            raise TypeError(f"no handler for {type(command).__name__}")

    # ------------------------------------------------------------------ reads

    def get_incident(self, incident_id: UUID) -> Incident:
        return self._load(Incident, incident_id, None)

    def get_sanctions_regime(self, regime_id: UUID) -> SanctionsRegime:
        return self._load(SanctionsRegime, regime_id, None)

    def get_negotiation_track(self, track_id: UUID) -> NegotiationTrack:
        return self._load(NegotiationTrack, track_id, None)

    def _find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, cls) else None

    def _load(self, cls: type[A], aggregate_id: UUID, expected_version: int | None) -> A:
        aggregate = self._find(cls, aggregate_id)
        if aggregate is None:
            raise NotFound(f"{COLLECTIONS[cls]}/{aggregate_id}")
        if expected_version is not None and aggregate.version != expected_version:
            raise VersionConflict(resource_name(aggregate), expected_version, aggregate.version)
        return aggregate


COLLECTIONS: dict[type[Aggregate], str] = {
    Incident: "incidents",
    SanctionsRegime: "sanctions",
    NegotiationTrack: "negotiations",
    CommandReceipt: "receipts",
}


def resource_key(command: Command, principal: str) -> UUID | None:
    """The id of the resource ``command`` acts on, where it can be known before deciding:
    an existing one's, or the one a report with a request id will create (ids derive from
    request ids, as ``_decide`` makes them). A bulk run orders commands by it."""
    if isinstance(command, IncidentCommand):
        return command.incident_id
    if isinstance(command, SanctionsCommand):
        return command.regime_id
    if isinstance(command, NegotiationCommand):
        return command.track_id
    if command.request_id is not None:
        return _created_id(_receipt_key(principal, command.request_id))
    return None


# A bulk command's keys are asked for several times (ordering, receipts, its new id):
# each uuid5 is a SHA-1, together an eighth of the server's CPU per command uncached.
@functools.lru_cache(maxsize=8192)
def _receipt_key(principal: str, request_id: str) -> UUID:
    return receipt_id(principal, request_id)


@functools.lru_cache(maxsize=8192)
def _created_id(receipt_key: UUID) -> UUID:
    return name_uuid(receipt_key, "resource")


def resource_name(aggregate: Aggregate) -> str:
    return f"{COLLECTIONS[type(aggregate)]}/{aggregate.id}"


def corrected_report(incident: Incident, changes: dict[str, Any]) -> ReportDevelopment:
    """The incident's report with ``changes`` merged in, validated as a fresh report.

    Validating the merged whole (not just the changes) keeps cross-field rules true after a
    correction: correcting ``count`` below ``intercepted`` is refused like a bad report.
    """
    command_class = REPORT_COMMANDS[incident.kind]
    base = {**incident.report, **incident.details}
    if (base.get("actor") or {}).get("unknown") and isinstance(changes.get("actor"), dict):
        # Attributing an unknown actor names a party afresh: merging ``{country: "RUS"}``
        # into ``{unknown: true}`` would make a party both known and unknown.
        base["actor"] = {}
    merged = deep_merge(base, changes)
    build: Callable[[], ReportDevelopment] = lambda: command_class.model_validate(merged)  # noqa: E731
    return validating(build, prefix="changes")


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
