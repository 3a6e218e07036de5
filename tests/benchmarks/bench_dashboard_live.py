"""How soon the dashboard's map shows a new report: browser delay against the gRPC watch.

    scripts/bench dashboard_live [--reports 20]

Starts ``flashpoint serve --http`` on a fresh SQLite file loaded with ``flashpoint demo``,
opens the map live (valid and knowledge time now) in Debian's headless chromium, and holds a
gRPC ``WatchEscalation`` stream open from this process: the baseline, the same change as the
server's stream delivers it, in the same run. Then it reports ``--reports`` strikes, one a
second, each on a country nothing concerned before (so its level changes), and measures
from the ``ReportStrike`` answer (the commit) to (a) the watch stream's message for that
country and (b) the ranking row for that country appearing in the page (a MutationObserver
in the page stamps it). The goal is (b) within 2 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2_grpc

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.domain import commands as c
from tests.api_support import free_port
from tests.benchmarks.bench_api import wait_serving
from tests.factories import command

#: ``scripts/bench all --quick``: a few reports are enough to see it work.
QUICK_ARGS: list[str] = ["--reports", "3"]

#: Countries the demo does not concern: a strike on each changes its level from nothing.
TARGETS = (
    "NOR", "SWE", "ISL", "DNK", "IRL", "PRT", "ESP", "ITA", "GRC", "BGR", "ROU", "HUN", "SVK",
    "CZE", "AUT", "CHE", "NLD", "BEL", "LUX", "SVN", "HRV", "SRB", "ALB", "MKD", "MNE", "BIH",
    "MDA", "GEO", "ARM", "AZE", "KAZ", "MNG", "JPN", "KOR", "AUS", "NZL", "CAN", "MEX", "BRA",
)  # fmt: skip

OBSERVER = """() => {
  window.__seen = {};
  const stamp = () => {
    for (const row of document.querySelectorAll('#ranking tr[data-country]')) {
      window.__seen[row.dataset.country] ??= Date.now() / 1000;
    }
  };
  stamp();
  new MutationObserver(stamp).observe(document.getElementById('main'),
    {subtree: true, childList: true});
}"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def row(label: str, delays: list[float], baseline: float | None) -> float:
    p50 = statistics.median(delays) * 1000
    ratio = f"{p50 / baseline:8.2f}" if baseline else f"{'1.00':>8}"
    sys.stdout.write(
        f"{label:44}{p50:9.0f}{percentile(delays, 0.95) * 1000:9.0f}"
        f"{max(delays) * 1000:9.0f}{ratio}\n"
    )
    return p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    reports = min(args.reports, len(TARGETS))
    folder = Path(tempfile.mkdtemp(prefix="flashpoint-bench-dashboard-"))
    store = f"sqlite:///{folder}/bench.db"
    flashpoint = shutil.which("flashpoint", path=os.path.dirname(sys.executable)) or "flashpoint"
    subprocess.run([flashpoint, "--store", store, "--log-level", "warning", "demo"],
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    grpc_port, http_port = free_port(), free_port()
    server = subprocess.Popen(
        [flashpoint, "--store", store, "--log-level", "warning", "serve",
         "--listen", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    watched: dict[str, float] = {}
    sys.stdout.write(f"load averages before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel, sync_playwright() as pw:
            wait_serving(health_pb2_grpc.HealthStub(channel), seconds=60)
            commands = command_grpc.CommandServiceStub(channel)
            watch = query_grpc.QueryServiceStub(channel).WatchEscalation(
                query_pb.WatchEscalationRequest(countries=TARGETS[:reports])
            )

            def follow() -> None:
                try:
                    for change in watch:
                        watched.setdefault(change.country, time.time())
                except grpc.RpcError:
                    pass  # cancelled at the end

            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            browser = pw.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{http_port}/#/map")
            page.wait_for_selector("#live-status:has-text('Live: the map')", timeout=60_000)
            page.evaluate(OBSERVER)
            template = command(c.ReportStrike)
            answered: dict[str, float] = {}
            for code in TARGETS[:reports]:
                strike = template.model_copy(
                    update={
                        "target": template.target.model_copy(update={"country": code}),  # type: ignore[union-attr]
                        "request_id": uuid.uuid4().hex,
                    }
                )
                commands.ReportStrike(tr.request_from_command(strike), timeout=30)  # type: ignore[arg-type]
                answered[code] = time.time()
                page.wait_for_function(f"() => window.__seen['{code}']", timeout=60_000)
                time.sleep(1.0)
            seen: dict[str, float] = page.evaluate("() => window.__seen")
            browser.close()
            watch.cancel()  # type: ignore[no-untyped-call]
        browser_delays = [seen[code] - answered[code] for code in answered]
        watch_delays = [watched[code] - answered[code] for code in answered if code in watched]
        sys.stdout.write(
            f"\nfrom the ReportStrike answer to the change shown, {reports} reports, one a second\n"
            f"{'':44}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'ratio':>8}\n"
        )
        baseline = row("baseline: gRPC WatchEscalation message", watch_delays, None)
        row("dashboard: ranking row in the browser (SSE)", browser_delays, baseline)
        within = sum(delay <= 2.0 for delay in browser_delays)
        sys.stdout.write(f"browser within 2 s: {within}/{len(browser_delays)}\n")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    sys.stdout.write(f"load averages after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
