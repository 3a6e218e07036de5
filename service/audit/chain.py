"""The chainer: extends the hash chain over newly appended events and seals it now and then.

It only ever extends the chain. It remembers the highest head it has chained or seen, in
memory and durably (the head record, written in the same transaction as each batch of
chain rows and signed when it has the seal key), and refuses to chain while the stored
chain ends below that: a shrinking chain means rows were deleted behind its back, and
chaining again over whatever the events now say would launder an edit into a valid chain.

A failing store (disk full, connection lost) is retried after a capped exponential pause;
a lost race with another chainer (the primary key kept the other's identical rows) is
retried at once. Each change of state is logged once, not once per attempt.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import IntegrityError

from service.audit.hashing import (
    GENESIS,
    PAGE,
    SEAL_INTERVAL,
    ChainRow,
    chain_hash,
    content_hash,
    event_hash,
    log,
)
from service.audit.seals import make_head, make_seal
from service.audit.tables import LogTables
from service.domain.errors import RuleViolation

#: Seconds before the first retry after the store failed, doubled per failure up to
#: ``RETRY_MAX``: a few attempts in the first seconds, then two a minute.
RETRY_FIRST = 0.5
RETRY_MAX = 30.0

_RACES = (IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)


class ChainHalted(RuleViolation):
    """The stored chain ends below the head already chained: it will not be re-chained
    (nor sealed) until the rows are restored."""

    def __init__(self, message: str) -> None:
        super().__init__(message, resource="audit-chain", reason="CHAIN_HEAD_REGRESSED")


class Chainer:
    """Extends the chain over newly appended events, and seals it every SEAL_INTERVAL."""

    def __init__(
        self,
        tables: LogTables,
        seal_key: Ed25519PrivateKey | None = None,
        *,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.tables = tables
        self.seal_key = seal_key
        self.retry_first = retry_first
        self.retry_max = retry_max
        self._next_seal_check = 0
        #: The highest chain head seen: (position, chain hash).
        self._known: tuple[int, bytes] = (0, GENESIS)
        #: The highest sealed position seen, carried into each head record.
        self._seal_position = 0
        #: Why the chainer refuses to go on (the chain was cut below its head), or None.
        self.halted: str | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._adoption_logged = False

    @property
    def failing(self) -> bool:
        """Whether the last attempt failed on the store (and the next waits for its pause)."""
        return self._failures > 0

    def step(self, limit: int = PAGE) -> int:
        """Chain up to ``limit`` new events; how many were chained (0 when nothing was new,
        the race was lost, the store failed or the chainer is halted)."""
        if self._failures and time.monotonic() < self._retry_at:
            return 0
        try:
            count = self._extend(limit)
        except _RACES as error:
            # Another chainer stored the same rows first: the next step reads its head.
            log.info("chain.race_lost", error=str(error))
            self._recovered()
            return 0
        except Exception as error:
            self._failed(error)
            return 0
        self._recovered()
        return count

    def catch_up(self) -> int:
        total = 0
        while (count := self.step()) > 0:
            total += count
        return total

    def _extend(self, limit: int) -> int:
        position, previous = self._checked_head()
        rows = self.tables.rows(position, limit)
        chained = []
        for row in rows:
            if not row.exact_id:
                # Chained all the same (its canonical form is total): skipping it would leave
                # a row the chain does not cover; verify names it.
                log.warning("chain.odd_row", position=row.position, resource=row.resource_id)
            content = content_hash(row.resource_id, row.version, row.type, row.state)
            event = event_hash(row.position, content)
            previous = chain_hash(previous, event)
            chained.append(ChainRow(row.position, content, event, previous))
        if not chained:
            return 0
        last = chained[-1]
        head = make_head(last.position, last.chain_hash, self._seal_position, self.seal_key)
        self.tables.append_chain(chained, head)
        self._known = (last.position, last.chain_hash)
        self._maybe_seal(last)
        return len(chained)

    def _checked_head(self) -> tuple[int, bytes]:
        """The stored chain head, once it is known not to be below the highest head seen;
        raises ChainHalted (logged once) when it is."""
        position, digest, record = self.tables.chain_state()
        self._remember(record)
        if record is None and position > 0 and not self._adoption_logged:
            # A store chained before head records existed, or one whose record was deleted:
            # nothing says how far it reached, so what is there is taken as the head.
            log.warning("chain.head_adopted", position=position)
            self._adoption_logged = True
        known, known_digest = self._known
        if position < known or (position == known and known and digest != known_digest):
            message = (
                f"the stored chain ends at position {position} (hash {digest.hex()[:16]}), "
                f"but it already reached position {known} (hash {known_digest.hex()[:16]}): "
                "chain rows were removed or rewritten behind the chainer's back; it will not "
                "chain again over them (restore them, then investigate with verify)"
            )
            if self.halted is None:
                log.error("chain.head_regressed", stored=position, known=known)
            self.halted = message
            raise ChainHalted(message)
        if self.halted is not None:
            log.info("chain.head_restored", position=position)
            self.halted = None
        if position > known:
            self._known = (position, digest)
        return position, digest

    def _remember(self, record: dict[str, Any] | None) -> None:
        if record is None:
            return
        try:
            position, digest = int(record["position"]), bytes.fromhex(record["digest"])
            seal_position = int(record.get("seal_position") or 0)
        except (KeyError, TypeError, ValueError):
            message = "the chain's head record is unreadable: it was edited behind the chainer"
            if self.halted is None:
                log.error("chain.head_record_unreadable")
            self.halted = message
            raise ChainHalted(message) from None
        if position > self._known[0]:
            self._known = (position, digest)
        self._seal_position = max(self._seal_position, seal_position)

    def _failed(self, error: Exception) -> None:
        if isinstance(error, ChainHalted):
            return  # logged when it began; verify names the break
        self._failures += 1
        pause = min(self.retry_max, self.retry_first * 2 ** min(self._failures - 1, 16))
        self._retry_at = time.monotonic() + pause
        if self._failures == 1:
            log.error(
                "chain.store_failing",
                error=str(error),
                error_type=type(error).__name__,
                retry_in=pause,
            )

    def _recovered(self) -> None:
        if self._failures:
            log.info("chain.store_recovered", failures=self._failures)
            self._failures = 0

    def _maybe_seal(self, last: ChainRow) -> None:
        if last.position < self._next_seal_check:
            return
        seals = self.tables.seal_list()
        # The highest seal seen, not the highest stored: a deleted seal must leave a gap
        # (which verify reports), not be papered over by the next one.
        sealed_up_to = max(seals[-1]["last_position"] if seals else 0, self._seal_position)
        sealed_count = seals[-1]["count"] if seals else 0
        # Positions can have gaps (PostgreSQL), so count only when they say it may be time.
        if last.position - sealed_up_to >= SEAL_INTERVAL:
            since = self.tables.chained_count(sealed_up_to)
            if since >= SEAL_INTERVAL:
                self.seal(last, sealed_count + since, sealed_up_to + 1)
                sealed_up_to = last.position
        self._next_seal_check = sealed_up_to + SEAL_INTERVAL

    def seal(
        self,
        last: ChainRow | None = None,
        count: int | None = None,
        first_position: int | None = None,
    ) -> dict[str, Any] | None:
        """Seal the chain head now (or at ``last``); the seal, or None for an empty log.
        Raises ChainHalted rather than seal a chain cut below its head."""
        if last is None or count is None:
            position, digest = self._checked_head()
            if position == 0:
                return None
            count = self.tables.chained_count()
            seals = self.tables.seal_list()
            replace = False
            if seals and seals[-1]["last_position"] == position:
                if self.seal_key is None or seals[-1].get("signature"):
                    if self.seal_key is not None:
                        # So that the head record is signed too (verify --public-key asks).
                        self.tables.record_head(
                            make_head(position, digest, position, self.seal_key)
                        )
                    return seals[-1]
                # Asked to sign what was sealed unsigned: replace it by a signed seal.
                seals, replace = seals[:-1], True
            first = (seals[-1]["last_position"] + 1) if seals else 1
            seal = make_seal(position, digest, count, first, self.seal_key)
            head_digest = digest
        else:
            seal = make_seal(
                last.position, last.chain_hash, count, first_position or 1, self.seal_key
            )
            replace = False
            head_digest = last.chain_hash
        position = seal["last_position"]
        head = make_head(position, head_digest, position, self.seal_key)
        self.tables.add_seal(seal, replace=replace, head=head)
        self._seal_position = max(self._seal_position, position)
        log.info("chain.sealed", last_position=seal["last_position"], count=seal["count"])
        return seal
