"""Who told us: the provenance recorded on every event."""

from __future__ import annotations

from typing import Any


def submitted_by(principal: str, client: str | None, request_id: str | None) -> dict[str, Any]:
    """The provenance stamp stored with each event, so history answers "who told us this"."""
    return {"principal": principal, "client": client, "request_id": request_id}
