"""Sustained ReportIncursion throughput from concurrent clients, against a gRPC echo ceiling.

    scripts/bench throughput [--clients 32] [--seconds 10] [--workers 1,2,4]
                             [--stores sqlite,postgresql]

Every configuration is a ``flashpoint serve`` subprocess (``--workers N``) on a fresh store:
a SQLite file in a temporary folder, or a fresh PostgreSQL database made on
FLASHPOINT_BENCH_POSTGRES (default ``postgresql://postgres@127.0.0.1:5432/test``) and dropped
afterwards. With one worker the projections and audit chain follow in the server process,
as by default; with more, the workers run ``--projections external`` beside one
``flashpoint project`` process, the scale-out deployment.

``--clients`` threads, each with its own channel, send ReportIncursion with a fresh request
id per call for ``--seconds`` after a warm-up. The baseline, measured in the same run with
the same clients, is a trivial echo service (a generic handler in a subprocess with the
server's thread count) answering the same request bytes: the transport's ceiling. Figures:
calls/s, the ratio to the echo, p50/p99 latency, failed calls, and the CPU time the
server's processes spent per call (PostgreSQL's own processes not counted): on a machine
this small the clients share the cores, so CPU per call says best where the time goes.

Extra environment for the servers (e.g. ``FLASHPOINT_GROUP_COMMIT=true``) passes through.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from service.api import translation as tr
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.domain import commands as c
from tests.api_support import free_port
from tests.factories import command

ECHO_METHOD = "/bench.Echo/Echo"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
WARMUP_SECONDS = 2.0
#: Worker threads of the echo server: the same as ``flashpoint serve``'s default.
ECHO_THREADS = 16


# ------------------------------------------------------------------ the echo service


def run_echo_server(port: int) -> int:
    """Serve the echo method on 127.0.0.1:``port`` until SIGTERM (run in a subprocess)."""

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(
        ThreadPoolExecutor(max_workers=ECHO_THREADS),
        handlers=[handler],
        maximum_concurrent_rpcs=ECHO_THREADS * 8,
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    server.start()
    stopping.wait()
    server.stop(1).wait()
    return 0


# ------------------------------------------------------------------ load


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    seconds: float = 0.0
    #: CPU seconds the server's processes (and their children) used while measured.
    server_cpu: float = 0.0
    #: Of which the processes that follow the log (projections and chain): ``serve``'s
    #: follower process, or the ``flashpoint project`` worker.
    follower_cpu: float = 0.0
    #: Context switches of the threads answering calls (followers not counted).
    switches: int = 0


def is_follower(pid: int) -> bool:
    """Whether process ``pid`` follows the log (a server's follower, a project worker)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read().split(b"\0")
    except OSError:
        return False
    return b"project" in argv or any(b"run_follower" in arg for arg in argv)


def _tree(root: int) -> tuple[list[int], dict[int, float]]:
    """Process ``root`` and all its descendants (Linux), and each one's CPU seconds."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, parent = int(entry), int(fields[1])
        children.setdefault(parent, []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree, times


def cpu_seconds(root: int, *, followers_only: bool = False) -> float:
    """User and system CPU seconds of process ``root`` and all its descendants (Linux);
    ``followers_only``: of those that follow the log."""
    tree, times = _tree(root)
    return sum(times.get(pid, 0.0) for pid in tree if not followers_only or is_follower(pid))


def context_switches(root: int) -> int:
    """The context switches (voluntary and not) of every thread of ``root`` and of its
    descendants that answer calls (not those following the log): each is a thread put to
    sleep or woken, for the GIL, a lock, a queue or I/O, and costs the kernel's scheduler."""
    total = 0
    for pid in _tree(root)[0]:
        if is_follower(pid):
            continue
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/status") as status:
                    lines = status.read().splitlines()
            except OSError:
                continue
            total += sum(int(line.split()[1]) for line in lines if "ctxt_switches:" in line)
    return total


def wait_serving(address: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def load(
    address: str,
    clients: int,
    seconds: float,
    make_call: Callable[[grpc.Channel], Any],
    server_pids: Sequence[int] = (),
) -> Outcome:
    """``clients`` threads, each with its own channel, call until the time is up; only
    calls started after the warm-up count (and only the server's CPU time meanwhile)."""
    start = time.monotonic()
    measure_from = start + WARMUP_SECONDS
    stop = measure_from + seconds
    outcome = Outcome(seconds=seconds)
    lock = threading.Lock()

    def watch_cpu() -> None:
        if not server_pids:
            return
        time.sleep(max(measure_from - time.monotonic(), 0))
        before = sum(cpu_seconds(pid) for pid in server_pids)
        following = sum(cpu_seconds(pid, followers_only=True) for pid in server_pids)
        switched = sum(context_switches(pid) for pid in server_pids)
        time.sleep(max(stop - time.monotonic(), 0))
        outcome.switches = sum(context_switches(pid) for pid in server_pids) - switched
        outcome.server_cpu = sum(cpu_seconds(pid) for pid in server_pids) - before
        outcome.follower_cpu = (
            sum(cpu_seconds(pid, followers_only=True) for pid in server_pids) - following
        )

    def client() -> None:
        latencies: list[float] = []
        failures = 0
        with grpc.insecure_channel(address) as channel:
            call = make_call(channel)
            while True:
                started = time.monotonic()
                if started >= stop:
                    break
                try:
                    call()
                    ok = True
                except grpc.RpcError:
                    ok = False
                if started >= measure_from:
                    if ok:
                        latencies.append(time.monotonic() - started)
                    else:
                        failures += 1
        with lock:
            outcome.latencies.extend(latencies)
            outcome.failures += failures

    threads = [threading.Thread(target=client) for _ in range(clients)]
    threads.append(threading.Thread(target=watch_cpu))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


class PostgresProbe:
    """While a PostgreSQL configuration is measured: the CPU time of the backends serving
    this run's database (not the WAL writer or checkpointer, which serve every database),
    its commits and WAL syncs (fsyncs), and what the store's backends were doing,
    sampled every 20 ms from ``pg_stat_activity`` (where the limit is)."""

    def __init__(self, store: str) -> None:
        import psycopg

        self._connection = psycopg.connect(store, autocommit=True)
        self._database = str(self._connection.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
        backend = int(self._connection.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        with open(f"/proc/{backend}/stat") as stat:
            self._postmaster = int(stat.read().rsplit(")", 1)[1].split()[1])
        self.states: dict[str, int] = {}
        self.samples = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _backend_cpu(self) -> dict[int, float]:
        """CPU seconds of each backend connected to this database now (PostgreSQL serves
        other databases too, whose load is not this run's)."""
        pids = self._connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (self._database,),
        ).fetchall()
        ticks = os.sysconf("SC_CLK_TCK")
        found = {}
        for (pid,) in pids:
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(pid)] = (int(fields[11]) + int(fields[12])) / ticks
        return found

    def _counters(self) -> tuple[float, int, float]:
        commits = self._connection.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self._database,)
        ).fetchone()
        wal = self._connection.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
        return cpu_seconds(self._postmaster), int(commits[0]), float(wal[0]) if wal else 0.0  # type: ignore[index]

    def _sample(self) -> None:
        query = (
            "SELECT COALESCE(wait_event_type || ':' || wait_event, 'CPU'), state, count(*) "
            "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
            "GROUP BY 1, 2"
        )
        while not self._stopping.wait(0.02):
            self.samples += 1
            for wait, state, count in self._connection.execute(query, (self._database,)):
                key = "idle (waiting for the client)" if state == "idle" else f"{state}: {wait}"
                self.states[key] = self.states.get(key, 0) + int(count)

    def __enter__(self) -> PostgresProbe:
        self._before = self._counters()
        self._backends_before = self._backend_cpu()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        after = self._counters()
        backends = self._backend_cpu()
        # Backends that started meanwhile count from zero (a pool's rarely end meanwhile).
        self.cpu = sum(cpu - self._backends_before.get(pid, 0.0) for pid, cpu in backends.items())
        self.commits = after[1] - self._before[1]
        self.wal_syncs = after[2] - self._before[2]
        self._connection.close()

    def report(self, calls: int) -> str:
        busy = sorted(self.states.items(), key=lambda item: -item[1])[:4]
        per_sample = ", ".join(f"{key} {n / max(self.samples, 1):.1f}" for key, n in busy)
        return (
            f"{'':4}PostgreSQL: backends {self.cpu / max(calls, 1) * 1e6:,.0f} µs CPU/call, "
            f"{self.commits / max(calls, 1):.2f} commits and {self.wal_syncs / max(calls, 1):.2f} "
            f"WAL syncs per call; "
            f"backends on average: {per_sample}\n"
        )


def report_calls(template: bytes) -> Callable[[grpc.Channel], Callable[[], Any]]:
    def make_call(channel: grpc.Channel) -> Callable[[], Any]:
        stub = command_grpc.CommandServiceStub(channel)
        request = tr.request_from_command(command(c.ReportIncursion))
        request.ParseFromString(template)

        def call() -> Any:
            request.request_id = uuid.uuid4().hex  # type: ignore[attr-defined]
            return stub.ReportIncursion(request, timeout=30)  # type: ignore[arg-type]

        return call

    return make_call


#: Reports stored before ``--escalation`` measures queries (their projections caught up).
ESCALATION_SEED = 2000


def escalation_request() -> bytes:
    from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb

    return query_pb.GetEscalationRequest(country="POL").SerializeToString()


def escalation_calls(template: bytes) -> Callable[[grpc.Channel], Callable[[], Any]]:
    from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
    from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc

    def make_call(channel: grpc.Channel) -> Callable[[], Any]:
        stub = query_grpc.QueryServiceStub(channel)
        request = query_pb.GetEscalationRequest.FromString(template)

        def call() -> Any:
            return stub.GetEscalation(request, timeout=30)

        return call

    return make_call


def seed(address: str, count: int = ESCALATION_SEED) -> None:
    """Store ``count`` reports (against POL) and wait until the projections show them."""
    from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
    from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc

    with grpc.insecure_channel(address) as channel:
        stub = command_grpc.CommandServiceStub(channel)
        request = tr.request_from_command(command(c.ReportIncursion))

        def one(_: int) -> int:
            mine = type(request)()
            mine.CopyFrom(request)
            mine.request_id = uuid.uuid4().hex  # type: ignore[attr-defined]
            return int(stub.ReportIncursion(mine, timeout=30).position)  # type: ignore[arg-type]

        with ThreadPoolExecutor(8) as pool:
            last = max(pool.map(one, range(count)))
        query_grpc.QueryServiceStub(channel).GetEscalation(
            query_pb.GetEscalationRequest(country="POL", min_position=last), timeout=60
        )


def echo_calls(template: bytes) -> Callable[[grpc.Channel], Callable[[], Any]]:
    def make_call(channel: grpc.Channel) -> Callable[[], Any]:
        echo = channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)

        def call() -> Any:
            return echo(template, timeout=30)

        return call

    return make_call


def row(label: str, outcome: Outcome, baseline: float | None) -> float:
    rate = len(outcome.latencies) / outcome.seconds
    ordered = sorted(outcome.latencies) or [0.0]
    p50 = ordered[len(ordered) // 2] * 1000
    p99 = ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1000
    ratio = f"{rate / baseline:8.2f}" if baseline else f"{'1.00':>8}"
    calls = len(outcome.latencies)
    cpu = serving = switches = ""
    if calls and outcome.server_cpu:
        cpu = f"{outcome.server_cpu / calls * 1e6:8,.0f}"
        serving = f"{(outcome.server_cpu - outcome.follower_cpu) / calls * 1e6:9,.0f}"
        switches = f"{outcome.switches / calls:10.1f}"
    sys.stdout.write(
        f"{label:44}{rate:10,.0f}{ratio}{p50:9.1f}{p99:9.1f}{outcome.failures:8}{serving}{cpu}"
        f"{switches}\n"
    )
    sys.stdout.flush()
    return rate


# ------------------------------------------------------------------ servers and stores


def flashpoint() -> str:
    return shutil.which("flashpoint", path=os.path.dirname(sys.executable)) or "flashpoint"


@contextmanager
def process(argv: list[str], env: dict[str, str] | None = None) -> Iterator[Any]:
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@contextmanager
def sqlite_store() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="flashpoint-bench-throughput-"))
    try:
        yield f"sqlite:///{folder}/bench.db"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def postgres_problem(admin_url: str) -> str | None:
    """Why PostgreSQL at ``admin_url`` cannot be used, or None."""
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0]
    return None


@contextmanager
def postgres_store(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"flashpoint_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def flashpoint_server(
    store: str, workers: int, log_level: str = "info"
) -> Iterator[tuple[str, list[int]]]:
    """A server on ``store`` with ``workers`` processes: its address, and the processes
    (with their children) whose CPU time serves the calls."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    # By default at the default log level: the one line per call is part of the cost.
    base = [flashpoint(), "--store", store, "--log-level", log_level]
    serve = [*base, "serve", "--listen", address, "--workers", str(workers)]
    if workers == 1:
        with process(serve) as server:
            wait_serving(address, server)
            yield address, [server.pid]
        return
    # Create the tables once before the processes race to.
    subprocess.run(
        [*base, "migrate"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    with (
        process([*base, "project"]) as worker,
        process([*serve, "--projections", "external"]) as server,
    ):
        wait_serving(address, server)
        time.sleep(1.0)  # every worker bound, not just the first
        yield address, [server.pid, worker.pid]


@contextmanager
def aio_server(
    store: str, uvloop: bool, log_level: str = "info"
) -> Iterator[tuple[str, list[int]]]:
    """The ``grpc.aio`` prototype (``service.cli.aio_serve``) on ``store``, one process
    with ``serve``'s follower process."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "FLASHPOINT_STORE": store, "FLASHPOINT_LOG_LEVEL": log_level}
    argv = [sys.executable, "-m", "service.cli.aio_serve", "--listen", address]
    with process([*argv, *(["--uvloop"] if uvloop else [])], env=env) as server:
        wait_serving(address, server)
        yield address, [server.pid]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated process counts")
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument(
        "--log-level", default="info", help="the servers' (default info: a line per call)"
    )
    parser.add_argument(
        "--aio",
        action="store_true",
        help="also measure the grpc.aio prototype (with and without uvloop), one process",
    )
    parser.add_argument(
        "--escalation",
        action="store_true",
        help=f"also sustained GetEscalation on a store of {ESCALATION_SEED} reports",
    )
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server is not None:
        return run_echo_server(args.echo_server)
    workers = [int(n) for n in args.workers.split(",")]
    stores = args.stores.split(",")
    template = tr.request_from_command(
        command(c.ReportIncursion, request_id=uuid.uuid4().hex)
    ).SerializeToString()
    sys.stdout.write(
        f"{args.clients} clients, {args.seconds:g} s each after {WARMUP_SECONDS:g} s warm-up, "
        f"{os.cpu_count()} CPUs; group commit: "
        f"{os.environ.get('FLASHPOINT_GROUP_COMMIT', 'on (default)')}; "
        f"servers' log level: {args.log_level}; load average: {_load_average()}\n"
        f"CPU µs/call: 'serving' counts the processes answering calls, 'total' also those "
        f"following the log (projections, chain); 'switches': context switches per call of "
        f"the threads answering calls\n"
        f"{'':44}{'calls/s':>10}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
        f"{'serving':>9}{'total':>8}{'switches':>10}\n"
    )
    port = free_port()
    echo_argv = [sys.executable, "-m", "tests.benchmarks.bench_throughput"]
    with process([*echo_argv, "--echo-server", str(port)]) as echo:
        wait_serving(f"127.0.0.1:{port}", echo)
        outcome = load(
            f"127.0.0.1:{port}", args.clients, args.seconds, echo_calls(template), [echo.pid]
        )
    baseline = row("baseline: gRPC echo (1 process)", outcome, None)
    models: list[int | str] = [*workers, *(["aio", "aio+uvloop"] if args.aio else [])]
    for store_kind in stores:
        for count in models:
            if isinstance(count, str):
                label = f"ReportIncursion, {store_kind}, {count} prototype"
            else:
                label = f"ReportIncursion, {store_kind}, {count} worker{'s' if count > 1 else ''}"
            store_cm: Any
            if store_kind == "sqlite":
                store_cm = sqlite_store()
            else:
                admin = os.environ.get("FLASHPOINT_BENCH_POSTGRES", DEFAULT_POSTGRES)
                problem = postgres_problem(admin)
                if problem is not None:
                    sys.stdout.write(f"{label:44}skipped: PostgreSQL unavailable ({problem})\n")
                    continue
                store_cm = postgres_store(admin)
            with store_cm as store:
                server_cm: Any = (
                    aio_server(store, count == "aio+uvloop", args.log_level)
                    if isinstance(count, str)
                    else flashpoint_server(store, count, args.log_level)
                )
                with server_cm as (address, pids):
                    probe: Any = PostgresProbe(store) if store_kind == "postgresql" else None
                    if probe is not None:
                        # The warm-up is left out of the probe too.
                        threading.Timer(WARMUP_SECONDS, probe.__enter__).start()
                    outcome = load(
                        address, args.clients, args.seconds, report_calls(template), pids
                    )
                    if probe is not None:
                        probe.__exit__()
            row(label, outcome, baseline)
            if probe is not None:
                sys.stdout.write(probe.report(len(outcome.latencies)))
    if args.escalation:
        measure_escalation(args, port)
    sys.stdout.write(f"load average at the end: {_load_average()}\n")
    return 0


def measure_escalation(args: argparse.Namespace, port: int) -> None:
    """Sustained GetEscalation (POL, now) from the same clients, on a SQLite store of
    ESCALATION_SEED reports: the threaded server and the aio prototype, beside the echo
    answering the same request bytes."""
    template = escalation_request()
    echo_argv = [sys.executable, "-m", "tests.benchmarks.bench_throughput"]
    with process([*echo_argv, "--echo-server", str(port)]) as echo:
        wait_serving(f"127.0.0.1:{port}", echo)
        outcome = load(
            f"127.0.0.1:{port}", args.clients, args.seconds, echo_calls(template), [echo.pid]
        )
    baseline = row("baseline: gRPC echo, GetEscalation bytes", outcome, None)
    for model in ("threads", *(("aio", "aio+uvloop") if args.aio else ())):
        with sqlite_store() as store:
            server_cm: Any = (
                flashpoint_server(store, 1, args.log_level)
                if model == "threads"
                else aio_server(store, model == "aio+uvloop", args.log_level)
            )
            with server_cm as (address, pids):
                seed(address)
                outcome = load(
                    address, args.clients, args.seconds, escalation_calls(template), pids
                )
        row(f"GetEscalation, sqlite, {model}", outcome, baseline)


def _load_average() -> str:
    """The 1, 5 and 15 minute load averages: on a shared machine, how noisy the run was."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
