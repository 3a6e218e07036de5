"""The map page's data over HTTP: ``GET ListEscalations`` from ``flashpoint serve --http``.

    scripts/bench dashboard [--events 1000000] [--countries 200] [--calls 500] [--dir DIR]

The log is the rebuild benchmark's generator with ``--countries`` countries (kept in
``--dir`` and reused); a ``flashpoint serve --http`` subprocess serves it, and every
projection is caught up (``ListProjections`` shows each at the head) before anything is
measured. Then ``--calls`` rounds, one after the other, each of three calls timed alone:

- ``GET /healthz`` over HTTP (the HTTP floor: aiohttp, the middleware, the headers);
- gRPC ``ListEscalations`` over one channel (the query itself, the baseline);
- ``GET /api/flashpoint.v1.QueryService/ListEscalations`` over one kept-alive HTTP
  connection (what the map page fetches), the same request.

Rounds interleave the three so that the machine's noise falls on all of them alike. The
request asks for every country at the end of the generated period (2025-12-18, as the
queries benchmark does: "now" would find few developments still in their windows), known
now. The goal: the HTTP p99 under 50 ms; the HTTP layer's own cost is the HTTP figure
minus the gRPC one. Load averages are printed before and after.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from tests.api_support import free_port
from tests.benchmarks import bench_queries, bench_rebuild, bench_throughput

QUICK_ARGS = ["--events", "100000", "--calls", "100"]
GOAL_P99_MS = 50.0
AT = bench_queries.AT


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def wait_http(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                connection.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"HTTP on port {port} did not answer within {seconds:g} s")
        time.sleep(0.2)


def known_at_stripped(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without its knowledge times: "now" is a moment later in the second call."""
    return {**answer, "escalations": [
        {k: v for k, v in view.items() if k != "asOf"} for view in answer.get("escalations", [])
    ]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--countries", type=int, default=200)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--dir", default="/tmp/flashpoint-bench")
    parser.add_argument("--catch-up-seconds", type=float, default=1800.0)
    args = parser.parse_args()
    out = sys.stdout
    out.write(f"load average before: {load_average()}\n")
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"dashboard-{args.events}-{args.countries}c.db"
    generated = bench_rebuild.ensure_log(path, args.events, countries=args.countries)
    if generated:
        out.write(f"generated {args.events:,} events in {generated:.1f} s ({path})\n")
    store = f"sqlite:///{path}"
    rebuilt = bench_queries.escalation_built(store, args.events)
    if rebuilt:
        out.write(f"escalation rebuilt in bulk first: {rebuilt:.0f} s\n")
    address, http_port = f"127.0.0.1:{free_port()}", free_port()
    serve = [bench_throughput.flashpoint(), "--store", store, "serve", "--listen", address,
             "--http", f"127.0.0.1:{http_port}"]  # fmt: skip
    request = query_pb.ListEscalationsRequest()
    request.at.FromDatetime(AT)
    message = json.dumps(json_format.MessageToDict(request), separators=(",", ":"))
    http_path = "/api/flashpoint.v1.QueryService/ListEscalations?" + urllib.parse.urlencode(
        {"message": message}
    )
    with bench_throughput.process(serve) as server:
        bench_throughput.wait_serving(address, server, seconds=600)
        wait_http(http_port, 60)
        started = time.monotonic()
        with grpc.insecure_channel(address) as channel:
            head = bench_queries.caught_up(channel, args.catch_up_seconds)
            query = query_grpc.QueryServiceStub(channel)
            connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)

            def http_get(target: str) -> bytes:
                connection.request("GET", target)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    raise SystemExit(f"GET {target}: {response.status} {body[:300]!r}")
                return body

            def grpc_list() -> bytes:
                return bytes(query.ListEscalations(request, timeout=60).SerializeToString())

            calls: dict[str, Callable[[], bytes]] = {
                "baseline: GET /healthz (HTTP floor)": lambda: http_get("/healthz"),
                "baseline: gRPC ListEscalations": grpc_list,
                "GET ListEscalations (HTTP/JSON)": lambda: http_get(http_path),
            }
            sizes = {label: len(call()) for label, call in calls.items()}
            answer = json.loads(http_get(http_path))
            grpc_answer = json_format.MessageToDict(query.ListEscalations(request, timeout=60))
            if known_at_stripped(answer) != known_at_stripped(grpc_answer):
                raise SystemExit("the HTTP answer is not gRPC's MessageToDict")
            for _ in range(20):  # warm-up: connections, caches
                for call in calls.values():
                    call()
            latencies: dict[str, list[float]] = {label: [] for label in calls}
            for _ in range(args.calls):
                for label, call in calls.items():
                    begun = time.perf_counter()
                    call()
                    latencies[label].append(time.perf_counter() - begun)
            connection.close()
    countries = len(answer.get("escalations", []))
    out.write(
        f"{head:,} events among {args.countries} countries, every projection caught up "
        f"({time.monotonic() - started:.0f} s after the server answered); the answer lists "
        f"{countries} countries, {sizes['GET ListEscalations (HTTP/JSON)']:,} bytes of JSON "
        f"({sizes['baseline: gRPC ListEscalations']:,} of protobuf)\n"
        f"{args.calls} interleaved rounds, one connection each; at = {AT:%Y-%m-%d}, as_of = now\n"
        f"{'':40}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}\n"
    )
    figures = {}
    for label, values in latencies.items():
        p50, p99 = bench_queries.percentiles(values)
        mean = sum(values) / len(values) * 1000
        figures[label] = (p50, p99, mean)
        out.write(f"{label:40}{p50:9.2f}{p99:9.2f}{mean:9.2f}\n")
    http_p50, http_p99, http_mean = figures["GET ListEscalations (HTTP/JSON)"]
    grpc_p50, grpc_p99, grpc_mean = figures["baseline: gRPC ListEscalations"]
    out.write(
        f"HTTP layer's own cost (HTTP minus gRPC): p50 {http_p50 - grpc_p50:+.2f} ms, "
        f"p99 {http_p99 - grpc_p99:+.2f} ms, mean {http_mean - grpc_mean:+.2f} ms; "
        f"ratio HTTP/gRPC p50 {http_p50 / grpc_p50:.2f}\n"
        f"goal: HTTP p99 < {GOAL_P99_MS:g} ms: {'met' if http_p99 < GOAL_P99_MS else 'NOT met'} "
        f"({http_p99:.2f} ms)\n"
        f"load average after: {load_average()}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
