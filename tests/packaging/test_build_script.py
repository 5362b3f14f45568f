"""packaging/build.py refuses, before building anything, a tree that lacks a file the packages ship."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.package import REPO
from tests.support.tools import venv_script

SHIPPED = ["pyproject.toml", "requirements.txt", "README.md", "mipd/__init__.py", "systemd/mipd@.service",
           "systemd/mip.target",
           "man/mipd.8", "man/mipctl.8", "man/mip.yaml.5", "etc/mip/home-agent.yaml",
           "etc/mip/foreign-agent.yaml", "etc/mip/mobile-node.yaml", "etc/mip/mobile-router.yaml",
           "packaging/README.md", "packaging/install.sh", "packaging/debian/control", "packaging/rpm/mipd.spec"]


@pytest.mark.parametrize("kind", ["deb", "rpm"])
@pytest.mark.parametrize("missing", ["man/mipctl.8", "systemd/mip.target", "etc/mip/mobile-node.yaml",
                                     "requirements.txt"])
def test_a_missing_shipped_file_stops_the_build_with_its_name(kind: str, missing: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name in SHIPPED:
        if name != missing:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    output = tmp_path / "out"
    result = subprocess.run([venv_script("python"), str(REPO / "packaging" / "build.py"), kind,
                             "--source", str(source), "--output", str(output)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip() == (f"packaging/build.py: error: {source} lacks what the package ships: "
                                     f"{missing}")
    assert not output.exists()


def test_the_complete_tree_has_every_shipped_file() -> None:
    assert not [name for name in SHIPPED if not (REPO / name).is_file()]
