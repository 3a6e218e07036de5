"""The web dashboard's server: the HTTP/JSON API (Connect-style unary calls, server-sent
events for the streams, the audit export), the health check and the static pages, served
by aiohttp on an event loop thread of its own beside the gRPC server, in the same process.

The loop only moves bytes: every RPC runs in a worker thread through
:class:`~service.api.http.calls.InProcessRpcs` (the gRPC server's own handlers, behind its
own interceptor), and its answer is encoded to JSON there too. README "Web dashboard and
HTTP API" is the contract.

aiohttp rather than the standard library's ``ThreadingHTTPServer``: a server-sent stream is
a connection held open for hours, which that server pays for with a thread each, however
idle; here an idle stream is a coroutine, and only the servicer's own generator (which a
gRPC stream has too, bounded by the same ``StreamSlots``) holds a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import mimetypes
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog
from aiohttp import web

from service.api.auth import Authenticator
from service.api.errors import map_error
from service.api.http.calls import CallEnded, HttpCallContext, InProcessRpcs
from service.api.interceptors import CLIENT_KEY, REQUEST_ID_KEY, CallInterceptor, new_request_id
from service.api.servicers import Servicers
from service.api.translation import json_api
from service.application.errors import CommandValidationError, StoreUnavailable
from service.audit.export import export_lines
from service.audit.tables import LogTables
from service.metrics import Metrics

log = structlog.get_logger()

#: The UI's files (the dashboard engineer's directory; this server only serves it).
STATIC_ROOT = Path(__file__).resolve().parent / "static"

#: Connect's HTTP status for each code (README "Web dashboard and HTTP API").
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

#: The server-streaming methods served as server-sent events.
SSE_METHODS = frozenset({
    "/flashpoint.v1.QueryService/WatchEscalation",
    "/flashpoint.v1.AuditService/SubscribeEvents",
    "/flashpoint.v1.AuditService/ReadEvents",
})  # fmt: skip
#: Services whose unary methods may also be called with GET (they only read).
READ_SERVICES = frozenset({"query", "audit"})
#: The key the export is authorized by: AuditService's roles (auditor, admin).
EXPORT_METHOD = "/flashpoint.v1.AuditService/Export"

#: An SSE comment is sent after this long without a message, so proxies keep the stream.
KEEPALIVE_SECONDS = 15.0
#: Encoded messages a stream may hold for a client that reads slower than they come; past
#: that the client is dropped (it resumes from its last ``id:``), never the server stalled.
SSE_QUEUE_MESSAGES = 1024
#: Export lines sent per write.
EXPORT_CHUNK_BYTES = 64 * 1024

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".map": "application/json",
}

JSON_TYPE = "application/json"

#: A request's id (given or made), and the code it was answered with, for its log line.
REQUEST_ID = web.RequestKey("request_id", str)
CODE = web.RequestKey("code", str)


@dataclass(frozen=True)
class HttpParts:
    """What the HTTP API answers from: the gRPC server's servicers, its authenticator, its
    metrics and store health, and the log's tables (for the export)."""

    servicers: Servicers
    authenticator: Authenticator
    log_tables: LogTables
    metrics: Metrics | None = None
    store_up: Callable[[], bool] | None = None


def error_body(code: grpc.StatusCode, message: str, details: list[Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code.name.lower(), "message": message}
    if details:
        body["details"] = details
    return body


def mapped_error(error: BaseException) -> tuple[grpc.StatusCode, dict[str, Any]]:
    """An error raised on the HTTP side, through the same error table as the RPCs'."""
    mapped = map_error(error)
    if mapped.internal:
        log.error("http.unexpected_error", exc_info=error)
    return mapped.code, error_body(
        mapped.code, mapped.message, json_api.status_details(mapped.status)
    )


def ended_error(ended: CallEnded) -> tuple[grpc.StatusCode, dict[str, Any]]:
    return ended.code, error_body(
        ended.code, ended.details, json_api.status_details_json(ended.trailing_metadata)
    )


class _Stream:
    """One server-sent stream: the queue between its producer thread and the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: Any) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(SSE_QUEUE_MESSAGES)
        self.transport = transport
        self.overflowed = False

    def offer(self, frame: bytes | None) -> None:
        """In the loop: queue a frame (None: the end), or drop a client that lags."""
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True
            # The writer may be blocked on this client's full socket: closing it ends that.
            if self.transport is not None:
                self.transport.abort()
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    def send(self, frame: bytes | None) -> None:
        """From the producer thread."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the server stopped
            self.loop.call_soon_threadsafe(self.offer, frame)


def sse_frame(data: bytes, event: str | None = None, event_id: int | None = None) -> bytes:
    head = b""
    if event_id is not None:
        head += b"id: %d\n" % event_id
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


class HttpApi:
    """The aiohttp application and the worker threads its calls run in."""

    def __init__(
        self, parts: HttpParts, *, threads: int, static_root: Path = STATIC_ROOT,
        max_body_bytes: int = 4 * 1024 * 1024, loopback: bool = True,
    ) -> None:  # fmt: skip
        self._parts = parts
        self._loopback = loopback
        self._authenticator = parts.authenticator
        interceptor = CallInterceptor(parts.authenticator, parts.metrics, parts.store_up)
        self._rpcs = InProcessRpcs(parts.servicers, interceptor)
        self._unary_pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")
        # Streams beyond the servicers' StreamSlots are refused at once, so a little more
        # than that limit never leaves a refusal waiting for a thread.
        self._stream_pool = ThreadPoolExecutor(
            max_workers=max(threads // 2, 1) + 4, thread_name_prefix="http-stream"
        )
        self._static_root = static_root.resolve()
        self._streams: set[HttpCallContext] = set()
        self.stopping = False
        self.app = web.Application(middlewares=[self._middleware], client_max_size=max_body_bytes)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/api/export", self._export)
        self.app.router.add_route("*", "/api/stream/{service}/{method}", self._stream)
        self.app.router.add_route("*", "/api/{service}/{method}", self._unary)
        self.app.router.add_route("*", "/api/{tail:.*}", self._no_route)
        self.app.router.add_route("*", "/{path:.*}", self._static)

    def close(self) -> None:
        self.stopping = True
        for context in list(self._streams):
            context.cancel()
        self._unary_pool.shutdown(wait=False, cancel_futures=True)
        self._stream_pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ every request

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        given = request.headers.get(REQUEST_ID_KEY, "")
        request_id = given if 0 < len(given) <= 128 and given.isprintable() else new_request_id()
        request[REQUEST_ID] = request_id
        response: web.StreamResponse
        try:
            if self._foreign_host(request):
                # An open loopback server answers only to loopback names: a page of another
                # site whose name was rebound to 127.0.0.1 must not read it (DNS rebinding).
                code = grpc.StatusCode.PERMISSION_DENIED
                message = "an open (tokenless) server answers only Host: localhost or 127.0.0.1"
                response = self._error(request, code, error_body(code, message, []))
            else:
                response = await handler(request)
        except web.HTTPException as error:
            # aiohttp's own refusals (a body too large, a malformed request line): JSON on
            # the API's paths, as every other answer there.
            response = self._http_error(request, error)
        except asyncio.CancelledError:
            log.info("http", method=request.method, path=request.path, status=499,
                     code="cancelled", request_id=request_id, duration_ms=_ms(started))  # fmt: skip
            raise
        except Exception as error:
            status, body = mapped_error(error)
            response = self._json(request, HTTP_STATUS[status], body)
        if not response.prepared:
            self._headers(request, response)
        log.info(
            "http",
            method=request.method,
            path=request.path,
            status=response.status,
            code=request.get(CODE) or ("ok" if response.status < 400 else None),
            duration_ms=_ms(started),
            request_id=request_id,
            peer=request.remote,
        )
        return response

    def _foreign_host(self, request: web.Request) -> bool:
        if not self._loopback or self._authenticator.enabled:
            return False
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
        host = host.strip("[]").lower()
        if host == "localhost" or host.endswith(".localhost"):
            return False
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return True

    @staticmethod
    def _headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers[REQUEST_ID_KEY] = request[REQUEST_ID]
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)

    async def _streamed(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        """A response sent as it is written, its headers (and the common ones) sent now."""
        response = web.StreamResponse(headers=headers)
        self._headers(request, response)
        await response.prepare(request)
        return response

    def _http_error(self, request: web.Request, error: web.HTTPException) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return web.Response(status=error.status, text=f"{error.status} {error.reason}\n")
        code = {
            405: grpc.StatusCode.UNIMPLEMENTED,
            413: grpc.StatusCode.RESOURCE_EXHAUSTED,
        }.get(error.status, grpc.StatusCode.INVALID_ARGUMENT)
        response = self._json(request, error.status, error_body(code, error.reason, []))
        return response

    def _json(
        self, request: web.Request, status: int, body: Any, *, cache: str = "no-store"
    ) -> web.Response:
        if isinstance(body, dict) and "code" in body and status >= 400:
            request[CODE] = body["code"]
        response = web.Response(
            status=status,
            body=body if isinstance(body, bytes) else json_api.encode_json(body),
            content_type=JSON_TYPE,
        )
        response.headers["Cache-Control"] = cache
        return response

    def _error(
        self, request: web.Request, code: grpc.StatusCode, body: dict[str, Any]
    ) -> web.Response:
        return self._json(request, HTTP_STATUS[code], body)

    def _context(self, request: web.Request) -> HttpCallContext:
        metadata: list[tuple[str, str | bytes]] = [(REQUEST_ID_KEY, request[REQUEST_ID])]
        for header, key in (("Authorization", "authorization"), ("User-Agent", "user-agent"),
                            (CLIENT_KEY, CLIENT_KEY)):  # fmt: skip
            value = request.headers.get(header)
            if value:
                metadata.append((key, value))
        timeout = None
        text = request.headers.get("Connect-Timeout-Ms", "")
        if text.isdigit():
            timeout = int(text) / 1000
        peer = request.transport.get_extra_info("peername") if request.transport else None
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(request.remote)
        return HttpCallContext(tuple(metadata), f"http:{where}", timeout)

    def _refused(self, request: web.Request, method: str) -> web.Response | None:
        """Authentication and roles checked before reading the request (as gRPC does):
        a caller without the right token learns nothing about its request's validity."""
        try:
            principal = self._authenticator.authenticate(request.headers.get("Authorization"))
            self._authenticator.authorize(principal, method)
        except Exception as error:
            code, body = mapped_error(error)
            return self._error(request, code, body)
        return None

    # ------------------------------------------------------------------ unary calls

    async def _unary(self, request: web.Request) -> web.StreamResponse:
        path = f"/{request.match_info['service']}/{request.match_info['method']}"
        method = json_api.METHODS.get(path)
        if method is None or method.server_streaming or method.client_streaming:
            hint = ""
            if path in SSE_METHODS:
                hint = f"; it streams: GET /api/stream{path}?message=..."
            code = grpc.StatusCode.NOT_FOUND
            return self._error(request, code, error_body(code, f"no unary method {path}{hint}", []))
        allowed = ("GET", "POST") if method.service in READ_SERVICES else ("POST",)
        if request.method not in allowed:
            code = grpc.StatusCode.UNIMPLEMENTED
            response = self._json(
                request, 405,
                error_body(code, f"{path} takes {' or '.join(allowed)}, not {request.method}", []),
            )  # fmt: skip
            response.headers["Allow"] = ", ".join(allowed)
            return response
        refused = self._refused(request, path)
        if refused is not None:
            return refused
        if request.method == "GET":
            raw: bytes | str = request.query.get("message", "")
        else:
            content_type = request.content_type
            if content_type != JSON_TYPE:
                # Only JSON: a form or text/plain POST from another site's page (which a
                # browser sends without asking) must not reach a command.
                code = grpc.StatusCode.INVALID_ARGUMENT
                return self._json(
                    request, 415,
                    error_body(code, f"Content-Type must be {JSON_TYPE}, not {content_type}", []),
                )  # fmt: skip
            raw = await request.read()
        context = self._context(request)
        loop = asyncio.get_running_loop()
        try:
            status, body = await loop.run_in_executor(
                self._unary_pool, self._call_unary, method, raw, context
            )
        except asyncio.CancelledError:
            context.cancel()
            raise
        cache = "private, no-cache" if request.method == "GET" else "no-store"
        return self._json(request, status, body, cache=cache)

    def _call_unary(
        self, method: json_api.ApiMethod, raw: bytes | str, context: HttpCallContext
    ) -> tuple[int, bytes | dict[str, Any]]:
        """In a worker thread: the call, its answer encoded (status, body)."""
        try:
            message = json_api.request_from_json(method, raw)
            response = self._rpcs.unary(method.path, message, context)
            return 200, json_api.response_json(response)
        except CallEnded as ended:
            code, body = ended_error(ended)
        except CommandValidationError as error:
            code, body = mapped_error(error)
        except Exception as error:
            code, body = mapped_error(error)
        return HTTP_STATUS[code], body

    async def _no_route(self, request: web.Request) -> web.StreamResponse:
        code = grpc.StatusCode.NOT_FOUND
        return self._error(request, code, error_body(code, f"no route {request.path}", []))

    # ------------------------------------------------------------------ server-sent events

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        path = f"/{request.match_info['service']}/{request.match_info['method']}"
        method = json_api.METHODS.get(path)
        if method is None or path not in SSE_METHODS:
            code = grpc.StatusCode.NOT_FOUND
            message = f"no server-sent stream {path} (streams: {', '.join(sorted(SSE_METHODS))})"
            return self._error(request, code, error_body(code, message, []))
        if request.method != "GET":
            code = grpc.StatusCode.UNIMPLEMENTED
            response = self._json(request, 405, error_body(code, f"{path} streams over GET", []))
            response.headers["Allow"] = "GET"
            return response
        refused = self._refused(request, path)
        if refused is not None:
            return refused
        try:
            asked = json_api.request_from_json(method, request.query.get("message", ""))
            last = request.headers.get("Last-Event-ID", "").strip()
            if last:
                if not last.isdigit():
                    raise CommandValidationError.single(
                        "Last-Event-ID", "must be a log position (the last id: received)"
                    )
                asked = json_api.resumed_request(method, asked, int(last))
        except CommandValidationError as error:
            code, body = mapped_error(error)
            return self._error(request, code, body)
        events = await self._streamed(
            request,
            {
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                # Proxies (nginx) must pass each event on as it comes, not buffer them.
                "X-Accel-Buffering": "no",
            },
        )
        context = self._context(request)
        stream = _Stream(asyncio.get_running_loop(), request.transport)
        self._streams.add(context)
        producer = asyncio.get_running_loop().run_in_executor(
            self._stream_pool, self._produce, method, asked, context, stream
        )
        sent = 0
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(stream.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await events.write(b": keep-alive\n\n")
                    continue
                if frame is None:
                    break
                await events.write(frame)
                sent += 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            context.cancel()
            self._streams.discard(context)
            if stream.overflowed:
                log.warning(
                    "http.stream_dropped", path=path, request_id=request[REQUEST_ID],
                    reason="the client reads slower than messages come", sent=sent,
                )  # fmt: skip
            request[CODE] = "ok"
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(producer), 1.0)
        return events

    def _produce(
        self,
        method: json_api.ApiMethod,
        message: Any,
        context: HttpCallContext,
        stream: _Stream,
    ) -> None:
        """In a worker thread: the servicer's stream, each message framed for SSE."""
        responses: Iterator[Any] | None = None
        try:
            responses = self._rpcs.stream(method.path, message, context)
            for response in responses:
                stream.send(sse_frame(json_api.response_json(response),
                                      event_id=json_api.stream_position(response)))  # fmt: skip
                if not context.is_active():
                    break
        except CallEnded as ended:
            _code, body = ended_error(ended)
            stream.send(sse_frame(json_api.encode_json(body), event="error"))
        except Exception as error:
            _code, body = mapped_error(error)
            stream.send(sse_frame(json_api.encode_json(body), event="error"))
        finally:
            close = getattr(responses, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            stream.send(None)

    # ------------------------------------------------------------------ export, health

    async def _export(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request, EXPORT_METHOD)
        if refused is not None:
            return refused
        store_up = self._parts.store_up
        if store_up is not None and not store_up():
            code, body = mapped_error(StoreUnavailable("the event store is unavailable"))
            return self._error(request, code, body)
        response = await self._streamed(
            request,
            {
                "Content-Type": "application/x-ndjson",
                "Content-Disposition": 'attachment; filename="flashpoint-export.jsonl"',
                "Cache-Control": "no-store",
            },
        )
        loop = asyncio.get_running_loop()

        def write(chunk: bytes) -> None:
            asyncio.run_coroutine_threadsafe(response.write(chunk), loop).result()

        def produce() -> None:
            buffer: list[str] = []
            size = 0
            for line in export_lines(self._parts.log_tables):
                buffer.append(line)
                size += len(line)
                if size >= EXPORT_CHUNK_BYTES:
                    write("".join(buffer).encode())
                    buffer, size = [], 0
            if buffer:
                write("".join(buffer).encode())

        try:
            await loop.run_in_executor(self._unary_pool, produce)
        except Exception as error:
            # Headers are gone: the export ends short (no trailer line), which import refuses.
            log.error("http.export_failed", request_id=request[REQUEST_ID], exc_info=error)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        store_up = self._parts.store_up
        serving = not self.stopping and (store_up is None or store_up())
        status = "SERVING" if serving else "NOT_SERVING"
        return self._json(request, 200 if serving else 503, {"status": status})

    # ------------------------------------------------------------------ static files

    async def _static(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            response = web.Response(status=405, text="405 Method Not Allowed\n")
            response.headers["Allow"] = "GET, HEAD"
            return response
        file = self._static_file(request.match_info["path"])
        if file is None:
            return web.Response(status=404, text="404 Not Found\n")
        stat = file.stat()
        etag = '"' + hashlib.sha256(
            f"{stat.st_mtime_ns}:{stat.st_size}:{file.name}".encode()
        ).hexdigest()[:32] + '"'  # fmt: skip
        headers = {
            "Content-Type": CONTENT_TYPES.get(file.suffix.lower())
            or mimetypes.guess_type(file.name)[0]
            or "application/octet-stream",
            # Names carry no version: a browser asks again each time, with the ETag.
            "Cache-Control": "no-cache",
            "ETag": etag,
        }
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
        body = b"" if request.method == "HEAD" else file.read_bytes()
        response = web.Response(status=200, body=body, headers=headers)
        if request.method == "HEAD":
            response.content_length = stat.st_size
        return response

    def _static_file(self, path: str) -> Path | None:
        """The file under the static root that ``path`` names (``index.html`` for a
        directory), or None: no traversal out of the root, no hidden files."""
        parts = [part for part in path.split("/") if part]
        if any(part.startswith(".") or "\\" in part or "\0" in part for part in parts):
            return None
        candidate = self._static_root.joinpath(*parts) if parts else self._static_root
        try:
            resolved = candidate.resolve()
        except (OSError, ValueError):
            return None
        if not resolved.is_relative_to(self._static_root):
            return None
        if resolved.is_dir():
            resolved = resolved / "index.html"
        return resolved if resolved.is_file() else None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class HttpServer:
    """The HTTP API on its own event loop thread; ``start`` binds, ``stop`` drains."""

    def __init__(
        self,
        listen: str,
        api: HttpApi,
        *,
        share_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._api = api
        self._ssl_context = ssl_context
        self._socket = bind(listen, share_port=share_port)
        self.port: int = self._socket.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start())
            except BaseException as error:
                failure.append(error)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="http-loop", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]

    async def _start(self) -> None:
        self._runner = web.AppRunner(
            self._api.app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.SockSite(self._runner, self._socket, ssl_context=self._ssl_context)
        await site.start()

    def stop(self, grace: float) -> None:
        """Refuse new work, end the streams, let calls in flight finish within ``grace``."""
        if self._thread is None:
            return
        self._api.close()
        runner = self._runner
        if runner is not None:
            future = asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop)
            with contextlib.suppress(Exception):
                future.result(timeout=grace + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=grace + 5)
        self._thread = None
        with contextlib.suppress(Exception):
            self._loop.close()
        self._socket.close()


def bind(listen: str, *, share_port: bool = False) -> socket.socket:
    """A listening socket on ``HOST:PORT``; with ``share_port`` SO_REUSEPORT, so the
    workers of one ``serve --workers N`` share it as they share the gRPC port."""
    host, _, text = listen.rpartition(":")
    host = host.strip("[]")
    infos = socket.getaddrinfo(host or None, int(text), type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)  # fmt: skip
    family, kind, protocol, _name, address = infos[0]
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def tls_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    """The gRPC server's certificate for HTTPS too (and its client CA for mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


__all__ = ["HTTP_STATUS", "HttpApi", "HttpParts", "HttpServer", "bind", "tls_context"]
