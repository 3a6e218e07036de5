"""``flashpoint query`` (and ``report``) print the same with and without ``--server``.

The demo is loaded into a fresh SQLite store; ``flashpoint serve`` then serves that store,
and every query subcommand is run twice as a real process: once on the store, once through
the server. Times are fixed (``--at``, ``--as-of``, ``--since``) so that both answers are
about the same moment; the knowledge time is far in the future, after the demo was recorded
(whenever this test runs).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from tests.api_support import clean_env, flashpoint
from tests.test_cli_serve import COMMAND_SECONDS, INCURSION_FLAGS, Served, serving, store_url

AT = "2025-09-13T12:00:00+00:00"
AS_OF = "2100-01-01T00:00:00+00:00"
SINCE = "2025-08-15T00:00:00+00:00"
#: How long the server may take to bring its read models and chain up to the demo's head.
CATCH_UP_SECONDS = 30.0


@dataclass
class Both:
    """The store and a server serving it."""

    directory: Path
    served: Served

    def run(self, *args: str, server: bool) -> subprocess.CompletedProcess[str]:
        where = ["--server", self.served.address] if server else []
        command = [flashpoint(), "--store", store_url(self.directory), "--log-level", "warning"]
        if args[0] == "query":
            command += ["query", *where, *args[1:]]
        else:
            command += [*args, *where]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=COMMAND_SECONDS,
            check=False,
        )

    def json(self, *args: str, server: bool) -> Any:
        done = self.run("query", "--json", *args, server=server)
        assert done.returncode == EXIT_OK, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Both]:
    directory = tmp_path_factory.mktemp("backends")
    demo = subprocess.run(
        [flashpoint(), "--store", store_url(directory), "demo"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=COMMAND_SECONDS,
        check=False,
    )
    assert demo.returncode == EXIT_OK, demo.stderr
    with serving(directory) as served:
        pair = Both(directory, served)
        _wait_caught_up(pair)
        yield pair


def _wait_caught_up(both: Both) -> None:
    """Until the server's read models and audit chain are at the head: from then on a local
    catch-up changes nothing, and both ways read the same state."""
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:
        status = both.json("projections", server=True)
        followers = [*status["projections"], status["audit_chain"]]
        if all(int(follower["lag_events"]) == 0 for follower in followers):
            return
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


def _first(both: Both, query: str, key: str) -> str:
    items = both.json(query, server=False)[key]
    assert items, f"the demo left no {key}"
    name: str = items[0]["name"]
    return name


#: Every ``flashpoint query`` subcommand but ``projections`` (compared on its own), with
#: fixed times; resource names are filled in from the demo.
QUERIES: dict[str, list[str]] = {
    "escalation": ["escalation", "POL", "--at", AT, "--as-of", AS_OF],
    "pair": ["pair", "RUS", "POL", "--at", AT, "--as-of", AS_OF],
    "pair-both-ways": ["pair", "RUS", "POL", "--both-ways", "--at", AT, "--as-of", AS_OF],
    "ranking": ["ranking", "--at", AT, "--as-of", AS_OF],
    "ranking-filtered": [
        "ranking", "--min-level", "3", "--limit", "2", "--at", AT, "--as-of", AS_OF,
    ],
    "history": ["history", "POL", "--since", SINCE, "--step", "1d", "--as-of", AS_OF],
    "incident": ["incident", "{incident}"],
    "incidents": ["incidents"],
    "incidents-filtered": [
        "incidents", "--actor", "RUS", "--occurred-after", "2025-09-01T00:00:00",
        "--page-size", "2",
    ],
    "sanctions-regime": ["sanctions-regime", "{regime}"],
    "sanctions": ["sanctions"],
    "sanctions-in-force": ["sanctions", "--in-force-on", AT, "--include-lifted"],
    "negotiation": ["negotiation", "{track}"],
    "negotiations": ["negotiations"],
    "negotiations-paused": ["negotiations", "--party", "RUS", "--status", "paused"],
    "posture": ["posture", "--at", AT],
    "events": ["events", "{incident}"],
}  # fmt: skip


class TestOneAnswerBothWays:
    @pytest.mark.parametrize("case", sorted(QUERIES))
    def test_every_query_prints_the_same_json(self, both: Both, case: str) -> None:
        """``query --json …`` on the store and through the server parse to equal JSON."""
        names = {
            "incident": _first(both, "incidents", "incidents"),
            "regime": _first(both, "sanctions", "regimes"),
            "track": _first(both, "negotiations", "negotiations"),
        }
        args = [arg.format(**names) for arg in QUERIES[case]]
        local = both.json(*args, server=False)
        remote = both.json(*args, server=True)
        assert local == remote
        assert local, "an empty answer proves nothing"

    def test_projections_agree_once_both_are_caught_up(self, both: Both) -> None:
        """``query projections`` reads the status as it is now, so only what does not depend
        on the moment of reading is compared: the head, and each follower's name,
        generation, fold version, position and lag in events (all caught up here), not
        ``read_at`` or the lag in seconds."""

        def steady(status: dict[str, Any]) -> dict[str, Any]:
            def follower(item: dict[str, Any]) -> dict[str, Any]:
                return {k: v for k, v in item.items() if k != "lag_seconds"}

            return {
                "head": status["head"],
                "projections": [follower(item) for item in status["projections"]],
                "audit_chain": follower(status["audit_chain"]),
            }

        local = both.json("projections", server=False)
        remote = both.json("projections", server=True)
        assert steady(local) == steady(remote)
        assert [item["name"] for item in local["projections"]], local

    @pytest.mark.parametrize("case", ["escalation", "ranking", "history"])
    def test_tables_are_the_same(self, both: Both, case: str) -> None:
        """Without ``--json`` the tables, made from the same JSON, are the same text."""
        local = both.run("query", *QUERIES[case], server=False)
        remote = both.run("query", *QUERIES[case], server=True)
        assert local.returncode == remote.returncode == EXIT_OK, local.stderr + remote.stderr
        assert local.stdout == remote.stdout
        assert "POL" in local.stdout

    @pytest.mark.parametrize(
        ("args", "code"),
        [
            (["incident", f"incidents/{uuid.UUID(int=1)}"], EXIT_FAILED),
            (["negotiation", f"negotiations/{uuid.UUID(int=2)}"], EXIT_FAILED),
            (["escalation", "XXX", "--at", AT], EXIT_USAGE),
            (["ranking", "--min-level", "9"], EXIT_USAGE),
            (["history", "POL", "--step", "fortnight"], EXIT_USAGE),
        ],
        ids=["no-such-incident", "no-such-track", "bad-country", "bad-level", "bad-span"],
    )
    def test_errors_say_the_same_and_exit_the_same(
        self, both: Both, args: list[str], code: int
    ) -> None:
        """Not found exits 1, a bad argument 2, with the same message either way."""
        local = both.run("query", *args, server=False)
        remote = both.run("query", *args, server=True)
        assert (local.returncode, local.stderr) == (remote.returncode, remote.stderr)
        assert local.returncode == code, local.stderr
        assert local.stderr.startswith("flashpoint: ")
        assert local.stdout == remote.stdout == ""

    def test_a_report_prints_the_same_json(self, both: Both) -> None:
        """The same report (one request id) recorded on the store, then sent to the server,
        which knows it already: the same resource, id, version and position."""
        flags = ["report", "incursion", *INCURSION_FLAGS, "--occurred-at", AT]
        flags += ["--request-id", uuid.uuid4().hex]
        local = both.run(*flags, server=False)
        assert local.returncode == EXIT_OK, local.stderr
        remote = both.run(*flags, server=True)
        assert remote.returncode == EXIT_OK, remote.stderr
        recorded, replayed = json.loads(local.stdout), json.loads(remote.stdout)
        assert (recorded["replayed"], replayed["replayed"]) == (False, True)
        assert {**recorded, "replayed": True} == replayed
