"""Receipts: the record that a request id has been used, and what it produced.

A receipt is written in the same transaction as the events its command appended, keyed
by an id derived from the principal and the request id. Two concurrent retries therefore
cannot both succeed: the second collides on the receipt and reads the first one's answer
instead.

Receipts live in their own table beside the log (``service.adapters.receipts``): the log
holds the domain's facts only. Stores written before that kept each receipt as a
``CommandAccepted`` event of a :class:`CommandReceipt` aggregate in the log itself; those
events stay part of the log (projections, verify and the chain see them as before) and
are still honoured as receipts.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha1
from typing import Any
from uuid import NAMESPACE_URL, UUID, SafeUUID, uuid5

from eventsourcing.domain import Aggregate

RECEIPT_NAMESPACE = uuid5(NAMESPACE_URL, "https://flashpoint.invalid/receipts")


def receipt_id(principal: str, request_id: str) -> UUID:
    # Scoped by principal: two clients choosing the same request id must not collide.
    return name_uuid(RECEIPT_NAMESPACE, f"{principal}\x00{request_id}")


#: RFC 4122's variant bits (10) and version 5 (0101), where ``uuid5`` sets them.
_VARIANT_AND_VERSION_MASK = ~((0xC000 << 48) | (0xF000 << 64))
_VARIANT_AND_VERSION_5 = (0x8000 << 48) | (5 << 76)


def name_uuid(namespace: UUID, name: str) -> UUID:
    """``uuid.uuid5(namespace, name)``, the same UUID, at a third of its cost: a command
    makes two (its receipt's and its new resource's ids), and ``uuid5`` spends most of its
    time in ``UUID.__init__``'s checks and bit twiddling in Python, not in SHA-1."""
    digest = sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()
    value = (int.from_bytes(digest[:16]) & _VARIANT_AND_VERSION_MASK) | _VARIANT_AND_VERSION_5
    made = object.__new__(UUID)
    # What ``UUID(int=value)`` sets, without its argument checks (value has 128 bits).
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", SafeUUID.unknown)
    return made


@dataclass(frozen=True, slots=True)
class Receipt:
    """A used request id and the answer its command got."""

    receipt_id: UUID
    principal: str
    request_id: str
    #: The command's name (``ReportIncursion``), named in the error when the id is reused.
    command: str
    #: ``Command.fingerprint()`` when it was recorded (any version the command still reads).
    fingerprint: str
    #: The resource's name (``incidents/{id}``) and its version after the command.
    resource: str
    resource_version: int
    #: The log position of the resource at that version: the position the command answered
    #: with (for a receipt of the old kind, its own ``CommandAccepted`` event's position).
    #: None while not yet recorded.
    position: int | None = None

    @property
    def resource_id(self) -> UUID:
        return UUID(self.resource.rsplit("/", 1)[1])


class CommandReceipt(Aggregate):
    """The receipt as an aggregate in the log: how stores before receipts had their own
    table kept them. Nothing new is recorded this way; the class decodes the old events."""

    class Accepted(Aggregate.Created):
        type_name = "CommandAccepted"
        request_id: str
        principal: str
        command: str
        fingerprint: str
        resource: str
        resource_version: int

    def __init__(
        self,
        request_id: str,
        principal: str,
        command: str,
        fingerprint: str,
        resource: str,
        resource_version: int,
    ) -> None:
        self.request_id = request_id
        self.principal = principal
        self.command = command
        self.fingerprint = fingerprint
        self.resource = resource
        self.resource_version = resource_version

    @classmethod
    def accept(cls, **fields: Any) -> CommandReceipt:
        return cls._create(
            cls.Accepted, id=receipt_id(fields["principal"], fields["request_id"]), **fields
        )
