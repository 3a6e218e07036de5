"""The typed client as the CLI makes it from its flags (``--server``, ``--token``, TLS)."""

from __future__ import annotations

import argparse
import os

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


def add_client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token", help="bearer token (env FLASHPOINT_TOKEN)")
    parser.add_argument("--tls-ca", help="CA certificate to trust the server's TLS certificate")
    parser.add_argument("--tls-client-cert", help="client certificate for mutual TLS")
    parser.add_argument("--tls-client-key", help="client key for mutual TLS")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline per call, seconds")
