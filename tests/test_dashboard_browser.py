"""The web dashboard end to end in a real headless browser (Debian's chromium via playwright).

One ``flashpoint serve --http`` per module over a SQLite store loaded with ``flashpoint demo``
and the shared GDELT sample; every page is opened, what it shows is compared with the API's
own answers (fetched here with urllib), the knowledge-time slider is moved, a new report is
sent and the map must follow it without a reload. Each page is screenshotted at desktop and
phone width into test-artifacts/dashboard/ and checked with axe-core (no serious or critical
finding). A second server with a tokens file checks the token prompt and the audit page's
permission message.

Without chromium (or playwright) the module is skipped with the reason, unless
FLASHPOINT_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.api_support import clean_env, flashpoint, free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = Path(os.environ.get("FLASHPOINT_CHROMIUM", "/usr/bin/chromium"))
REQUIRE_BROWSER_ENV = "FLASHPOINT_REQUIRE_BROWSER"
GDELT_SAMPLE = ROOT.parent / "shared" / "data" / "gdelt" / "20170601234500.export.CSV"
if not GDELT_SAMPLE.exists():
    GDELT_SAMPLE = Path("/work/shared/data/gdelt/20170601234500.export.CSV")
#: The demo's valid time (service.cli.demo.SCENARIO_AT): the day after the drills began.
SCENARIO_AT = "2025-09-13T12:00:00Z"
#: Generous waits: the machine is shared and slow; nothing here measures speed.
WAIT_MS = 30_000
START_SECONDS = 60.0
LONG_NAME = "MinistryOfForeignAffairsOfTheRepublic" * 5
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}

pytestmark = pytest.mark.slow


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_BROWSER_ENV):
        pytest.fail(f"{reason} ({REQUIRE_BROWSER_ENV} is set, so the browser tests are required)")
    pytest.skip(reason)


try:
    from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright
except ImportError:  # the dev extras pin it; CI must not pass by skipping
    if os.environ.get(REQUIRE_BROWSER_ENV):
        raise
    pytest.skip(
        "dashboard browser tests skipped: playwright is not installed (pip install -e '.[dev]')",
        allow_module_level=True,
    )


# ---------------------------------------------------------------------------- the server


@dataclass
class Dashboard:
    """A served store: the gRPC address, the dashboard's base URL, the process."""

    grpc: str
    base: str
    process: subprocess.Popen[bytes]
    stderr: Path
    token: str = ""

    def api(self, service: str, method: str, message: dict[str, Any] | None = None) -> Any:
        """One RPC through the HTTP/JSON API, as the page makes it."""
        query = urllib.parse.urlencode({"message": json.dumps(message or {})})
        request = urllib.request.Request(  # noqa: S310 - our own loopback server
            f"{self.base}api/flashpoint.v1.{service}/{method}?{query}"
        )
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - our loopback server
            return json.load(response)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [flashpoint(), *args], capture_output=True, text=True, env=clean_env(), timeout=300
    )
    assert result.returncode == 0, f"flashpoint {' '.join(args)}:\n{result.stderr[-2000:]}"
    return result


@dataclass
class Tokens:
    lines: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)


def make_token(tokens: Tokens, name: str, roles: str) -> None:
    made = cli("token", name, roles)
    output = made.stdout + made.stderr
    tokens.lines.append(next(line for line in output.splitlines() if line.startswith(name)))
    tokens.secrets[name] = next(
        line.strip() for line in output.splitlines() if line.strip().startswith("fp_")
    )


def wait_healthy(dashboard: Dashboard) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if dashboard.process.poll() is not None:
            raise AssertionError(
                f"serve exited with {dashboard.process.returncode}:\n"
                + dashboard.stderr.read_text()[-3000:]
            )
        try:
            with urllib.request.urlopen(f"{dashboard.base}healthz", timeout=5) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{dashboard.base} did not become healthy in {START_SECONDS} s")


def serve(store: str, directory: Path, *flags: str) -> Iterator[Dashboard]:
    grpc_port, http_port = free_port(), free_port()
    stderr = directory / f"serve-{http_port}.stderr"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [flashpoint(), "--store", store, "serve", "--listen", f"127.0.0.1:{grpc_port}",
             "--http", f"127.0.0.1:{http_port}", *flags],
            stderr=sink, stdout=subprocess.DEVNULL, env=clean_env(),
        )  # fmt: skip
    dashboard = Dashboard(
        f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}/", process, stderr
    )
    try:
        wait_healthy(dashboard)
        yield dashboard
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def require_chromium() -> None:
    if not CHROMIUM.exists():
        _unavailable(
            f"dashboard browser tests skipped: no chromium at {CHROMIUM} "
            "(scripts/bootstrap dev installs Debian's chromium when run as root)"
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    require_chromium()  # before the minute of loading, which only a browser would use
    directory = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{directory}/flashpoint.db"
    cli("--store", url, "demo")
    # One signed seal and one unsigned, so the audit page has both kinds to tell apart.
    cli("keygen", str(directory / "seal.pem"))
    cli("--store", url, "seal", "--seal-key", str(directory / "seal.pem"))
    if GDELT_SAMPLE.exists():
        cli("--store", url, "ingest", "gdelt", str(GDELT_SAMPLE))
    cli("--store", url, "seal")
    # Names and texts far longer than a phone is wide, with no space to break at.
    cli(
        "--store", url, "report", "condemnation", "--actor", "EST", "--target", "RUS",
        "--occurred-at", "2025-09-12", "--reliability", "C", "--credibility", "3",
        "--source", LONG_NAME, "--summary", LONG_NAME, "--text", LONG_NAME,
        "--request-id", "dashboard-long-names",
    )  # fmt: skip
    return url, directory


@pytest.fixture(scope="module")
def dashboard(store: tuple[str, Path]) -> Iterator[Dashboard]:
    yield from serve(*store)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watched:
    """A page and what went wrong in it (script errors, console errors, CSP refusals)."""

    page: Page
    problems: list[str]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "401" not in message.text and "403" not in message.text
            else None
        ),
    )
    try:
        yield Watched(page, problems)
    finally:
        context.close()
    assert not problems, problems


def open_page(page: Page, dashboard: Dashboard, route: str) -> None:
    page.goto(f"{dashboard.base}{route}")
    wait_ready(page)


def wait_ready(page: Page) -> None:
    page.wait_for_selector("main[data-ready]:not([aria-busy])", timeout=WAIT_MS)


def apply_filters(page: Page, in_url: str) -> None:
    """Submit the page's filter form; wait until its route holds ``in_url`` and the page
    shows the new answer."""
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(re.escape(in_url)), timeout=WAIT_MS)
    wait_ready(page)


def ranked(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures the map page shows: those with anything counted."""
    return [
        figure
        for figure in answer.get("escalations", [])
        if float(figure.get("score", 0)) > 0 or figure.get("level", 1) > 1
    ]


def ranking_rows(page: Page) -> list[tuple[str, str, str]]:
    """(country, level text, score text) per row of the ranking table."""
    rows = []
    for row in page.locator("#ranking tbody tr[data-country]").all():
        cells = row.locator("td").all_inner_texts()
        rows.append((str(row.get_attribute("data-country")), cells[2].strip(), cells[3].strip()))
    return rows


def expected_rows(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (figure["subject"], f"{figure['level']} · {figure['levelName']}", f"{figure['score']:.1f}")
        for figure in ranked(answer)
    ]


def api_time(iso: str) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).isoformat()


# ---------------------------------------------------------------------------- the pages


class TestMap:
    def test_the_ranking_and_the_map_show_the_apis_figures(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """At the scenario's valid time the ranking lists exactly ListEscalations' figures
        (order, level, score), and each ranked country's shape has its level's fill."""
        page = watched.page
        open_page(page, dashboard, f"#/map?at={SCENARIO_AT}")
        answer = dashboard.api("QueryService", "ListEscalations", {"at": SCENARIO_AT})
        expected = expected_rows(answer)
        assert expected, "the demo ranks nothing at its own valid time"
        assert ranking_rows(page) == expected
        for figure in ranked(answer):
            shape = page.locator(f'#world-map path[data-country="{figure["subject"]}"]')
            if shape.count():  # organisations (EU, NATO) rank but have no shape
                assert shape.get_attribute("fill") == f"url(#level-{figure['level']})"
                assert figure["levelName"] in str(shape.locator("title").text_content())
        unranked = page.locator('#world-map path[data-country="BRA"]')
        assert "no-data" in str(unranked.get_attribute("class"))
        assert page.locator(".legend li").count() == 6  # five levels and "no data"
        assert "paused" in page.inner_text("#live-status")

    def test_moving_the_knowledge_time_slider_changes_the_level(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """One step left on the knowledge-time slider (an hour before now, before anything
        was recorded) and Poland's level becomes what the API says for that knowledge time."""
        page = watched.page
        open_page(page, dashboard, f"#/map?at={SCENARIO_AT}")
        poland = page.locator('#world-map path[data-country="POL"]')
        before = poland.get_attribute("data-level")
        assert before is not None and int(before) > 1
        slider = page.locator("#knowledge-time-slider")
        slider.focus()
        page.keyboard.press("ArrowLeft")
        expect(page).to_have_url(re.compile(re.escape("asof=")), timeout=WAIT_MS)
        as_of = urllib.parse.parse_qs(page.url.split("?", 1)[1])["asof"][0]
        answer = dashboard.api(
            "QueryService", "ListEscalations", {"at": SCENARIO_AT, "asOf": api_time(as_of)}
        )
        known = {figure["subject"]: figure for figure in ranked(answer)}
        expect(page.locator("#ranking caption")).to_contain_text("as known at", timeout=WAIT_MS)
        page.wait_for_function(
            "() => !document.querySelector('#ranking tbody tr[data-country=\"POL\"]')"
            if "POL" not in known
            else "() => true",
            timeout=WAIT_MS,
        )
        after = poland.get_attribute("data-level")
        assert after != before
        assert after == (str(known["POL"]["level"]) if "POL" in known else None)
        assert ranking_rows(page) == expected_rows(answer)
        assert "paused" in page.inner_text("#live-status")

    def test_a_new_report_updates_the_map_without_a_reload(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """Live at now: a strike reported over gRPC appears in the ranking and colours its
        target on the map, announced in the live region, with no navigation in between."""
        page = watched.page
        open_page(page, dashboard, "#/map")
        expect(page.locator("#live-status")).to_contain_text("Live: the map", timeout=WAIT_MS)
        page.evaluate("() => { window.__sameDocument = true; }")
        assert not page.locator('#ranking tr[data-country="FIN"]').count()
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        cli(
            "report", "strike", "--server", dashboard.grpc, "--actor", "RUS", "--target", "FIN",
            "--occurred-at", now, "--fatalities", "40", "--munitions-count", "30",
            "--source", "Dashboard test", "--reliability", "A", "--credibility", "1",
        )  # fmt: skip
        row = page.locator('#ranking tr[data-country="FIN"]')
        expect(row).to_be_visible(timeout=WAIT_MS)
        figure = dashboard.api("QueryService", "GetEscalation", {"country": "FIN"})["escalation"]
        expect(row.locator("td").nth(2)).to_have_text(f"{figure['level']} · {figure['levelName']}")
        shape = page.locator('#world-map path[data-country="FIN"]')
        assert shape.get_attribute("fill") == f"url(#level-{figure['level']})"
        expect(page.locator("#announcer")).to_contain_text("Finland", timeout=WAIT_MS)
        assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"

    def test_a_ranking_entry_is_reached_with_tab_and_opened_with_enter(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """Keyboard only: the skip link first, then Tab reaches the ranking's first link and
        Enter opens that country's page."""
        page = watched.page
        open_page(page, dashboard, f"#/map?at={SCENARIO_AT}")
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.id") == "skip-link"
        first = page.locator("#ranking a.ranking-link").first
        code = str(first.locator("xpath=ancestor::tr").get_attribute("data-country"))
        for _ in range(80):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.classList.contains('ranking-link')"):
                break
        else:
            raise AssertionError("Tab never reached a ranking link")
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(f"#/country/{code}"), timeout=WAIT_MS)
        wait_ready(page)
        expect(page.locator("h1")).to_contain_text(f"({code})")


class TestCountry:
    def test_the_country_page_shows_the_apis_figure_history_and_pairs(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """Poland at the scenario time: level, score and trend are GetEscalation's, the
        contributions link to their incidents, the chart draws a line and the thresholds
        below its top, and the pairs name Russia."""
        page = watched.page
        open_page(page, dashboard, f"#/country/POL?at={SCENARIO_AT}")
        figure = dashboard.api(
            "QueryService", "GetEscalation", {"country": "POL", "at": SCENARIO_AT}
        )["escalation"]
        expect(page.locator("#country-level")).to_have_text(
            f"{figure['level']} · {figure['levelName']}"
        )
        expect(page.locator("#country-score")).to_have_text(f"{figure['score']:.1f}")
        expect(page.locator("#country-trend")).to_contain_text(figure["trend"])
        links = page.locator(".contributions tbody a").all()
        assert [link.inner_text() for link in links] == [
            entry["resource"] for entry in figure["contributions"]
        ]
        assert all(str(link.get_attribute("href")).startswith("#/incidents/") for link in links)
        assert page.locator(".chart path.series").count() == 1
        assert page.locator(".chart line.threshold").count() >= 2
        expect(page.locator("#pairs")).to_contain_text("Russia (RUS)", timeout=WAIT_MS)
        pair = dashboard.api(
            "QueryService",
            "GetPairEscalation",
            {"actor": "RUS", "target": "POL", "at": SCENARIO_AT},
        )["escalation"]
        expect(page.locator("#pairs table").first).to_contain_text(f"{pair['score']:.1f}")
        links[0].click()
        wait_ready(page)
        assert "#/incidents/" in page.url


class TestIncidents:
    def test_the_timeline_filters_by_country_and_lists_the_apis_incidents(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """Filtering by country through the form gives ListIncidents' first page, newest
        first, each with its incident link."""
        page = watched.page
        open_page(page, dashboard, "#/incidents")
        page.get_by_label("Country (alpha-3)").fill("pol")
        apply_filters(page, "country=POL")
        answer = dashboard.api("QueryService", "ListIncidents", {"country": "POL", "pageSize": 50})
        hrefs = [
            link.get_attribute("href") for link in page.locator(".incidents a.incident-link").all()
        ]
        assert hrefs == [f"#/incidents/{incident['id']}" for incident in answer["incidents"]]
        page.get_by_label("Minimum confidence (0 to 1)").fill("0.9")
        apply_filters(page, "minconf=0.9")
        strict = dashboard.api(
            "QueryService",
            "ListIncidents",
            {"country": "POL", "pageSize": 50, "minConfidence": 0.9},
        )
        assert page.locator(".incidents a.incident-link").count() == len(
            strict.get("incidents", [])
        )

    def test_an_incident_shows_its_sources_grade_and_full_history(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """A disputed demo incident: its grade and sources as GetIncident has them, and one
        history entry per event GetHistory returns (reported, disputed, ...)."""
        page = watched.page
        listed = dashboard.api("QueryService", "ListIncidents", {"country": "POL", "pageSize": 100})
        incident = next(
            (entry for entry in listed["incidents"] if entry.get("disputes")),
            listed["incidents"][0],
        )
        open_page(page, dashboard, f"#/incidents/{incident['id']}")
        evidence = incident["evidence"]
        expect(page.locator("#incident-grade")).to_have_text(
            f"{evidence['reliability']}{evidence['credibility']}"
        )
        sources = page.locator("#incident-sources li").all_inner_texts()
        assert sources == [source["name"] for source in incident["sources"]]
        history = dashboard.api("AuditService", "GetHistory", {"name": incident["name"]})
        entries = page.locator("#incident-events .event-type")
        expect(entries).to_have_count(len(history["events"]), timeout=WAIT_MS)
        assert entries.all_inner_texts() == [event["type"] for event in history["events"]]


class TestRegisters:
    def test_negotiations_and_sanctions_list_what_the_api_has(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """One row per track (with its status) and per regime, lifted ones included."""
        page = watched.page
        open_page(page, dashboard, "#/negotiations")
        tracks = dashboard.api("QueryService", "ListNegotiations", {})["negotiations"]
        rows = page.locator(".negotiations tbody tr")
        expect(rows).to_have_count(len(tracks))
        statuses = [row.locator("td").nth(3).inner_text() for row in rows.all()]
        assert statuses == [track["status"] for track in tracks]
        open_page(page, dashboard, "#/sanctions")
        regimes = dashboard.api("QueryService", "ListSanctions", {"includeLifted": True})["regimes"]
        rows = page.locator(".sanctions tbody tr")
        expect(rows).to_have_count(len(regimes))
        assert [row.locator("td").nth(0).inner_text() for row in rows.all()] == [
            regime["authority"] for regime in regimes
        ]

    def test_the_registers_filter_as_the_api_does(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """The negotiations form filters by status, the sanctions form by authority, each
        giving the rows the API gives for the same filter."""
        page = watched.page
        open_page(page, dashboard, "#/negotiations")
        page.get_by_label("Status").select_option("paused")
        apply_filters(page, "status=paused")
        paused = dashboard.api("QueryService", "ListNegotiations", {"status": "paused"})
        assert paused["negotiations"], "the demo's talks are paused"
        expect(page.locator(".negotiations tbody tr")).to_have_count(len(paused["negotiations"]))
        open_page(page, dashboard, "#/sanctions")
        page.get_by_label("Authority (code)").fill("gbr")
        apply_filters(page, "authority=GBR")
        british = dashboard.api(
            "QueryService", "ListSanctions", {"authority": "GBR", "includeLifted": True}
        )
        rows = page.locator(".sanctions tbody tr")
        expect(rows).to_have_count(len(british["regimes"]))
        assert {row.locator("td").nth(0).inner_text() for row in rows.all()} == {"GBR"}


class TestAudit:
    def test_the_audit_page_shows_verification_seals_and_lag(
        self, dashboard: Dashboard, watched: Watched
    ) -> None:
        """Intact up to VerifyLog's position, one row per seal (signed or not), one per read
        model and the chain, and an export button that downloads the export."""
        page = watched.page
        open_page(page, dashboard, "#/audit")
        verify = dashboard.api("AuditService", "VerifyLog", {})
        expect(page.locator("#verify-status")).to_contain_text(
            f"Intact up to position {verify['checkedUpTo']}"
        )
        seals = [
            json.loads(seal) for seal in dashboard.api("AuditService", "ListSeals", {})["sealsJson"]
        ]
        assert len(seals) >= 2
        rows = page.locator(".seals tbody tr")
        expect(rows).to_have_count(len(seals))
        for row, seal in zip(rows.all(), seals, strict=True):
            cells = row.locator("td").all_inner_texts()
            assert cells[0] == str(seal["last_position"])
            assert cells[3].startswith("signed" if seal.get("signature") else "unsigned")
        lag = dashboard.api("QueryService", "ListProjections", {})
        expect(page.locator(".projections tbody tr")).to_have_count(len(lag["projections"]) + 1)
        with page.expect_download(timeout=WAIT_MS) as download:
            page.get_by_role("button", name="Download the audit export").click()
        saved = ARTIFACTS / "export.jsonl"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        download.value.save_as(saved)
        assert saved.stat().st_size > 0


# ---------------------------------------------------------------------------- screenshots, axe

ROUTES = {
    "map": f"#/map?at={SCENARIO_AT}",
    "country": f"#/country/POL?at={SCENARIO_AT}",
    "incidents": "#/incidents?country=EST",
    "incident": "",  # filled in with a real id
    "negotiations": "#/negotiations",
    "sanctions": "#/sanctions",
    "audit": "#/audit",
}


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_page_is_screenshotted_and_has_no_serious_accessibility_finding(
    dashboard: Dashboard, browser: Browser, width: str
) -> None:
    """axe-core on each page at desktop and phone width: no serious or critical violation;
    and no page is wider than the phone's screen (long names wrap, tables scroll)."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: scripts/bootstrap dev installs it (npm ci)")
    listed = dashboard.api("QueryService", "ListIncidents", {"country": "EST", "pageSize": 50})
    long = next(one for one in listed["incidents"] if one["sources"][0]["name"] == LONG_NAME)
    routes = {**ROUTES, "incident": f"#/incidents/{long['id']}"}
    # axe is injected as a script; only this context lets that past the page's CSP.
    context = browser.new_context(viewport=PHONE if width == "phone" else DESKTOP, bypass_csp=True)
    page = context.new_page()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    findings: dict[str, list[str]] = {}
    try:
        for name, route in routes.items():
            open_page(page, dashboard, route)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
            page.add_script_tag(path=str(AXE))
            violations = page.evaluate(
                """async () => (await axe.run(document, {resultTypes: ['violations']}))
                    .violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                      nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"""
            )
            serious = [
                f"{v['id']} ({v['impact']}): {v['help']} at {v['nodes']}"
                for v in violations
                if v["impact"] in ("serious", "critical")
            ]
            if serious:
                findings[name] = serious
            if width == "phone":
                overflow = page.evaluate(
                    "() => document.documentElement.scrollWidth - window.innerWidth"
                )
                if overflow > 0:
                    findings.setdefault(name, []).append(f"page {overflow}px wider than the phone")
    finally:
        context.close()
    assert not findings, json.dumps(findings, indent=1)


# ---------------------------------------------------------------------------- tokens


@pytest.fixture(scope="module")
def secured(store: tuple[str, Path]) -> Iterator[tuple[Dashboard, Tokens]]:
    url, directory = store
    tokens = Tokens()
    make_token(tokens, "web-analyst", "analyst")
    make_token(tokens, "web-auditor", "analyst,auditor")
    tokens_file = directory / "tokens"
    tokens_file.write_text("\n".join(tokens.lines) + "\n")
    for served in serve(url, directory, "--tokens-file", str(tokens_file)):
        yield served, tokens


class TestTokens:
    def test_the_page_asks_for_a_token_and_works_with_it(
        self, secured: tuple[Dashboard, Tokens], watched: Watched
    ) -> None:
        """Without a token the map asks for one; with the analyst's it shows the ranking;
        the audit page then says it needs the auditor role; the auditor's token opens it."""
        dashboard, tokens = secured
        page = watched.page
        open_page(page, dashboard, f"#/map?at={SCENARIO_AT}")
        expect(page.locator("#token-form")).to_be_visible()
        page.get_by_label("Bearer token").fill(tokens.secrets["web-analyst"])
        page.get_by_role("button", name="Use token").click()
        expect(page.locator("#ranking tbody tr[data-country]").first).to_be_visible(timeout=WAIT_MS)
        dashboard.token = tokens.secrets["web-analyst"]
        answer = dashboard.api("QueryService", "ListEscalations", {"at": SCENARIO_AT})
        assert ranking_rows(page) == expected_rows(answer)

        page.get_by_role("link", name="Audit").click()
        wait_ready(page)
        expect(page.locator("main [role=alert]")).to_contain_text("auditor role")
        page.get_by_role("button", name="Use another token").click()
        page.get_by_label("Bearer token").fill(tokens.secrets["web-auditor"])
        page.get_by_role("button", name="Use token").click()
        expect(page.locator("#verify-status")).to_contain_text("Intact up to position")
