"""Errors the domain raises when a decision breaks one of its rules."""

from __future__ import annotations


class DomainError(Exception):
    """A command was understood but the domain refuses it."""


class RuleViolation(DomainError):
    """The resource is not in a state that allows this development.

    Examples: pausing a paused negotiation, extending a lifted sanctions regime,
    changing a retracted incident.
    """

    def __init__(self, message: str, *, resource: str, reason: str) -> None:
        super().__init__(message)
        self.resource = resource
        # A short machine-readable reason (``ALREADY_PAUSED``) for rich error details.
        self.reason = reason
