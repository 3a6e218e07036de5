"""Security of the gRPC API over a real server: bearer tokens and roles, open health and
reflection, refusal to expose an unauthenticated server, TLS and mutual TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from service.api import translation as tr
from service.api.auth import (
    REQUIRED_ROLES,
    Authenticator,
    TokenConfigError,
    load_tokens,
    new_token,
    parse_tokens,
)
from service.api.gen.flashpoint.v1 import audit_service_pb2 as audit_pb
from service.api.gen.flashpoint.v1 import audit_service_pb2_grpc as audit_grpc
from service.api.gen.flashpoint.v1 import command_service_pb2 as command_pb
from service.api.gen.flashpoint.v1 import command_service_pb2_grpc as command_grpc
from service.api.gen.flashpoint.v1 import query_service_pb2 as query_pb
from service.api.gen.flashpoint.v1 import query_service_pb2_grpc as query_grpc
from service.api.server import ServeRefused, check_exposure, create_server
from service.application.handlers import CommandResult
from service.bootstrap import build
from service.client import ApiError, FlashpointClient, error_from_rpc
from service.domain import commands as c
from service.settings import Settings
from tests.api_support import ServerUnderTest, running_server, token_entries
from tests.factories import command

TIMEOUT = 10.0
ROLES = ("reporter", "analyst", "auditor", "admin")
SERVICES = ("command", "query", "audit")

#: The access policy as DESIGN.md states it, written out independently of REQUIRED_ROLES.
ALLOWED: dict[str, frozenset[str]] = {
    "command": frozenset({"reporter", "admin"}),
    "query": frozenset({"analyst", "admin"}),
    "audit": frozenset({"auditor", "admin"}),
}
PREFIXES = {
    "command": "/flashpoint.v1.CommandService/",
    "query": "/flashpoint.v1.QueryService/",
    "audit": "/flashpoint.v1.AuditService/",
}


# ------------------------------------------------------------------ a server with tokens


@dataclass
class SecuredServer:
    server: ServerUnderTest
    channel: grpc.Channel
    #: A valid token for each single role, and one holding reporter and analyst.
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredServer]:
    tokens: dict[str, str] = {}
    lines: list[str] = []
    for role in ROLES:
        token, line = new_token(f"{role}-user", [role])
        tokens[role] = token
        lines.append(line)
    token, line = new_token("desk-officer", ["reporter", "analyst"])
    tokens["reporter,analyst"] = token
    lines.append(line)
    store = f"sqlite:///{tmp_path_factory.mktemp('secured')}/flashpoint.db"
    with running_server(store, tokens=token_entries(*lines)) as server:
        channel = server.channel()
        try:
            yield SecuredServer(server=server, channel=channel, tokens=tokens)
        finally:
            channel.close()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def call_service(channel: grpc.Channel, service: str, metadata: tuple[tuple[str, str], ...]) -> Any:
    """Call one RPC of ``service``; the response, or raise the grpc.RpcError."""
    if service == "command":
        request = cast(
            command_pb.ReportIncursionRequest,
            tr.request_from_command(command(c.ReportIncursion)),
        )
        return command_grpc.CommandServiceStub(channel).ReportIncursion(
            request, metadata=metadata, timeout=TIMEOUT
        )
    if service == "query":
        return query_grpc.QueryServiceStub(channel).ListIncidents(
            query_pb.ListIncidentsRequest(page_size=1), metadata=metadata, timeout=TIMEOUT
        )
    return list(
        audit_grpc.AuditServiceStub(channel).ReadEvents(
            audit_pb.ReadEventsRequest(limit=1), metadata=metadata, timeout=TIMEOUT
        )
    )


def status_of(action: Callable[[], Any]) -> grpc.StatusCode:
    try:
        action()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def rpc_error(action: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        action()
    return caught.value


# ------------------------------------------------------------------ roles


class TestRoles:
    def test_the_written_policy_is_the_servers(self) -> None:
        """REQUIRED_ROLES grants exactly the roles the policy table names, per service."""
        assert {PREFIXES[s]: ALLOWED[s] for s in SERVICES} == REQUIRED_ROLES

    @pytest.mark.parametrize("service", SERVICES)
    @pytest.mark.parametrize("role", ROLES)
    def test_each_role_may_call_only_its_services(
        self, secured: SecuredServer, role: str, service: str
    ) -> None:
        """A token's role decides OK or PERMISSION_DENIED for each service; admin calls all."""
        expected = (
            grpc.StatusCode.OK if role in ALLOWED[service] else grpc.StatusCode.PERMISSION_DENIED
        )
        code = status_of(
            lambda: call_service(secured.channel, service, bearer(secured.tokens[role]))
        )
        assert code == expected, f"{role} calling {service}"

    @pytest.mark.parametrize("service", SERVICES)
    def test_a_token_with_two_roles_has_the_rights_of_both(
        self, secured: SecuredServer, service: str
    ) -> None:
        """A reporter-and-analyst token may command and query, but not audit."""
        expected = grpc.StatusCode.PERMISSION_DENIED if service == "audit" else grpc.StatusCode.OK
        metadata = bearer(secured.tokens["reporter,analyst"])
        assert status_of(lambda: call_service(secured.channel, service, metadata)) == expected

    @pytest.mark.parametrize("role", ROLES)
    def test_one_resources_history_is_open_to_analysts_and_auditors(
        self, secured: SecuredServer, role: str
    ) -> None:
        """GetHistory (an incident page's steps) takes analyst, auditor or admin; the rest
        of AuditService stays the auditor's, as test_each_role_may_call_only_its_services
        shows with ReadEvents."""
        written = call_service(secured.channel, "command", bearer(secured.tokens["reporter"]))
        code = status_of(
            lambda: audit_grpc.AuditServiceStub(secured.channel).GetHistory(
                audit_pb.GetHistoryRequest(name=written.name),
                metadata=bearer(secured.tokens[role]),
                timeout=TIMEOUT,
            )
        )
        allowed = role in {"analyst", "auditor", "admin"}
        assert code == (grpc.StatusCode.OK if allowed else grpc.StatusCode.PERMISSION_DENIED)

    def test_a_denial_names_the_roles_needed(self, secured: SecuredServer) -> None:
        """PERMISSION_DENIED carries ErrorInfo ROLE_REQUIRED listing the roles that may call."""
        error = rpc_error(
            lambda: call_service(secured.channel, "audit", bearer(secured.tokens["reporter"]))
        )
        api_error = error_from_rpc(error)
        assert api_error.code == grpc.StatusCode.PERMISSION_DENIED
        info = api_error.detail(error_details_pb2.ErrorInfo)
        assert info is not None
        assert info.reason == "ROLE_REQUIRED"
        assert info.metadata["roles"] == "admin,auditor"

    @pytest.mark.parametrize(
        "metadata",
        [
            pytest.param((), id="no-token"),
            pytest.param((("authorization", "Bearer fp_not-a-configured-token"),), id="wrong"),
        ],
    )
    @pytest.mark.parametrize("service", SERVICES)
    def test_a_missing_or_wrong_token_is_unauthenticated(
        self, secured: SecuredServer, service: str, metadata: tuple[tuple[str, str], ...]
    ) -> None:
        """Without a configured token every service answers UNAUTHENTICATED."""
        code = status_of(lambda: call_service(secured.channel, service, metadata))
        assert code == grpc.StatusCode.UNAUTHENTICATED

    @pytest.mark.parametrize(
        "header",
        [
            pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
            pytest.param("Bearer", id="scheme-only"),
            pytest.param("Token {token}", id="other-scheme"),
            pytest.param("{token}", id="no-scheme"),
            pytest.param("Bearer:{token}", id="colon"),
        ],
    )
    def test_a_malformed_authorization_header_is_unauthenticated(
        self, secured: SecuredServer, header: str
    ) -> None:
        """An authorization header not of the form 'Bearer <token>' is refused, even with a
        valid admin token inside it."""
        value = header.format(token=secured.tokens["admin"])
        error = rpc_error(
            lambda: call_service(secured.channel, "query", (("authorization", value),))
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED

    def test_the_bearer_scheme_is_case_insensitive(self, secured: SecuredServer) -> None:
        """'bearer <token>' is accepted like 'Bearer <token>' (RFC 6750 schemes ignore case)."""
        metadata = (("authorization", f"bearer {secured.tokens['analyst']}"),)
        assert status_of(lambda: call_service(secured.channel, "query", metadata)) == (
            grpc.StatusCode.OK
        )


# ------------------------------------------------------------------ open services


class TestOpenServices:
    @pytest.mark.parametrize("service", ["", "flashpoint.v1.CommandService"])
    def test_health_answers_without_a_token(self, secured: SecuredServer, service: str) -> None:
        """grpc.health.v1 Check is open: SERVING with no authorization metadata."""
        stub = health_pb2_grpc.HealthStub(secured.channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
        assert response.status == health_pb2.HealthCheckResponse.SERVING

    def test_reflection_lists_services_without_a_token(self, secured: SecuredServer) -> None:
        """Server reflection (v1alpha) lists Flashpoint's services with no token."""
        stub = reflection_pb2_grpc.ServerReflectionStub(secured.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        responses = list(stub.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))
        assert len(responses) == 1
        names = {s.name for s in responses[0].list_services_response.service}
        assert {
            "flashpoint.v1.CommandService",
            "flashpoint.v1.QueryService",
            "flashpoint.v1.AuditService",
            "grpc.health.v1.Health",
        } <= names


# ------------------------------------------------------------------ what is recorded


class TestRecording:
    @pytest.mark.parametrize(
        ("metadata_for", "expected"),
        [
            pytest.param(None, grpc.StatusCode.UNAUTHENTICATED, id="no-token"),
            pytest.param("analyst", grpc.StatusCode.PERMISSION_DENIED, id="analyst"),
            pytest.param("auditor", grpc.StatusCode.PERMISSION_DENIED, id="auditor"),
        ],
    )
    def test_a_refused_command_appends_nothing(
        self, secured: SecuredServer, metadata_for: str | None, expected: grpc.StatusCode
    ) -> None:
        """A command refused by authentication or authorisation leaves the log unchanged."""
        app = secured.server.app
        head = app.head_position()
        metadata = bearer(secured.tokens[metadata_for]) if metadata_for else ()
        assert status_of(lambda: call_service(secured.channel, "command", metadata)) == expected
        assert app.head_position() == head
        assert list(app.read_log(head + 1)) == []

    def test_the_authenticated_principal_is_recorded_on_the_event(
        self, secured: SecuredServer
    ) -> None:
        """The event stores submitted_by.principal = the token's name, seen by the audit API."""
        response = call_service(secured.channel, "command", bearer(secured.tokens["reporter"]))
        history = audit_grpc.AuditServiceStub(secured.channel).GetHistory(
            audit_pb.GetHistoryRequest(name=response.name),
            metadata=bearer(secured.tokens["auditor"]),
            timeout=TIMEOUT,
        )
        assert [event.position for event in history.events] == [response.position]
        payload = json.loads(history.events[0].payload_json)
        assert payload["submitted_by"]["principal"] == "reporter-user"
        stored = next(secured.server.app.read_log(response.position, stop=response.position))
        event = secured.server.app.decode(stored)
        assert event.submitted_by["principal"] == "reporter-user"

    def test_the_admin_principal_is_recorded_not_local(self, secured: SecuredServer) -> None:
        """With auth on, a command is never attributed to the 'local' development principal."""
        with FlashpointClient(secured.server.address, token=secured.tokens["admin"]) as client:
            result = client.execute(command(c.ReportIncursion))
            incident = client.get_incident(result.resource)
        assert incident.reported_by.principal == "admin-user"
        assert incident.reported_by.client == "flashpoint-python"


# ------------------------------------------------------------------ token configuration


class TestTokenConfiguration:
    @pytest.mark.parametrize(
        ("bad_line", "complaint"),
        [
            pytest.param("osint reporter", "expected 'NAME ROLE[,ROLE] sha256:HEX'", id="short"),
            pytest.param("osint reporter md5:abcd", "expected", id="not-sha256"),
            pytest.param("osint reporter sha256:" + "ab" * 32 + " x", "expected", id="long"),
            pytest.param("osint reporter,spy sha256:" + "ab" * 32, "unknown role", id="role"),
            pytest.param("osint reporter sha256:" + "zz" * 32, "not hex", id="not-hex"),
            pytest.param("osint reporter sha256:abcd", "64 hex digits", id="short-hash"),
        ],
    )
    def test_a_bad_line_is_refused_naming_its_number(self, bad_line: str, complaint: str) -> None:
        """Parsing fails with TokenConfigError naming the origin and the line at fault."""
        _, good = new_token("analyst-desk", ["analyst"])
        text = f"# Flashpoint tokens\n\n{good}\n{bad_line}\n"
        with pytest.raises(TokenConfigError) as caught:
            parse_tokens(text, "tokens.txt")
        message = str(caught.value)
        assert "tokens.txt line 4" in message
        assert complaint in message

    def test_a_tokens_file_error_names_the_file(self, tmp_path: Path) -> None:
        """load_tokens reports errors in a file by its path and line."""
        path = tmp_path / "tokens"
        path.write_text("ops admin sha256:" + "g" * 64 + "\n")
        with pytest.raises(TokenConfigError, match=rf"{path} line 1: the hash is not hex"):
            load_tokens(str(path), None)

    def test_comments_and_blank_lines_are_skipped(self) -> None:
        """Only the configured lines become entries, each with its principal and roles."""
        token, line = new_token("desk", ["auditor", "analyst"])
        entries = parse_tokens(f"# comment\n\n   \n{line}\n")
        assert len(entries) == 1
        assert entries[0].principal.name == "desk"
        assert entries[0].principal.roles == {"auditor", "analyst"}
        assert Authenticator(entries).authenticate(f"Bearer {token}").name == "desk"

    @pytest.mark.parametrize("roles", [["spy"], [], ["admin", "root"]])
    def test_new_token_refuses_unknown_roles(self, roles: list[str]) -> None:
        """new_token makes tokens only for known roles, and at least one."""
        with pytest.raises(TokenConfigError, match="roles must be among"):
            new_token("x", roles)


# ------------------------------------------------------------------ exposure


class TestExposure:
    def test_a_public_address_without_tokens_is_refused(self) -> None:
        """0.0.0.0 without tokens is refused, and the message points to --insecure."""
        settings = Settings(listen="0.0.0.0:0")
        with pytest.raises(ServeRefused, match="--insecure"):
            check_exposure(settings, Authenticator([]))

    @pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "192.0.2.10:50051", ":50051"])
    def test_insecure_allows_a_public_address(self, listen: str) -> None:
        """--insecure accepts the risk of serving a non-loopback address without tokens."""
        check_exposure(Settings(listen=listen, insecure=True), Authenticator([]))

    @pytest.mark.parametrize("listen", ["[::]:0", "192.0.2.10:50051", ":50051", "example.org:1"])
    def test_other_non_loopback_addresses_are_refused(self, listen: str) -> None:
        """Any address that is not loopback needs tokens or --insecure."""
        with pytest.raises(ServeRefused):
            check_exposure(Settings(listen=listen), Authenticator([]))

    def test_tokens_allow_a_public_address(self) -> None:
        """With tokens configured, a public address is served without --insecure."""
        _, line = new_token("ops", ["admin"])
        check_exposure(Settings(listen="0.0.0.0:0"), Authenticator(token_entries(line)))

    @pytest.mark.parametrize("listen", ["127.0.0.1:0", "localhost:50051", "[::1]:0", "127.8.0.1:9"])
    def test_loopback_is_allowed_without_tokens(self, listen: str) -> None:
        """Loopback addresses may be served without authentication (development mode)."""
        check_exposure(Settings(listen=listen), Authenticator([]))

    def test_create_server_refuses_too(self, sqlite_url: str) -> None:
        """create_server itself will not bind a public address without tokens."""
        settings = Settings(store=sqlite_url, listen="0.0.0.0:0")
        service = build(settings, follow=False)
        try:
            with pytest.raises(ServeRefused, match="--insecure"):
                create_server(settings, service, Authenticator([]))
        finally:
            service.close()


# ------------------------------------------------------------------ TLS


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    common_name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    return builder.sign(issuer[1], hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with a server and a client certificate, and a client cert of another CA."""
    directory = tmp_path_factory.mktemp("pki")
    ca = _ca("Flashpoint test CA")
    server_cert, server_key = _leaf("flashpoint-server", ca, server=True)
    client_cert, client_key = _leaf("osint-pipeline", ca, server=False)
    rogue_ca = _ca("Rogue CA")
    rogue_cert, rogue_key = _leaf("intruder", rogue_ca, server=False)
    return Pki(
        ca=_write_cert(directory / "ca.pem", ca[0]),
        server_cert=_write_cert(directory / "server.pem", server_cert),
        server_key=_write_key(directory / "server.key", server_key),
        client_cert=_write_cert(directory / "client.pem", client_cert),
        client_key=_write_key(directory / "client.key", client_key),
        rogue_ca=_write_cert(directory / "rogue-ca.pem", rogue_ca[0]),
        rogue_client_cert=_write_cert(directory / "rogue.pem", rogue_cert),
        rogue_client_key=_write_key(directory / "rogue.key", rogue_key),
    )


def _report_over(client: FlashpointClient) -> CommandResult:
    """Report an incident (the client adds a request id, so a receipt is recorded too)."""
    result = client.execute(command(c.ReportIncursion))
    assert client.get_incident(result.resource).name == result.resource
    return result


class TestTls:
    def test_a_client_trusting_the_ca_is_served(self, sqlite_url: str, pki: Pki) -> None:
        """Over TLS, a client that trusts the CA reports and reads back an incident."""
        with (
            running_server(
                sqlite_url, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)
            ) as server,
            FlashpointClient(server.address, tls_ca=str(pki.ca), timeout=TIMEOUT) as client,
        ):
            result = _report_over(client)
            assert server.app.head_position() == result.position == 1

    def test_a_plaintext_client_is_not_served(self, sqlite_url: str, pki: Pki) -> None:
        """A client without TLS cannot talk to the TLS server: UNAVAILABLE, nothing recorded."""
        with (
            running_server(
                sqlite_url, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)
            ) as server,
            FlashpointClient(server.address, timeout=3.0, attempts=1) as client,
        ):
            with pytest.raises(ApiError) as caught:
                client.execute(command(c.ReportIncursion))
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
            assert server.app.head_position() == 0

    def test_a_client_not_trusting_the_ca_refuses_the_server(
        self, sqlite_url: str, pki: Pki
    ) -> None:
        """A TLS client that does not trust the server's CA gets UNAVAILABLE."""
        with (
            running_server(
                sqlite_url, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)
            ) as server,
            FlashpointClient(
                server.address, tls_ca=str(pki.rogue_ca), timeout=3.0, attempts=1
            ) as client,
        ):
            with pytest.raises(ApiError) as caught:
                client.get_incident("incidents/00000000-0000-0000-0000-000000000001")
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE


class TestMutualTls:
    @pytest.fixture
    def mtls_server(self, sqlite_url: str, pki: Pki) -> Iterator[ServerUnderTest]:
        with running_server(
            sqlite_url,
            tls_cert=str(pki.server_cert),
            tls_key=str(pki.server_key),
            tls_client_ca=str(pki.ca),
        ) as server:
            yield server

    def test_a_client_certificate_from_the_ca_is_accepted(
        self, mtls_server: ServerUnderTest, pki: Pki
    ) -> None:
        """With tls_client_ca set, a client presenting a cert signed by that CA is served."""
        with FlashpointClient(
            mtls_server.address,
            tls_ca=str(pki.ca),
            tls_client_cert=str(pki.client_cert),
            tls_client_key=str(pki.client_key),
            timeout=TIMEOUT,
        ) as client:
            result = _report_over(client)
        assert mtls_server.app.head_position() == result.position == 1

    def test_a_client_without_a_certificate_is_refused(
        self, mtls_server: ServerUnderTest, pki: Pki
    ) -> None:
        """A TLS client presenting no certificate fails the handshake: nothing recorded."""
        with FlashpointClient(
            mtls_server.address, tls_ca=str(pki.ca), timeout=3.0, attempts=1
        ) as client:
            with pytest.raises(ApiError) as caught:
                client.execute(command(c.ReportIncursion))
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert mtls_server.app.head_position() == 0

    def test_a_client_certificate_from_another_ca_is_refused(
        self, mtls_server: ServerUnderTest, pki: Pki
    ) -> None:
        """A client certificate that does not chain to tls_client_ca is refused."""
        with FlashpointClient(
            mtls_server.address,
            tls_ca=str(pki.ca),
            tls_client_cert=str(pki.rogue_client_cert),
            tls_client_key=str(pki.rogue_client_key),
            timeout=3.0,
            attempts=1,
        ) as client:
            with pytest.raises(ApiError) as caught:
                client.execute(command(c.ReportIncursion))
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert mtls_server.app.head_position() == 0

    def test_a_client_ca_without_a_server_certificate_is_refused(self, sqlite_url: str) -> None:
        """tls_client_ca alone (no server cert and key) is an impossible setup: refused."""
        settings = Settings(
            store=sqlite_url, listen="127.0.0.1:0", tls_client_ca="/nonexistent/ca.pem"
        )
        service = build(settings, follow=False)
        try:
            with pytest.raises(ServeRefused, match="--tls-client-ca needs"):
                create_server(settings, service, Authenticator([]))
        finally:
            service.close()
