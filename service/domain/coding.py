"""CAMEO / PLOVER coding of each kind of development.

The codes let exported data interoperate with GDELT/ICEWS/ACLED-style tooling. They are
part of the domain because a report's coding is recorded with the report; each kind's
codes and their refinements by detail are declared in :mod:`service.domain.vocabulary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from service.domain.vocabulary import KINDS, NAMED_CODINGS, by_kind

# kind -> (CAMEO code, PLOVER category, PLOVER mode), before refinement by details.
CODING: Final[dict[str, tuple[str, str, str]]] = {
    name: (coding.cameo, coding.plover, coding.mode)
    for name, coding in (
        *((kind.kind, kind.coding) for kind in KINDS),
        *NAMED_CODINGS.items(),
    )
}


def coding_for(kind: str, details: Mapping[str, object] | None = None) -> dict[str, str]:
    """The CAMEO/PLOVER coding of a development, refined by its details where CAMEO does."""
    named = NAMED_CODINGS.get(kind)
    if named is not None:
        return named.as_dict()
    # An unknown kind raises UnknownKind (a ValueError naming it), not a bare KeyError.
    return by_kind(kind).coding_for(details).as_dict()
