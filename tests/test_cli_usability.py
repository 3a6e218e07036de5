"""What trips up a new user at the command line, as real ``flashpoint`` processes: one-line
errors (never a traceback), no store made by a typo, no flag silently dropped, the same
flags in the same places, tables for every query, and results on stdout, logs on stderr.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from service.cli.main import EXIT_OK, EXIT_USAGE
from tests.api_support import clean_env, flashpoint, free_port, run_flashpoint, running_server

ROOT = Path(__file__).resolve().parent.parent
COMMAND_SECONDS = 60.0
AT = "2025-09-13T12:00:00Z"
AS_OF = "2100-01-01T00:00:00Z"
INCURSION = ["--actor", "RUS", "--target", "POL", "--count", "3", "--source", "Reuters"]
#: The PostgreSQL server the suite may use (its tests are skipped without it).
POSTGRES = os.environ.get("FLASHPOINT_TEST_POSTGRES")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_flashpoint(*args, timeout=COMMAND_SECONDS)


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def one_line_error(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The one ``flashpoint: …`` line a refusal prints, having checked the exit code, that
    nothing went to stdout and that no traceback (nor pydantic's internals) showed."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert "errors.pydantic.dev" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("flashpoint: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert done.stdout == ""
    return lines[0]


def log_events(stderr: str) -> list[dict[str, Any]]:
    events = []
    for line in stderr.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and "event" in item:
            events.append(item)
    return events


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with the demo loaded (read only, by the tests that use it)."""
    store = url(tmp_path_factory.mktemp("demo") / "fp.db")
    done = run("--store", store, "demo")
    assert done.returncode == EXIT_OK, done.stderr
    return store


def query_json(store: str, *args: str) -> Any:
    done = run("--store", store, "--log-level", "warning", "query", "--json", *args)
    assert done.returncode == EXIT_OK, done.stderr
    return json.loads(done.stdout)


# ------------------------------------------------------------------ one-line errors


class TestOneLineErrors:
    def test_an_unreachable_postgresql_store(self) -> None:
        nowhere = "postgresql://postgres@127.0.0.1:1/nope"
        for args in (["verify"], ["query", "ranking"], ["report", "incursion", *INCURSION]):
            one_line_error(run("--store", nowhere, *args), EXIT_USAGE, "127.0.0.1")

    def test_serve_on_an_unreachable_postgresql_store(self) -> None:
        listen = f"127.0.0.1:{free_port()}"
        done = run("--store", "postgresql://postgres@127.0.0.1:1/nope", "serve", "--listen", listen)
        one_line_error(done, EXIT_USAGE, "127.0.0.1")

    @pytest.mark.skipif(POSTGRES is None, reason="FLASHPOINT_TEST_POSTGRES not set")
    def test_a_missing_postgresql_database(self) -> None:
        assert POSTGRES is not None
        missing = urlunsplit(urlsplit(POSTGRES)._replace(path="/flashpoint_no_such_database"))
        one_line_error(run("--store", missing, "verify"), EXIT_USAGE, "flashpoint_no_such_database")
        listen = f"127.0.0.1:{free_port()}"
        done = run("--store", missing, "serve", "--listen", listen)
        one_line_error(done, EXIT_USAGE, "flashpoint_no_such_database")

    def test_json_naming_a_missing_file(self, tmp_path: Path) -> None:
        missing = tmp_path / "missing.json"
        done = run(
            "--store", url(tmp_path / "fp.db"), "report", "incursion", "--json", str(missing)
        )
        one_line_error(done, EXIT_USAGE, "--json", str(missing))

    def test_seal_with_a_missing_or_non_pem_key(self, tmp_path: Path, demo: str) -> None:
        missing = tmp_path / "missing.pem"
        one_line_error(
            run("--store", demo, "seal", "--seal-key", str(missing)), EXIT_USAGE, str(missing)
        )
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("not a key\n")
        one_line_error(
            run("--store", demo, "seal", "--seal-key", str(garbage)), EXIT_USAGE, str(garbage)
        )

    def test_changes_that_are_not_json(self, tmp_path: Path) -> None:
        done = run(
            "--store", url(tmp_path / "fp.db"), "report", "correct",
            "--incident-id", "00000000-0000-0000-0000-000000000001", "--changes", "{count: 4",
        )  # fmt: skip
        one_line_error(done, EXIT_USAGE, "--changes")

    def test_a_store_that_is_not_a_url(self, tmp_path: Path) -> None:
        line = one_line_error(run("--store", "notaurl", "verify"), EXIT_USAGE, "--store")
        assert "validation error" not in line and "[type=" not in line


# ------------------------------------------------------------------ no store by mistake


READING = [
    ["query", "ranking"],
    ["query", "projections"],
    ["verify"],
    ["export"],
    ["replay"],
    ["rebuild", "escalation"],
    ["retry-quarantined", "escalation"],
    ["seal"],
]


class TestNoStoreByMistake:
    @pytest.mark.parametrize("args", READING, ids=[" ".join(args) for args in READING])
    def test_a_reading_command_on_a_missing_store_names_it_and_creates_nothing(
        self, tmp_path: Path, args: list[str]
    ) -> None:
        typo = tmp_path / "tpyo" / "fp.db"
        done = run("--store", url(typo), *args)
        assert done.returncode in (1, 2)
        one_line_error(done, done.returncode, str(typo))
        assert not typo.parent.exists()

    def test_creating_commands_create_it_and_say_so_once(self, tmp_path: Path) -> None:
        store = tmp_path / "new" / "fp.db"
        first = run("--store", url(store), "migrate")
        assert first.returncode == EXIT_OK, first.stderr
        created = [e for e in log_events(first.stderr) if e["event"] == "store.created"]
        assert len(created) == 1 and str(store) in json.dumps(created[0]), first.stderr
        again = run("--store", url(store), "migrate")
        assert again.returncode == EXIT_OK, again.stderr
        assert "store.created" not in again.stderr
        assert run("--store", url(store), "verify").returncode == EXIT_OK

    def test_report_creates_the_store(self, tmp_path: Path) -> None:
        store = tmp_path / "fp.db"
        done = run("--store", url(store), "report", "incursion", *INCURSION)
        assert done.returncode == EXIT_OK, done.stderr
        assert [e["event"] for e in log_events(done.stderr)].count("store.created") == 1

    def test_a_local_report_is_chained_before_the_command_ends(self, tmp_path: Path) -> None:
        # No server's chainer runs beside a local command: left unchained, the report would
        # verify as "unchained_old" (appended behind the service's back) a minute later.
        store = tmp_path / "fp.db"
        for request in ("local-1", "local-2"):
            done = run("--store", url(store), "report", "incursion", *INCURSION,
                       "--request-id", request)  # fmt: skip
            assert done.returncode == EXIT_OK, done.stderr
        verified = run("--store", url(store), "verify", "--json")
        assert verified.returncode == EXIT_OK, verified.stderr
        report = json.loads(verified.stdout)
        assert report["intact"] is True and report["unchained"] == 0, report
        assert report["events"] >= 2, report


# ------------------------------------------------------------------ nothing dropped or bent


class TestNothingDropped:
    @pytest.mark.parametrize(
        "flags",
        [
            ["--latitude", "200"],
            ["--longitude", "20"],
            ["--location-place", "Wyryki"],
            ["--location-region", "Lublin"],
            ["--actor-organisation", "military"],
        ],
        ids=lambda flags: flags[0],
    )
    def test_a_flag_that_needs_another_is_refused_naming_it(
        self, tmp_path: Path, flags: list[str]
    ) -> None:
        store = tmp_path / "fp.db"
        args = [*INCURSION, *flags]
        if flags[0] == "--actor-organisation":
            args = ["--target", "POL", "--count", "3", "--source", "Reuters", *flags]
        done = run("--store", url(store), "report", "incursion", *args)
        one_line_error(done, EXIT_USAGE, flags[0])
        assert not store.exists()

    def test_a_latitude_out_of_range_with_a_location_is_refused(self, tmp_path: Path) -> None:
        done = run(
            "--store", url(tmp_path / "fp.db"), "report", "incursion", *INCURSION,
            "--location", "POL", "--latitude", "200",
        )  # fmt: skip
        assert done.returncode == EXIT_USAGE
        assert "latitude" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ consistent flags


class TestConsistentFlags:
    def test_server_before_and_after_the_subcommand(self, tmp_path: Path) -> None:
        with running_server(url(tmp_path / "fp.db")) as server:
            address = server.address
            before = run("report", "--server", address, "incursion", *INCURSION)
            after = run("report", "incursion", *INCURSION, "--server", address)
            assert before.returncode == after.returncode == EXIT_OK, before.stderr + after.stderr
            for args in (
                ["query", "--server", address, "--json", "ranking"],
                ["query", "ranking", "--server", address, "--json"],
            ):
                done = run(*args)
                assert done.returncode == EXIT_OK, done.stderr
                assert "escalations" in json.loads(done.stdout)

    def test_every_id_flag_takes_the_printed_name(self, tmp_path: Path) -> None:
        store = url(tmp_path / "fp.db")

        def report(*args: str) -> dict[str, Any]:
            done = run("--store", store, "--log-level", "warning", "report", *args)
            assert done.returncode == EXIT_OK, done.stderr
            answer: dict[str, Any] = json.loads(done.stdout)
            return answer

        incident = report("incursion", *INCURSION)["resource"]
        regime = report(
            "sanctions-imposed", "--authority", "EU", "--target", "RUS", "--programme", "Russia",
            "--effective-from", "2025-01-01", "--expires-at", "2025-07-01", "--source", "EU",
        )["resource"]  # fmt: skip
        track = report(
            "negotiations-proposed", "--parties", "RUS,UKR", "--proposed-by", "RUS",
            "--subject", "ceasefire", "--source", "Reuters",
        )["resource"]  # fmt: skip
        assert incident.startswith("incidents/") and regime.startswith("sanctions/")
        assert track.startswith("negotiations/")
        report("dispute", "--incident-id", incident, "--party", "RUS", "--denial")
        report(
            "sanctions-extended", "--regime-id", regime, "--expires-at", "2026-01-01",
            "--source", "EU",
        )  # fmt: skip
        report(
            "negotiation-round",
            "--track-id",
            track,
            "--location",
            "Istanbul",
            "--source",
            "Reuters",
        )
        wrong = run(
            "--store", store, "report", "dispute", "--incident-id", regime, "--party", "RUS"
        )
        one_line_error(wrong, EXIT_USAGE, "--incident-id")

    def test_a_date_alone_is_that_day_at_midnight_utc_to_the_day(self, tmp_path: Path) -> None:
        store = url(tmp_path / "fp.db")
        done = run(
            "--store", store, "report", "incursion", *INCURSION, "--occurred-at", "2025-09-10"
        )
        assert done.returncode == EXIT_OK, done.stderr
        incident = query_json(store, "incident", json.loads(done.stdout)["resource"])
        evidence = incident["evidence"]
        assert evidence["occurred_at"] == "2025-09-10T00:00:00Z"
        assert evidence["precision"] == "day"

    def test_times_are_printed_with_z(self, demo: str) -> None:
        incident = query_json(demo, "incidents")["incidents"][0]["name"]
        for args, times in (
            (["replay", "--limit", "5"], True),
            (["verify", "--json"], False),
            (["query", "events", incident], True),
            (["query", "incident", incident], True),
            (["query", "escalation", "POL", "--at", AT], True),
            (["query", "history", "POL", "--since", "2025-09-01", "--until", "2025-09-03"], True),
        ):
            done = run("--store", demo, *args)
            assert done.returncode == EXIT_OK, (args, done.stderr)
            assert "+00:00" not in done.stdout, (args, done.stdout)
            if times:
                assert re.search(r"\d\d:\d\d(:\d\d(\.\d+)?)?Z", done.stdout), (args, done.stdout)
        demo_text = run("--store", demo, "demo").stdout
        assert "+00:00" not in demo_text and "2025-09-13T12:00:00Z" in demo_text


# ------------------------------------------------------------------ history and tables


class TestHistoryAndTables:
    def test_history_ends_at_until(self, demo: str) -> None:
        history = query_json(
            demo, "history", "POL", "--since", "2025-08-15", "--until", "2025-09-15",
            "--step", "1d", "--as-of", AS_OF,
        )  # fmt: skip
        times = [point["at"] for point in history["points"]]
        assert times[0].startswith("2025-08-15") and times[-1].startswith("2025-09-15"), times
        assert len(times) == 32

    def test_the_chart_has_a_header_and_a_level_legend(self, demo: str) -> None:
        done = run(
            "--store", demo, "query", "history", "POL", "--since", "2025-09-01",
            "--until", "2025-09-15", "--as-of", AS_OF,
        )  # fmt: skip
        assert done.returncode == EXIT_OK, done.stderr
        text = done.stdout
        assert re.search(r"^at\s+level\s+score", text, re.MULTILINE), text
        for threshold in ("5", "15", "30", "60"):
            assert re.search(rf"\b{threshold}\b", text.split("levels", 1)[-1]), text
        for name in ("calm", "tension", "crisis", "armed incidents", "open conflict"):
            assert name in text, text

    def test_why_says_how_many_more_and_never_minus_zero(self, demo: str) -> None:
        shown = query_json(demo, "escalation", "POL", "--at", AT, "--as-of", AS_OF)
        done = run("--store", demo, "query", "escalation", "POL", "--at", AT, "--as-of", AS_OF)
        assert done.returncode == EXIT_OK, done.stderr
        assert "-0.00" not in done.stdout
        if len(shown.get("contributions", [])) >= 5:
            assert re.search(r"and \d+ more|top 5 shown", done.stdout), done.stdout

    def test_escalation_and_ranking_show_as_actor_and_as_target(self, demo: str) -> None:
        for args in (["escalation", "POL"], ["ranking"]):
            done = run("--store", demo, "query", *args, "--at", AT, "--as-of", AS_OF)
            assert done.returncode == EXIT_OK, done.stderr
            assert "as actor" in done.stdout and "as target" in done.stdout, done.stdout

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            (["incidents"], "airspace_incursion"),
            (["incident", "{incident}"], "airspace_incursion"),
            (["sanctions"], "EU"),
            (["sanctions-regime", "{regime}"], "EU"),
            (["negotiations"], "paused"),
            (["negotiation", "{track}"], "paused"),
            (["posture", "--at", AT], "Zapad-2025"),
            (["events", "{incident}"], "recorded"),
            (["projections"], "escalation"),
        ],
        ids=lambda value: value[0] if isinstance(value, list) else "",
    )
    def test_every_query_prints_a_table(self, demo: str, args: list[str], expected: str) -> None:
        names = {
            "incident": next(
                item["name"]
                for item in query_json(demo, "incidents")["incidents"]
                if item["kind"] == "airspace_incursion"
            ),
            "regime": next(
                item["name"]
                for item in query_json(demo, "sanctions", "--include-lifted")["regimes"]
                if item["authority"] == "EU"
            ),
            "track": query_json(demo, "negotiations")["negotiations"][0]["name"],
        }
        args = [arg.format(**names) for arg in args]
        done = run("--store", demo, "query", *args)
        assert done.returncode == EXIT_OK, done.stderr
        with pytest.raises(json.JSONDecodeError):
            json.loads(done.stdout)
        assert expected in done.stdout, done.stdout
        assert query_json(demo, *args), "--json still prints JSON"

    @pytest.mark.parametrize(
        ("args", "key"),
        [
            (["incidents"], "incidents"),
            (["sanctions", "--include-lifted"], "regimes"),
            (["negotiations"], "negotiations"),
            (["posture", "--at", AT], "deployments"),
        ],
        ids=lambda value: value[0] if isinstance(value, list) else "",
    )
    def test_as_of_before_anything_was_known(self, demo: str, args: list[str], key: str) -> None:
        assert query_json(demo, *args)[key]
        assert not query_json(demo, *args, "--as-of", "2000-01-01").get(key)

    def test_all_follows_the_pages(self, demo: str) -> None:
        everything = query_json(demo, "incidents", "--page-size", "500")["incidents"]
        paged = query_json(demo, "incidents", "--page-size", "2", "--all")
        assert len(everything) > 2
        assert [item["name"] for item in paged["incidents"]] == [i["name"] for i in everything]
        assert not paged.get("next_page_token")


# ------------------------------------------------------------------ new commands


class TestNewCommands:
    def test_version(self) -> None:
        done = run("--version")
        assert done.returncode == EXIT_OK, done.stderr
        assert re.fullmatch(r"flashpoint \d+\.\d+\.\d+\S*\n", done.stdout), done.stdout

    def test_watch_prints_level_lines_until_ctrl_c(self, tmp_path: Path) -> None:
        """Escalation decays: only a development of today gives a level to watch now."""
        store = url(tmp_path / "fp.db")
        assert run("--store", store, "report", "incursion", *INCURSION).returncode == EXIT_OK
        process = subprocess.Popen(
            [flashpoint(), "--store", store, "watch", "POL"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert re.match(r"^\S+Z\s+POL\s+level \d", first), first
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=COMMAND_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == EXIT_OK, stderr
        assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


# ------------------------------------------------------------------ stdout and stderr


class TestStreams:
    @pytest.mark.parametrize(
        "args",
        [
            ["query", "ranking", "--at", AT],
            ["query", "--json", "incidents"],
            ["verify"],
            ["export"],
            ["replay", "--limit", "2"],
            ["migrate"],
            ["report", "incursion", *INCURSION, "--request-id", "streams-1"],
        ],
        ids=lambda args: " ".join(args[:2]),
    )
    def test_results_on_stdout_logs_on_stderr_and_no_store_opened_at_info(
        self, demo: str, args: list[str]
    ) -> None:
        done = run("--store", demo, "--log-format", "json", *args)
        assert done.returncode == EXIT_OK, done.stderr
        assert not log_events(done.stdout), done.stdout
        assert "store.opened" not in done.stderr, done.stderr


# ------------------------------------------------------------------ the repository


class TestRepository:
    def test_keys_and_stores_are_ignored_by_git(self) -> None:
        names = ["seal.pem", "keys/server.pem", "flashpoint.db", "flashpoint.views.db",
                 "flashpoint.db-wal", "flashpoint.views.db-shm", "seals.jsonl"]  # fmt: skip
        done = subprocess.run(
            ["git", "check-ignore", "--no-index", *names],
            cwd=ROOT, capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert sorted(done.stdout.split()) == sorted(names), done.stdout + done.stderr

    def test_the_documented_audit_commands_keep_the_key_outside_the_repository(self) -> None:
        readme = (ROOT / "README.md").read_text()
        commands = [
            line for line in readme.splitlines() if re.search(r"flashpoint (keygen|seal)", line)
        ]
        assert commands
        for line in commands:
            for word in line.split():
                if word.endswith(".pem"):
                    assert word.startswith(("~/", "/", "$")), line


class TestFiles:
    def test_an_unwritable_output_is_one_line(self, demo: str, tmp_path: Path) -> None:
        nowhere = tmp_path / "no" / "such" / "dir" / "log.jsonl"
        one_line_error(
            run("--store", demo, "export", "--output", str(nowhere)), EXIT_USAGE, str(nowhere)
        )

    def test_import_of_a_missing_file_leaves_no_store(self, tmp_path: Path) -> None:
        store = tmp_path / "copy.db"
        done = run("--store", url(store), "import", str(tmp_path / "missing.jsonl"))
        one_line_error(done, EXIT_USAGE, "missing.jsonl")
        assert not store.exists()
