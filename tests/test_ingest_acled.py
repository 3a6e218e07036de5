"""ACLED ingestion over rows written from ACLED's public codebook (its data needs a
licence, so none of it is here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli.main import main
from service.domain.commands import COMMANDS, ReportClash, ReportCodedEvent, ReportStrike
from service.ingest import acled, cameo
from service.ingest.mapping import Party
from service.ingest.records import Mapped, Skipped
from tests.api_support import cli_logging_restored


@pytest.fixture(autouse=True)
def process_logging_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with cli_logging_restored(monkeypatch):
        yield


ROWS = Path(__file__).parent / "fixtures" / "acled_codebook_rows.csv"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Mapped | Skipped]:
    result = {}
    for row in acled.read(ROWS):
        result[row["event_id_cnty"]] = acled.map_row(row)
    return result


def mapped(outcome: Mapped | Skipped) -> Mapped:
    assert isinstance(outcome, Mapped), outcome
    return outcome


def test_an_air_strike_is_a_strike_with_its_fatalities(
    outcomes: dict[str, Mapped | Skipped],
) -> None:
    strike = mapped(outcomes["UKR1001"]).command
    assert isinstance(strike, ReportStrike)
    assert strike.request_id == "acled-UKR1001"
    assert (strike.actor.country, strike.actor.organisation) == ("RUS", "military")
    assert strike.target is not None and strike.target.country == "UKR"
    assert strike.target.organisation == "Civilians"
    assert strike.fatalities == 4
    assert strike.location is not None
    assert (strike.location.country, strike.location.latitude) == ("UKR", 50.4501)
    assert strike.evidence.occurred_at.isoformat() == "2025-09-07T00:00:00+00:00"
    assert strike.evidence.precision == "day"
    assert int(strike.evidence.reported_at.timestamp()) == 1757300000  # type: ignore[union-attr]
    assert [s.name for s in strike.evidence.sources] == ["Kyiv Independent", "Ukrainska Pravda"]
    assert (strike.evidence.reliability, strike.evidence.credibility) == ("B", 2)
    assert "4 people were killed" in strike.evidence.summary


def test_battles_are_clashes_between_state_forces(outcomes: dict[str, Mapped | Skipped]) -> None:
    clash = mapped(outcomes["UKR1002"]).command
    assert isinstance(clash, ReportClash)
    assert (clash.actor.country, clash.target.country, clash.fatalities) == ("RUS", "UKR", 12)
    assert clash.evidence.credibility == 3  # one source
    # Shelling is CAMEO 194, a use of conventional force: a clash; the old date format reads.
    shelling = mapped(outcomes["PRK1008"]).command
    assert isinstance(shelling, ReportClash)
    assert (shelling.actor.country, shelling.target.country) == ("PRK", "KOR")
    assert shelling.evidence.occurred_at.isoformat() == "2024-01-15T00:00:00+00:00"


def test_rows_without_a_command_are_skipped_with_their_reason(
    outcomes: dict[str, Mapped | Skipped],
) -> None:
    def reason(row: str) -> str:
        outcome = outcomes[row]
        return outcome.reason if isinstance(outcome, Skipped) else "mapped"

    assert reason("UKR1005") == "no-cameo-equivalent"
    assert reason("XXX1006") == "unknown-event-type"
    assert reason("UKR1007") == "malformed-row"
    assert all(o.row_id for o in outcomes.values() if isinstance(o, Skipped))


def test_a_protest_is_a_coded_development_with_its_goldstein_value(
    outcomes: dict[str, Mapped | Skipped],
) -> None:
    protest = mapped(outcomes["POL1003"])
    assert protest.via == "coded"
    command = protest.command
    assert isinstance(command, ReportCodedEvent)
    assert (command.event_code, command.goldstein) == ("141", -6.5)
    assert (command.actor.country, command.actor.organisation) == ("POL", "Protesters")
    assert command.description == "Protests: Peaceful protest"


def test_an_actor_of_no_country_is_unknown(outcomes: dict[str, Mapped | Skipped]) -> None:
    # The Rapid Support Forces name no country: the clash counts for Sudan as its target.
    clash = mapped(outcomes["SDN1004"]).command
    assert isinstance(clash, ReportClash)
    assert clash.actor.unknown and clash.actor.country is None
    assert clash.target.country == "SDN" and clash.fatalities == 3
    # Both parties Syrian: the target is dropped, and a clash needs one, so it is coded.
    retaken = mapped(outcomes["SYR1009"])
    assert retaken.via == "coded"
    assert isinstance(retaken.command, ReportCodedEvent)
    assert retaken.command.event_code == "192" and retaken.command.target is None


def test_every_codebook_type_has_a_rule() -> None:
    codebook = {
        "Battles": {"Armed clash", "Government regains territory",
                    "Non-state actor overtakes territory"},
        "Explosions/Remote violence": {"Chemical weapon", "Air/drone strike", "Suicide bomb",
                                       "Shelling/artillery/missile attack",
                                       "Remote explosive/landmine/IED", "Grenade"},
        "Violence against civilians": {"Sexual violence", "Attack",
                                       "Abduction/forced disappearance"},
        "Protests": {"Peaceful protest", "Protest with intervention",
                     "Excessive force against protesters"},
        "Riots": {"Violent demonstration", "Mob violence"},
        "Strategic developments": {"Agreement", "Arrests", "Change to group/activity",
                                   "Disrupted weapons use", "Headquarters or base established",
                                   "Looting/property destruction",
                                   "Non-violent transfer of territory", "Other"},
    }  # fmt: skip
    assert set(acled.CAMEO_OF) == {(t, s) for t, subs in codebook.items() for s in subs}


def test_actor_names_follow_the_documented_rule() -> None:
    assert acled.party("Military Forces of Russia (2000-)") == (Party("RUS", "military"), "")
    assert acled.party("Police Forces of Ukraine (2019-)")[0] == Party("UKR", "police")
    assert acled.party("Protesters (Democratic Republic of Congo)")[0] == Party("COD", "Protesters")
    assert acled.party("Rapid Support Forces") == (None, "actor-not-a-country")
    assert acled.party("") == (None, "no-actor")


def test_cli_ingests_twice_and_refuses_a_file_that_is_not_acled(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", sqlite_url, "--log-level", "error"]
    assert main([*store, "ingest", "acled", str(ROWS), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["rows"] == 9
    assert first["recorded_by_kind"]["strike"] == 1
    assert first["recorded_by_kind"] == {"armed_clash": 3, "coded": 2, "strike": 1}
    assert first["skipped"] == {
        "malformed-row": 1, "no-cameo-equivalent": 1, "unknown-event-type": 1
    }  # fmt: skip
    assert first["skipped"]["malformed-row"] == 1
    assert main([*store, "ingest", "acled", str(ROWS), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["recorded"], second["replayed"]) == (0, first["recorded"])
    other = tmp_path / "other.csv"
    other.write_text("id,date\n1,2025-01-01\n")
    assert main([*store, "ingest", "acled", str(other)]) == 2
    assert "no column event_id_cnty" in capsys.readouterr().err


def test_every_acled_code_has_a_goldstein_value_and_a_table_entry() -> None:
    for code in filter(None, acled.CAMEO_OF.values()):
        assert code is not None and -10 <= acled.GOLDSTEIN[code] <= 10
        assert cameo.entry_for(code).command in {*COMMANDS, cameo.CODED_COMMAND}


def test_the_readme_shows_the_acled_table() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert acled.table_markdown() in readme
