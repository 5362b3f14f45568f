"""Build mipd's .deb or .rpm from a source tree, outside it (``make deb``, ``make rpm``).

    /usr/bin/python3 packaging/build.py deb|rpm [--source DIR] [--output DIR] [--keep]

Copies what the package needs from the source tree (default: this repository) into a temporary build
directory, checks that every file the package ships is there, builds with Debian's tools
(dpkg-buildpackage + debhelper, packaging/debian/) or with rpmbuild (packaging/rpm/mipd.spec), and
moves the result to the output directory (default: dist/ of the source tree):
``mipd_<version>_<arch>.deb`` or ``mipd-<version>-<release>.<arch>.rpm``. Nothing is written into
the source tree but the output. Standard library only: it runs with Debian's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What the packages ship from the source tree; each must exist (completions/mipctl is optional).
REQUIRED = (
    "pyproject.toml",
    "requirements.txt",
    "README.md",
    "mipd/__init__.py",
    "systemd/mipd@.service",
    "systemd/mip.target",
    "man/mipd.8",
    "man/mipctl.8",
    "man/mip.yaml.5",
    "etc/mip/home-agent.yaml",
    "etc/mip/foreign-agent.yaml",
    "etc/mip/mobile-node.yaml",
    "etc/mip/mobile-router.yaml",
    "packaging/README.md",
    "packaging/install.sh",
    "packaging/debian/control",
    "packaging/rpm/mipd.spec",
)
COPIED = ("pyproject.toml", "requirements.txt", "README.md", "mipd", "systemd", "man", "etc/mip", "completions", "packaging")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache", "build", "dist")
TOOLS = {"deb": ("dpkg-buildpackage", "dh", "dpkg-deb"), "rpm": ("rpmbuild",)}
MAINTAINER = "mipd developers <mipd@localhost>"


class BuildError(Exception):
    """The package cannot be built; the message says why."""


def project_version(source: Path) -> str:
    with (source / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def check_source(source: Path) -> None:
    missing = [name for name in REQUIRED if not (source / name).is_file()]
    if missing:
        raise BuildError(f"{source} lacks what the package ships: {', '.join(missing)}")


def stage(source: Path, into: Path) -> None:
    """Copy the shipped parts of ``source`` to ``into`` (a fresh directory)."""
    into.mkdir(parents=True)
    for name in COPIED:
        origin = source / name
        if origin.is_dir():
            shutil.copytree(origin, into / name, ignore=IGNORED, symlinks=True)
        elif origin.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, into / name)


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(argv), flush=True)
    result = subprocess.run(argv, cwd=cwd, env=env, check=False)
    if result.returncode:
        raise BuildError(f"{argv[0]} failed with exit status {result.returncode}")


def build_deb(source: Path, work: Path, version: str) -> Path:
    tree = work / f"mipd-{version}"
    stage(source, tree)
    shutil.copytree(tree / "packaging" / "debian", tree / "debian")
    # A native package: its version is the project's, recorded in the changelog dpkg reads it from.
    date = subprocess.run(["date", "-R"], capture_output=True, text=True, check=True).stdout.strip()
    (tree / "debian" / "changelog").write_text(
        f"mipd ({version}) unstable; urgency=medium\n\n"
        f"  * Built from the mipd source tree, version {version}.\n\n"
        f" -- {MAINTAINER}  {date}\n")
    env = {**os.environ, "DEB_BUILD_OPTIONS": "nocheck"}
    env.pop("VIRTUAL_ENV", None)  # a caller's venv must not leak into the package's build
    run(["dpkg-buildpackage", "--build=binary", "--no-sign"], cwd=tree, env=env)
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()
    built = work / f"mipd_{version}_{arch}.deb"
    if not built.is_file():
        raise BuildError(f"dpkg-buildpackage made no {built.name}")
    return built


def build_rpm(source: Path, work: Path, version: str) -> Path:
    top = work / "rpmbuild"
    for name in ("SOURCES", "SPECS", "BUILD", "RPMS", "SRPMS", "BUILDROOT"):
        (top / name).mkdir(parents=True)
    tree = work / f"mipd-{version}"
    stage(source, tree)
    with tarfile.open(top / "SOURCES" / f"mipd-{version}.tar.gz", "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    spec = top / "SPECS" / "mipd.spec"
    shutil.copy2(tree / "packaging" / "rpm" / "mipd.spec", spec)
    argv = ["rpmbuild", "-bb", "--define", f"_topdir {top}", "--define", f"mipd_version {version}"]
    if (tree / "completions" / "mipctl").is_file():
        argv += ["--define", "mipd_completion 1"]
    if Path("/etc/debian_version").exists():
        # rpm's database is empty on Debian: BuildRequires cannot be checked there (dpkg has them).
        argv.append("--nodeps")
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    run([*argv, str(spec)], cwd=work, env=env)
    built = sorted((top / "RPMS").glob(f"*/mipd-{version}-*.rpm"))
    if len(built) != 1:
        raise BuildError(f"rpmbuild made {[path.name for path in built]}, expected one mipd-{version}-*.rpm")
    return built[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packaging/build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("deb", "rpm"))
    parser.add_argument("--source", type=Path, default=REPO, help="mipd source tree (default: %(default)s)")
    parser.add_argument("--output", type=Path, help="where the package goes (default: SOURCE/dist)")
    parser.add_argument("--keep", action="store_true", help="keep the build directory (its path is printed)")
    args = parser.parse_args(argv)
    source = args.source.resolve()
    output = (args.output or source / "dist").resolve()
    missing_tools = [name for name in TOOLS[args.kind] if shutil.which(name) is None]
    work = Path(tempfile.mkdtemp(prefix=f"mipd-{args.kind}-"))
    try:
        if missing_tools:
            raise BuildError(f"{', '.join(missing_tools)} not installed: apt-get install "
                             + ("debhelper dpkg-dev" if args.kind == "deb" else "rpm"))
        check_source(source)
        version = project_version(source)
        built = (build_deb if args.kind == "deb" else build_rpm)(source, work, version)
        output.mkdir(parents=True, exist_ok=True)
        target = output / built.name
        shutil.move(built, target)
        print(f"built {target} ({target.stat().st_size // 1024} KiB)")
        return 0
    except BuildError as error:
        print(f"packaging/build.py: error: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"build directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
