"""Admiralty grading (NATO STANAG 2511) as a confidence between 0 and 1.

Source reliability A (completely reliable) ... E (unreliable) maps linearly onto 1 ... 0,
and F (cannot be judged) onto 0.5; information credibility 1 (confirmed) ... 5 (improbable)
likewise, 6 (cannot be judged) onto 0.5. Confidence is their product (DESIGN.md section 3).
"""

from __future__ import annotations

from typing import Final

RELIABILITY: Final[dict[str, float]] = {
    "A": 1.0, "B": 0.75, "C": 0.5, "D": 0.25, "E": 0.0, "F": 0.5,
}  # fmt: skip
CREDIBILITY: Final[dict[int, float]] = {1: 1.0, 2: 0.75, 3: 0.5, 4: 0.25, 5: 0.0, 6: 0.5}


def confidence(reliability: str, credibility: int) -> float:
    return RELIABILITY[reliability] * CREDIBILITY[credibility]
