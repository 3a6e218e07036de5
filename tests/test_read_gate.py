"""The read gate: a few reads at once, turns in arrival order, long reads pass their turn,
and a caller that leaves while waiting takes nothing with it."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.api.gen.flashpoint.v1 import query_service_pb2 as q
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.read_gate import READ_SLOTS, TURN_SECONDS, ReadGate
from service.application.errors import DeadlineReached
from tests.api_support import running_server


class Caller:
    def __init__(self, seconds: float | None = None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def __call__(self) -> None:
        """The caller's check, as the servicers make it from a call's context."""
        remaining = self.time_remaining()
        if not self.active or (remaining is not None and remaining <= 0):
            raise DeadlineReached("the caller is gone")


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_no_more_reads_than_slots_run_at_once() -> None:
    gate = ReadGate(2)
    lock = threading.Lock()
    running, most, done = [0], [0], []

    def read(n: int) -> None:
        with gate.admitted(Caller()):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.01)
            with lock:
                running[0] -= 1
        done.append(n)

    threads = [start(functools.partial(read, n)) for n in range(12)]
    for thread in threads:
        thread.join(10)
    assert sorted(done) == list(range(12))
    assert most[0] == 2


def test_turns_go_in_arrival_order() -> None:
    gate = ReadGate(1)
    order: list[str] = []
    release = threading.Event()

    def holder() -> None:
        with gate.admitted(Caller()):
            release.wait(5)
            order.append("holder")

    def reader(name: str) -> None:
        with gate.admitted(Caller()):
            order.append(name)

    threads = [start(holder)]
    wait_until(lambda: not gate.waiting and threads[0].is_alive())
    time.sleep(0.01)
    for count, name in enumerate(["a", "b", "c"], start=1):
        threads.append(start(functools.partial(reader, name)))
        wait_until(functools.partial(lambda expected: gate.waiting == expected, count))
    release.set()
    for thread in threads:
        thread.join(5)
    assert order == ["holder", "a", "b", "c"]


def test_a_long_read_lets_a_waiting_read_go_first() -> None:
    gate = ReadGate(1)
    order: list[str] = []
    waiting = threading.Event()

    def long_read() -> None:
        caller = Caller()
        with gate.admitted(caller):
            order.append("long: first unit")
            waiting.wait(5)
            wait_until(lambda: gate.waiting == 1)
            gate.pass_turn(caller)  # too soon: it keeps its turn
            assert order == ["long: first unit"]
            time.sleep(TURN_SECONDS)
            gate.pass_turn(caller)
            order.append("long: second unit")

    def short_read() -> None:
        with gate.admitted(Caller()):
            order.append("short")

    long = start(long_read)
    wait_until(lambda: order == ["long: first unit"])
    short = start(short_read)
    waiting.set()
    long.join(5)
    short.join(5)
    assert order == ["long: first unit", "short", "long: second unit"]


def test_passing_the_turn_with_nobody_waiting_keeps_it() -> None:
    gate = ReadGate(1)
    caller = Caller()
    with gate.admitted(caller):
        gate.pass_turn(caller)
        assert gate.waiting == 0
    with gate.admitted(caller):  # the one slot was given back once, not lost or doubled
        pass


@pytest.mark.parametrize("leaves", ["deadline", "cancelled"])
def test_a_caller_that_leaves_while_waiting_gets_deadline_reached(leaves: str) -> None:
    gate = ReadGate(1)
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with gate.admitted(Caller()):
            holding.set()
            release.wait(5)

    start(holder)
    holding.wait(5)
    caller = Caller(0.1) if leaves == "deadline" else Caller()
    if leaves == "cancelled":

        def cancel() -> None:
            time.sleep(0.1)
            caller.active = False

        start(cancel)
    started = time.monotonic()
    with pytest.raises(DeadlineReached), gate.admitted(caller):
        raise AssertionError("admitted while the only slot was held")
    assert time.monotonic() - started < 2
    assert gate.waiting == 0
    release.set()


def test_a_turn_is_not_lost_when_its_waiter_leaves() -> None:
    gate = ReadGate(1)
    holding = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with gate.admitted(Caller()):
            holding.set()
            release.wait(5)

    first = start(holder)
    holding.wait(5)
    with pytest.raises(DeadlineReached), gate.admitted(Caller(0.05)):
        pass
    release.set()
    first.join(5)
    admitted = threading.Event()

    def later() -> None:
        with gate.admitted(Caller(2)):
            admitted.set()

    start(later).join(5)
    assert admitted.is_set()


def test_a_server_answers_a_read_once_a_turn_is_free_and_health_meanwhile(
    sqlite_url: str,
) -> None:
    with running_server(sqlite_url) as server, server.channel() as channel:
        assert server.running.servicers is not None
        gate = server.running.servicers.queries.read_gate
        queries = query_grpc.QueryServiceStub(channel)
        request = q.GetEscalationRequest(country="EST")
        queries.GetEscalation(request, timeout=10)  # the read models exist
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            with gate.admitted(Caller()):
                holding.set()
                release.wait(10)

        holders = [start(hold) for _ in range(READ_SLOTS)]
        wait_until(lambda: all(thread.is_alive() for thread in holders) and holding.is_set())
        wait_until(lambda: gate.waiting == 0)
        answer = queries.GetEscalation.future(request, timeout=10)
        wait_until(lambda: gate.waiting == 1)
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert not answer.done()
        with pytest.raises(grpc.RpcError) as waited_too_long:
            queries.GetEscalation(request, timeout=0.3)
        assert waited_too_long.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: gate.waiting == 1)  # the call that gave up left the queue
        release.set()
        assert answer.result(timeout=10).escalation.subject == "EST"
        for thread in holders:
            thread.join(5)
