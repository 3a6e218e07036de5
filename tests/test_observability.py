"""Reflection v1 (besides v1alpha) through a real reflection client, and the operational
metrics: the process collector, build information and which worker owns each projection."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2 as alpha

from projections.readmodels import ALL
from service import bootstrap
from service.metrics import stop_serving
from service.settings import Settings
from tests.api_support import free_port, running_server
from tests.test_metrics import scrape, value

TIMEOUT = 10.0
V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


def v1_messages() -> tuple[Any, Any]:
    """grpc.reflection.v1's request and response classes: the v1alpha file under the v1
    package (the two are the same messages, field for field), in a pool of their own."""
    proto = descriptor_pb2.FileDescriptorProto.FromString(alpha.DESCRIPTOR.serialized_pb)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = "grpc.reflection.v1"
    for message in proto.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(".v1alpha.", ".v1.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(".v1alpha.", ".v1.")
            method.output_type = method.output_type.replace(".v1alpha.", ".v1.")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    request = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionRequest")
    )
    response = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("grpc.reflection.v1.ServerReflectionResponse")
    )
    return request, response


def ask_v1(channel: grpc.Channel, *requests: Any) -> list[Any]:
    request_type, response_type = v1_messages()
    call = channel.stream_stream(
        V1_METHOD,
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    return list(call(iter([request_type(**fields) for fields in requests]), timeout=TIMEOUT))


def test_reflection_v1_lists_services_and_describes_them(sqlite_url: str) -> None:
    with running_server(sqlite_url) as server, server.channel() as channel:
        listed, described = ask_v1(
            channel,
            {"list_services": ""},
            {"file_containing_symbol": "flashpoint.v1.CommandService"},
        )
    names = {service.name for service in listed.list_services_response.service}
    assert {
        "flashpoint.v1.CommandService", "flashpoint.v1.QueryService",
        "flashpoint.v1.AuditService", "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection",
    } <= names  # fmt: skip
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    services = {service.name for file in files for service in file.service}
    assert "CommandService" in services, [file.name for file in files]


def test_process_and_build_metrics(sqlite_url: str) -> None:
    with running_server(sqlite_url, metrics_port=free_port()) as server:
        port = server.running.metrics_port
        assert port is not None
        samples = scrape(port)
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "process_cpu_seconds_total") >= 0
    assert value(samples, "process_open_fds") > 0
    python = ".".join(str(part) for part in sys.version_info[:3])
    assert value(
        samples, "flashpoint_build_info",
        version=version("flashpoint"), python=python, store="sqlite",
    ) == 1  # fmt: skip


def test_embedded_server_owns_every_projection(sqlite_url: str) -> None:
    with running_server(sqlite_url, metrics_port=free_port()) as server:
        port = server.running.metrics_port
        assert port is not None
        samples = scrape(port)
    for projection in ALL:
        assert value(samples, "flashpoint_projection_owned", projection=projection.name) == 1


def test_external_projections_server_owns_none(sqlite_url: str) -> None:
    with running_server(sqlite_url, metrics_port=free_port(), projections="external") as server:
        port = server.running.metrics_port
        assert port is not None
        samples = scrape(port)
    for projection in ALL:
        assert value(samples, "flashpoint_projection_owned", projection=projection.name) == 0


def _worker_samples(settings: Settings) -> Iterator[tuple[bootstrap.Flashpoint, int]]:
    service = bootstrap.build(settings, exclusive=True)
    http = bootstrap.serve_worker_metrics(settings, service)
    assert http is not None
    try:
        yield service, http.server_port
    finally:
        stop_serving(http)
        service.close()


def test_postgres_workers_report_which_owns_each_projection(postgres_url: str) -> None:
    """Two exclusive workers on one store: the first holds every projection, the second
    stands by; each reports so, and the standby takes over when the owner stops."""
    first_settings = Settings(store=postgres_url, metrics_port=free_port())
    second_settings = Settings(store=postgres_url, metrics_port=free_port())
    first = _worker_samples(first_settings)
    owner, owner_port = next(first)
    owner.worker.owned()
    second = _worker_samples(second_settings)
    standby, standby_port = next(second)
    try:
        standby.worker.owned()
        owner_samples, standby_samples = scrape(owner_port), scrape(standby_port)
        for projection in ALL:
            name = projection.name
            assert value(owner_samples, "flashpoint_projection_owned", projection=name) == 1
            assert value(standby_samples, "flashpoint_projection_owned", projection=name) == 0
        python = ".".join(map(str, sys.version_info[:3]))
        info = {"version": version("flashpoint"), "python": python, "store": "postgresql"}
        assert value(owner_samples, "flashpoint_build_info", **info) == 1
        next(first, None)  # the owner stops: its locks go
        assert standby.worker.ownership is not None
        standby.worker.ownership.refresh(force=True)
        taken = scrape(standby_port)
        for projection in ALL:
            assert value(taken, "flashpoint_projection_owned", projection=projection.name) == 1
    finally:
        next(first, None)
        next(second, None)
