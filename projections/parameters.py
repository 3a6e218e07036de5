"""The escalation parameters: one versioned table, named by every figure computed from it.

Weights are Goldstein-like (-10 most hostile ... +10 most cooperative), from the public CAMEO
Goldstein table and the PLOVER manual (DESIGN.md section 2). Changing any value here means
a new ``VERSION``: a published level must always be reproducible from the log and the table
version it names.

Which weight and half-life class a development takes is declared with its kind in
:mod:`service.domain.vocabulary`; the numbers are here.
"""

from __future__ import annotations

import math
from typing import Final

from service.domain.vocabulary import KINDS

VERSION: Final = "2026-12.3"

#: Weight of each kind of development.
WEIGHTS: Final[dict[str, float]] = {
    "statement": 0.0,
    "condemnation": -2.0,
    "accusation": -2.5,
    "envoy_summoned": -3.0,
    "threat": -4.4,
    "military_threat": -7.0,
    "diplomats_expelled": -5.5,
    "negotiations_paused": -6.5,
    "negotiations_rejected": -5.0,
    "military_exercise": -5.5,
    "troop_deployment": -6.5,
    "alert": -6.5,
    "airspace_incursion": -7.5,
    "sanctions_imposed": -7.0,
    "sanctions_extended": -5.0,
    "cyber_attack": -7.0,
    "strike": -9.5,
    "armed_clash": -10.0,
    # CAMEO's Goldstein table: 196 "violate ceasefire" is -9.5, as is 191 "impose blockade".
    # Both sit just below armed_clash (190, -10): force used or threatened against a party,
    # short of open fighting.
    "ceasefire_violation": -9.5,
    "naval_blockade": -9.5,
    "negotiations_proposed": 4.0,
    "negotiation_round_held": 4.0,
    "negotiations_resumed": 4.0,
    "sanctions_eased": 5.0,
    "sanctions_lifted": 5.0,
    "agreement_signed": 8.0,
    # A coded event is weighed by its own Goldstein value (see goldstein_weight); this is
    # the table's entry for its key, used only where a stored one lacks that value.
    "coded_event": 0.0,
}

#: A coded event's weight is GOLDSTEIN_FACTOR x its own Goldstein value: the CAMEO scale
#: is the scale of WEIGHTS, so a coded event weighs what a kind of the same code would
#: (hostile values escalate, cooperative ones calm, as agreements do). Its half-life class
#: is its kind's ("verbal": most codes without a command of their own are words).
GOLDSTEIN_FACTOR: Final = 1.0


def goldstein_weight(goldstein: float) -> float:
    """The weight of a development that carries its own Goldstein value (-10..+10)."""
    return GOLDSTEIN_FACTOR * max(-10.0, min(10.0, goldstein))


#: Half-life in days by class of development: words fade fast, force lingers.
HALF_LIFE_DAYS: Final[dict[str, float]] = {"verbal": 7.0, "posture": 14.0, "material": 21.0,
                                           "economic": 30.0}  # fmt: skip


class MissingParameter(ValueError):
    """A weight key or half-life class this table has no figure for.

    Raised (never defaulted) so a development the table cannot score is set aside with its
    reason rather than counted as zero or folded into a KeyError.
    """

    def __init__(self, what: str, key: str) -> None:
        super().__init__(f"parameter table {VERSION} has no {what} for {key!r}")
        self.what = what
        self.key = key


def _class_of() -> dict[str, str]:
    classes: dict[str, str] = {}
    for kind in KINDS:
        for key in sorted(kind.weight_keys):
            if classes.setdefault(key, kind.half_life) != kind.half_life:
                raise ValueError(f"weight {key!r} is declared with two half-life classes")
    return classes


#: Weight key -> half-life class, from the vocabulary (a refined key takes its kind's class).
CLASS_OF: Final[dict[str, str]] = _class_of()


def weight_of(key: str) -> float:
    try:
        return WEIGHTS[key]
    except KeyError:
        raise MissingParameter("weight", key) from None


def half_life_of(key: str) -> float:
    """Days it takes a development weighed as ``key`` to count half."""
    try:
        half_life_class = CLASS_OF[key]
    except KeyError:
        raise MissingParameter("half-life class", key) from None
    try:
        return HALF_LIFE_DAYS[half_life_class]
    except KeyError:
        raise MissingParameter("half-life", half_life_class) from None


#: Magnitude = min(CAP, 1 + SIZE_SLOPE*log10(1 + size) + FATALITY_SLOPE*log10(1 + fatalities)).
MAGNITUDE_CAP: Final = 3.0
SIZE_SLOPE: Final = 0.5
FATALITY_SLOPE: Final = 0.5

#: Confidence is multiplied by this for each party that disputes a report, and by
#: DENIAL_FACTOR for each that denies it (an accused party's denial says little); a party
#: counts once, by its latest word, and confidence never falls below CONFIDENCE_FLOOR times
#: the graded confidence.
DISPUTE_FACTOR: Final = 0.8
DENIAL_FACTOR: Final = 0.9
CONFIDENCE_FLOOR: Final = 0.5

#: A country that is only the location (or a border of an exercise) gets this share.
LOCATION_SHARE: Final = 0.5

#: Score thresholds of levels 2..5; below the first is level 1.
THRESHOLDS: Final[tuple[float, float, float, float]] = (5.0, 15.0, 30.0, 60.0)
LEVEL_NAMES: Final[dict[int, str]] = {
    1: "calm", 2: "tension", 3: "crisis", 4: "armed incidents", 5: "open conflict",
}  # fmt: skip

#: Trend: compare with the score this many days earlier; a change counts when it exceeds
#: both TREND_MIN_CHANGE points and TREND_MIN_RATIO of the earlier score. With nothing
#: known then (no development in the window), a subject with developments now is "new".
TREND_DAYS: Final = 30
TREND_MIN_CHANGE: Final = 2.0
TREND_MIN_RATIO: Final = 0.2

#: Developments older than this many of their half-lives are left out (weight < 0.1%).
HORIZON_HALF_LIVES: Final = 10

MAX_HALF_LIFE_DAYS: Final = max(HALF_LIFE_DAYS.values())


def magnitude(size: float, fatalities: float) -> float:
    value = (
        1
        + SIZE_SLOPE * math.log10(1 + max(size, 0))
        + FATALITY_SLOPE * math.log10(1 + max(fatalities, 0))
    )
    return min(MAGNITUDE_CAP, value)


def level_of(score: float) -> int:
    level = 1
    for threshold in THRESHOLDS:
        if score >= threshold:
            level += 1
    return level


#: The trends a figure can have.
TRENDS: Final = ("new", "deteriorated", "improved", "unchanged")


def trend_of(score: float, earlier: float, *, counted: int = 1, counted_earlier: int = 1) -> str:
    """How ``score`` moved since ``earlier``, the score TREND_DAYS before.

    ``counted`` and ``counted_earlier`` are how many developments each figure summed. With
    nothing known in the comparison window but something now the trend is "new": an
    earlier score of 0 there means no knowledge, not calm, and reading it as a change
    would call every fresh subject (every one, in a young ledger) "deteriorated".
    """
    if not counted_earlier and counted:
        return "new"
    change = score - earlier
    needed = max(TREND_MIN_CHANGE, TREND_MIN_RATIO * abs(earlier))
    if change > needed:
        return "deteriorated"
    if change < -needed:
        return "improved"
    return "unchanged"


def as_table() -> dict[str, object]:
    """The whole table, for answers that explain themselves."""
    return {
        "version": VERSION,
        "weights": WEIGHTS,
        "goldstein_factor": GOLDSTEIN_FACTOR,
        "half_life_days": HALF_LIFE_DAYS,
        "class_of": CLASS_OF,
        "magnitude_cap": MAGNITUDE_CAP,
        "thresholds": THRESHOLDS,
        "dispute_factor": DISPUTE_FACTOR,
        "denial_factor": DENIAL_FACTOR,
        "location_share": LOCATION_SHARE,
        "trend_days": TREND_DAYS,
    }
