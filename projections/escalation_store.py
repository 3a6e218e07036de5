"""How the escalation read model is stored, and the two ways of answering from it.

The fold (:mod:`projections.escalation`) keeps, per aggregate, every known version of each
development. Stored, that is:

- ``{stem}_g{n}_state``: per aggregate only what the next event's fold needs (its facts and
  the id of its open version), so a state's size does not grow with its history;
- ``{stem}_g{n}_contrib``: one row per version *and subject* (each country it counts for,
  and each ordered pair ``"A>B"`` of an actor and a target), with the share, the role, the
  knowledge interval ``[known_from, known_to)`` and ``live`` (1 while no later version or
  retraction replaced it);
- ``{stem}_g{n}_bucket``: per country, half-life class and UTC day of occurrence, the sums of
  the live contributions (split actor/target, and their count);
- ``{stem}_g{n}_meta``: the latest knowledge time of any version (``known_max``).

**The fast path** ("as known now": ``as_of`` at or after ``known_max``) needs only live
versions. Exponential decay factorises: a contribution ``c`` that occurred at ``t_i`` is worth
``c * 2**(-(t - t_i)/h)`` at ``t``, that is ``2**(-(t - R)/h) * [c * 2**((t_i - R)/h)]`` for
any reference time ``R``. The bracket is stored (``scaled``) and summed in SQL; Python
multiplies each sum by its factor. So a country's score at any valid time is one statement
over its buckets for the whole days inside the window (at most ten half-lives plus the trend's
30 days, whatever the length of the log) plus its rows on the two partial days at the
window's edges.

*Numeric care*: ``2**((t_i - R)/h)`` overflows a double once ``t_i - R`` passes ~1000
half-lives (19 years for the 7-day class) if ``R`` were one fixed epoch. ``R`` is therefore
the start of an *era* of ``ERA_HALF_LIVES`` half-lives containing ``t_i`` (stored with each
row and bucket, grouped by in every sum): the bracket stays within ``[c, c * 2**128)`` and the
factor for a window, which spans at most two eras, within ``2**-150``; nothing overflows or
underflows, and no sum mixes magnitudes more than 2**128 apart (a sum only spans its window).
The fast path sums in another order than the full scan, so figures agree to ~1e-12
(they are published rounded to 1e-6); a development within a rounding error of its window's
edge (exactly ten half-lives old) may fall on either side.

**The full path** (a past ``as_of``, or a history of points) reads the versions' rows in the
window from one statement and scores them in Python exactly as
:func:`projections.escalation.score_states` scores the fold's states.

During a rebuild (``bulk``) the buckets and secondary indexes are made once at the end, from
the rows, by SQL; afterwards each batch recomputes the buckets it touched from the live rows
(never by adding and subtracting floats, so a bucket is a function of the rows alone).
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from projections import parameters as p

if TYPE_CHECKING:
    from projections.store import Table, ViewStore

DAY: Final = 86_400.0
#: An era of this many half-lives shares one reference time (see the module's numeric care).
ERA_HALF_LIVES: Final = 128
#: The rank of a contribution of zero (it sorts after every other).
ZERO_RANK: Final = -1e300
#: Half-life (days) -> the class index stored with rows and buckets.
CLASSES: Final[dict[float, int]] = {
    half_life: index for index, half_life in enumerate(sorted(set(p.HALF_LIFE_DAYS.values())))
}
HALF_LIVES: Final[dict[int, float]] = {index: half_life for half_life, index in CLASSES.items()}
COLLECTIONS: Final = ("incidents", "sanctions", "negotiations")
#: Buckets come by day (level 0) and by block of this many days (level 1): the inside of a
#: window reads whole blocks and, at its two ends, days.
BLOCK_DAYS: Final = 16
if any((ERA_HALF_LIVES * h) % BLOCK_DAYS for h in CLASSES):
    # A block must lie within one era (see ``_by_era``).
    raise ValueError("every era must be a whole number of blocks")
#: ``day // BLOCK_DAYS`` (floor, also for days before 1970) in SQL on both stores.
_BLOCK_OF_DAY: Final = (
    f"(CASE WHEN day >= 0 THEN day / {BLOCK_DAYS} "
    f"ELSE -((-day + {BLOCK_DAYS - 1}) / {BLOCK_DAYS}) END)"
)

_ROW_COLUMNS: Final = (
    "vid", "subject", "pair", "key", "seq", "dev", "coll", "kind", "class", "half_life",
    "occurred", "day", "era", "base", "share", "acted", "scaled", "rank", "known_from",
    "known_to", "live",
)  # fmt: skip


def era_of(day: int, half_life: float) -> int:
    return int(day // (ERA_HALF_LIVES * half_life))


def era_start(era: int, half_life: float) -> float:
    return era * ERA_HALF_LIVES * half_life * DAY


def factor(at: float, era: int, half_life: float) -> float:
    """What a stored ``scaled`` sum of ``era`` is multiplied by to be worth it at ``at``."""
    return float(2.0 ** (-(at - era_start(era, half_life)) / (half_life * DAY)))


# ---------------------------------------------------------------------- what a version stores


def subjects_of(version: Mapping[str, Any]) -> list[tuple[str, int, float, int]]:
    """(subject, is_pair, share, acted) for every subject a version counts for.

    As :func:`projections.escalation.share`: a country counts as actor if it acted, else
    as target, else (only located) half; a pair ``A>B`` counts what A did to B.
    """
    actors, targets = version["actors"], version["targets"]
    found: list[tuple[str, int, float, int]] = [(country, 0, 1.0, 1) for country in actors]
    found += [(country, 0, 1.0, 0) for country in targets if country not in actors]
    found += [(country, 0, p.LOCATION_SHARE, 0) for country in version["located"]]
    found += [
        (f"{actor}>{target}", 1, 1.0, 1) for actor in actors for target in targets
        if actor != target
    ]  # fmt: skip
    return found


def version_rows(
    key: str, development: Mapping[str, Any], version: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The contribution rows of one version, in ``_ROW_COLUMNS`` order."""
    half_life = float(version["half_life"])
    occurred = float(version["occurred"])
    day = int(occurred // DAY)
    era = era_of(day, half_life)
    growth = 2.0 ** ((occurred - era_start(era, half_life)) / (half_life * DAY))
    dev_id: str = development["id"]
    seq = int(dev_id.rsplit(":", 1)[1]) if ":" in dev_id else 0
    coll = COLLECTIONS.index(development["resource"].partition("/")[0])
    known_to = version["known_to"]
    base = float(version["base"])
    rows = []
    for subject, pair, share, acted in subjects_of(version):
        value = share * base
        rank = math.log2(abs(value)) + occurred / (half_life * DAY) if value else ZERO_RANK
        rows.append(
            (version["known_from_position"], subject, pair, key, seq,
             "" if dev_id == key else dev_id, coll, development["kind"], CLASSES[half_life],
             half_life, occurred, day, era, base, share, acted, value * growth, rank,
             version["known_from"], known_to, 1 if known_to is None else 0)
        )  # fmt: skip
    return rows


def compact(state: Mapping[str, Any]) -> dict[str, Any]:
    """What is stored of a state: its facts, and for an incident its last version's id.

    Markers tell the next write what is already stored: ``_stored`` in the facts (kept by
    the folds of regimes and tracks) and ``s`` on a stored version (kept by ``_close``);
    ``c`` marks a version already stored as closed.
    """
    facts = {**state["facts"], "_stored": 1}
    developments = state["developments"]
    if not developments or not developments[0]["resource"].startswith("incidents/"):
        # A regime's or track's fold reads only its facts; its developments are all rows.
        return {"facts": facts, "developments": []}
    development = developments[0]
    last = development["versions"][-1]
    stored: dict[str, Any] = {"known_from_position": last["known_from_position"], "s": 1}
    if last.get("known_to") is not None:
        stored.update(c=1, known_to=last["known_to"])
    return {
        "facts": facts,
        "developments": [
            {"id": development["id"], "resource": development["resource"],
             "kind": development["kind"], "versions": [stored]}
        ],
    }  # fmt: skip


@dataclass
class Changes:
    """The rows one batch writes, and what it touched."""

    inserts: list[tuple[Any, ...]]
    #: (known_to, vid) of stored versions closed by this batch.
    closes: list[tuple[float, int]]
    #: Keys whose rows are all replaced (a state folded again from the log).
    replaced: list[str]
    known_max: float


def changes_of(
    states: Mapping[str, Mapping[str, Any]], existing: set[str] | frozenset[str]
) -> Changes:
    inserts: list[tuple[Any, ...]] = []
    closes: list[tuple[float, int]] = []
    replaced: list[str] = []
    known_max = -math.inf
    for key, state in states.items():
        developments = state["developments"]
        continued = bool(state["facts"].get("_stored")) or any(
            version.get("s") for development in developments for version in development["versions"]
        )
        if key in existing and not continued:
            replaced.append(key)
        for development in developments:
            for version in development["versions"]:
                known_to = version.get("known_to")
                if version.get("s"):
                    if known_to is not None and not version.get("c"):
                        closes.append((known_to, version["known_from_position"]))
                        known_max = max(known_max, known_to)
                    continue
                inserts += version_rows(key, development, version)
                known_max = max(known_max, version["known_from"], known_to or -math.inf)
    return Changes(inserts, closes, replaced, known_max)


# ---------------------------------------------------------------------- the storage


class EscalationStorage:
    """The escalation table's extra tables (see the module's docstring)."""

    def names(self, store: ViewStore, table: Table, generation: int) -> dict[str, str]:
        stem = f"{table.stem}_g{generation}"
        return {
            "contrib": store.table(f"{stem}_contrib"),
            "bucket": store.table(f"{stem}_bucket"),
            "meta": store.table(f"{stem}_meta"),
            "subject": store.table(f"{stem}_subject"),
            "stem": stem,
        }

    def create(self, store: ViewStore, cursor: Any, table: Table, generation: int) -> None:
        n = self.names(store, table, generation)
        real = store.column_type("FLOAT")
        big = store.column_type("INTEGER")
        clustered = " WITHOUT ROWID" if store.dialect == "sqlite" else ""
        # Clustered on the version id (the position that opened it): a rebuild appends.
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {n['contrib']} (vid {big} NOT NULL, "
            f"subject TEXT NOT NULL, pair INTEGER NOT NULL, key TEXT NOT NULL, "
            f"seq {big} NOT NULL, dev TEXT NOT NULL, coll INTEGER NOT NULL, kind TEXT NOT NULL, "
            f"class INTEGER NOT NULL, half_life {real} NOT NULL, occurred {real} NOT NULL, "
            f"day {big} NOT NULL, era {big} NOT NULL, base {real} NOT NULL, "
            f"share {real} NOT NULL, acted INTEGER NOT NULL, scaled {real} NOT NULL, "
            f"rank {real} NOT NULL, known_from {real} NOT NULL, known_to {real}, "
            f"live INTEGER NOT NULL, PRIMARY KEY (vid, subject)){clustered}"
        )
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {n['bucket']} (subject TEXT NOT NULL, "
            f"class INTEGER NOT NULL, level INTEGER NOT NULL, day {big} NOT NULL, "
            f"era {big} NOT NULL, s_act {real} NOT NULL, s_tgt {real} NOT NULL, "
            f"n {big} NOT NULL, PRIMARY KEY (subject, class, level, day, era)){clustered}"
        )
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {n['meta']} (id INTEGER PRIMARY KEY, "
            f"known_max {real} NOT NULL)"
        )
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {n['subject']} (subject TEXT PRIMARY KEY){clustered}"
        )

    def index(self, store: ViewStore, cursor: Any, table: Table, generation: int) -> None:
        n = self.names(store, table, generation)
        # Edges of windows and the full path: a subject's rows by class, liveness and day
        # (an edge reads the smaller side of one day: a few rows, looked up); top
        # contributions: live rows by rank (with the scan order, which breaks ties).
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {n['stem']}_contrib_day ON {n['contrib']} "
            "(subject, class, live, day, occurred)"
        )
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {n['stem']}_contrib_rank ON {n['contrib']} "
            "(subject, class, live, rank, key, seq)"
        )
        # By block of days, then rank: when the first rows by rank alone hold too few in
        # the window (it held fewer than ``keep`` contributions that are not zero, and
        # every older row ranks above them: 100 ms for one country at 1M events), the
        # window's largest are read as the few largest of each block it covers.
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {n['stem']}_contrib_block_rank ON {n['contrib']} "
            f"(subject, class, live, {_BLOCK_OF_DAY}, rank, key, seq)"
        )

    def finish_bulk(self, store: ViewStore, cursor: Any, table: Table, generation: int) -> None:
        """After a rebuild's load: every bucket and subject from the rows, by SQL."""
        n = self.names(store, table, generation)
        cursor.execute(f"DELETE FROM {n['bucket']}")
        cursor.execute(
            f"INSERT INTO {n['bucket']} (subject, class, level, day, era, s_act, s_tgt, n) "
            "SELECT subject, class, 0, day, era, "
            "SUM(CASE WHEN acted = 1 THEN scaled ELSE 0 END), "
            "SUM(CASE WHEN acted = 1 THEN 0 ELSE scaled END), COUNT(*) "
            f"FROM {n['contrib']} WHERE live = 1 AND pair = 0 GROUP BY subject, class, day, era"
        )
        cursor.execute(
            f"INSERT INTO {n['bucket']} (subject, class, level, day, era, s_act, s_tgt, n) "
            f"SELECT subject, class, 1, {_BLOCK_OF_DAY}, era, SUM(s_act), SUM(s_tgt), SUM(n) "
            f"FROM {n['bucket']} WHERE level = 0 GROUP BY subject, class, {_BLOCK_OF_DAY}, era"
        )
        cursor.execute(
            f"INSERT INTO {n['subject']} (subject) SELECT DISTINCT subject FROM {n['contrib']} "
            "WHERE pair = 0 ON CONFLICT (subject) DO NOTHING"
        )

    def drop(self, store: ViewStore, cursor: Any, table: Table, generation: int) -> None:
        n = self.names(store, table, generation)
        for name in ("contrib", "bucket", "meta", "subject"):
            cursor.execute(f"DROP TABLE IF EXISTS {n[name]}")

    def write(
        self,
        store: ViewStore,
        cursor: Any,
        table: Table,
        generation: int,
        states: Mapping[str, Mapping[str, Any]],
        existing: set[str] | frozenset[str],
        *,
        bulk: bool,
    ) -> dict[str, Any]:
        """Write the rows of ``states`` within ``cursor``'s transaction; the states to store."""
        n = self.names(store, table, generation)
        changes = changes_of(states, existing)
        touched: set[tuple[str, int, int]] = set()
        sql = store.sql
        if changes.replaced:
            for start in range(0, len(changes.replaced), 500):
                chunk = changes.replaced[start : start + 500]
                marks = ",".join("?" * len(chunk))
                if not bulk:
                    cursor.execute(
                        sql(f"SELECT subject, class, day FROM {n['contrib']} "
                            f"WHERE pair = 0 AND key IN ({marks})"),
                        chunk,
                    )  # fmt: skip
                    touched.update(
                        (row["subject"], row["class"], row["day"]) for row in cursor.fetchall()
                    )
                cursor.execute(sql(f"DELETE FROM {n['contrib']} WHERE key IN ({marks})"), chunk)
        if changes.closes:
            if not bulk:
                vids = [vid for _, vid in changes.closes]
                for start in range(0, len(vids), 500):
                    ids = vids[start : start + 500]
                    cursor.execute(
                        sql(f"SELECT subject, class, day FROM {n['contrib']} "
                            f"WHERE pair = 0 AND vid IN ({','.join('?' * len(ids))})"),
                        ids,
                    )  # fmt: skip
                    touched.update(
                        (row["subject"], row["class"], row["day"]) for row in cursor.fetchall()
                    )
            cursor.executemany(
                sql(f"UPDATE {n['contrib']} SET known_to = ?, live = 0 WHERE vid = ?"),
                changes.closes,
            )
        if changes.inserts:
            cursor.executemany(
                sql(
                    f"INSERT INTO {n['contrib']} ({', '.join(_ROW_COLUMNS)}) "
                    f"VALUES ({','.join('?' * len(_ROW_COLUMNS))})"
                ),
                changes.inserts,
            )
            if not bulk:
                touched.update((row[1], row[8], row[11]) for row in changes.inserts if not row[2])
                cursor.executemany(
                    sql(f"INSERT INTO {n['subject']} (subject) VALUES (?) "
                        "ON CONFLICT (subject) DO NOTHING"),
                    sorted({(row[1],) for row in changes.inserts if not row[2]}),
                )  # fmt: skip
        if touched:
            self._recompute(store, cursor, n, sorted(touched))
        if changes.known_max > -math.inf:
            cursor.execute(
                sql(
                    f"INSERT INTO {n['meta']} (id, known_max) VALUES (1, ?) ON CONFLICT (id) "
                    f"DO UPDATE SET known_max = CASE WHEN excluded.known_max > "
                    f"{n['meta']}.known_max THEN excluded.known_max "
                    f"ELSE {n['meta']}.known_max END"
                ),
                (changes.known_max,),
            )
        return {key: compact(state) for key, state in states.items()}

    @staticmethod
    def _recompute(
        store: ViewStore, cursor: Any, n: Mapping[str, str], touched: list[tuple[str, int, int]]
    ) -> None:
        sql = store.sql
        cursor.executemany(
            sql(
                f"DELETE FROM {n['bucket']} "
                "WHERE subject = ? AND class = ? AND level = 0 AND day = ?"
            ),
            touched,
        )
        cursor.executemany(
            sql(
                f"INSERT INTO {n['bucket']} (subject, class, level, day, era, s_act, s_tgt, n) "
                "SELECT subject, class, 0, day, era, "
                "SUM(CASE WHEN acted = 1 THEN scaled ELSE 0 END), "
                "SUM(CASE WHEN acted = 1 THEN 0 ELSE scaled END), COUNT(*) "
                f"FROM {n['contrib']} WHERE subject = ? AND class = ? AND live = 1 AND day = ? "
                "GROUP BY subject, class, day, era"
            ),
            touched,
        )
        blocks = sorted({(subject, klass, day // BLOCK_DAYS) for subject, klass, day in touched})
        cursor.executemany(
            sql(
                f"DELETE FROM {n['bucket']} "
                "WHERE subject = ? AND class = ? AND level = 1 AND day = ?"
            ),
            blocks,
        )
        cursor.executemany(
            sql(
                f"INSERT INTO {n['bucket']} (subject, class, level, day, era, s_act, s_tgt, n) "
                "SELECT subject, class, 1, ?, era, SUM(s_act), SUM(s_tgt), SUM(n) "
                f"FROM {n['bucket']} WHERE subject = ? AND class = ? AND level = 0 "
                "AND day >= ? AND day <= ? GROUP BY subject, class, era"
            ),
            [
                (block, subject, klass, block * BLOCK_DAYS, block * BLOCK_DAYS + BLOCK_DAYS - 1)
                for subject, klass, block in blocks
            ],
        )


STORAGE: Final = EscalationStorage()


# ---------------------------------------------------------------------- reading


@dataclass
class Sums:
    """One subject's score at one valid time, split as ``escalation.Score`` is."""

    score: float = 0.0
    actor: float = 0.0
    target: float = 0.0
    developments: int = 0
    #: How many developments of each half-life class counted.
    by_class: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One contribution row as the full path and the top contributions read it."""

    vid: int
    subject: str
    key: str
    seq: int
    dev: str
    coll: int
    kind: str
    half_life: float
    occurred: float
    base: float
    share: float
    acted: int
    known_from: float
    known_to: float | None

    @property
    def resource(self) -> str:
        return f"{COLLECTIONS[self.coll]}/{self.key}"

    @property
    def development(self) -> str:
        return self.dev or self.key


_READ_COLUMNS: Final = (
    "vid, subject, key, seq, dev, coll, kind, half_life, occurred, base, share, acted, "
    "known_from, known_to"
)


def _row(raw: Any) -> Row:
    return Row(
        int(raw["vid"]), str(raw["subject"]), str(raw["key"]), int(raw["seq"]), str(raw["dev"]),
        int(raw["coll"]), str(raw["kind"]), float(raw["half_life"]), float(raw["occurred"]),
        float(raw["base"]), float(raw["share"]), int(raw["acted"]), float(raw["known_from"]),
        None if raw["known_to"] is None else float(raw["known_to"]),
    )  # fmt: skip


def known_max(store: ViewStore, table: Table, generation: int) -> float:
    n = STORAGE.names(store, table, generation)
    rows = store.query(f"SELECT known_max FROM {n['meta']} WHERE id = 1")
    return float(rows[0]["known_max"]) if rows else -math.inf


def _windows(at: float) -> list[tuple[int, int, float, float]]:
    """(window, class, lo, hi) for the valid time ``at`` (window 0) and the trend's (1)."""
    found = []
    for window, moment in enumerate((at, at - p.TREND_DAYS * DAY)):
        for half_life, klass in CLASSES.items():
            found.append((window, klass, moment - p.HORIZON_HALF_LIVES * half_life * DAY, moment))
    return found


def _by_era(start: int, end: int, width: int, half_life: float) -> list[tuple[int, int, int]]:
    """(era, first, last) pieces of the buckets ``start..end`` (each ``width`` days), each
    piece within one era."""
    pieces = []
    while start <= end:
        era = era_of(start * width, half_life)
        era_end_day = math.ceil((era + 1) * ERA_HALF_LIVES * half_life) - 1
        piece_end = min(end, era_end_day // width)
        pieces.append((era, start, piece_end))
        start = piece_end + 1
    return pieces


def _cover(first: int, last: int) -> list[tuple[int, int, int]]:
    """(level, first, last) ranges of buckets that cover the days ``first..last`` once:
    whole blocks inside, days at the ends."""
    if last < first:
        return []
    block_first = -((-first) // BLOCK_DAYS)
    block_last = (last + 1) // BLOCK_DAYS - 1
    if block_first > block_last:
        return [(0, first, last)]
    ranges = [(1, block_first, block_last)]
    if first < block_first * BLOCK_DAYS:
        ranges.append((0, first, block_first * BLOCK_DAYS - 1))
    if (block_last + 1) * BLOCK_DAYS <= last:
        ranges.append((0, (block_last + 1) * BLOCK_DAYS, last))
    return ranges


#: Where a sums statement's parameters take the query's subjects.
_SUBJECTS: Final = object()


@functools.lru_cache(maxsize=256)
def _sums_plan(
    bucket: str, contrib: str, subject_table: str, meta: str, at: float, count: int | None
) -> tuple[str, tuple[object, ...]]:
    """The statement of :func:`current_country_sums` for ``at`` and ``count`` subjects
    (None: every country), and its parameters with ``_SUBJECTS`` where the subjects go.
    Built once per valid time: building it cost a third of a country's query."""
    chosen_params: list[object] = [] if count is None else [_SUBJECTS]
    if count is None:
        chosen = f"IN (SELECT subject FROM {subject_table})"
    else:
        chosen = f"IN ({','.join('?' * count)})"
    by, group = "subject", " GROUP BY subject"
    if count == 1:
        by, group = "MIN(subject)", ""
    parts: list[str] = []
    params: list[object] = []
    for window, klass, lo, hi in _windows(at):
        d_lo, d_hi = int(lo // DAY), int(hi // DAY)
        # A partial day at an edge is either left out of the buckets and its rows inside
        # the window added, or kept and its rows outside subtracted: whichever reads fewer
        # rows (none when the edge falls at midnight, as "on that date" does).
        edges: list[tuple[int, str, tuple[Any, ...]]] = []
        if lo - d_lo * DAY <= DAY / 2:
            first = d_lo
            edges.append((-1, "day = ? AND occurred < ?", (d_lo, lo)))
        else:
            first = d_lo + 1
            edges.append((1, "day = ? AND occurred >= ?", (d_lo, lo)))
        if hi - d_hi * DAY >= DAY / 2:
            last = d_hi
            edges.append((-1, "day = ? AND occurred > ?", (d_hi, hi)))
        else:
            last = d_hi - 1
            edges.append((1, "day = ? AND occurred <= ?", (d_hi, hi)))
        half_life = HALF_LIVES[klass]
        # Each range lies within one era (known here), so a part sums without grouping by
        # it: with one subject, a part is one row and needs no sort.
        for level, start, end in _cover(first, last):
            width = BLOCK_DAYS if level else 1
            for era, era_first, era_last in _by_era(start, end, width, half_life):
                parts.append(
                    f"SELECT {window} AS w, {klass} AS c, 1 AS sign, {by} AS subject, "
                    f"{era} AS era, SUM(s_act) AS a, SUM(s_tgt) AS t, SUM(n) AS n "
                    f"FROM {bucket} WHERE subject {chosen} AND class = ? "
                    f"AND level = {level} AND day >= ? AND day <= ?{group}"
                )
                params += [*chosen_params, klass, era_first, era_last]
        for sign, day, bound in edges:
            parts.append(
                f"SELECT {window} AS w, {klass} AS c, {sign} AS sign, {by} AS subject, "
                f"{era_of(int(bound[0]), half_life)} AS era, "
                "SUM(CASE WHEN acted = 1 THEN scaled ELSE 0 END) AS a, "
                "SUM(CASE WHEN acted = 1 THEN 0 ELSE scaled END) AS t, COUNT(*) AS n "
                f"FROM {contrib} WHERE subject {chosen} AND class = ? AND live = 1 AND "
                f"{day}{group}"
            )
            params += [*chosen_params, klass, *bound]
    # The knowledge time of the latest version, in the same statement (a part of its own:
    # window -1): whether these sums answer ``as_of`` at all.
    parts.append(
        "SELECT -1 AS w, 0 AS c, 0 AS sign, '' AS subject, 0 AS era, known_max AS a, "
        f"0 AS t, 1 AS n FROM {meta} WHERE id = 1"
    )
    return " UNION ALL ".join(parts), tuple(params)


def fast_country_sums(
    store: ViewStore,
    table: Table,
    generation: int,
    at: float,
    subjects: Sequence[str] | None,
) -> dict[str, tuple[Sums, Sums]]:
    """Every (or each of ``subjects``') country's (now, 30 days earlier) sums from live
    versions: one statement."""
    found = current_country_sums(store, table, generation, at, subjects, as_of=math.inf)
    assert found is not None  # (every version is known at an infinite knowledge time)
    return found


def current_country_sums(
    store: ViewStore,
    table: Table,
    generation: int,
    at: float,
    subjects: Sequence[str] | None,
    *,
    as_of: float,
) -> dict[str, tuple[Sums, Sums]] | None:
    """As :func:`fast_country_sums` if ``as_of`` knows every version stored, else None
    (the caller takes the full path): one statement, which also reads ``known_max``."""
    n = STORAGE.names(store, table, generation)
    statement, layout = _sums_plan(
        n["bucket"], n["contrib"], n["subject"], n["meta"], at,
        None if subjects is None else len(subjects),
    )  # fmt: skip
    params: list[Any] = []
    for piece in layout:
        if piece is _SUBJECTS:
            params += subjects or ()
        else:
            params.append(piece)
    moments = (at, at - p.TREND_DAYS * DAY)
    totals: dict[str, tuple[Sums, Sums]] = {}
    for raw in store.query(statement, tuple(params)):
        if int(raw["w"]) < 0:
            if as_of < float(raw["a"]):
                return None
            continue
        if not raw["n"]:
            continue  # a part that summed no row (without grouping it still answers)
        subject = str(raw["subject"])
        entry = totals.get(subject)
        if entry is None:
            entry = totals[subject] = (Sums(), Sums())
        sums = entry[int(raw["w"])]
        sign = int(raw["sign"])
        scale = sign * factor(moments[int(raw["w"])], int(raw["era"]), HALF_LIVES[int(raw["c"])])
        sums.actor += scale * float(raw["a"])
        sums.target += scale * float(raw["t"])
        sums.developments += sign * int(raw["n"])
        klass = int(raw["c"])
        sums.by_class[klass] = sums.by_class.get(klass, 0) + sign * int(raw["n"])
    for subject, (now, then) in list(totals.items()):
        if not now.developments and not then.developments:
            # Everything a bucket held was subtracted again at an edge.
            del totals[subject]
            continue
        for sums in (now, then):
            if not sums.developments:
                # What remains of cancelling terms is float dust: nothing counted.
                sums.actor = sums.target = 0.0
            sums.score = sums.actor + sums.target
    return totals


#: A class with at most this many developments in the window reads them all (by day);
#: a denser one reads its largest by rank.
SPARSE_CLASS = 64


#: How many rows by rank a dense class's first reading passes at most.
RANK_PREFIX = 16


def top_rows(
    store: ViewStore,
    table: Table,
    generation: int,
    at: float,
    subjects: Sequence[str],
    keep: int,
    counts: Mapping[int, int],
) -> list[Row]:
    """Candidates for the top ``keep`` contributions at ``at`` among live versions of
    ``subjects``, given how many of each class count (``counts``): one statement, two
    when a dense class needs its second reading.

    A class with few in the window reads just those, by day. A denser one first reads the
    first ``RANK_PREFIX`` rows by rank and keeps those in the window: within a window rank
    orders contributions as their value at ``at`` does, so when at least ``keep`` of them
    are in it they are the largest. Otherwise (rows outside the window outrank it: older
    ones with larger values, or later ones) it reads, in each block of ``BLOCK_DAYS`` days
    the window covers, the ``keep`` largest in the window: bounded by the number of blocks,
    not by the rows outside the window.
    """
    if not keep:
        return []
    n = STORAGE.names(store, table, generation)
    marks = ",".join("?" * len(subjects))
    parts, params = [], []
    dense: dict[int, tuple[float, int, int]] = {}
    for half_life, klass in CLASSES.items():
        counted = counts.get(klass, 0)
        if counted <= 0:
            continue
        lo = at - p.HORIZON_HALF_LIVES * half_life * DAY
        first_day, last_day = int(lo // DAY), int(at // DAY)
        if counted <= SPARSE_CLASS:
            parts.append(
                f"SELECT {_READ_COLUMNS} FROM {n['contrib']} WHERE subject IN ({marks}) "
                "AND class = ? AND live = 1 AND day >= ? AND day <= ? AND occurred >= ? "
                "AND occurred <= ?"
            )
            params += [*subjects, klass, first_day, last_day, lo, at]
            continue
        dense[klass] = (lo, first_day, last_day)
        parts.append(
            f"SELECT * FROM (SELECT {_READ_COLUMNS} FROM (SELECT {_READ_COLUMNS}, rank "
            f"FROM {n['contrib']} "
            f"WHERE subject IN ({marks}) AND class = ? AND live = 1 "
            f"ORDER BY rank DESC, key DESC, seq DESC LIMIT ?) AS p{klass} "
            "WHERE occurred >= ? AND occurred <= ? ORDER BY rank DESC, key DESC, seq DESC "
            f"LIMIT ?) AS c{klass}"
        )
        params += [*subjects, klass, RANK_PREFIX, lo, at, keep * len(subjects)]
    if not parts:
        return []
    rows = [_row(raw) for raw in store.query(" UNION ALL ".join(parts), tuple(params))]
    found: dict[int, int] = {}
    for row in rows:
        found[CLASSES[row.half_life]] = found.get(CLASSES[row.half_life], 0) + 1
    wanted = keep * len(subjects)
    short = {klass: edges for klass, edges in dense.items() if found.get(klass, 0) < wanted}
    if not short:
        return rows
    rows = [row for row in rows if CLASSES[row.half_life] not in short]
    parts, params = [], []
    for klass, (lo, first_day, last_day) in short.items():
        for block in range(first_day // BLOCK_DAYS, last_day // BLOCK_DAYS + 1):
            for subject in subjects:
                parts.append(
                    f"SELECT * FROM (SELECT {_READ_COLUMNS} FROM {n['contrib']} "
                    f"WHERE subject = ? AND class = ? AND live = 1 AND {_BLOCK_OF_DAY} = ? "
                    "AND occurred >= ? AND occurred <= ? ORDER BY rank DESC, key DESC, "
                    f"seq DESC LIMIT ?) AS b{len(parts)}"
                )
                params += [subject, klass, block, lo, at, keep]
    rows += [_row(raw) for raw in store.query(" UNION ALL ".join(parts), tuple(params))]
    return rows


def window_rows(
    store: ViewStore,
    table: Table,
    generation: int,
    subjects: Sequence[str],
    start: float,
    end: float,
    *,
    live_only: bool,
    as_of: float | None = None,
) -> list[Row]:
    """Every row of ``subjects`` that may count at a valid time in ``[start, end]`` (as known
    at ``as_of``; live ones only if ``live_only``), in the full scan's order."""
    n = STORAGE.names(store, table, generation)
    marks = ",".join("?" * len(subjects))
    if subjects:
        where, params = f"subject IN ({marks})", list(subjects)
    else:
        where, params = f"subject IN (SELECT subject FROM {n['subject']})", []
    parts = []
    all_params: list[Any] = []
    for half_life, klass in CLASSES.items():
        lo = start - p.HORIZON_HALF_LIVES * half_life * DAY
        live = "live = 1" if live_only else "live IN (0, 1)"
        known = ""
        extra: list[Any] = []
        if as_of is not None:
            known = " AND known_from <= ? AND (known_to IS NULL OR known_to > ?)"
            extra = [as_of, as_of]
        parts.append(
            f"SELECT {_READ_COLUMNS} FROM {n['contrib']} WHERE {where} AND class = ? AND {live} "
            f"AND day >= ? AND day <= ?{known}"
        )
        all_params += [*params, klass, int(lo // DAY), int(end // DAY), *extra]
    rows = [_row(raw) for raw in store.query(" UNION ALL ".join(parts), tuple(all_params))]
    rows.sort(key=lambda row: (row.key, row.seq, row.vid))
    return rows


def known_at(rows: Iterable[Row], as_of: float) -> list[Row]:
    """Per development and subject, the version known at ``as_of`` (the first that was, as
    :func:`projections.escalation.version_known_at` picks it)."""
    chosen: dict[tuple[str, int, str], Row] = {}
    for row in rows:
        if not (row.known_from <= as_of and (row.known_to is None or as_of < row.known_to)):
            continue
        ident = (row.key, row.seq, row.subject)
        if ident not in chosen:
            chosen[ident] = row
    return sorted(chosen.values(), key=lambda row: (row.key, row.seq, row.vid))


def value_at(row: Row, at: float) -> float | None:
    """The row's contribution at ``at``, None outside its window (exactly as
    :func:`projections.escalation.in_window` and ``decayed`` compute it)."""
    age_days = (at - row.occurred) / DAY
    if not 0 <= age_days <= p.HORIZON_HALF_LIVES * row.half_life:
        return None
    return row.share * float(row.base * 0.5 ** (age_days / row.half_life))


def pair_rows(rows: Iterable[Row], actor: str, target: str, ordered: bool) -> list[Row]:
    """The rows of a pair: ``actor>target``, and (unordered) ``target>actor`` as the
    target's part, a development counted once (as the actor's when it went both ways)."""
    forward, backward = f"{actor}>{target}", f"{target}>{actor}"
    chosen: dict[tuple[str, int], Row] = {}
    for row in rows:
        ident = (row.key, row.seq)
        if row.subject == forward:
            chosen[ident] = row
        elif not ordered and row.subject == backward and ident not in chosen:
            chosen[ident] = Row(**{**row.__dict__, "acted": 0})
    return sorted(chosen.values(), key=lambda row: (row.key, row.seq, row.vid))


def score_rows(rows: Iterable[Row], at: float) -> Sums:
    """A subject's sums at ``at`` over rows already chosen (one per development)."""
    sums = Sums()
    for row in rows:
        value = value_at(row, at)
        if value is None:
            continue
        sums.score += value
        if row.acted:
            sums.actor += value
        else:
            sums.target += value
        sums.developments += 1
    return sums


def top(rows: Iterable[Row], at: float, keep: int) -> list[tuple[Row, float]]:
    """The ``keep`` largest contributions at ``at``, largest first, ties in scan order, as
    ``score_states`` keeps them (the largest by (|value|, scan position))."""
    heap: list[tuple[float, tuple[str, int, int], Row, float]] = []
    for row in sorted(rows, key=lambda row: (row.key, row.seq, row.vid)):
        value = value_at(row, at)
        if value is None:
            continue
        entry = (abs(value), (row.key, row.seq, row.vid), row, value)
        if len(heap) < keep:
            heapq.heappush(heap, entry)
        else:
            heapq.heappushpop(heap, entry)
    ranked = sorted(heap, key=lambda entry: (-entry[0], entry[1]))
    return [(row, value) for _, _, row, value in ranked]


def country_totals(rows: Iterable[Row], at: float) -> dict[str, Sums]:
    """Every country's sums at ``at`` over rows known at the knowledge time."""
    totals: dict[str, Sums] = {}
    for row in rows:
        value = value_at(row, at)
        if value is None:
            continue
        entry = totals.setdefault(row.subject, Sums())
        entry.score += value
        entry.developments += 1
        if row.acted:
            entry.actor += value
        else:
            entry.target += value
    return totals
