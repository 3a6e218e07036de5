"""Runs the ``grpc.aio`` prototype (``service.api.aio_prototype``) for the benchmarks:

    python -m service.cli.aio_serve --listen 127.0.0.1:PORT [--uvloop]

The store and the other settings come from ``FLASHPOINT_*`` variables, as for ``serve``;
the projections and the chain follow in ``serve``'s follower process.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import structlog

from service import bootstrap
from service.api.aio_prototype import create_aio_server
from service.api.auth import Authenticator
from service.cli.serve import FollowerProcess
from service.logs import configure_logging
from service.settings import Settings

log = structlog.get_logger()


async def _serve(settings: Settings, listen: str) -> None:
    authenticator = Authenticator.load(settings.tokens_file, settings.tokens)
    service = bootstrap.build_server(settings)
    follower = FollowerProcess(settings)
    follower.attach(service)
    follower.start()
    server, port = create_aio_server(listen, service, authenticator, settings.threads)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await server.start()
    log.info("server.started", listen=listen, port=port, prototype="grpc.aio")
    try:
        await stopping.wait()
        await server.stop(settings.grace_seconds)
    finally:
        follower.stop(settings.grace_seconds + 30)
        service.close()
    log.info("server.stopped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--uvloop", action="store_true", help="run the loop on uvloop")
    args = parser.parse_args()
    settings = Settings.load()
    configure_logging(settings.log_level, settings.log_format)
    if args.uvloop:
        import uvloop

        uvloop.run(_serve(settings, args.listen))
    else:
        asyncio.run(_serve(settings, args.listen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
