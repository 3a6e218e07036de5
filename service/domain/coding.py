"""CAMEO / PLOVER coding of each kind of development.

The codes let exported data interoperate with GDELT/ICEWS/ACLED-style tooling. The
table is part of the domain because a report's coding is recorded with the report.
"""

from __future__ import annotations

from typing import Any, Final

# kind -> (CAMEO code, PLOVER category, PLOVER mode)
CODING: Final[dict[str, tuple[str, str, str]]] = {
    "airspace_incursion": ("150", "MOBILIZE", "drone"),
    "strike": ("195", "ASSAULT", "aerial"),
    "armed_clash": ("190", "ASSAULT", ""),
    "military_exercise": ("150", "MOBILIZE", "exercise"),
    "troop_deployment": ("154", "MOBILIZE", "troops"),
    "alert": ("152", "MOBILIZE", "weapons"),
    "threat": ("130", "THREATEN", ""),
    "statement": ("010", "", ""),
    "condemnation": ("111", "ACCUSE", ""),
    "envoy_summoned": ("111", "ACCUSE", "summon"),
    "diplomats_expelled": ("166", "SANCTION", "expel"),
    "cyber_attack": ("", "COERCE", "cyber"),
    "sanctions_imposed": ("163", "SANCTION", ""),
    "sanctions_extended": ("163", "SANCTION", ""),
    "sanctions_eased": ("085", "RETREAT", ""),
    "sanctions_lifted": ("085", "RETREAT", "lift"),
    "negotiations_proposed": ("036", "AGREE", ""),
    "negotiation_round_held": ("046", "CONSULT", ""),
    "negotiations_paused": ("164", "SANCTION", "withdraw"),
    "negotiations_resumed": ("046", "CONSULT", ""),
    "negotiations_rejected": ("125", "REJECT", ""),
    "agreement_signed": ("057", "AGREE", ""),
    "denial": ("016", "REJECT", ""),
}


def coding_for(kind: str, details: dict[str, Any] | None = None) -> dict[str, str]:
    """The CAMEO/PLOVER coding of a development, refined by its details where CAMEO does."""
    cameo, plover, mode = CODING[kind]
    details = details or {}
    if kind == "airspace_incursion":
        if details.get("shots_fired"):
            cameo, plover = "190", "ASSAULT"
        if details.get("platform") and details["platform"] != "drone":
            mode = str(details["platform"])
    elif kind == "threat":
        if details.get("threat_kind") == "military":
            cameo = "138"
        elif details.get("threat_kind") == "ultimatum":
            cameo = "139"
    elif kind == "condemnation":
        cameo = "112" if details.get("accusation") else "111"
    elif kind == "armed_clash" and details.get("ceasefire_violation"):
        mode = "ceasefire_violation"
    return {"cameo": cameo, "plover": plover, "plover_mode": mode}
