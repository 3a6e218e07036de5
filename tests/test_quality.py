"""The checks a change must pass besides behaviour: lint, types, the proto contract."""

from __future__ import annotations

import filecmp
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )


class TestQuality:
    def test_ruff_finds_nothing(self) -> None:
        result = run(BIN / "ruff", "check", ".")
        assert result.returncode == 0, result.stdout + result.stderr

    def test_ruff_format_is_applied(self) -> None:
        result = run(BIN / "ruff", "format", "--check", ".")
        assert result.returncode == 0, result.stdout + result.stderr

    def test_mypy_strict_passes(self) -> None:
        result = run(BIN / "mypy")
        assert result.returncode == 0, result.stdout + result.stderr

    def test_buf_lint_passes(self) -> None:
        buf = ROOT / "node_modules" / ".bin" / "buf"
        if not buf.exists():
            pytest.fail("buf is missing: scripts/bootstrap dev installs it (npm ci)")
        result = run(buf, "lint", cwd=ROOT / "proto")
        assert result.returncode == 0, result.stdout + result.stderr

    def test_buf_lint_requires_a_comment_on_every_element(self, tmp_path: Path) -> None:
        """COMMENTS is on (every service, RPC, message, field and enum value documented),
        only the vendored google/ files are exempt, and lint really fails on a bare field."""
        config = yaml.safe_load((ROOT / "proto" / "buf.yaml").read_text())
        assert {"STANDARD", "COMMENTS"} <= set(config["lint"]["use"]), config["lint"]
        assert config["lint"].get("ignore") == ["google"], config["lint"]
        buf = ROOT / "node_modules" / ".bin" / "buf"
        if not buf.exists():
            pytest.fail("buf is missing: scripts/bootstrap dev installs it (npm ci)")
        copy = tmp_path / "proto"
        shutil.copytree(ROOT / "proto", copy)
        common = copy / "flashpoint" / "v1" / "common.proto"
        text = common.read_text()
        bare = re.sub(r"\n  // Its name, [^\n]*\n", "\n", text, count=1)
        assert bare != text
        common.write_text(bare)
        result = run(buf, "lint", cwd=copy)
        assert result.returncode != 0
        assert 'Field "name" should have a non-empty comment' in result.stdout, result.stdout

    def test_generated_code_is_fresh(self, tmp_path: Path) -> None:
        """The checked-in generated code is exactly what proto/ generates now."""
        result = run(ROOT / "scripts" / "generate-proto", tmp_path)
        assert result.returncode == 0, result.stderr
        checked_in = ROOT / "service" / "api" / "gen"
        stale = _differences(filecmp.dircmp(checked_in, tmp_path, ignore=["__pycache__"]))
        assert not stale, f"regenerate with scripts/generate-proto; stale: {stale}"


def _differences(comparison: filecmp.dircmp[str]) -> list[str]:
    found = [
        *comparison.left_only,
        *comparison.right_only,
        *comparison.diff_files,
        *comparison.funny_files,
    ]
    for sub in comparison.subdirs.values():
        found += _differences(sub)
    return found


def test_buf_is_installed_by_the_projects_own_files() -> None:
    """package.json pins buf, so `npm ci` (run by scripts/bootstrap) brings it."""
    assert (ROOT / "package.json").exists()
    assert (ROOT / "package-lock.json").exists()
    assert shutil.which("npm") is not None
