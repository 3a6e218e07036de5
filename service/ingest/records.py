"""What a row becomes: a command to send, or a skip with its reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.domain.commands import (
    COMMANDS,
    Command,
    CommandValidationError,
    parse_command,
)


@dataclass(frozen=True)
class Mapped:
    """A row that maps to ``command`` (its request id names the row)."""

    command: Command
    #: The table entry that chose the command (``kind`` or ``coded``), for summaries.
    via: str


@dataclass(frozen=True)
class Skipped:
    """A row that maps to nothing; ``reason`` is a stable category, ``detail`` the case."""

    reason: str
    detail: str = ""
    row_id: str = ""


Outcome = Mapped | Skipped


class Skip(Exception):
    """Raised while mapping a row: the row is skipped for ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def build(command_name: str, data: dict[str, Any], via: str) -> Mapped:
    """The command ``command_name`` from ``data``; a row the command refuses is skipped
    (``invalid-row``, naming the fields), never sent to fail on the server."""
    command_class = COMMANDS.get(command_name)
    if command_class is None:
        raise Skip("command-unavailable", command_name)
    try:
        return Mapped(parse_command(command_class, data), via)
    except CommandValidationError as error:
        fields = ", ".join(sorted({v.field for v in error.violations}))
        raise Skip("invalid-row", f"{fields}: {error}") from None


def utc_day(text: str) -> datetime:
    """``YYYYMMDD`` (or ``YYYY-MM-DD``) as midnight UTC of that day."""
    digits = text.strip().replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        raise Skip("bad-date", repr(text))
    try:
        return datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), tzinfo=UTC)
    except ValueError:
        raise Skip("bad-date", repr(text)) from None


def coordinate(text: str, limit: float) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if -limit <= value <= limit else None
