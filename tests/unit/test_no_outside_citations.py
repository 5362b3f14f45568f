"""Nothing in the repository cites documents a reader of it cannot open.

The code, tests, benchmarks, fuzz harnesses and docs point to what the repository holds: the man pages
(mipd(8), mipctl(8), mip.yaml(5)), README.md, docs/interfaces.md and docs/robustness.md, or to public
projects and RFCs by name. The patterns are built from pieces, so that this file does not match itself.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ["mipd", "tests", "bench", "fuzz", "docs", "man", "etc", "systemd", "packaging", "README.md", "Makefile"]
OUTSIDE = re.compile("|".join([
    "CONTR" + "ACT",  # the upper-case name of a document kept outside the repository
    r"\bSTY" + r"LE\b",  # likewise; DELIVERY_STYLE and other identifiers have no word boundary there
    r"\.\./sha" + "red",  # a path out of the repository
]).encode())


def scanned_files() -> list[Path]:
    found: list[Path] = []
    for name in SCANNED:
        path = REPO / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [p for p in sorted(path.rglob("*")) if p.is_file() and "__pycache__" not in p.parts
                      and p.suffix not in (".pyc", ".so", ".o")]
    return found


def citations(path: Path) -> list[str]:
    """``path:line: text`` of every line of ``path`` that cites an outside document."""
    return [f"{path.relative_to(REPO)}:{number}: {line.decode(errors='replace').strip()}"
            for number, line in enumerate(path.read_bytes().splitlines(), 1) if OUTSIDE.search(line)]


def test_no_file_cites_a_document_outside_the_repository() -> None:
    files = scanned_files()
    assert any(p.name == "interfaces.md" for p in files) and len(files) > 100
    found = [hit for path in files for hit in citations(path)]
    assert found == [], "cite the man pages, README.md or docs/ instead:\n" + "\n".join(found)


def test_the_pattern_catches_each_form_and_spares_identifiers(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    forms = ["CONTR" + "ACT section 5", "CONTR" + "ACT §7", "(STY" + "LE: a habit)", "STY" + "LE.md",
             "../sha" + "red/rfc/notes.md"]
    sample.write_text("\n".join([*forms, "FA_DELIVERY_STYLE_NOT_SUPPORTED = 79", "import-linter contracts"]))
    assert len(re.findall(OUTSIDE, sample.read_bytes())) == len(forms)
