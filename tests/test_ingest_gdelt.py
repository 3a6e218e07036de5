"""GDELT ingestion over the real export in ../shared/data/gdelt, through a real server.

Counts are checked against the file read independently (the csv module, by column name),
not against the reader under test.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pycountry
import pytest

from service import logs
from service.api import translation as tr
from service.cli.ingest import FollowState, Progress, Tally, follow, gdelt_outcomes, send_all
from service.cli.main import main
from service.client import FlashpointClient
from service.domain import vocabulary
from service.domain.commands import COMMANDS, ReportDevelopment
from service.ingest import cameo, gdelt
from service.ingest.fips import FIPS_TO_ISO3
from service.ingest.mapping import Party, unknown_actors
from service.ingest.records import Mapped, Skipped
from tests.api_support import cli_logging_restored, running_server


@pytest.fixture(autouse=True)
def process_logging_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with cli_logging_restored(monkeypatch):
        yield


ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "data" / "gdelt" / "20170601234500.export.CSV"
if not SAMPLE.exists():  # a worktree beside the main checkout
    SAMPLE = Path("/work/shared/data/gdelt/20170601234500.export.CSV")
ROWS = 2393
#: The 61 columns, as the sample's README (and GDELT's codebook) lists them.
ACTOR_FIELDS = [
    "Code",
    "Name",
    "CountryCode",
    "KnownGroupCode",
    "EthnicCode",
    "Religion1Code",
    "Religion2Code",
    "Type1Code",
    "Type2Code",
    "Type3Code",
]
GEO_FIELDS = ["Type", "FullName", "CountryCode", "ADM1Code", "ADM2Code", "Lat", "Long", "FeatureID"]
NAMES = [
    *["GLOBALEVENTID", "SQLDATE", "MonthYear", "Year", "FractionDate"],
    *(f"Actor{n}{name}" for n in (1, 2) for name in ACTOR_FIELDS),
    *["IsRootEvent", "EventCode", "EventBaseCode", "EventRootCode", "QuadClass", "GoldsteinScale"],
    *["NumMentions", "NumSources", "NumArticles", "AvgTone"],
    *(f"{who}Geo_{name}" for who in ("Actor1", "Actor2", "Action") for name in GEO_FIELDS),
    "DATEADDED",
    "SOURCEURL",
]

CODED = cameo.CODED_COMMAND in COMMANDS
UNKNOWN = unknown_actors()

pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="the shared GDELT sample is absent")


def sample_rows() -> list[dict[str, str]]:
    with SAMPLE.open(encoding="utf-8", newline="") as text:
        return list(csv.DictReader(text, fieldnames=NAMES, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def outcomes() -> list[Mapped | Skipped]:
    return list(gdelt_outcomes(SAMPLE))


def known(row: dict[str, str], actor: str) -> bool:
    country = row[f"{actor}CountryCode"]
    if country in cameo.REGIONS:
        return False
    return country in iso_countries() or row[f"{actor}KnownGroupCode"] in cameo.ORGANISATIONS


def maps(row: dict[str, str]) -> bool:
    """Whether the README's rules give this row a command (read by column name)."""
    if row["ActionGeo_CountryCode"] == "KV":
        return False
    actor = known(row, "Actor1")
    target = known(row, "Actor2") and not (
        row["Actor2CountryCode"] and row["Actor2CountryCode"] == row["Actor1CountryCode"]
    )
    if not (actor or target or row["ActionGeo_CountryCode"]):
        return False
    entry = cameo.entry_for(row["EventCode"])
    if entry.kind is not None:
        opening = entry.kind in ("sanctions_imposed", "negotiations_proposed")
        if (actor or (UNKNOWN and not opening)) and (
            target or not cameo.FILLERS[entry.kind].needs_target
        ):
            return True
    return CODED and (actor or UNKNOWN)


def iso_countries() -> frozenset[str]:
    return frozenset(country.alpha_3 for country in pycountry.countries)


# ---------------------------------------------------------------------- mapping


def test_the_sample_is_what_its_readme_says() -> None:
    rows = sample_rows()
    assert len(rows) == ROWS
    assert all(None not in row and row["SOURCEURL"] for row in rows)  # 61 columns each


def test_every_row_is_mapped_or_skipped_with_a_reason(outcomes: list[Mapped | Skipped]) -> None:
    assert len(outcomes) == ROWS
    rows = sample_rows()
    skipped = [o for o in outcomes if isinstance(o, Skipped)]
    mapped = [o for o in outcomes if isinstance(o, Mapped)]
    assert len(skipped) + len(mapped) == ROWS
    assert all(o.reason for o in skipped)
    # Each row's id is its request id (mapped) or named in its skip, once.
    ids = [o.command.request_id or "" for o in mapped] + [f"gdelt-{o.row_id}" for o in skipped]
    assert sorted(ids) == sorted(f"gdelt-{row['GLOBALEVENTID']}" for row in rows)
    # Independent counts: rows located in Kosovo (FIPS KV, no ISO country) are skipped...
    kosovo = sum(1 for row in rows if row["ActionGeo_CountryCode"] == "KV")
    assert kosovo > 0
    assert Counter(o.reason for o in skipped)["location-not-iso"] == kosovo
    # ...and every mapped row is one the documented rules map, counted from the columns.
    expected = sum(1 for row in rows if maps(row))
    assert len(mapped) == expected


def test_mapped_rows_carry_the_row_as_the_issue_says(outcomes: list[Mapped | Skipped]) -> None:
    rows = {row["GLOBALEVENTID"]: row for row in sample_rows()}
    mapped = [o for o in outcomes if isinstance(o, Mapped)]
    assert mapped
    for outcome in mapped:
        command = outcome.command
        row = rows[(command.request_id or "").removeprefix("gdelt-")]
        evidence = command.evidence  # type: ignore[attr-defined]
        assert evidence.occurred_at.strftime("%Y%m%d") == row["SQLDATE"]
        assert evidence.precision == "day"
        assert evidence.reported_at.strftime("%Y%m%d%H%M%S") == row["DATEADDED"]
        assert evidence.sources[0].url == row["SOURCEURL"]
        assert (evidence.reliability, evidence.credibility) == tuple(
            gdelt.grade(int(row["NumSources"]), int(row["NumArticles"])).values()
        )


def test_fips_locations_become_iso_codes(outcomes: list[Mapped | Skipped]) -> None:
    """Every recorded location is an ISO country, the one GDELT's place name ends with."""
    rows = {row["GLOBALEVENTID"]: row for row in sample_rows()}
    located = 0
    differ = {"UK", "RP", "JA", "GM", "SF", "AS", "EI", "KS", "SP", "SW", "SZ", "IZ"}
    seen_differing = set()
    for outcome in outcomes:
        if not isinstance(outcome, Mapped) or not isinstance(outcome.command, ReportDevelopment):
            continue
        row = rows[(outcome.command.request_id or "").removeprefix("gdelt-")]
        location = outcome.command.location
        if not row["ActionGeo_CountryCode"]:
            assert location is None
            continue
        assert location is not None
        located += 1
        assert location.country in iso_countries()
        assert location.country == FIPS_TO_ISO3[row["ActionGeo_CountryCode"]]
        country = pycountry.countries.get(alpha_3=location.country)
        assert country is not None
        names = {
            country.name,
            getattr(country, "common_name", ""),
            getattr(country, "official_name", ""),
        }
        last = row["ActionGeo_FullName"].split(", ")[-1].lower()
        # GDELT's names where ISO's differ (Türkiye; Bosnia and Herzegovina; Palestine).
        aliases = {"turkey": "türkiye", "bosnia-herzegovina": "bosnia", "west bank": "palest"}
        last = aliases.get(last, last)
        assert any(last in n.lower() or n.lower() in last for n in names if n), last
        assert (location.latitude, location.longitude) == (
            float(row["ActionGeo_Lat"]),
            float(row["ActionGeo_Long"]),
        )
        if row["ActionGeo_CountryCode"] in differ:
            seen_differing.add(row["ActionGeo_CountryCode"])
    assert located > 0
    # FIPS codes that are not the ISO alpha-2 code did occur (UK is GB in ISO, RP is PH, ...).
    assert seen_differing


def test_the_table_covers_every_root_code_in_the_file() -> None:
    roots = {row["EventRootCode"] for row in sample_rows()}
    assert len(roots) == 20
    commands = {kind.command for kind in vocabulary.KINDS} | {cameo.CODED_COMMAND}
    for row in sample_rows():
        entry = cameo.entry_for(row["EventCode"])
        assert entry.command in commands
        assert row["EventCode"].startswith(row["EventRootCode"])
    # Every kind the table names exists in the vocabulary, with that CAMEO code recorded.
    for code, entry in cameo.TABLE.items():
        kind = vocabulary.by_kind(entry.kind or "")
        assert kind.coding_for(dict(entry.details)).cameo == code


def test_family_fallback_and_leading_zeros() -> None:
    assert cameo.entry_for("1383").details == {"threat_kind": "military"}
    assert cameo.entry_for("131").kind == "threat"
    assert cameo.entry_for("193").kind == "armed_clash"
    assert cameo.entry_for("151").kind is None  # a police alert is no military exercise
    assert cameo.entry_for("042").kind is None
    assert cameo.entry_for("036").kind == "negotiations_proposed"


def test_the_readme_shows_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert cameo.table_markdown() in readme


def test_regional_and_missing_actors_follow_the_documented_rule() -> None:
    line = SAMPLE.read_text().splitlines()[0].split("\t")
    line[gdelt.ACTOR1["country"]] = "WST"  # the West, not Samoa
    assert gdelt.party(line, gdelt.ACTOR1) == (None, "actor-is-a-region")
    line[gdelt.ACTOR1["country"]] = ""
    assert gdelt.party(line, gdelt.ACTOR1) == (None, "no-actor-country")
    line[gdelt.ACTOR1["group"]] = "NAT"
    assert gdelt.party(line, gdelt.ACTOR1)[0] == Party("NATO")
    line[gdelt.ACTOR1["country"]], line[gdelt.ACTOR1["type"]] = "RUS", "MIL"
    assert gdelt.party(line, gdelt.ACTOR1)[0] == Party("RUS", "military")


def test_malformed_lines_are_skipped_not_raised(tmp_path: Path) -> None:
    good = SAMPLE.read_text().splitlines()[0]
    bad_date = good.split("\t")
    bad_date[1] = "2017O601"
    path = tmp_path / "broken.export.CSV"
    path.write_text("\n".join(["only\tthree\tcolumns", good, "\t".join(bad_date), "x" * 50]) + "\n")
    reasons = [o.reason if isinstance(o, Skipped) else "mapped" for o in gdelt_outcomes(path)]
    assert reasons == ["malformed-row", "no-command-for-code"
                       if cameo.CODED_COMMAND not in COMMANDS else "mapped",
                       "bad-date", "malformed-row"]  # fmt: skip


def test_zip_directory_and_stdin_read_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcomes: list[Mapped | Skipped]
) -> None:
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    folder = tmp_path / "feed"
    folder.mkdir()
    (folder / "20170601233000.export.CSV").write_bytes(b"".join(lines[:1000]))
    with zipfile.ZipFile(folder / "20170601234500.export.CSV.zip", "w") as archive:
        archive.writestr("20170601234500.export.CSV", b"".join(lines[1000:]))
    (folder / "notes.txt").write_text("not an export")

    def ids(items: Iterator[Mapped | Skipped]) -> list[str]:
        return [o.command.request_id or "" if isinstance(o, Mapped) else o.row_id for o in items]

    expected = ids(iter(outcomes))
    assert ids(gdelt_outcomes(folder)) == expected
    assert ids(gdelt_outcomes(folder / "20170601234500.export.CSV.zip")) == expected[1000:]

    class Stdin:
        buffer = io.BytesIO(SAMPLE.read_bytes())

    monkeypatch.setattr("sys.stdin", Stdin)
    assert ids(gdelt_outcomes("-")) == expected


# ---------------------------------------------------------------------- through a server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def test_import_through_a_server_then_reimport_records_nothing(store_url: str) -> None:
    with running_server(store_url) as server, FlashpointClient(server.address) as client:
        first = send_all(client, gdelt_outcomes(SAMPLE))
        mapped = sum(1 for o in gdelt_outcomes(SAMPLE) if isinstance(o, Mapped))
        assert first.rows == ROWS
        assert (first.recorded, first.replayed, sum(first.rejected.values())) == (mapped, 0, 0)
        assert first.recorded + sum(first.skipped.values()) == ROWS
        second = send_all(client, gdelt_outcomes(SAMPLE))
        assert (second.recorded, second.replayed) == (0, mapped)
        assert second.skipped == first.skipped
        server.service.chainer.catch_up()
        verified = client.unary("audit", "VerifyLog", tr.request_of("audit", "VerifyLog"))
        assert verified.intact, verified.summary
        assert verified.events >= mapped


def test_cli_ingest_twice_then_verify(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = ["--store", sqlite_url, "--log-level", "error"]
    assert main([*store, "ingest", "gdelt", str(SAMPLE), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["rows"] == ROWS and first["recorded"] > 0 and first["replayed"] == 0
    assert first["recorded"] + sum(first["skipped"].values()) == ROWS
    assert main([*store, "ingest", "gdelt", str(SAMPLE)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{ROWS} rows: 0 recorded, {first['recorded']} replayed, ")
    assert "location-not-iso" in text
    assert main([*store, "verify"]) == 0
    assert capsys.readouterr().out.startswith("intact up to position")


def test_cli_ingest_through_server_flag(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The in-process server logs as this process is configured: to stderr, as the CLI does.
    logs.configure_logging("error", "json")
    with running_server(sqlite_url) as server:
        code = main(["--log-level", "error", "ingest", "gdelt", str(SAMPLE), "--json",
                     "--server", server.address])  # fmt: skip
        assert code == 0
        assert json.loads(capsys.readouterr().out)["recorded"] > 0


def test_cli_refuses_what_it_cannot_read(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", sqlite_url, "--log-level", "error"]
    assert main([*store, "ingest", "gdelt", str(tmp_path / "absent.CSV")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    assert main([*store, "ingest", "gdelt", str(tmp_path / "bad.zip")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main([*store, "ingest", "gdelt"]) == 2


# ---------------------------------------------------------------------- --follow


def wait_for(condition: object, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_follow_ingests_each_new_file_once_and_resumes(tmp_path: Path, sqlite_url: str) -> None:
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "20170601233000.export.CSV").write_bytes(b"".join(lines[:1200]))
    state_path = tmp_path / "state.json"
    with running_server(sqlite_url) as server, FlashpointClient(server.address) as client:
        done: list[tuple[str, Tally]] = []
        stop = threading.Event()

        def run() -> None:
            state = FollowState(state_path)
            follow(feed, state, client, stop, poll=0.05, settle=0.0,
                   on_file=lambda name, tally: done.append((name, tally)))  # fmt: skip

        worker = threading.Thread(target=run)
        worker.start()
        try:
            wait_for(lambda: len(done) == 1)
            # A file dropped later is picked up by the same watch.
            (feed / "20170601234500.export.CSV").write_bytes(b"".join(lines[1200:]))
            wait_for(lambda: len(done) == 2)
            time.sleep(0.3)  # several more polls: nothing is taken twice
        finally:
            stop.set()
            worker.join(30)
        assert [name for name, _ in done] == ["20170601233000.export.CSV",
                                               "20170601234500.export.CSV"]  # fmt: skip
        assert [tally.rows for _, tally in done] == [1200, ROWS - 1200]
        assert all(tally.replayed == 0 for _, tally in done)
        recorded = sum(tally.recorded for _, tally in done)
        assert recorded == sum(1 for o in gdelt_outcomes(SAMPLE) if isinstance(o, Mapped))

        # A restart reads the state and sends nothing again.
        state = FollowState(state_path)
        assert set(state.done) == {name for name, _ in done}
        again: list[str] = []
        stop = threading.Event()
        worker = threading.Thread(target=lambda: follow(
            feed, state, client, stop, poll=0.05, settle=0.0,
            on_file=lambda name, tally: again.append(name)))  # fmt: skip
        worker.start()
        time.sleep(0.5)
        (feed / "20170601240000.export.CSV").write_bytes(b"".join(lines[:10]))
        wait_for(lambda: again == ["20170601240000.export.CSV"])
        stop.set()
        worker.join(30)
        assert (
            json.loads(state_path.read_text())["done"]["20170601240000.export.CSV"]["recorded"] == 0
        )


def test_demo_gdelt_ranks_the_sample_and_explains_the_first_countries(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", sqlite_url, "--log-level", "error"]
    assert main([*store, "demo", "--gdelt", str(SAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Ingested {SAMPLE.name}: {ROWS} rows: ")
    assert "Escalation on 2017-06-01" in out
    ranked = [line.split()[1] for line in out.splitlines() if line[:3].strip().isdigit()]
    assert len(ranked) == 10
    explained = [
        line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("What drives")
    ]
    assert explained == ranked[:3]
    assert "GDELT 6611" in out  # contributors are named by their event and source
    # Loading it again records nothing new and ranks the same.
    assert main([*store, "demo", "--gdelt", str(SAMPLE)]) == 0
    again = capsys.readouterr().out
    assert f"{ROWS} rows: 0 recorded" in again
    assert again.split("Escalation on", 1)[1] == out.split("Escalation on", 1)[1]


def test_a_row_the_server_refuses_is_counted_with_its_code(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row revised after its import (same GLOBALEVENTID, other content) is not
    overwritten: the server refuses it (ALREADY_EXISTS), the other rows go on."""
    mapped_ids = {
        (o.command.request_id or "").removeprefix("gdelt-")
        for o in gdelt_outcomes(SAMPLE)
        if isinstance(o, Mapped)
    }
    lines = SAMPLE.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.split("\t")[0] in mapped_ids)
    first = tmp_path / "first.export.CSV"
    first.write_text("".join([*lines[:50], lines[index]]))
    fields = lines[index].rstrip("\n").split("\t")
    fields[gdelt.SOURCEURL] = "https://example.org/a-corrected-story"
    revised = tmp_path / "revised.export.CSV"
    revised.write_text("".join(lines[:50]) + "\t".join(fields) + "\n")
    store = ["--store", sqlite_url, "--log-level", "error"]
    assert main([*store, "ingest", "gdelt", str(first), "--json"]) == 0
    capsys.readouterr()
    assert main([*store, "ingest", "gdelt", str(revised), "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["rejected"] == {"ALREADY_EXISTS": 1}
    assert summary["rows"] == 51 and summary["recorded"] == 0
    assert summary["examples"]["ALREADY_EXISTS"][0].startswith(f"gdelt-{fields[0]}: ")


def test_progress_goes_to_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    outcomes = list(gdelt_outcomes(SAMPLE))
    for stream in (terminal, pipe):
        tally = Tally()
        progress = Progress(stream)
        for outcome in outcomes[:5]:
            tally.rows += 1
            if isinstance(outcome, Skipped):
                tally.skip(outcome)
            progress.update(tally, force=True)
        progress.done(tally)
    assert pipe.getvalue() == ""
    shown = terminal.getvalue()
    assert shown.startswith("\r1 rows") and "\r5 rows" in shown and shown.endswith("\n")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_follow_stops_cleanly_on_a_signal(
    tmp_path: Path, sqlite_url: str, stop_signal: signal.Signals
) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "20170601234500.export.CSV").write_bytes(SAMPLE.read_bytes())
    os.utime(feed / "20170601234500.export.CSV", (time.time() - 60, time.time() - 60))
    state = feed / ".flashpoint-ingest.json"
    script = "import sys; from service.cli.main import main; sys.exit(main(sys.argv[1:]))"
    process = subprocess.Popen(
        [sys.executable, "-c", script, "--store", sqlite_url, "--log-level", "error",
         "ingest", "gdelt", "--follow", str(feed), "--poll", "0.1", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        wait_for(state.exists, 120)
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert summary["rows"] == ROWS and summary["files"] == ["20170601234500.export.CSV"]
    assert json.loads(state.read_text())["done"]["20170601234500.export.CSV"]["rows"] == ROWS


def test_an_absent_server_stops_the_import_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.api_support import free_port

    address = f"127.0.0.1:{free_port()}"
    code = main(["--log-level", "error", "ingest", "gdelt", str(SAMPLE), "--server", address,
                 "--timeout", "1"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("flashpoint: UNAVAILABLE") and "run it again to resume" in err
    assert "Traceback" not in err
