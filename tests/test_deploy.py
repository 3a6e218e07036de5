"""deploy/: what can be checked without a container engine.

hadolint lints the Dockerfile; kubernetes-validate checks the manifests against the schemas
it bundles (offline); the compose file and the Kubernetes containers are checked against the
real CLI parser and settings model; and the Dockerfile's install step is run for real into a
fresh virtual environment, whose console script then serves and answers the image's
HEALTHCHECK. Nothing here builds or runs an image.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from cryptography.hazmat.primitives import serialization

from service.adapters.store_url import store_environment
from service.api.auth import parse_tokens
from service.api.server import is_loopback
from service.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, build_parser
from service.settings import ENV_PREFIX, Settings
from tests.api_support import flashpoint, free_port
from tests.test_api_security import _ca, _leaf, _write_key

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
#: What is not applied with the folder: the Secret's shape, TLS, the ServiceMonitor.
EXAMPLES = KUBERNETES / "examples"
SECRET_EXAMPLE = EXAMPLES / "secret.example.yaml"
TLS_PATCH = EXAMPLES / "server-tls.patch.yaml"
SERVICE_MONITOR = EXAMPLES / "servicemonitor.yaml"
BIN = Path(sys.executable).parent
#: A version whose schemas kubernetes-validate bundles (it never fetches any).
KUBERNETES_VERSION = "1.37.0"
#: Packages that would put a compiler or build headers into an image.
BUILD_TOOLS = {"gcc", "g++", "cc", "clang", "make", "build-essential", "python3-dev", "libpq-dev"}
#: How long a command of the installed CLI may run, and a server may take to answer health.
COMMAND_SECONDS = 60.0
START_SECONDS = 30.0


# ------------------------------------------------------------------ helpers


@dataclass
class Stage:
    """One ``FROM`` stage of a Dockerfile: its base image, name and instructions."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """The stages of a Dockerfile, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines inside continuations as well
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, arguments))
    return stages


def dockerfile_stages() -> tuple[Stage, Stage]:
    stages = parse_dockerfile(DOCKERFILE.read_text())
    assert len(stages) >= 2, "deploy/Dockerfile is meant to be multi-stage"
    return stages[0], stages[-1]


def exec_form(arguments: str) -> list[str]:
    """A JSON (exec form) argument list, as ENTRYPOINT/CMD/HEALTHCHECK CMD take them."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), arguments
    return value


def healthcheck_command(final: Stage) -> list[str]:
    (healthcheck,) = final.arguments("HEALTHCHECK")
    _, separator, command = healthcheck.partition("CMD ")
    assert separator, f"HEALTHCHECK without CMD: {healthcheck}"
    return exec_form(command)


def pip_install_step(builder: Stage) -> list[str]:
    (step,) = [run for run in builder.arguments("RUN") if "pip install" in run]
    return shlex.split(step)


def image_environment(final: Stage) -> dict[str, str]:
    """The image's ``ENV`` values (``KEY=VALUE`` form), without expanding references."""
    environment: dict[str, str] = {}
    for arguments in final.arguments("ENV"):
        for item in shlex.split(arguments):
            key, _, value = item.partition("=")
            environment[key] = value
    return environment


def parse_cli(argv: list[str]) -> Any:
    """The real CLI parser's reading of ``argv``; fails the test where it would exit."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"`flashpoint {shlex.join(argv)}` is rejected by the CLI (exit {error.code})")
    assert getattr(args, "handler", None), f"`flashpoint {shlex.join(argv)}` runs no command"
    return args


def settings_for(argv: list[str], environment: dict[str, str]) -> Settings:
    """The settings a container with this environment and these arguments would run with."""
    unknown = sorted(
        key
        for key in environment
        if key.startswith(ENV_PREFIX)
        and key.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields
    )
    assert not unknown, f"not settings of service/settings.py: {unknown}"
    args = parse_cli(argv)
    overrides = {
        name: value
        for name, value in vars(args).items()
        if name in Settings.model_fields and value is not None
    }
    return Settings.load(environ=environment, **overrides)


def assert_can_start(argv: list[str], settings: Settings) -> None:
    """A server that listens beyond loopback has tokens (or it refuses to start)."""
    if "serve" in argv and not is_loopback(settings.listen):
        assert settings.tokens_file or settings.tokens or settings.insecure, (
            f"`flashpoint {shlex.join(argv)}` on {settings.listen} without tokens refuses to start"
        )


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    documents = [document for document in yaml.safe_load_all(path.read_text()) if document]
    assert all(isinstance(document, dict) for document in documents), path
    return documents


def run(
    command: list[str | Path], *, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS * 5,
        check=False,
    )


def tool(name: str) -> Path:
    """A tool installed in this interpreter's venv (`scripts/bootstrap dev` puts it there)."""
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed beside {sys.executable}: scripts/bootstrap dev")
    return path


# ------------------------------------------------------------------ the Dockerfile


def test_hadolint_passes_on_the_dockerfile(tmp_path: Path) -> None:
    """hadolint finds nothing in deploy/Dockerfile, and each rule it ignores says why."""
    hadolint = tool("hadolint")
    result = run([hadolint, DOCKERFILE])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"#\s*hadolint\s+ignore=(\S+)", line.strip())
        if match:
            reason = "\n".join(lines[max(0, number - 6) : number])
            for rule in match.group(1).split(","):
                assert rule in reason, f"line {number + 1} ignores {rule} without saying why"
    # The linter really lints: an untagged base image and an unpinned, cached pip install are
    # findings (DL3006, DL3013, DL3042).
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flashpoint\n")
    assert run([hadolint, bad]).returncode != 0


def test_dockerfile_builds_a_venv_with_the_projects_own_install() -> None:
    """The builder installs the repository root with pip into /opt/venv, as the tests do."""
    builder, _ = dockerfile_stages()
    assert builder.image == "python:3.11-slim" and builder.name == "builder"
    assert "python -m venv /opt/venv" in builder.arguments("RUN")
    path_set = [env for env in builder.arguments("ENV") if env.startswith("PATH=/opt/venv/bin:")]
    assert path_set, "pip in the builder must be the venv's"
    assert pip_install_step(builder) == ["pip", "install", "--no-cache-dir", "."]
    # The same target as the project's own set-up, which installs the checkout with pip.
    bootstrap = (ROOT / "scripts" / "bootstrap").read_text()
    assert re.search(r"pip install (--\S+ )*-e \.$", bootstrap, re.MULTILINE), bootstrap
    # Everything the package build reads is copied in: pyproject.toml, its readme and every
    # top-level package that [tool.setuptools.packages.find] includes.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {
        Path(source).name
        for arguments in builder.arguments("COPY")
        for source in shlex.split(arguments)[:-1]
    }
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        path.name
        for path in ROOT.iterdir()
        if (path / "__init__.py").exists()
        and any(Path(path.name).match(pattern) for pattern in patterns)
    }
    assert packages, patterns
    needed = {"pyproject.toml", pyproject["project"]["readme"], *packages}
    assert needed <= copied, f"the builder does not copy {sorted(needed - copied)}"


def test_dockerfile_final_stage_is_slim_non_root_and_checks_health() -> None:
    """The final image holds only the venv, runs as a non-root user, and health-checks."""
    _, final = dockerfile_stages()
    assert final.image == "python:3.11-slim"
    assert final.arguments("COPY") == ["--from=builder /opt/venv /opt/venv"]
    installed = {
        word for run_step in final.arguments("RUN") for word in re.split(r"[\s;&|=]+", run_step)
    }
    assert not installed & BUILD_TOOLS, f"build tools in the final image: {installed & BUILD_TOOLS}"
    user = final.arguments("USER")[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert any(f"--uid {user}" in step for step in final.arguments("RUN")), (
        "the USER is created in the final stage"
    )
    environment = image_environment(final)
    assert environment["PATH"].startswith("/opt/venv/bin:")
    settings = settings_for(["serve"], environment)
    port = settings.listen.rsplit(":", 1)[1]
    assert settings.http is not None, "the image serves the web dashboard"
    assert final.arguments("EXPOSE") == [f"{port} {settings.http.rsplit(':', 1)[1]}"]
    assert exec_form(final.arguments("ENTRYPOINT")[-1]) == ["flashpoint"]
    command = exec_form(final.arguments("CMD")[-1])
    assert command == ["serve"]
    parse_cli(command)
    health = healthcheck_command(final)
    assert health == ["flashpoint", "health", "--server", f"127.0.0.1:{port}"]
    parse_cli(health[1:])


# ------------------------------------------------------------------ compose


def compose_services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(compose, dict)
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def is_flashpoint_service(service: dict[str, Any]) -> bool:
    """Built from deploy/Dockerfile, so its ``command`` is arguments to ``flashpoint``."""
    build = service.get("build")
    if not isinstance(build, dict):
        return False
    context = (COMPOSE.parent / build["context"]).resolve()
    return bool((context / build["dockerfile"]).resolve() == DOCKERFILE)


def test_compose_commands_and_settings_are_the_clis() -> None:
    """Every flashpoint service's command parses with the CLI and its settings are valid."""
    _, final = dockerfile_stages()
    services = compose_services()
    flashpoint = {name: s for name, s in services.items() if is_flashpoint_service(s)}
    commands: dict[str, list[str]] = {}
    for name, service in flashpoint.items():
        command = service["command"]
        assert isinstance(command, list), f"{name}: use the exec (list) form"
        environment = {**image_environment(final), **service.get("environment", {})}
        settings = settings_for(command, environment)
        assert_can_start(command, settings)
        assert urlsplit(settings.store).scheme == "postgresql", name
        commands[name] = command
        if command[0] != "serve":
            assert service.get("healthcheck") == {"disable": True}, (
                f"{name} serves no gRPC: the image's health check would mark it unhealthy"
            )
    verbs = sorted(command[0] for command in commands.values())
    assert verbs == ["migrate", "project", "serve", "serve"], commands


def test_compose_topology_postgres_servers_worker_prometheus() -> None:
    """PostgreSQL with a health check, migrate first, two servers on distinct ports, one worker."""
    services = compose_services()
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:15" and postgres["healthcheck"]["test"]
    migrate = services["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    servers = {n: s for n, s in services.items() if s.get("command", [None])[0] == "serve"}
    workers = [s for s in services.values() if s.get("command") == ["project"]]
    assert len(servers) == 2 and len(workers) == 1
    for service in [*servers.values(), *workers]:
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    host_ports = set()
    for name, server in servers.items():
        assert server["command"] == ["serve", "--projections", "external"], name
        listen_port = server["environment"]["FLASHPOINT_LISTEN"].rsplit(":", 1)[1]
        http_port = server["environment"]["FLASHPOINT_HTTP"].rsplit(":", 1)[1]
        grpc_mapping, http_mapping = server["ports"]
        host_port, container_port = grpc_mapping.split(":")
        assert container_port == listen_port, name
        host_ports.add(host_port)
        host_port, container_port = http_mapping.split(":")
        assert container_port == http_port, name
        host_ports.add(host_port)
        # The tokens come from ./tokens, mounted as a compose secret.
        (secret,) = server["secrets"]
        assert server["environment"]["FLASHPOINT_TOKENS_FILE"] == f"/run/secrets/{secret}"
    assert len(host_ports) == 4, "the two servers publish different host ports"
    compose = yaml.safe_load(COMPOSE.read_text())
    assert compose["secrets"][secret]["file"] == "./tokens"
    # The store URL's credentials are the ones the postgres service is created with.
    url = urlsplit(services["worker"]["environment"]["FLASHPOINT_STORE"])
    environment = postgres["environment"]
    assert (url.username, url.password, url.path.lstrip("/"), url.hostname) == (
        environment["POSTGRES_USER"],
        environment["POSTGRES_PASSWORD"],
        environment["POSTGRES_DB"],
        "postgres",
    )
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["metrics"]
    for volume in prometheus["volumes"]:
        source = volume.split(":")[0]
        assert (COMPOSE.parent / source).is_file(), f"prometheus mounts a missing {source}"
    scrape = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets = [
        target
        for job in scrape["scrape_configs"]
        for config in job["static_configs"]
        for target in config["targets"]
    ]
    assert {target.split(":")[0] for target in targets} == {*servers, "worker"}


# ------------------------------------------------------------------ Kubernetes


def kubernetes_resources() -> list[dict[str, Any]]:
    """What `kubectl apply -f deploy/kubernetes/` applies: the folder's own files (without
    -R, kubectl does not descend into examples/)."""
    return [
        resource
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for resource in load_yaml_documents(path)
    ]


def cluster_resources() -> list[dict[str, Any]]:
    """The applied resources plus the Secret made beside them with `kubectl create secret`
    (its shape is examples/secret.example.yaml)."""
    return [*kubernetes_resources(), *load_yaml_documents(SECRET_EXAMPLE)]


def strategic_merge(base: Any, patch: Any) -> Any:
    """``kubectl patch --type strategic`` for what the patches here use: maps merge, null
    deletes a key, lists of named items (containers, env, volumes, mounts) merge by name,
    other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    named_items = all(isinstance(item, dict) and "name" in item for item in [*base, *patch]) \
        if isinstance(base, list) and isinstance(patch, list) else False  # fmt: skip
    if named_items:
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = strategic_merge(by_name.get(item["name"], {}), item)
        return list(by_name.values())
    return patch


def by_kind(kind: str, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [resource for resource in resources if resource["kind"] == kind]


def named(kind: str, name: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [r for r in by_kind(kind, resources) if r["metadata"]["name"] == name]
    return found


def resolve_container_environment(
    container: dict[str, Any], resources: list[dict[str, Any]]
) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env in order with
    ``$(NAME)`` references to what is already defined expanded."""
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = named("ConfigMap", source["configMapRef"]["name"], resources)
        environment.update(config_map["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = expand_references(variable["value"], environment)
        elif "secretKeyRef" in variable["valueFrom"]:
            reference = variable["valueFrom"]["secretKeyRef"]
            secret = named("Secret", reference["name"], resources)
            environment[variable["name"]] = secret["stringData"][reference["key"]]
        else:
            reference = variable["valueFrom"]["configMapKeyRef"]
            config_map = named("ConfigMap", reference["name"], resources)
            environment[variable["name"]] = config_map["data"][reference["key"]]
    return environment


def expand_references(value: str, defined: dict[str, str]) -> str:
    """``$(NAME)`` references replaced as the kubelet does; each must be defined already
    (the kubelet would leave an undefined one in the value as literal text)."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in defined, f"$({name}) is not defined before it is used in {value!r}"
        return defined[name]

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lookup, value)


def workload_containers(
    resources: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(workload, its pod spec, container) for every Deployment and Job container."""
    for resource in resources:
        if resource["kind"] in ("Deployment", "Job"):
            pod = resource["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield resource, pod, container


def test_kubernetes_validate_passes_strict() -> None:
    """kubernetes-validate --strict accepts every manifest, with a schema for each kind."""
    validate = tool("kubernetes-validate")
    paths = sorted(KUBERNETES.glob("*.yaml"))
    assert paths, "no manifests in deploy/kubernetes"
    result = run([validate, "--strict", "-k", KUBERNETES_VERSION, *paths])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # A kind it has no schema for is only a warning (exit 0): that is a failure here.
    assert "WARN" not in output and "ERROR" not in output, output
    assert output.count(" passed for resource ") == len(kubernetes_resources()), output
    kinds = sorted(resource["kind"] for resource in kubernetes_resources())
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "Deployment", "Service", "Service", "Service",
         "PodDisruptionBudget", "Job"]
    )  # fmt: skip
    assert not any("namespace" in r["metadata"] for r in kubernetes_resources())


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    """The strict validation is real: an unexpected field in a Service is an error."""
    service = named("Service", "flashpoint", kubernetes_resources())
    service["spec"]["ports"][0]["grpcPort"] = 50051
    bad = tmp_path / "service.yaml"
    bad.write_text(yaml.safe_dump(service))
    result = run([tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, bad])
    assert result.returncode != 0 and "grpcPort" in result.stdout, result.stdout


def test_kubernetes_containers_args_and_environment_are_the_clis() -> None:
    """Each container's args parse with the CLI and its resolved environment is valid."""
    resources = cluster_resources()
    _, final = dockerfile_stages()
    secret = named("Secret", "flashpoint", resources)
    verbs: list[str] = []
    for workload, pod, container in workload_containers(resources):
        argv = container["args"]
        environment = {**image_environment(final), **resolve_container_environment(
            container, resources)}  # fmt: skip
        settings = settings_for(argv, environment)
        assert_can_start(argv, settings)
        # The assembled URL is the store the service would connect to, password intact.
        store = store_environment(settings.store)
        assert store["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
        assert store["POSTGRES_PASSWORD"] == secret["stringData"]["DATABASE_PASSWORD"]
        assert store["POSTGRES_HOST"] == environment["DATABASE_HOST"]
        # Non-root, read-only root file system, requests and limits everywhere.
        assert pod["securityContext"]["runAsNonRoot"] is True
        user = final.arguments("USER")[-1].split(":")[0]
        assert str(pod["securityContext"]["runAsUser"]) == user
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        verbs.append(f"{workload['kind']}:{argv[0]}")
        if settings.tokens_file:
            mounted = {
                posixpath.join(mount["mountPath"], item["path"])
                for mount in container.get("volumeMounts", [])
                for volume in pod.get("volumes", [])
                if volume["name"] == mount["name"] and "secret" in volume
                for item in volume["secret"]["items"]
            }
            assert settings.tokens_file in mounted, (settings.tokens_file, mounted)
    assert sorted(verbs) == ["Deployment:project", "Deployment:serve", "Job:migrate"]


def test_applying_the_folder_never_overwrites_the_secret() -> None:
    """`kubectl apply -f deploy/kubernetes/`, as the README says to run it, applies no
    Secret: the placeholder one is an example outside the applied folder, and the README
    creates the real one with `kubectl create secret`."""
    assert not by_kind("Secret", kubernetes_resources()), "applying the folder writes a Secret"
    assert SECRET_EXAMPLE.parent != KUBERNETES and SECRET_EXAMPLE.is_file()
    readme = (DEPLOY / "README.md").read_text()
    applies = re.findall(r"kubectl apply [^\n]*", readme)
    assert "kubectl apply -f deploy/kubernetes/" in applies, applies
    assert not any(re.search(r"\s(-R|--recursive)\b", line) for line in applies), applies
    assert "kubectl create secret generic flashpoint" in readme
    assert "kubectl create secret tls flashpoint-tls" in readme


def test_kubernetes_secret_holds_placeholders_only() -> None:
    """The example Secret admits nobody: its tokens are comments, its password a placeholder."""
    (secret,) = load_yaml_documents(SECRET_EXAMPLE)
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", "flashpoint")
    tokens = secret["stringData"]["tokens"]
    assert "PLACEHOLDER" in tokens
    assert parse_tokens(tokens) == [], "a real token hash is committed in the Secret"
    assert not re.search(r"[0-9a-f]{64}", tokens)
    assert secret["stringData"]["DATABASE_PASSWORD"].startswith("REPLACE"), "a real password"


def test_kubernetes_servers_probe_grpc_health_and_are_highly_available() -> None:
    """Servers: 2+ replicas, native gRPC probes on the serving port, a Service and a PDB."""
    resources = cluster_resources()
    server = named("Deployment", "flashpoint-server", resources)
    worker = named("Deployment", "flashpoint-worker", resources)
    assert server["spec"]["replicas"] >= 2
    assert worker["spec"]["replicas"] == 2
    (container,) = server["spec"]["template"]["spec"]["containers"]
    environment = resolve_container_environment(container, resources)
    port = int(environment["FLASHPOINT_LISTEN"].rsplit(":", 1)[1])
    ports = {entry["name"]: entry["containerPort"] for entry in container["ports"]}
    assert ports["grpc"] == port
    container_port = {"name": "grpc", "containerPort": port}
    # Metrics are served where the settings say, and the pod declares that port.
    assert ports["metrics"] == int(environment["FLASHPOINT_METRICS_PORT"])
    (worker_container,) = worker["spec"]["template"]["spec"]["containers"]
    worker_environment = resolve_container_environment(worker_container, resources)
    worker_ports = {entry["name"]: entry["containerPort"] for entry in worker_container["ports"]}
    assert worker_ports["metrics"] == int(worker_environment["FLASHPOINT_METRICS_PORT"])
    assert worker_environment["FLASHPOINT_METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["grpc"] == {"port": port}, probe
    # Readiness asks the HTTP side's /healthz, which answers as the gRPC health check.
    http_port = int(environment["FLASHPOINT_HTTP"].rsplit(":", 1)[1])
    assert ports["http"] == http_port
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    labels = server["spec"]["template"]["metadata"]["labels"]
    assert server["spec"]["selector"]["matchLabels"].items() <= labels.items()
    http_service = named("Service", "flashpoint-http", resources)
    (http_service_port,) = http_service["spec"]["ports"]
    assert http_service_port["targetPort"] in (http_port, "http")
    assert http_service["spec"]["selector"].items() <= labels.items()
    service = named("Service", "flashpoint", resources)
    assert service["spec"]["type"] == "ClusterIP"
    (service_port,) = service["spec"]["ports"]
    assert (service_port["port"], service_port["appProtocol"]) == (port, "grpc")
    assert service_port["targetPort"] in (port, container_port["name"])
    assert service["spec"]["selector"].items() <= labels.items()
    (budget,) = by_kind("PodDisruptionBudget", resources)
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] < server["spec"]["replicas"]
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= worker_labels.items()


def test_servicemonitor_scrapes_the_metrics_port_of_servers_and_workers() -> None:
    """examples/servicemonitor.yaml (a Prometheus Operator CRD, which kubernetes-validate has
    no schema for, so it is checked here field by field) selects the headless metrics
    Service, whose endpoints are the "metrics" ports of the servers and the workers only."""
    (monitor,) = load_yaml_documents(SERVICE_MONITOR)
    assert (monitor["apiVersion"], monitor["kind"]) == (
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
    )
    assert "namespace" not in monitor["metadata"] and monitor["metadata"]["name"]
    resources = cluster_resources()
    selected = [
        service
        for service in by_kind("Service", resources)
        if monitor["spec"]["selector"]["matchLabels"].items()
        <= service["metadata"]["labels"].items()
    ]
    assert [service["metadata"]["name"] for service in selected] == ["flashpoint-metrics"]
    (service,) = selected
    assert service["spec"]["clusterIP"] == "None", "each pod is its own target"
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports, endpoint
        assert endpoint["path"] == "/metrics"
    (port,) = ports.values()
    endpoints = []
    for workload, _pod, container in workload_containers(resources):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        if not service["spec"]["selector"].items() <= labels.items():
            continue
        declared = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if port["targetPort"] not in declared:
            continue  # no such named port: the pod is no endpoint of the Service
        environment = resolve_container_environment(container, resources)
        settings = settings_for(container["args"], environment)
        address = settings.metrics_address()
        assert address is not None and address[1] == declared[port["targetPort"]]
        assert address[0] in ("0.0.0.0", "::"), (  # noqa: S104
            f"{workload['metadata']['name']} /metrics on {address}"
        )
        endpoints.append(labels["app.kubernetes.io/component"])
    assert sorted(endpoints) == ["server", "worker"]


def tls_server() -> dict[str, Any]:
    """flashpoint-server as `kubectl patch` leaves it with examples/server-tls.patch.yaml."""
    server = named("Deployment", "flashpoint-server", kubernetes_resources())
    (patch,) = load_yaml_documents(TLS_PATCH)
    merged: dict[str, Any] = strategic_merge(server, patch)
    return merged


def test_tls_patch_gives_the_server_its_certificate_as_files(tmp_path: Path) -> None:
    """The patched Deployment is valid, loads TLS settings naming files mounted from the
    flashpoint-tls Secret, and probes health over TLS with commands the CLI accepts."""
    deployment = tls_server()
    patched = tmp_path / "server-tls.yaml"
    patched.write_text(yaml.safe_dump(deployment))
    result = run([tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, patched])
    assert result.returncode == 0 and "WARN" not in result.stdout, result.stdout + result.stderr
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    environment = resolve_container_environment(container, cluster_resources())
    settings = settings_for(container["args"], environment)
    assert settings.tls_cert and settings.tls_key
    mounted = {
        posixpath.join(mount["mountPath"], item["path"]): (
            volume["secret"]["secretName"], item["key"]
        )
        for mount in container["volumeMounts"]
        for volume in pod["volumes"]
        if volume["name"] == mount["name"] and "secret" in volume
        for item in volume["secret"]["items"]
    }  # fmt: skip
    assert mounted[settings.tls_cert] == ("flashpoint-tls", "tls.crt")
    assert mounted[settings.tls_key] == ("flashpoint-tls", "tls.key")
    assert mounted[settings.tokens_file or ""] == ("flashpoint", "tokens"), "tokens still mounted"
    port = settings.listen.rsplit(":", 1)[1]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert "grpc" not in container[probe], f"{probe}: the kubelet's gRPC probe is plaintext"
        command = container[probe]["exec"]["command"]
        args = parse_cli(command[1:])
        assert command[0] == "flashpoint" and command[1] == "health"
        assert args.server == f"localhost:{port}" and args.tls_ca in mounted
        assert args.timeout < container[probe]["timeoutSeconds"], probe


def test_tls_patch_probe_passes_against_a_server_with_those_files(tmp_path: Path) -> None:
    """The patch's probe command, run for real against `flashpoint serve` given the patch's
    environment (files in a temporary folder instead of /etc/flashpoint/tls), says SERVING;
    the plaintext probe the patch replaces would not."""
    ca = _ca("Flashpoint deploy test CA")
    cert, key = _leaf("flashpoint", ca, server=True)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, ca[0]))
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "tls.crt").write_bytes(chain)
    _write_key(tls / "tls.key", key)
    deployment = tls_server()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]

    def relocate(value: str) -> str:
        return value.replace("/etc/flashpoint/tls", str(tls))

    tls_env = {
        v["name"]: relocate(v["value"])
        for v in container["env"]
        if v["name"].startswith("FLASHPOINT_TLS")
    }
    assert set(tls_env) == {"FLASHPOINT_TLS_CERT", "FLASHPOINT_TLS_KEY"}
    port = free_port()
    server_env = {**clean_env(), **tls_env, "FLASHPOINT_LISTEN": f"127.0.0.1:{port}",
                  "FLASHPOINT_STORE": f"sqlite:///{tmp_path}/flashpoint.db"}  # fmt: skip
    probe = [
        relocate(argument).replace("localhost:50051", f"localhost:{port}")
        for argument in container["readinessProbe"]["exec"]["command"]
    ]
    with running([flashpoint(), "serve"], cwd=tmp_path, env=server_env) as server:
        result = wait_until_healthy([flashpoint(), *probe[1:]], server, clean_env(), tmp_path)
        assert result.returncode == EXIT_OK, result.stderr + server.output()
        assert result.stdout.strip() == "SERVING"
        plaintext = run([flashpoint(), "health", "--server", f"localhost:{port}"],
                        cwd=tmp_path, env=clean_env())  # fmt: skip
        assert plaintext.returncode == EXIT_FAILED, plaintext.stdout
        assert server.stop() == 0, server.output()


# ------------------------------------------------------------------ the install, for real


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without FLASHPOINT_* settings, plus ``extra``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return {**environment, **extra}


@pytest.fixture(scope="module")
def container_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the project installed exactly as the Dockerfile's builder does:
    its COPY steps replayed from the repository root, then its pip command."""
    builder, _ = dockerfile_stages()
    base = tmp_path_factory.mktemp("image")
    filesystem, venv = base / "filesystem", base / "venv"
    workdir = "/"
    for keyword, arguments in builder.instructions:
        if keyword == "WORKDIR":
            workdir = posixpath.join(workdir, arguments)
        elif keyword == "COPY":
            *sources, destination = shlex.split(arguments)
            target = filesystem / posixpath.join(workdir, destination).lstrip("/")
            for source in sources:
                assert not source.startswith("--"), f"the builder copies from the context: {source}"
                origin = ROOT / source
                if origin.is_dir():
                    shutil.copytree(origin, target, dirs_exist_ok=True)
                elif destination.endswith("/") or len(sources) > 1:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target)
        elif keyword == "RUN" and "pip install" in arguments:
            break
    created = run([sys.executable, "-m", "venv", venv], env=clean_env())
    assert created.returncode == 0, created.stderr
    pip, *options = pip_install_step(builder)
    assert pip == "pip"
    installed = run(
        [venv / "bin" / "pip", *options],
        cwd=filesystem / workdir.lstrip("/"),
        env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"),
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    return venv


@contextmanager
def running(command: list[str | Path], *, cwd: Path, env: dict[str, str]) -> Iterator[Process]:
    """A long-running process, its output in files (no pipe to fill); killed if still up."""
    log = cwd / f"process-{time.monotonic_ns()}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(part) for part in command], cwd=cwd, env=env, stdout=output, stderr=output,
            text=True,
        )  # fmt: skip
        try:
            yield Process(process, log)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=COMMAND_SECONDS)


@dataclass
class Process:
    popen: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        """SIGTERM, then its exit code (the server drains and exits 0)."""
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=COMMAND_SECONDS)


def wait_until_healthy(
    health: list[str | Path], server: Process, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run the health check until it passes, the server dies or START_SECONDS pass."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        result = run(health, cwd=cwd, env=env)
        if result.returncode == EXIT_OK or time.monotonic() > deadline:
            return result
        assert server.popen.poll() is None, f"the server exited: {server.output()}"
        time.sleep(0.3)


def image_settings_environment(final: Stage, **overrides: str) -> dict[str, str]:
    """This machine's environment with the image's ENV (less PATH) and ``overrides``."""
    image = {k: v for k, v in image_environment(final).items() if k != "PATH"}
    return clean_env(**{**image, **overrides})


@pytest.mark.slow
def test_container_install_serves_and_passes_the_images_health_check(
    container_venv: Path, tmp_path: Path
) -> None:
    """The Dockerfile's install runs the image's CMD, and its HEALTHCHECK passes against it."""
    _, final = dockerfile_stages()
    flashpoint = container_venv / "bin" / "flashpoint"
    env = clean_env()
    help_text = run([flashpoint, "--help"], cwd=tmp_path, env=env)
    assert help_text.returncode == EXIT_OK and "serve" in help_text.stdout, help_text.stderr
    nobody = run([flashpoint, "health", "--server", "127.0.0.1:1"], cwd=tmp_path, env=env)
    assert nobody.returncode == EXIT_FAILED, nobody.stdout + nobody.stderr
    assert "UNAVAILABLE" in nobody.stderr
    # The installed copy is what runs, not the checkout.
    located = run(
        [container_venv / "bin" / "python", "-c",
         "import psycopg, service; print(service.__file__); print(psycopg.pq.__impl__)"],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert located.returncode == 0, located.stderr
    module, implementation = located.stdout.split()
    assert Path(module).is_relative_to(container_venv), module
    # psycopg-binary brings its own libpq, which is why the final image installs none.
    assert implementation == "binary", implementation
    assert not any("apt-get" in step for step in final.arguments("RUN"))
    # The image's CMD with its ENV, except a free loopback port: no tokens are needed there.
    port, http_port = free_port(), free_port()
    serve_env = image_settings_environment(
        final, FLASHPOINT_LISTEN=f"127.0.0.1:{port}", FLASHPOINT_HTTP=f"127.0.0.1:{http_port}"
    )
    command = exec_form(final.arguments("CMD")[-1])
    health = [
        argument.replace("127.0.0.1:50051", f"127.0.0.1:{port}")
        for argument in healthcheck_command(final)
    ]
    assert health[0] == "flashpoint"
    with running([flashpoint, *command], cwd=tmp_path, env=serve_env) as server:
        result = wait_until_healthy([flashpoint, *health[1:]], server, env, tmp_path)
        assert result.returncode == EXIT_OK, result.stderr + server.output()
        assert result.stdout.strip() == "SERVING"
        # The dashboard's files are in the installed package (package data), beside /healthz.
        for path, kind in (("/healthz", "application/json"), ("/", "text/html")):
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=10) as page:
                assert page.status == 200 and page.headers["Content-Type"].startswith(kind), path
        assert server.stop() == 0, server.output()
    assert (tmp_path / "flashpoint.db").exists(), "the default store lands in the WORKDIR"
    # As the image sets it (all interfaces) but without tokens, serve refuses to start.
    exposed = image_settings_environment(final)
    assert exposed["FLASHPOINT_LISTEN"].startswith("0.0.0.0:")
    refused = run([flashpoint, *command], cwd=tmp_path, env=exposed)
    assert refused.returncode == EXIT_USAGE and "without authentication" in refused.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_container_install_runs_the_compose_topology_on_postgres(
    container_venv: Path, postgres_url: str, tmp_path: Path
) -> None:
    """migrate, a server with tokens and external projections, then the worker, on PostgreSQL."""
    services = compose_services()
    flashpoint = container_venv / "bin" / "flashpoint"
    env = clean_env(FLASHPOINT_STORE=postgres_url, FLASHPOINT_LOG_FORMAT="json")
    migrated = run([flashpoint, *services["migrate"]["command"]], cwd=tmp_path, env=env)
    assert migrated.returncode == EXIT_OK, migrated.stderr
    assert json.loads(migrated.stdout) == {"migrated": True}
    made = run([flashpoint, "token", "deploy-test", "reporter"], cwd=tmp_path, env=env)
    assert made.returncode == EXIT_OK, made.stderr
    token = made.stderr.strip().splitlines()[-1]
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(made.stdout)
    port = free_port()
    server_env = {**env, "FLASHPOINT_LISTEN": f"127.0.0.1:{port}",
                  "FLASHPOINT_TOKENS_FILE": str(tokens_file)}  # fmt: skip
    with running([flashpoint, *services["server-1"]["command"]], cwd=tmp_path,
                 env=server_env) as server:  # fmt: skip
        health: list[str | Path] = [flashpoint, "health", "--server", f"127.0.0.1:{port}"]
        assert wait_until_healthy(health, server, env, tmp_path).returncode == EXIT_OK
        reported = run(
            [flashpoint, "report", "incursion", "--server", f"127.0.0.1:{port}", "--token", token,
             "--actor", "RUS", "--target", "POL", "--count", "19", "--source", "Reuters",
             "--reliability", "B", "--credibility", "2", "--request-id", "deploy-test-1"],
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert reported.returncode == EXIT_OK, reported.stderr + server.output()
        position = json.loads(reported.stdout)["position"]
        # The worker (compose runs `project`; --once catches up and exits) folds it.
        projected = run(
            [flashpoint, *services["worker"]["command"], "--once"], cwd=tmp_path, env=env
        )
        assert projected.returncode == EXIT_OK, projected.stderr
        caught_up = json.loads(projected.stdout)
        assert caught_up["processed"] >= 1, caught_up
        assert server.stop() == 0, server.output()
    assert position >= 1
