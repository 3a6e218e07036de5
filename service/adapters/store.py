"""The application on its event store: stable type names, datastore options, call
deadlines, group commit and the positions of stored versions."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, Mapper
from eventsourcing.utils import Environment

from service.adapters.datastore import configure_datastore
from service.adapters.deadlines import bind_to_call_deadlines
from service.adapters.eventlog import positions_of
from service.adapters.group_commit import GROUP_COMMIT_MAX, GroupCommitter
from service.adapters.mapper import StableNameMapper
from service.application.handlers import CommandHandlers


class FlashpointApplication(CommandHandlers):
    """The command handlers on a SQLite or PostgreSQL store (``store_url.store_environment``)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
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
        factory = super().construct_factory(env)
        # Before the recorder is made: making it opens the pool's first connections.
        configure_datastore(getattr(factory, "datastore", None), env)
        return factory

    def construct_mapper(self) -> Mapper[UUID]:
        return StableNameMapper(transcoder=self.construct_transcoder())

    def positions_of(self, originator_id: UUID) -> dict[int, int]:
        return positions_of(self.recorder, originator_id)
