"""The single-file engine as scripts/build_engine.py builds it (make dist): versions, bytes, contents."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

import onprem_lb

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "scripts" / "build_engine.py"
WHEELS = REPO / ".cache" / "dist" / "wheels"


def build(output: Path) -> Path:
    subprocess.run(
        [sys.executable, str(BUILD), str(output), "--wheels", str(WHEELS)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return output


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("engine-a") / "onprem-lb.pyz")


def test_versions_agree() -> None:
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert galaxy == project == onprem_lb.__version__


def test_build_is_reproducible(built: Path, tmp_path: Path) -> None:
    again = build(tmp_path / "again" / "onprem-lb.pyz")
    assert again.read_bytes() == built.read_bytes()


def test_archive_contents(built: Path) -> None:
    assert built.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(built) as zf:
        names = zf.namelist()
        compiled = [n for n in names if n.endswith((".so", ".pyd"))]
        assert not compiled, f"compiled extensions cannot be imported from a zip: {compiled}"
        assert "__main__.py" in names
        assert "onprem_lb/cli.py" in names
        # every module of the package is in it; ipam.py is the module_utils file (the symlink followed)
        package = {f"onprem_lb/{p.name}" for p in (REPO / "src" / "onprem_lb").glob("*.py")}
        assert package <= set(names)
        assert (REPO / "src" / "onprem_lb" / "ipam.py").is_symlink()
        assert zf.read("onprem_lb/ipam.py") == (REPO / "plugins" / "module_utils" / "ipam.py").read_bytes()
