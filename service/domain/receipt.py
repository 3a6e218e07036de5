"""CommandReceipt: the record that a request id has been used, and what it produced.

A receipt is saved in the same transaction as the events its command appended, under an
id derived from the request id. Two concurrent retries therefore cannot both succeed: the
second collides on the receipt and reads the first one's answer instead.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

RECEIPT_NAMESPACE = uuid5(NAMESPACE_URL, "https://flashpoint.invalid/receipts")


def receipt_id(principal: str, request_id: str) -> UUID:
    # Scoped by principal: two clients choosing the same request id must not collide.
    return uuid5(RECEIPT_NAMESPACE, f"{principal}\x00{request_id}")


class CommandReceipt(Aggregate):
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
