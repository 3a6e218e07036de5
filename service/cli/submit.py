"""``flashpoint submit FILE|-``: many commands from JSON lines, through the bulk stream.

Each line is one command: ``{"command": "ReportIncursion", "request_id": "...", ...}``, the
rest of the object shaped as the command's request message in ``proto/`` (as ``report
--json`` takes it). Every line is answered on its own: a line that is not JSON or not a
valid command is skipped with its line number and reason, one the server refuses is
counted by its status code, and the rest are recorded (or answered ``replayed`` when their
request ids were recorded before: submitting a file twice records nothing new). The
summary (also ``--json``) counts every line by outcome.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from service.cli.backend import open_backend
from service.cli.query import write_error
from service.client import ApiError
from service.domain.commands import COMMANDS, Command, CommandValidationError, parse_command
from service.settings import Settings

EXIT_OK, EXIT_FAILED = 0, 1


def _commands(lines: IO[str], skipped: list[dict[str, Any]]) -> Iterator[tuple[int, Command]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("a line is one JSON object")
            name = data.pop("command", None)
            if name not in COMMANDS:
                raise ValueError(f"'command' names no command: {name!r}")
            yield number, parse_command(COMMANDS[name], data)
        except CommandValidationError as error:
            skipped.append({"line": number, "reason": str(error)})
        except ValueError as error:  # JSON's errors are ValueErrors too
            skipped.append({"line": number, "reason": str(error)})


def submit(args: argparse.Namespace, settings: Settings) -> int:
    source: IO[str] = sys.stdin if args.file == "-" else Path(args.file).open(encoding="utf-8")  # noqa: SIM115
    skipped: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    outcomes: Counter[str] = Counter()
    numbered = _commands(source, skipped)
    lines: list[int] = []

    def commands() -> Iterator[Command]:
        for number, command in numbered:
            lines.append(number)
            yield command

    try:
        with open_backend(args, settings, create=True) as backend:
            for position, result in enumerate(backend.submit_many(commands())):
                if result.error is not None:
                    outcomes[f"rejected {result.error.code.name}"] += 1
                    rejected.append({"line": lines[position], "error": str(result.error)})
                elif result.result is not None and result.result.replayed:
                    outcomes["replayed"] += 1
                else:
                    outcomes["recorded"] += 1
    except ApiError as error:
        return write_error(error)
    finally:
        if source is not sys.stdin:
            source.close()
    if skipped:
        outcomes["skipped"] = len(skipped)
    summary = {"outcomes": dict(sorted(outcomes.items())), "skipped": skipped, "rejected": rejected}
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        for outcome, count in sorted(outcomes.items()):
            sys.stdout.write(f"{outcome:24}{count:>10,}\n")
        for problem in [*skipped, *rejected][:20]:
            sys.stderr.write(
                f"line {problem['line']}: {problem.get('reason') or problem['error']}\n"
            )
    return EXIT_FAILED if skipped or rejected else EXIT_OK
