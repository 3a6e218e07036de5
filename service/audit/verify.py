"""Verification: re-read the log and its chain and name the first break, if any."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.audit.hashing import GENESIS, ChainRow, chain_hash, content_hash, event_hash
from service.audit.seals import check_seal_shape, seal_signature_valid
from service.audit.tables import LogTables


@dataclass
class Break:
    position: int
    kind: str
    detail: str


@dataclass
class VerifyReport:
    intact: bool
    checked_up_to: int = 0
    events: int = 0
    digest: str = GENESIS.hex()
    unchained: int = 0
    seals_checked: int = 0
    first_break: Break | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.first_break is None:
            text = (
                f"intact up to position {self.checked_up_to}, {self.events} events, "
                f"digest {self.digest}"
            )
            if self.unchained:
                text += f" ({self.unchained} newer events not chained yet)"
            return text
        b = self.first_break
        return f"BROKEN at position {b.position}: {b.kind} ({b.detail})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "checked_up_to": self.checked_up_to,
            "events": self.events,
            "digest": self.digest,
            "unchained": self.unchained,
            "seals_checked": self.seals_checked,
            "break": None if self.first_break is None else vars(self.first_break),
            "summary": self.summary(),
        }


def verify(
    tables: LogTables,
    *,
    against: list[dict[str, Any]] | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> VerifyReport:
    """Re-read the whole log and its chain (streamed) and find the first break, if any."""
    report = VerifyReport(intact=True)
    seals = {seal["last_position"]: seal for seal in tables.seal_list()}
    external = {check_seal_shape(seal)["last_position"]: seal for seal in (against or [])}
    # The chain as it stands now bounds the check: what is appended and chained while the
    # log is read is the unchained tail, not a break.
    chain_head = tables.chain_head()[0]
    pending = sorted(set(seals) | set(external))
    events = tables.iterate()
    chain = tables.iterate_chain(stop=chain_head)
    event = next(events, None)
    stored = next(chain, None)
    recent: deque[ChainRow] = deque(maxlen=256)
    ahead: deque[ChainRow] = deque()
    previous = GENESIS
    last_state = b""

    def fail(position: int, kind: str, detail: str) -> VerifyReport:
        report.intact = False
        report.first_break = Break(position, kind, detail)
        return report

    def next_stored() -> ChainRow | None:
        return ahead.popleft() if ahead else next(chain, None)

    def peek(count: int) -> list[ChainRow]:
        while len(ahead) < count:
            row = next(chain, None)
            if row is None:
                break
            ahead.append(row)
        return list(ahead)

    while stored is not None:
        if event is None:
            return fail(
                stored.position,
                "truncated",
                f"the chain covers position {stored.position} but the log ends before "
                "it: events were removed from the tail",
            )
        if event.position < stored.position:
            return fail(
                event.position, "inserted", "an event stands at a position the chain never covered"
            )
        if event.position > stored.position:
            return fail(
                stored.position,
                "removed",
                f"the chained event at position {stored.position} is missing",
            )
        if pending and pending[0] < event.position:
            return fail(
                pending[0],
                "removed",
                f"a seal covers position {pending[0]}, but no event stands there any more",
            )
        if pending and pending[0] == event.position:
            pending.pop(0)
        if not event.exact_id:
            return fail(
                event.position,
                "changed",
                f"the resource id of the {event.type} event was rewritten in the store",
            )
        content = content_hash(event.resource_id, event.version, event.type, event.state)
        if content != stored.content_hash:
            for other in (*recent, *peek(256)):
                if other.content_hash == content:
                    return fail(
                        event.position,
                        "reordered",
                        f"position {event.position} holds the event chained at "
                        f"position {other.position}",
                    )
            return fail(
                event.position,
                "changed",
                f"the {event.type} event of {event.resource_id} v{event.version} differs "
                "from what was chained",
            )
        expected_event = event_hash(event.position, content)
        expected_chain = chain_hash(previous, expected_event)
        if stored.event_hash != expected_event or stored.chain_hash != expected_chain:
            return fail(
                event.position,
                "chain_altered",
                "the stored chain does not follow from the events before it",
            )
        previous = expected_chain
        report.events += 1
        report.checked_up_to = event.position
        for source, seal_map in (("stored seal", seals), ("seal file", external)):
            seal = seal_map.get(event.position)
            if seal is None:
                continue
            report.seals_checked += 1
            if seal.get("digest") != previous.hex() or seal.get("count") != report.events:
                return fail(
                    event.position,
                    "seal_mismatch",
                    f"{source} for position {event.position} does not match the log "
                    f"(count {seal.get('count')} vs {report.events})",
                )
            # Stored seals are checked when signed; a seal file must be signed when a key
            # is given (an unsigned copy proves nothing about who made it).
            must_sign = public_key is not None and (source == "seal file" or "signature" in seal)
            if must_sign and public_key and not seal_signature_valid(seal, public_key):
                return fail(
                    event.position,
                    "bad_signature",
                    f"{source} for position {event.position} is not signed by the trusted key",
                )
        recent.append(stored)
        last_state = event.state
        event = next(events, None)
        stored = next_stored()

    beyond = [position for position in pending if position > report.checked_up_to]
    if beyond:
        return fail(
            beyond[0],
            "truncated",
            f"the seal file covers position {beyond[0]}, beyond the chained log",
        )
    report.digest = previous.hex()
    last_recorded = _recorded_at(last_state) if last_state else ""
    while event is not None:
        recorded = _recorded_at(event.state)
        if last_recorded and recorded and recorded < last_recorded:
            return fail(
                event.position,
                "inserted",
                f"an unchained event claims to be recorded at {recorded}, before the "
                f"chain head's {last_recorded}",
            )
        report.unchained += 1
        event = next(events, None)
    return report


def _recorded_at(state: bytes) -> str:
    """The recording time a stored state claims, or "" when it claims none readable."""
    try:
        decoded = orjson.loads(state)
        stamp = decoded.get("timestamp") if isinstance(decoded, dict) else None
        value = stamp.get("_data_") if isinstance(stamp, dict) else stamp
        if not isinstance(value, str):
            return ""
        return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    except (orjson.JSONDecodeError, ValueError, OverflowError, TypeError):
        return ""
