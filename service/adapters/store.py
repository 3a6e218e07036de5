"""The application on its event store: stable type names, datastore options, call
deadlines, group commit, and the log reader behind its reads of the log."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    InfrastructureFactory,
    Mapper,
    Notification,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import Environment

from service.adapters.datastore import configure_datastore
from service.adapters.deadlines import bind_to_call_deadlines
from service.adapters.eventlog import LogReader
from service.adapters.group_commit import GROUP_COMMIT_MAX, GroupCommitter
from service.adapters.mapper import OrjsonTranscoder, StableNameMapper
from service.adapters.receipts import LEGACY_RECEIPT_TYPE, ReceiptRecorder, recorder_topic
from service.application.handlers import CommandHandlers
from service.domain.receipt import Receipt


class FlashpointApplication(CommandHandlers):
    """The command handlers on a SQLite or PostgreSQL store (``store_url.store_environment``)."""

    #: The library names tables and environment prefixes after this: it must stay
    #: "Flashpoint" (``flashpoint_events``) for existing stores to open.
    name = "Flashpoint"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        #: Whether the log holds receipts of the old kind, once known (see
        #: ``may_hold_legacy_receipts``).
        self._legacy_receipts: bool | None = None
        #: The one reader of the events table (see ``service.adapters.eventlog``).
        self.log_reader = LogReader(self.recorder)
        datastore: Any = getattr(self.recorder, "datastore", None)
        bind_to_call_deadlines(datastore)
        if self.env.get("GROUP_COMMIT", "").lower() in ("1", "true", "yes", "on"):
            self.enable_group_commit()

    def enable_group_commit(self, max_batch: int = GROUP_COMMIT_MAX) -> None:
        """Append the events of concurrent commands in shared transactions (see
        :class:`GroupCommitter`); each command is still decided and answered on its own."""
        if not self.group_commit:
            self.use_committer(GroupCommitter(self.recorder.insert_events, max_batch))

    def construct_factory(self, env: Environment) -> InfrastructureFactory:
        # Receipts are written by the recorder, in the events' transaction.
        topic = recorder_topic(env.get("PERSISTENCE_MODULE") or "")
        if topic is not None and not env.get(InfrastructureFactory.APPLICATION_RECORDER_TOPIC):
            env[InfrastructureFactory.APPLICATION_RECORDER_TOPIC] = topic
        factory = super().construct_factory(env)
        # Before the recorder is made: making it opens the pool's first connections.
        configure_datastore(getattr(factory, "datastore", None), env)
        return factory

    def construct_mapper(self) -> Mapper[UUID]:
        return StableNameMapper(transcoder=self.construct_transcoder())

    def construct_transcoder(self) -> Transcoder:
        # The library's JSON, byte for byte, written and read mostly by orjson.
        transcoder = OrjsonTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def positions_of(self, originator_id: UUID) -> dict[int, int]:
        return self.log_reader.positions_of(originator_id)

    def may_hold_legacy_receipts(self) -> bool:
        # Asked of the store once: only an import into an empty store adds old receipts,
        # so an answer is kept once the log holds anything.
        known = self._legacy_receipts
        if known is None:
            recorder = self.recorder
            if not isinstance(recorder, ReceiptRecorder):  # pragma: no cover - set up above
                return True
            empty = self.head_position() == 0
            known = recorder.has_legacy_receipts()
            if not empty:
                self._legacy_receipts = known
        return known

    def find_receipt(self, key: UUID) -> Receipt | None:
        recorder = self.recorder
        if not isinstance(recorder, ReceiptRecorder):  # pragma: no cover - set up above
            raise TypeError(f"{type(recorder).__name__} keeps no receipts")
        found = recorder.find_receipt(key)
        if found is None:
            return None
        if found.receipt is not None:
            return found.receipt
        # A receipt of the old kind: a CommandAccepted event in the log.
        event: Any = self.mapper.to_domain_event(
            StoredEvent(
                originator_id=key,
                originator_version=1,
                topic=LEGACY_RECEIPT_TYPE,
                state=found.legacy_state or b"",
            )
        )
        return Receipt(
            receipt_id=key,
            principal=event.principal,
            request_id=event.request_id,
            command=event.command,
            fingerprint=event.fingerprint,
            resource=event.resource,
            resource_version=event.resource_version,
            position=found.legacy_position,
        )

    def find_receipts(self, keys: Sequence[UUID]) -> dict[UUID, Receipt]:
        recorder = self.recorder
        if not isinstance(recorder, ReceiptRecorder):  # pragma: no cover - set up above
            raise TypeError(f"{type(recorder).__name__} keeps no receipts")
        return recorder.find_receipts(keys) if keys else {}

    def receipts(self) -> Iterator[Receipt]:
        """Every receipt of the receipts table (not the old kind's, which are events)."""
        recorder = self.recorder
        if isinstance(recorder, ReceiptRecorder):
            yield from recorder.iterate_receipts()

    def head_position(self) -> int:
        """The position of the last event in the log (0 when empty)."""
        return self.log_reader.head()

    def recorded_at(self, position: int) -> float:
        """When the event at ``position`` was recorded (epoch seconds); NotFound if none."""
        return self.log_reader.recorded_at(position)

    def read_log(
        self, start: int = 1, *, stop: int | None = None, page_size: int = 1000
    ) -> Iterator[Notification]:
        """The stored log from ``start`` (inclusive), as the library's records (tools and
        tests); read through the log reader, exactly as stored."""
        for row in self.log_reader.iterate_rows(max(start, 1) - 1, stop, page=page_size):
            yield Notification(
                id=row.position,
                originator_id=UUID(row.resource_id) if row.exact_id else row.resource_id,
                originator_version=row.version,
                topic=row.type,
                state=row.state,
            )

    def decode(self, notification: Notification) -> Any:
        """A stored record as its domain event, upcast (the aggregates' path)."""
        return self.mapper.to_domain_event(notification)
