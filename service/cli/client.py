"""The typed client as the CLI makes it from its flags (``--server``, ``--token``, TLS)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from service.client import FlashpointClient


def make_client(args: argparse.Namespace) -> FlashpointClient:
    return FlashpointClient(
        args.server,
        token=args.token or os.environ.get("FLASHPOINT_TOKEN"),
        tls_ca=args.tls_ca,
        tls_client_cert=args.tls_client_cert,
        tls_client_key=args.tls_client_key,
        timeout=args.timeout,
        client_name="flashpoint-cli",
    )


def add_client_flags(parser: argparse.ArgumentParser, *, inner: bool = False) -> None:
    """The flags that reach a server. ``inner``: a subcommand's copy of flags its parent
    has too (``query --server X ranking`` and ``query ranking --server X``), which must not
    overwrite the parent's value with a default of its own."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if inner else value

    parser.add_argument(
        "--token", default=default(None), help="bearer token (env FLASHPOINT_TOKEN)"
    )
    parser.add_argument(
        "--tls-ca",
        default=default(None),
        help="CA certificate to trust the server's TLS certificate",
    )
    parser.add_argument(
        "--tls-client-cert", default=default(None), help="client certificate for mutual TLS"
    )
    parser.add_argument("--tls-client-key", default=default(None), help="client key for mutual TLS")
    parser.add_argument(
        "--timeout", type=float, default=default(10.0), help="deadline per call, seconds"
    )
