"""The chainer: extends the hash chain over newly appended events and seals it now and then."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.audit.hashing import (
    PAGE,
    SEAL_INTERVAL,
    ChainRow,
    chain_hash,
    content_hash,
    event_hash,
    log,
)
from service.audit.seals import make_seal
from service.audit.tables import LogTables


class Chainer:
    """Extends the chain over newly appended events, and seals it every SEAL_INTERVAL."""

    def __init__(self, tables: LogTables, seal_key: Ed25519PrivateKey | None = None) -> None:
        self.tables = tables
        self.seal_key = seal_key
        self._next_seal_check = 0

    def step(self, limit: int = PAGE) -> int:
        position, previous = self.tables.chain_head()
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
        try:
            self.tables.append_chain(chained)
        except Exception:
            log.info("chain.race_lost", position=chained[0].position)
            return 0
        self._maybe_seal(chained[-1])
        return len(chained)

    def catch_up(self) -> int:
        total = 0
        while (count := self.step()) > 0:
            total += count
        return total

    def _maybe_seal(self, last: ChainRow) -> None:
        if last.position < self._next_seal_check:
            return
        seals = self.tables.seal_list()
        sealed_up_to = seals[-1]["last_position"] if seals else 0
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
        """Seal the chain head now (or at ``last``); the seal, or None for an empty log."""
        if last is None or count is None:
            position, digest = self.tables.chain_head()
            if position == 0:
                return None
            count = self.tables.chained_count()
            seals = self.tables.seal_list()
            replace = False
            if seals and seals[-1]["last_position"] == position:
                if self.seal_key is None or seals[-1].get("signature"):
                    return seals[-1]
                # Asked to sign what was sealed unsigned: replace it by a signed seal.
                seals, replace = seals[:-1], True
            first = (seals[-1]["last_position"] + 1) if seals else 1
            seal = make_seal(position, digest, count, first, self.seal_key)
        else:
            seal = make_seal(
                last.position, last.chain_hash, count, first_position or 1, self.seal_key
            )
            replace = False
        self.tables.add_seal(seal, replace=replace)
        log.info("chain.sealed", last_position=seal["last_position"], count=seal["count"])
        return seal
