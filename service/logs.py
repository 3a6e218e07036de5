"""Structured logging, configured once: JSON lines in production, readable on a terminal.

The service's own lines go through structlog's native bound logger straight to stderr: a
line costs about 6 µs that way, against about 15 µs through ``structlog.stdlib`` and the
``logging`` machinery (a lock, a record, a formatter), which the per-call ``rpc`` line paid
on every RPC. The standard library's loggers (grpc, eventsourcing, psycopg) are rare and
still routed through the same processors, so every line has one shape.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from typing import Any, TextIO

import orjson
import structlog
from structlog._frames import _find_first_app_frame_and_name

#: Processors of every line, ours and the standard library's (before the renderer).
_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


class NamedWriter:
    """Writes rendered lines to a stream, one ``write`` per line under one lock (shared by
    every logger on that stream, so lines from many threads never interleave), and knows
    the module it logs for: ``add_logger_name`` reads ``name`` as from a stdlib logger."""

    def __init__(self, name: str, stream: TextIO | None, lock: threading.Lock) -> None:
        self.name = name
        self._stream = stream
        self._lock = lock

    def msg(self, message: str) -> None:
        # No stream given: whatever ``sys.stderr`` is now, not the one at configuration
        # (a process that swaps it, a CLI run inside a host that captures it, would
        # otherwise write every later line to a stream already closed).
        stream = self._stream or sys.stderr
        with self._lock:
            stream.write(message + "\n")
            stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


class NamedWriterFactory:
    """Makes a :class:`NamedWriter` named after the module that asked for the logger.

    Called once per module logger (``cache_logger_on_first_use``): the frame walk that finds
    the name costs nothing per line.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> NamedWriter:
        if args and isinstance(args[0], str):
            name = args[0]
        else:
            _frame, name = _find_first_app_frame_and_name(["structlog", "service.logs"])
        return NamedWriter(name, self._stream, self._lock)


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.format_exc_info if json_output else _identity,
            renderer,
        ],
        logger_factory=NamedWriterFactory(),
        # Filtering in the bound logger itself: a line below the level is a no-op method.
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json_output else _identity,
            renderer,
        ],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler on whatever ``sys.stderr`` is when a line is written (see
    :meth:`NamedWriter.msg`)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _orjson_dumps(value: Any, **options: Any) -> str:
    """JSON of one line (orjson: a third of the standard library's cost); values it cannot
    encode are written as their ``repr``, as the standard renderer does; a line orjson
    refuses whole (an integer beyond 64 bits, a key that is not a string) goes through the
    standard library's encoder instead."""
    try:
        return orjson.dumps(value, default=repr).decode()
    except TypeError:
        return json.dumps(value, default=repr)


def _identity(logger: Any, name: str, event_dict: Any) -> Any:
    return event_dict
