"""The architecture as a test: imports run one way, and protobuf stays in one package.

Layers, lowest first (each may import those before it, never those after):

- ``service.domain``: the vocabulary, aggregates, events, commands; imports nothing of ours;
- ``service.application``: command handlers, idempotency, reads by id;
- ``service.ingest``: rows of published event data (GDELT, ACLED) mapped to commands;
- ``service.adapters`` and ``service.audit``: stores, the log reader, datastore set-up,
  group commit, the hash chain;
- ``projections``: the read side, which sees only the domain and the log reader (with the
  datastore set-up its stores share);
- the runtime (``service.bootstrap``, the one composition root, with settings, logs,
  metrics and status), then the API (``service.api``), then the typed client and the CLI.

Only entry points (the CLI) call the composition root.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = ("service", "projections")

RUNTIME = ("service.bootstrap", "service.settings", "service.logs", "service.metrics",
           "service.status")  # fmt: skip
API = ("service.api",)
#: Who may import what (by module prefix); the first matching rule applies.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("service.api.gen", ("service.api.gen",)),
    ("service.domain", ("service.domain",)),
    ("service.application", ("service.domain", "service.application")),
    ("service.ingest", ("service.domain", "service.ingest")),
    ("service.adapters", ("service.domain", "service.application", "service.adapters")),
    ("service.audit", ("service.domain", "service.application", "service.adapters",
                       "service.audit")),
    ("projections", ("service.domain", "service.adapters.eventlog", "service.adapters.mapper",
                     "service.adapters.datastore", "projections")),
    *((module, ("service.domain", "service.application", "service.adapters", "service.audit",
                "projections", *RUNTIME)) for module in RUNTIME),
    ("service.api", ("service.domain", "service.application", "service.adapters",
                     "service.audit", "projections", *RUNTIME, *API)),
    ("service.client", ("service.domain", "service.application", "service.api")),
    ("service.cli", OURS),
)  # fmt: skip
#: Only these may import the composition root.
ENTRY_POINTS = ("service.cli", *RUNTIME)
#: Only these may import protobuf messages (ours, or google.protobuf / google.rpc).
TRANSLATION = ("service.api.translation", "service.api.gen")
PROTOBUF = ("google.protobuf", "google.rpc")


@dataclass(frozen=True)
class Arrow:
    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} (line {self.line})"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path, packages: Iterable[str] = OURS) -> list[Arrow]:
    """Every import statement of our modules, wherever it stands (functions and
    ``TYPE_CHECKING`` blocks included: a lazy import is an arrow all the same)."""
    arrows = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            importer = module_name(path, root)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    arrows += [Arrow(importer, alias.name, node.lineno) for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    arrows.append(Arrow(importer, node.module, node.lineno))
                    # ``from service.api import translation`` imports the submodule
                    arrows += [
                        Arrow(importer, f"{node.module}.{alias.name}", node.lineno)
                        for alias in node.names
                        if (root / node.module.replace(".", "/") / alias.name).exists()
                        or (root / node.module.replace(".", "/") / f"{alias.name}.py").exists()
                    ]
    return arrows


def within(module: str, prefixes: Iterable[str]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def wrong_arrows(
    arrows: Iterable[Arrow],
    rules: tuple[tuple[str, tuple[str, ...]], ...] = RULES,
    ours: tuple[str, ...] = OURS,
) -> list[str]:
    """Each arrow that runs against the layers, or names no rule, said in words."""
    found = []
    for arrow in arrows:
        if arrow.importer == arrow.imported:
            continue
        if within(arrow.imported, PROTOBUF) or (
            within(arrow.imported, ("service.api.gen",)) and arrow.imported.endswith("_pb2")
        ):
            if not within(arrow.importer, TRANSLATION):
                found.append(f"protobuf outside the translation package: {arrow}")
            continue
        if not within(arrow.imported, ours):
            continue
        if within(arrow.imported, ("service.bootstrap",)) and not within(
            arrow.importer, ENTRY_POINTS
        ):
            found.append(f"only entry points call the composition root: {arrow}")
            continue
        allowed = next((allowed for prefix, allowed in rules if within(arrow.importer, (prefix,))),
                       None)  # fmt: skip
        if allowed is None:
            found.append(f"no layer is declared for {arrow.importer}: {arrow}")
        elif not within(arrow.imported, allowed) and not _package_init(arrow.imported):
            found.append(f"runs the wrong way: {arrow}")
    return found


def _package_init(module: str) -> bool:
    # ``import service`` alone (the namespace) carries no code of any layer.
    return module in OURS


class TestImportDirection:
    def test_every_import_runs_the_way_the_layers_do(self) -> None:
        """No module imports a layer above its own (or protobuf outside translation)."""
        problems = wrong_arrows(import_graph(ROOT))
        assert not problems, "\n".join(problems)

    def test_a_domain_module_importing_the_read_side_is_named(self, tmp_path: Path) -> None:
        """The check is not vacuous: a deliberate breach is reported with its arrow."""
        _write(tmp_path, {
            "service/domain/leaky.py": "from projections.escalation import weight_key\n",
            "service/application/handlers.py": "from service.domain import leaky\n",
            "projections/escalation.py": "from service.application.handlers import x\n",
            "service/api/servicers.py": "from service.bootstrap import build\n"
                                        "from google.protobuf import struct_pb2\n",
        })  # fmt: skip
        problems = sorted(wrong_arrows(import_graph(tmp_path)))
        assert problems == [
            "only entry points call the composition root: "
            "service.api.servicers -> service.bootstrap (line 1)",
            "protobuf outside the translation package: "
            "service.api.servicers -> google.protobuf (line 2)",
            "runs the wrong way: projections.escalation -> service.application.handlers (line 1)",
            "runs the wrong way: service.domain.leaky -> projections.escalation (line 1)",
        ]

    def test_a_module_outside_every_layer_is_named(self, tmp_path: Path) -> None:
        """A new top-level module must be given a layer before it can import ours."""
        _write(tmp_path, {"service/stray.py": "from service.domain import commands\n"})
        assert wrong_arrows(import_graph(tmp_path)) == [
            "no layer is declared for service.stray: service.stray -> service.domain (line 1)"
        ]


def _write(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
