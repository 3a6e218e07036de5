"""The direct translation of requests into commands agrees with the JSON one it replaced.

``command_from_request`` reads request fields directly; the reference here is what it did
before: the request's JSON form (``message_to_data``) validated into the command. For
arbitrary mutated requests of every command, both give the same command, or both refuse
it with the same violations (field names and descriptions).
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from service.api import translation as tr
from service.domain import commands as c
from service.domain.commands import CommandValidationError, parse_command
from tests.factories import command
from tests.test_api_fuzz import FUZZ_SETTINGS, mutate

RPCS = list(c.COMMANDS)


def reference(command_class: type[c.Command], request: Message) -> Any:
    """The translation as it was: through the request's JSON form."""
    try:
        return parse_command(command_class, tr.message_to_data(request))
    except CommandValidationError as error:
        return [(v.field, v.description) for v in error.violations]


def direct(command_class: type[c.Command], request: Message) -> Any:
    try:
        return tr.command_from_request(command_class, request)
    except CommandValidationError as error:
        return [(v.field, v.description) for v in error.violations]


def request_of(rpc: str) -> Message:
    return tr.request_from_command(command(c.COMMANDS[rpc], request_id="req-1"))


@pytest.mark.parametrize("rpc", RPCS)
def test_a_valid_request_gives_the_same_command(rpc: str) -> None:
    command_class = c.COMMANDS[rpc]
    request = request_of(rpc)
    translated = direct(command_class, request)
    assert isinstance(translated, command_class)
    assert translated == reference(command_class, request)
    assert translated.json_data == reference(command_class, request).json_data


@pytest.mark.parametrize("rpc", RPCS)
@FUZZ_SETTINGS
@given(data=st.data())
def test_a_mutated_request_gives_the_same_answer(rpc: str, data: st.DataObject) -> None:
    command_class = c.COMMANDS[rpc]
    request = request_of(rpc)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        mutate(data, request)
    assert direct(command_class, request) == reference(command_class, request)


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(-62_135_596_801, 0), (253_402_300_800, 0), (0, -1), (0, 1_000_000_000), (0, 999_999_999)],
)
def test_timestamps_out_of_range_are_named_as_before(seconds: int, nanos: int) -> None:
    request: Any = request_of("ReportIncursion")
    request.evidence.occurred_at.CopyFrom(Timestamp(seconds=seconds, nanos=nanos))
    request.evidence.reported_at.CopyFrom(Timestamp(seconds=seconds, nanos=nanos))
    answer = direct(c.ReportIncursion, request)
    assert answer == reference(c.ReportIncursion, request)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -0.0, 1e308])
def test_non_finite_numbers_are_refused_as_before(value: float) -> None:
    request: Any = request_of("ReportIncursion")
    request.location.country = "POL"
    request.location.latitude = value
    request.location.longitude = value
    assert direct(c.ReportIncursion, request) == reference(c.ReportIncursion, request)
    correction: Any = request_of("CorrectIncident")
    changes = Struct()
    changes.update({"count": value, "nested": {"deeper": [1.0, value]}})
    correction.changes.CopyFrom(changes)
    assert direct(c.CorrectIncident, correction) == reference(c.CorrectIncident, correction)
