"""The vocabulary of developments is complete: every surface knows every declared kind.

:func:`vocabulary_problems` walks each entry of a vocabulary and names every place that
does not know it (the command model, the stored event, the proto, the CLI, the coding, the
parameter table, the projections' routing, the README). The real vocabulary must yield none;
a deliberately broken one must yield one problem per missing part, so the check is shown
able to fail.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import cast

import pytest
from google.protobuf.descriptor import FileDescriptor

from projections import base, escalation, parameters
from projections.parameters import MissingParameter
from service.adapters.mapper import REGISTRY
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.cli.main import build_parser
from service.domain import vocabulary as v
from service.domain.coding import coding_for
from service.domain.commands import COMMANDS, ReportDevelopment
from service.domain.incident import Incident
from service.domain.vocabulary import Coding, HalfLifeClass, Kind, Size, Step, UnknownKind

ROOT = Path(__file__).resolve().parent.parent


@cache
def report_subcommands() -> frozenset[str]:
    """The names of ``flashpoint report KIND`` subcommands."""

    def subparsers(parser: argparse.ArgumentParser) -> Mapping[str, argparse.ArgumentParser]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return cast(Mapping[str, argparse.ArgumentParser], action.choices)
        return {}

    return frozenset(subparsers(subparsers(build_parser())["report"]))


@cache
def readme_developments_table() -> str:
    """The rows of the README's table under "The developments"."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### The developments") :]
    rows = re.search(r"(?:^\|.*\n)+", section, re.MULTILINE)
    assert rows, "the README has no table under 'The developments'"
    return rows.group(0)


def routing_set(entry: Kind | Step) -> tuple[str, frozenset[str]]:
    if isinstance(entry, Step):
        return "INCIDENT_LIFECYCLE", base.INCIDENT_LIFECYCLE
    return {
        "incidents": ("INCIDENT_REPORTED", base.INCIDENT_REPORTED),
        "sanctions": ("SANCTIONS_EVENTS", base.SANCTIONS_EVENTS),
        "negotiations": ("NEGOTIATION_EVENTS", base.NEGOTIATION_EVENTS),
    }[entry.collection]


def vocabulary_problems(
    entries: Iterable[Kind | Step],
    *,
    weights: Mapping[str, float] = parameters.WEIGHTS,
    half_lives: Mapping[str, float] = parameters.HALF_LIFE_DAYS,
    descriptor: FileDescriptor = command_pb.DESCRIPTOR,
) -> list[str]:
    """Every place that does not know an entry of the vocabulary, in words."""
    problems: list[str] = []
    service = descriptor.services_by_name["CommandService"]
    rpcs = {method.name: method for method in service.methods}
    table = readme_developments_table()
    for entry in entries:
        name = entry.command
        say = problems.append
        # The command model, and the names it takes from the vocabulary.
        command_class = COMMANDS.get(name)
        if command_class is None:
            say(f"{name}: no command class in COMMANDS")
        else:
            if command_class.cli_name != entry.cli:
                say(f"{name}: cli_name is {command_class.cli_name!r}, not {entry.cli!r}")
            reports = isinstance(entry, Kind) and entry.collection == "incidents"
            if not issubclass(command_class, ReportDevelopment):
                if reports:
                    say(f"{name}: reports an incident but is no ReportDevelopment")
            elif not reports:
                say(f"{name}: is a ReportDevelopment but {entry.event} is no incident report")
            elif isinstance(entry, Kind) and command_class.kind != entry.kind:
                say(f"{name}: kind is {command_class.kind!r}, not {entry.kind!r}")
        # The stored event: registered under its type name, in its collection.
        if entry.event not in REGISTRY.event_type_names():
            say(f"{name}: event type {entry.event!r} is not registered in the mapper")
        else:
            registered = REGISTRY.class_of(entry.event)
            if getattr(registered, "type_name", None) != entry.event:
                say(f"{name}: the class registered as {entry.event!r} has another type_name")
            if REGISTRY.collection_of(entry.event) != entry.collection:
                say(
                    f"{name}: event {entry.event!r} is recorded in "
                    f"{REGISTRY.collection_of(entry.event)!r}, not {entry.collection!r}"
                )
            if (
                isinstance(entry, Kind)
                and entry.collection == "incidents"
                and Incident.REPORTED_EVENTS.get(entry.kind) is not registered
            ):
                say(f"{name}: Incident.REPORTED_EVENTS[{entry.kind!r}] is not {entry.event}")
        # The proto: an RPC of the command's name taking and answering its messages.
        for message in (f"{name}Request", f"{name}Response"):
            if message not in descriptor.message_types_by_name:
                say(f"{name}: no message {message} in {descriptor.name}")
        method = rpcs.get(name)
        if method is None:
            say(f"{name}: no RPC {name} in CommandService")
        elif (method.input_type.name, method.output_type.name) != (
            f"{name}Request",
            f"{name}Response",
        ):
            say(f"{name}: RPC {name} takes or answers the wrong messages")
        # The CLI.
        if entry.cli not in report_subcommands():
            say(f"{name}: no `flashpoint report {entry.cli}` subcommand")
        # The README's table of developments.
        for word in (entry.command, entry.event):
            if f"`{word}`" not in table:
                say(f"{name}: the README's developments table does not name `{word}`")
        # The projections' routing of stored event types.
        set_name, routed = routing_set(entry)
        if entry.event not in routed:
            say(f"{name}: {entry.event} is not in projections.base.{set_name}")
        if isinstance(entry, Step):
            if entry.coding is not None and entry.coding not in v.NAMED_CODINGS.values():
                say(f"{name}: its coding is not one coding_for knows by name")
            continue
        # The coding, as recorded: the kind's own, and each refinement's.
        try:
            recorded = coding_for(entry.kind)
        except UnknownKind:
            say(f"{name}: coding_for does not know kind {entry.kind!r}")
        else:
            if recorded != entry.coding.as_dict():
                say(f"{name}: coding_for gives {recorded}, not {entry.coding.as_dict()}")
        # The escalation parameters: every weight key, the half-life class.
        for key in sorted(entry.weight_keys):
            if key not in weights:
                say(f"{name}: weight {key!r} is missing from parameters.WEIGHTS")
            if key in weights and parameters.CLASS_OF.get(key) != entry.half_life:
                say(f"{name}: parameters.CLASS_OF[{key!r}] is not {entry.half_life!r}")
        if entry.half_life not in half_lives:
            say(f"{name}: half-life class {entry.half_life!r} is not in HALF_LIFE_DAYS")
        # The fields the entry reads exist on the command model that carries them.
        if command_class is not None:
            for field in sorted(entry.detail_fields):
                if field not in command_class.model_fields:
                    say(f"{name}: {command_class.__name__} has no field {field!r}")
    return problems


class TestTheVocabulary:
    def test_every_surface_knows_every_declared_kind(self) -> None:
        """The real vocabulary: nothing is missing anywhere."""
        problems = vocabulary_problems(v.ENTRIES)
        assert not problems, "\n".join(problems)

    def test_a_kind_declared_nowhere_else_is_named_at_every_place_it_is_missing(self) -> None:
        """An extra kind with no command, event, RPC, CLI, weight, ... yields each problem."""
        parade = Kind(
            "military_parade", "HoldParade", "ParadeHeld", "parade", "incidents",
            Coding("151", "MOBILIZE", "parade"),
            cast(HalfLifeClass, "ceremonial"), weight_key="parade", size=Size("troop_count"),
        )  # fmt: skip

        problems = vocabulary_problems([parade])

        assert problems == [
            "HoldParade: no command class in COMMANDS",
            "HoldParade: event type 'ParadeHeld' is not registered in the mapper",
            "HoldParade: no message HoldParadeRequest in flashpoint/v1/command_service.proto",
            "HoldParade: no message HoldParadeResponse in flashpoint/v1/command_service.proto",
            "HoldParade: no RPC HoldParade in CommandService",
            "HoldParade: no `flashpoint report parade` subcommand",
            "HoldParade: the README's developments table does not name `HoldParade`",
            "HoldParade: the README's developments table does not name `ParadeHeld`",
            "HoldParade: ParadeHeld is not in projections.base.INCIDENT_REPORTED",
            "HoldParade: coding_for does not know kind 'military_parade'",
            "HoldParade: weight 'parade' is missing from parameters.WEIGHTS",
            "HoldParade: half-life class 'ceremonial' is not in HALF_LIFE_DAYS",
        ]

    def test_a_kind_that_drifted_from_its_command_and_table_is_named(self) -> None:
        """A known kind with a renamed CLI, a new refined weight and an unknown size field."""
        strike = v.by_kind("strike")
        drifted = dataclasses.replace(
            strike,
            cli="air-strike",
            size=Size("bombs_dropped"),
            refinements=(
                v.Refinement(v.When("weapon", frozenset({"missile"})), weight_key="missile_strike"),
            ),
        )

        problems = vocabulary_problems([drifted])

        assert problems == [
            "ReportStrike: cli_name is 'strike', not 'air-strike'",
            "ReportStrike: no `flashpoint report air-strike` subcommand",
            "ReportStrike: weight 'missile_strike' is missing from parameters.WEIGHTS",
            "ReportStrike: ReportStrike has no field 'bombs_dropped'",
        ]

    def test_a_weight_missing_from_the_table_is_named(self) -> None:
        """Removing a kind's weight from the parameter table is a problem naming it."""
        weights = {k: w for k, w in parameters.WEIGHTS.items() if k != "naval_blockade"}

        problems = vocabulary_problems([v.by_kind("naval_blockade")], weights=weights)

        assert problems == [
            "ImposeBlockade: weight 'naval_blockade' is missing from parameters.WEIGHTS"
        ]

    def test_lookups_by_kind_command_and_event(self) -> None:
        """One entry answers to its kind, its command name and its event type name."""
        blockade = v.by_kind("naval_blockade")
        assert v.by_command("ImposeBlockade") is blockade
        assert v.by_event("BlockadeImposed") is blockade
        assert v.by_command("DisputeIncident") == Step(
            "DisputeIncident", "IncidentDisputed", "dispute", coding=v.DENIAL
        )
        for lookup in (v.by_kind, v.by_command, v.by_event):
            with pytest.raises(UnknownKind, match="'parade'"):
                lookup("parade")

    def test_the_vocabulary_covers_the_released_names(self) -> None:
        """12 incident kinds, 4 sanctions and 6 negotiation kinds, 5 lifecycle steps."""
        assert len(v.kinds_in("incidents")) == 15  # the 12 released, two new, coded events
        assert [k.kind for k in v.kinds_in("sanctions")] == [
            "sanctions_imposed", "sanctions_extended", "sanctions_eased", "sanctions_lifted",
        ]  # fmt: skip
        assert len(v.kinds_in("negotiations")) == 6
        assert {s.event for s in v.STEPS} == {
            "IncidentCorroborated", "IncidentDisputed", "IncidentCorrected",
            "IncidentRetracted", "MilitaryExerciseEnded",
        }  # fmt: skip
        assert set(COMMANDS) == set(v.BY_COMMAND)

    def test_statically_named_event_classes_are_the_generated_ones(self) -> None:
        """The names declared for type checkers in Incident are classes the vocabulary made."""
        tree = ast.parse((ROOT / "service" / "domain" / "incident.py").read_text())
        incident = next(
            node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Incident"
        )
        declared = [
            statement.target.id
            for node in incident.body
            if isinstance(node, ast.If)
            for statement in node.body
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
        ]
        assert declared, "no names declared for type checkers"
        for name in declared:
            event_class = vars(Incident)[name]
            assert event_class.__qualname__ == f"Incident.{name}"
            assert Incident.REPORTED_EVENTS[v.kind_of_event(name).kind] is event_class


class TestRefinements:
    @pytest.mark.parametrize(
        ("kind", "details", "weight"),
        [
            ("threat", {"threat_kind": "military"}, "military_threat"),
            ("threat", {"threat_kind": "ultimatum"}, "military_threat"),
            ("threat", {"threat_kind": "other"}, "threat"),
            ("condemnation", {"accusation": True}, "accusation"),
            ("condemnation", {"accusation": False}, "condemnation"),
            ("armed_clash", {"ceasefire_violation": True}, "armed_clash"),
            ("ceasefire_violation", {}, "ceasefire_violation"),
            ("naval_blockade", {"vessels_count": 3}, "naval_blockade"),
        ],
    )
    def test_details_pick_the_weight(
        self, kind: str, details: dict[str, object], weight: str
    ) -> None:
        assert escalation.weight_key(kind, dict(details)) == weight

    @pytest.mark.parametrize(
        ("kind", "details", "size"),
        [
            ("airspace_incursion", {"count": 19, "intercepted": 3}, (19.0, 0.0)),
            ("strike", {"munitions_count": 810, "fatalities": 4}, (810.0, 4.0)),
            ("military_exercise", {"troop_count": 30_000}, (30.0, 0.0)),
            ("troop_deployment", {"troop_count": 40_000}, (40.0, 0.0)),
            ("alert", {"aircraft_count": 4}, (4.0, 0.0)),
            ("diplomats_expelled", {"count": 2}, (2.0, 0.0)),
            ("armed_clash", {"fatalities": 2}, (0.0, 2.0)),
            ("ceasefire_violation", {"fatalities": 3, "injured": 9}, (0.0, 3.0)),
            ("naval_blockade", {"vessels_count": 12}, (12.0, 0.0)),
            ("statement", {"speaker": "x"}, (0.0, 0.0)),
        ],
    )
    def test_fields_give_the_size(
        self, kind: str, details: dict[str, object], size: tuple[float, float]
    ) -> None:
        assert escalation.incident_size(kind, dict(details)) == size


class TestUnknownKindsInTheFold:
    def test_an_unknown_kind_raises_a_specific_error_naming_it(self) -> None:
        """The fold never meets a KeyError: an unknown kind is UnknownKind, naming it."""
        with pytest.raises(UnknownKind, match="'parade'") as raised:
            escalation.weight_key("parade", {})
        assert not isinstance(raised.value, KeyError)
        with pytest.raises(UnknownKind, match="'parade'"):
            escalation.incident_size("parade", {})

    def test_an_unknown_weight_or_class_raises_a_specific_error_naming_it(self) -> None:
        with pytest.raises(MissingParameter, match="weight for 'parade'") as raised:
            escalation.contribution("parade", 1.0, 0.0, 1.0)
        assert not isinstance(raised.value, KeyError)
        assert parameters.VERSION in str(raised.value)
        with pytest.raises(MissingParameter, match="half-life class for 'parade'"):
            parameters.half_life_of("parade")
