"""The man pages and example profiles agree with the code.

- mip.yaml(5) documents every key of every role (walking the pydantic models, into security associations
  and ``tunnel``) with the default the code has, every value a choice key accepts, and no key the code
  does not know;
- mipd(8) and mipctl(8) name every subcommand and option that ``--help`` shows;
- mipd(8) names every journal event the code emits, the events of each role under it, the journal fields
  and every ``packet.dropped`` reason;
- mipd(8) quotes systemd/mipd@.service's settings as the unit has them;
- each page renders without a groff warning;
- each example in etc/mip shows every key of its role, with the model's default where it sets one.
- the profiles mip.yaml(5) shows as examples pass ``mipd check``;
- docs/interfaces.md, the one overview, passes the same checks: every profile key with its default and
  choices (and no other), every command and option of ``--help``, every event under its role with what is
  rate-limited and never suppressed, every journal field and drop reason, every field of mipctl's JSON
  and exactly the keys the benchmark writes.

Man pages are read as roff source: ``plain`` turns macro lines into their text, so a test does not depend
on how groff lays a page out.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
from collections.abc import Iterator
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from bench.__main__ import summarize
from bench.report import machine
from mipd.cli.mipctl import build_parser as mipctl_parser
from mipd.cli.mipd import build_parser as mipd_parser
from mipd.config.loader import SOCKET_DIRECTORY
from mipd.config.models import ROLES, Common, Tunnel
from mipd.config.security import AgentAssociation, NodeAssociation
from mipd.control.shapes import ALWAYS_DROPPED
from mipd.core.names import DiscardReason, EventName
from mipd.obs.fields import field_name
from mipd.obs.ratelimit import NEVER_LIMITED_PREFIXES, RATE_LIMITED_EVENTS
from tests.support.tools import tool, venv_script

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "man"
PAGES = {"mipd.8": "MIPD 8", "mipctl.8": "MIPCTL 8", "mip.yaml.5": "MIP.YAML 5"}
ROLE_SECTIONS = {"home-agent": "HOME AGENT", "foreign-agent": "FOREIGN AGENT", "mobile-node": "MOBILE NODE"}

# ---------------------------------------------------------------------------------------------------------
# reading roff source

_ALTERNATING = {"BI", "BR", "IB", "IR", "RB", "RI"}  # alternate fonts: arguments are joined without spaces
_JOINED = {"B", "I", "SM", "SB"}  # one font: arguments are joined with spaces
_ESCAPES = [("\\-", "-"), ("\\(em", "\u2014"), ("\\(en", "\u2013"), ("\\(->", "->"), ("\\(bu", "*"),
            ("\\~", " "), ("\\&", ""), ("\\e", "\\")]
_FONT = re.compile(r"\\f[BIRP]")


def arguments(text: str) -> list[str]:
    """A macro's arguments: separated by spaces, ``"..."`` groups words (``""`` in it is a quote)."""
    found = re.findall(r'"((?:[^"]|"")*)"?|(\S+)', text)
    return [quoted.replace('""', '"') if quoted or not bare else bare for quoted, bare in found]


def plain(lines: list[str]) -> str:
    """The text of roff ``lines``: font macros become their words, other requests end a line."""
    out: list[str] = []
    for line in lines:
        if line.startswith(".\\\""):
            continue
        text = line
        if line.startswith("."):
            name, _, rest = line[1:].partition(" ")
            if name in _ALTERNATING or name in _JOINED:
                words = arguments(rest)
                text = ("" if name in _ALTERNATING else " ").join(words)
            else:
                out.append("\n")
                continue
        text = _FONT.sub("", text)
        for escape, replacement in _ESCAPES:
            text = text.replace(escape, replacement)
        out.append(text[:-2] if text.endswith("\\c") else text + " ")
    return re.sub(r"[ \t]+", " ", "".join(out))


@cache
def source(page: str) -> list[str]:
    return (MAN / page).read_text().splitlines()


def sections(page: str) -> dict[str, list[str]]:
    """The page's lines by ``.SH`` title."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in source(page):
        if line.startswith(".SH "):
            current = found.setdefault(line[4:].strip().strip('"'), [])
        else:
            current.append(line)
    return found


def entries(lines: list[str]) -> dict[str, str]:
    """Tagged paragraphs (``.TP``) of ``lines``: the tag's first word (without a final ``:``) -> its text.

    The text runs to the next ``.TP``, ``.SS`` or ``.SH`` outside ``.RS``/``.RE``; what is indented in it
    (an option list of a command) is part of it.
    """
    found: dict[str, str] = {}
    tag: str | None = None
    body: list[str] = []
    depth = 0
    at_tag = False  # the line after .TP is the tag, not text
    for line in [*lines, ".SH END"]:
        depth += line.startswith(".RS") - line.startswith(".RE")
        if line.startswith((".SH", ".SS")) or (line.startswith(".TP") and depth == 0):
            if tag is not None:
                found[tag] = plain(body).strip()
            tag, body, at_tag = None, [], line.startswith(".TP")
        elif at_tag:
            words = plain([line]).split()
            tag, at_tag = (words[0].removesuffix(":") if words else None), False
        elif tag is not None:
            body.append(line)
    return found


def mentions(text: str, word: str) -> bool:
    """Whether ``word`` (an option, a command, an event) occurs in ``text`` as a whole word."""
    return re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w-])", text) is not None


def test_plain_reads_font_macros_and_escapes() -> None:
    lines = [".BI \"max_lifetime: \" seconds", "a \\fBbold\\fR word\\c", ".IB /run/mip/ instance .sock", "x\\-y"]
    assert plain(lines) == "max_lifetime: seconds a bold word/run/mip/instance.sock x-y "
    assert entries([".TP", ".B one", "first", ".TP", ".BI \"two: \" int", "second"]) == {
        "one": "first", "two": "second"}


# ---------------------------------------------------------------------------------------------------------
# mip.yaml(5): every key of every role, its default and its choices


def render(value: object) -> str:
    """A default as the man page writes it: ``true``, ``none``, ``[ipip]``, ``{backend: auto, ...}``, ``7``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, Enum):
        return render(value.value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, BaseModel):
        value = {name: getattr(value, name) for name in type(value).model_fields}
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {render(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render(item) for item in value) + "]"
    return str(value)


# Keys whose default is not a plain value: what the page must say instead.
SPECIAL_DEFAULTS = {
    "control_socket": f"Default: {SOCKET_DIRECTORY}/instance.sock",
    "key": "exactly one of key and key_file is required",
    "key_file": "exactly one of key and key_file is required",
}
ASSOCIATION_FIELDS = {**NodeAssociation.model_fields, **AgentAssociation.model_fields}


def documented_keys() -> Iterator[tuple[str, type[BaseModel], str]]:
    """(section of mip.yaml(5), model, key) for every key of every role."""
    for name in [*Common.model_fields, "role"]:
        yield "COMMON KEYS", ROLES["home-agent"], name
    for name in ASSOCIATION_FIELDS:
        yield "SECURITY ASSOCIATIONS", NodeAssociation if name in NodeAssociation.model_fields else \
            AgentAssociation, name
    for name in Tunnel.model_fields:
        yield "TUNNEL", Tunnel, name
    for role, model in ROLES.items():
        for name in model.model_fields:
            if name not in Common.model_fields and name != "role":
                yield ROLE_SECTIONS[role], model, name


KEYS = list(documented_keys())


def choices(model: type[BaseModel], name: str) -> list[str]:
    """The values a key accepts when they are a fixed set (literals, enums, lists of enums), from the schema."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})

    def walk(node: dict[str, Any]) -> list[str]:
        if "$ref" in node:
            return walk(definitions[node["$ref"].rsplit("/", 1)[1]])
        found = [str(v) for v in node.get("enum", [])] + ([str(node["const"])] if "const" in node else [])
        for option in node.get("anyOf", []):
            found += walk(option)
        return found + (walk(node["items"]) if "items" in node else [])

    return walk(schema["properties"][name])


@pytest.mark.parametrize(("section", "model", "name"), KEYS, ids=[f"{s}:{n}" for s, _, n in KEYS])
def test_mip_yaml_documents_the_key_its_default_and_its_choices(section: str, model: type[BaseModel],
                                                               name: str) -> None:
    documented = entries(sections("mip.yaml.5")[section])
    assert name in documented, f"mip.yaml(5) section {section} has no entry '.TP' / '.BI \"{name}: \" type'"
    text = documented[name]
    field = model.model_fields[name]
    if name in SPECIAL_DEFAULTS:
        assert SPECIAL_DEFAULTS[name] in text, f"{name}: say {SPECIAL_DEFAULTS[name]!r}"
    elif field.is_required():
        assert "Required" in text, f"{name} has no default: say 'Required.'"
    else:
        expected = f"Default: {render(field.get_default(call_default_factory=True))}"
        assert expected in text, f"{name}: the code's default is {expected!r}; the page says {text!r}"
    if name != "role":
        for choice in choices(model, name):
            assert mentions(text, choice), f"{name} accepts {choice!r}, which its entry does not name"


@pytest.mark.parametrize("section", ["COMMON KEYS", "SECURITY ASSOCIATIONS", "TUNNEL", *ROLE_SECTIONS.values()])
def test_mip_yaml_documents_no_key_the_code_does_not_know(section: str) -> None:
    known = {name for where, _, name in KEYS if where == section}
    assert set(entries(sections("mip.yaml.5")[section])) <= known


# ---------------------------------------------------------------------------------------------------------
# mipd(8) and mipctl(8) against --help


PARSERS = {"mipd": mipd_parser, "mipctl": mipctl_parser}


@cache
def help_text(program: str, *command: str) -> str:
    """What ``program [COMMAND] --help`` prints, from the program's own parser (no process: fast)."""
    parser = PARSERS[program]()
    if command:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = subparsers.choices[command[0]]
    return parser.format_help()


def commands_of(text: str) -> list[str]:
    """The commands a ``--help`` lists under ``commands:`` (4 spaces in, then the name)."""
    listing = text.split("\ncommands:\n", 1)[1] if "\ncommands:\n" in text else ""
    return re.findall(r"^ {4}([a-z][a-z-]*)(?: {2,}|$)", listing, re.MULTILINE)


def options_of(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", text.split("\n\n", 1)[0] + "\n" + "\n".join(
        line for line in text.splitlines() if line.startswith("  -"))))


def help_cases() -> Iterator[tuple[str, tuple[str, ...]]]:
    for program in ("mipd", "mipctl"):
        yield program, ()
        for command in commands_of(help_text(program)):
            yield program, (command,)


HELP_CASES = list(help_cases())


@pytest.mark.parametrize(("program", "command"), HELP_CASES, ids=[" ".join((p, *c)) for p, c in HELP_CASES])
def test_the_man_page_names_every_option_and_command_of_help(program: str, command: tuple[str, ...]) -> None:
    page = sections(f"{program}.8")
    text = help_text(program, *command)
    options = options_of(text)
    assert "--help" in options
    everything = plain(source(f"{program}.8"))
    missing = sorted(option for option in options if not mentions(everything, option))
    assert not missing, f"{program}(8) does not document {missing}"
    documented_commands = entries(page["COMMANDS"])
    for name in commands_of(text):
        assert name in documented_commands, f"{program}(8) COMMANDS has no entry for {name}"
    if command:
        entry = documented_commands[command[0]]
        for option in options - {"-h", "--help", *options_of(help_text(program))}:
            assert mentions(entry, option) or mentions(plain(page["OPTIONS"]), option), \
                f"{program}(8): {option} is not described with {command[0]}"


@pytest.mark.parametrize("program", ["mipd", "mipctl"])
def test_the_man_page_documents_no_command_that_does_not_exist(program: str) -> None:
    documented = set(entries(sections(f"{program}.8")["COMMANDS"]))
    assert documented == set(commands_of(help_text(program)))


# ---------------------------------------------------------------------------------------------------------
# mipd(8) and the journal

ROLE_EVENTS = {
    "all": ["daemon.started", "daemon.reloaded", "daemon.stopping", "config.rejected"],
    "home-agent": ["registration.accepted", "registration.denied", "binding.added", "binding.renewed",
                   "binding.removed", "binding.expired", "packet.dropped"],
    "foreign-agent": ["visitor.pending", "visitor.added", "visitor.renewed", "visitor.removed", "visitor.expired",
                      "registration.relayed", "registration.denied", "packet.dropped"],
    "mobile-node": ["agent.discovered", "agent.lost", "movement.detected", "registration.sent",
                    "registration.accepted", "registration.denied", "registration.expired", "home.returned"],
}
EVENT_SECTIONS = {"all": "Events of every role", "home-agent": "Home agent events",
                  "foreign-agent": "Foreign agent events", "mobile-node": "Mobile node events"}
JOURNAL_FIELDS = ["MIP_INSTANCE", "MIP_ROLE", "MIP_EVENT", "MIP_HOME_ADDRESS", "MIP_CARE_OF_ADDRESS",
                   "MIP_HOME_AGENT", "MIP_FOREIGN_AGENT", "MIP_LINK_ADDRESS", "MIP_LIFETIME", "MIP_CODE", "MIP_SPI",
                   "MIP_REASON", "MIP_SUPPRESSED"]
_EVENT_NAME = re.compile(r"[a-z]+\.[a-z][a-z-]*")


def journal_subsections() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in sections("mipd.8")["JOURNAL"]:
        if line.startswith(".SS "):
            current = found.setdefault(line[4:].strip().strip('"'), [])
        else:
            current.append(line)
    return found


@cache
def code_trees() -> list[ast.Module]:
    return [ast.parse(path.read_text()) for path in sorted((REPO / "mipd").rglob("*.py"))]


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


# Event names and drop reasons are StrEnums (mipd.core.names): ``EventName.BINDING_ADDED`` is read as
# "binding.added", as the string it is.
NAMED = {"EventName": EventName, "DiscardReason": DiscardReason}


def _strings(node: ast.expr) -> list[str]:
    found: list[str] = []
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            found.append(n.value)
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in NAMED:
            found.append(NAMED[n.value.id][n.attr].value)
    return found


# What the code calls to write an event: Emit, EventLog.emit, the engines' helpers, the logger's methods.
EMITTERS = {"Emit", "emit", "_event", "_binding_event", "_visitor_event", "debug", "info", "notice", "warning",
            "error", "exception", "log"}


def emitted_events() -> set[str]:
    """Event names the code passes to an emitter: the first argument (the second of ``log``)."""
    found: set[str] = set()
    for tree in code_trees():
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args):
            if _call_name(call) not in EMITTERS:
                continue
            argument = call.args[1] if _call_name(call) == "log" and len(call.args) > 1 else call.args[0]
            found.update(s for s in _strings(argument) if _EVENT_NAME.fullmatch(s))
    return found


def drop_reasons() -> set[str]:
    """``packet.dropped`` reasons: the first argument of ``_drop`` and ``Discard``, and ``reason=``
    of a call that emits packet.dropped."""
    found: set[str] = set()
    for tree in code_trees():
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args):
            if _call_name(call) in ("_drop", "Discard"):
                found.update(_strings(call.args[0])[:1])
            elif "packet.dropped" in _strings(call.args[0]):
                found.update(s for k in call.keywords if k.arg == "reason" for s in _strings(k.value))
    return found


def test_the_code_emits_the_role_events_and_the_scan_finds_them() -> None:
    events = emitted_events()
    missing = sorted({e for names in ROLE_EVENTS.values() for e in names} - events)
    assert not missing, f"the code emits no {missing}"
    assert {"bad-fa-ha", "no-sa", "malformed"} <= drop_reasons()


@pytest.mark.parametrize("event", sorted(emitted_events()))
def test_mipd_8_documents_every_event_the_code_emits(event: str) -> None:
    documented = {name for lines in journal_subsections().values() for name in entries(lines)}
    assert event in documented, f"mipd(8) JOURNAL has no '.TP' / '.B {event}' entry"


@pytest.mark.parametrize("role", sorted(ROLE_EVENTS))
def test_mipd_8_lists_the_role_events_under_their_role(role: str) -> None:
    documented = entries(journal_subsections()[EVENT_SECTIONS[role]])
    assert [e for e in ROLE_EVENTS[role] if e not in documented] == []


def written_fields() -> set[str]:
    """Journal fields the code writes: ``MIP_*`` constants, keyword arguments of emitters and ``_fields``, and
    the string keys of dict literals (an Emit's fields), each as mipd.obs.fields names them."""
    found: set[str] = set()
    for tree in code_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("MIP_"):
                found.add(node.value)
            elif isinstance(node, ast.Call) and _call_name(node) in {*EMITTERS, "_fields"}:
                found.update(field_name(k.arg) for k in node.keywords if k.arg is not None)
            elif isinstance(node, ast.Dict):
                found.update(field_name(k.value) for k in node.keys
                             if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return found


def test_mipd_8_documents_every_journal_field_the_code_writes() -> None:
    written = written_fields()
    documented = entries(journal_subsections()["Fields"])
    for field in JOURNAL_FIELDS:
        assert field in written, f"the code never writes {field}"
        assert field in documented, f"mipd(8) JOURNAL Fields has no entry for {field}"
    text = plain(sections("mipd.8")["JOURNAL"])
    for field in ["SYSLOG_IDENTIFIER", "MESSAGE", "PRIORITY"]:
        assert mentions(text, field)


@pytest.mark.parametrize("reason", sorted(drop_reasons()))
def test_mipd_8_names_every_packet_dropped_reason(reason: str) -> None:
    assert mentions(plain(sections("mipd.8")["JOURNAL"]), reason)


# ---------------------------------------------------------------------------------------------------------
# mipd(8) SYSTEMD describes the unit as it is


def test_mipd_8_quotes_the_units_settings_as_the_unit_has_them() -> None:
    unit: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / "mipd@.service").read_text().splitlines():
        name, equals, value = line.partition("=")
        if equals and not line.startswith("#"):
            unit.setdefault(name.strip(), []).append(value.strip())
    text = plain(sections("mipd.8")["SYSTEMD"])
    quoted = re.findall(r"\b([A-Z][A-Za-z]+)=([\w-]+)", text)
    assert {"Type", "WatchdogSec", "Restart", "RuntimeDirectoryPreserve"} <= {name for name, _ in quoted}
    for name, value in quoted:
        if name in unit:
            assert value in unit[name], f"mipd(8) says {name}={value}; the unit has {name}={unit[name]}"
    # what the page says of mip.target and of systemctl reload
    assert unit["PartOf"] == ["mip.target"]
    assert unit["WantedBy"] == ["mip.target"]
    assert unit["ExecReload"][0].split()[-1] == "reload" and "mipctl" in unit["ExecReload"][0]


# ---------------------------------------------------------------------------------------------------------
# every page renders cleanly


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_page_renders_without_warnings(page: str) -> None:
    assert source(page)[0].startswith(".\\\""), "start with a comment line saying what the page is"
    assert any(line.startswith(f".TH {PAGES[page]} ") for line in source(page)), f"{page}: .TH {PAGES[page]}"
    result = subprocess.run([tool("groff"), "-man", "-ww", "-z", str(MAN / page)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert result.stderr == ""


def test_groff_catches_a_broken_page(tmp_path: Path) -> None:
    broken = tmp_path / "broken.8"
    broken.write_text(".TH BROKEN 8\n.SH NAME\nbroken \\- a page\n.XX undefined macro\n\\fQ\n")
    result = subprocess.run([tool("groff"), "-man", "-ww", "-z", str(broken)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert "warning" in result.stderr


# ---------------------------------------------------------------------------------------------------------
# the examples show every key of their role, with the code's defaults

EXAMPLES = {"home-agent": "home-agent.yaml", "foreign-agent": "foreign-agent.yaml", "mobile-node": "mobile-node.yaml"}


@pytest.mark.parametrize("role", sorted(EXAMPLES))
def test_the_example_shows_every_key_of_its_role_with_its_default(role: str) -> None:
    text = (REPO / "etc" / "mip" / EXAMPLES[role]).read_text()
    shown = set(re.findall(r"^(?:# ?)?([a-z_]+):", text, re.MULTILINE))  # commented out, when optional
    model = ROLES[role]
    missing = sorted(set(model.model_fields) - shown)
    assert not missing, f"{EXAMPLES[role]} does not show {missing}"
    data = yaml.safe_load(text)
    assert data["role"] == role
    for name, value in data.items():
        field = model.model_fields[name]
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if default is None or default == []:
            continue  # required, or a list the example fills with a sample entry
        assert render(value) == render(default), f"{name}: the example says {value!r}, the code {default!r}"
    for name in set(ASSOCIATION_FIELDS) - {"address", "home_address"}:
        assert mentions(text, name), f"{EXAMPLES[role]} does not mention the association key {name}"


def man_examples() -> list[str]:
    """The profiles shown in mip.yaml(5) EXAMPLES: ``.EX`` blocks that start with ``role:``."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in sections("mip.yaml.5")["EXAMPLES"]:
        if line.startswith(".EX"):
            current = []
        elif line.startswith(".EE") and current is not None:
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line.replace("\\-", "-"))
    return ["\n".join(block) + "\n" for block in blocks if block and block[0].startswith("role:")]


def test_the_profiles_in_mip_yaml_5_pass_mipd_check(tmp_path: Path) -> None:
    profiles = man_examples()
    assert len(profiles) == 3
    paths = []
    for index, shown in enumerate(profiles):
        text = shown
        for key_file in set(re.findall(r"key_file: (/etc/mip/keys/\S+)", shown)):
            local = tmp_path / Path(key_file).name
            key = subprocess.run([venv_script("mipd"), "keygen"], capture_output=True, text=True, timeout=60,
                                 check=True).stdout
            local.write_text(key)
            local.chmod(0o600)
            text = text.replace(key_file, str(local))
        path = tmp_path / f"example-{index}.yaml"
        path.write_text(text)
        paths.append(str(path))
    result = subprocess.run([venv_script("mipd"), "check", *paths], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.stdout.splitlines() == [f"{path}: ok" for path in paths]
    assert result.returncode == 0


# ---------------------------------------------------------------------------------------------------------
# docs/interfaces.md: the same checks against the one overview page

INTERFACES = REPO / "docs" / "interfaces.md"


@cache
def interfaces_lines() -> list[str]:
    return INTERFACES.read_text().splitlines()


def part(title: str) -> list[str]:
    """The lines under the heading ``title`` of docs/interfaces.md, up to the next heading of its level or
    above (so a part holds its subsections)."""
    lines = interfaces_lines()
    for index, line in enumerate(lines):
        level = len(line) - len(line.lstrip("#"))
        if level and line[level:].strip() == title:
            end = next((i for i in range(index + 1, len(lines))
                        if lines[i].startswith("#") and len(lines[i]) - len(lines[i].lstrip("#")) <= level),
                       len(lines))
            return lines[index + 1:end]
    raise AssertionError(f"docs/interfaces.md has no heading {title!r}")


def rows(lines: list[str]) -> dict[str, list[str]]:
    """The tables of ``lines``: each row's first cell (without backticks) -> its cells. Header rows (the
    first of a table) and rule rows are left out."""
    found: dict[str, list[str]] = {}
    in_table = False
    for line in lines:
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if in_table and not set("".join(cells)) <= set("-: "):
            found[cells[0].strip("`")] = cells
        in_table = True
    return found


def test_rows_reads_markdown_tables() -> None:
    assert rows(["text", "| key | default |", "|---|---|", "| `a` | `1` |", "", "| h |", "|-|", "| b |"]) == {
        "a": ["`a`", "`1`"], "b": ["b"]}
    assert part("Tunnel")[0] == ""


def documented_default(cell: str) -> str:
    """A default cell as the code's default reads: without backticks and the ``<>`` around a placeholder."""
    return re.sub(r"[`<>]", "", cell)


@pytest.mark.parametrize(("section", "model", "name"), KEYS, ids=[f"{s}:{n}" for s, _, n in KEYS])
def test_interfaces_md_documents_the_key_its_default_and_its_choices(section: str, model: type[BaseModel],
                                                                    name: str) -> None:
    documented = rows(part(section.capitalize()))
    assert name in documented, f"docs/interfaces.md {section.capitalize()} has no row | `{name}` | default | ... |"
    _, default, *rest = documented[name]
    field = model.model_fields[name]
    if name in SPECIAL_DEFAULTS:
        expected = SPECIAL_DEFAULTS[name].removeprefix("Default: ")
    elif field.is_required():
        expected = "required"
    else:
        expected = render(field.get_default(call_default_factory=True))
    assert documented_default(default) == expected, f"{name}: the code's default is {expected!r}"
    if name != "role":
        for choice in choices(model, name):
            assert mentions(" ".join(rest), choice), f"{name} accepts {choice!r}, which its row does not name"


@pytest.mark.parametrize("section", ["COMMON KEYS", "SECURITY ASSOCIATIONS", "TUNNEL", *ROLE_SECTIONS.values()])
def test_interfaces_md_documents_no_key_the_code_does_not_know(section: str) -> None:
    known = {name for where, _, name in KEYS if where == section}
    assert set(rows(part(section.capitalize()))) <= known


@pytest.mark.parametrize(("program", "command"), HELP_CASES, ids=[" ".join((p, *c)) for p, c in HELP_CASES])
def test_interfaces_md_names_every_command_and_option_of_help(program: str, command: tuple[str, ...]) -> None:
    text = "\n".join(part(program))
    text_of_help = help_text(program, *command)
    missing = sorted(option for option in options_of(text_of_help) if not mentions(text, option))
    assert not missing, f"docs/interfaces.md {program} does not name {missing}"
    for name in commands_of(text_of_help):
        assert mentions(text, f"{program} {name}") if program == "mipd" else f"`{name}" in text, \
            f"docs/interfaces.md {program} does not describe the command {name}"


def test_interfaces_md_lists_only_mipctl_commands_that_exist() -> None:
    assert {cell.split()[0] for cell in rows(part("mipctl"))} == set(commands_of(help_text("mipctl")))


def interfaces_events() -> dict[str, dict[str, list[str]]]:
    """Role -> the event table of its section: event -> cells."""
    return {role: rows(part(title)) for role, title in EVENT_SECTIONS.items()}


@pytest.mark.parametrize("event", sorted(emitted_events()))
def test_interfaces_md_documents_every_event_the_code_emits(event: str) -> None:
    assert any(event in table for table in interfaces_events().values()), \
        f"docs/interfaces.md has no event row | `{event}` | priority | when |"


@pytest.mark.parametrize("role", sorted(ROLE_EVENTS))
def test_interfaces_md_lists_the_events_of_each_role_under_it(role: str) -> None:
    table = interfaces_events()[role]
    assert [e for e in ROLE_EVENTS[role] if e not in table] == []
    for event, (_, priority, _) in table.items():
        limited = "rate-limited" in priority
        assert limited == (event in RATE_LIMITED_EVENTS), f"{event}: say rate-limited exactly when it is"
        assert ("never suppressed" in priority) == event.startswith(NEVER_LIMITED_PREFIXES)


def test_interfaces_md_documents_every_journal_field() -> None:
    written = written_fields()
    documented = rows(part("Fields"))
    for field in JOURNAL_FIELDS:
        assert field in written, f"the code never writes {field}"
        assert field in documented, f"docs/interfaces.md Fields has no row for {field}"
    text = "\n".join(part("Journal"))
    for field in ["SYSLOG_IDENTIFIER", "MESSAGE", "PRIORITY"]:
        assert mentions(text, field)
    for reason in drop_reasons():
        assert mentions(text, reason), f"docs/interfaces.md Journal does not name the drop reason {reason}"


def control_fields() -> set[str]:
    """Every field name of mipctl's JSON: the keys the shapes build (mipd.control.shapes), the keywords the
    roles give status_json, the objects the roles add to stats and the keys of reload and log-level."""
    found = set(ALWAYS_DROPPED)
    shapes = ast.parse((REPO / "mipd" / "control" / "shapes.py").read_text())
    found.update(k.value for node in ast.walk(shapes) if isinstance(node, ast.Dict) for k in node.keys
                 if isinstance(k, ast.Constant) and isinstance(k.value, str))
    found.update(a.arg for node in ast.walk(shapes) if isinstance(node, ast.FunctionDef)
                 and node.name == "status_json" for a in node.args.kwonlyargs)
    for path in sorted((REPO / "mipd" / "runtime").glob("*.py")):
        tree = ast.parse(path.read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and _call_name(node) == "status_json":
                    found.update(k.arg for k in node.keywords if k.arg is not None)
                elif function.name == "stats" and isinstance(node, ast.Assign):
                    found.update(t.slice.value for t in node.targets if isinstance(t, ast.Subscript)
                                 and isinstance(t.slice, ast.Constant) and isinstance(t.slice.value, str))
                elif function.name in ("reload", "log_level") and isinstance(node, ast.Return) and node.value:
                    for value in ast.walk(node.value):
                        if isinstance(value, ast.Dict):
                            found.update(k.value for k in value.keys
                                         if isinstance(k, ast.Constant) and isinstance(k.value, str))
    return found


def test_the_control_field_scan_finds_the_fields() -> None:
    assert {"lifetime_granted", "link_address", "relayed", "no_sa", "uptime", "location", "home_agent",
            "data_plane", "visited_link", "routing", "restart_needed", "reloaded", "mobile_nodes",
            "home_agents", "log_level", "removed"} <= control_fields()


@pytest.mark.parametrize("field", sorted(control_fields()))
def test_interfaces_md_documents_every_control_json_field(field: str) -> None:
    assert mentions("\n".join(part("Control output (mipctl --json)")), field), \
        f"docs/interfaces.md Control output does not name {field!r}"


def bench_keys() -> set[str]:
    """The top-level keys the benchmark writes, from its own summary of a run where every part failed."""
    return set(summarize({}))


def test_interfaces_md_documents_exactly_the_bench_keys() -> None:
    documented = rows(part("Benchmark results"))
    assert set(documented) == bench_keys()
    for key in machine():
        assert mentions(" ".join(documented["machine"]), key), f"the machine row does not name {key}"
