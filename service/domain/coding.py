"""CAMEO / PLOVER coding of each kind of development.

The codes let exported data interoperate with GDELT/ICEWS/ACLED-style tooling. They are
part of the domain because a report's coding is recorded with the report; each kind's
codes and their refinements by detail are declared in :mod:`service.domain.vocabulary`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from service.domain.vocabulary import KINDS, NAMED_CODINGS, Coding, Kind, by_kind

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
    entry = by_kind(kind)
    # Every report is coded: the coding depends on the few details its kind's refinements
    # read, so it is worked out once per kind and values of those (typed: str(True) and
    # str(1) differ). A fresh dict each time, as events keep it.
    read = _DETAILS_READ.get(kind)
    if read is None:
        read = _DETAILS_READ[kind] = _details_read(entry)
    values = details or {}
    key = (kind, *((type(value), value) for value in map(values.get, read)))
    try:
        coding = _CODED.get(key)
    except TypeError:  # an unhashable detail (a list): worked out every time
        return entry.coding_for(details).as_dict()
    if coding is None:
        if len(_CODED) >= _CODED_LIMIT:
            _CODED.clear()
        coding = _CODED[key] = entry.coding_for(details)
    return coding.as_dict()


_CODED_LIMIT = 4096
_CODED: dict[tuple[object, ...], Coding] = {}
_DETAILS_READ: dict[str, tuple[str, ...]] = {}


def _details_read(entry: Kind) -> tuple[str, ...]:
    fields = [refinement.when.field for refinement in entry.refinements]
    if entry.cameo_from is not None:
        fields.append(entry.cameo_from)
    return tuple(dict.fromkeys(fields))
