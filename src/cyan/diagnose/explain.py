"""What a pasted serial log, LED pattern or particle-cli error most likely means.

``explain(text)`` runs the rules in ``explain_rules.toml`` over the text line by line and
returns every rule that fired, best first. The rules are data, so a new symptom is a new
table with its own example rather than new code; every example is also a test
(tests/diagnose/test_explain.py).

When a rule fires:
  * one of its ``patterns`` matches a line, and
  * each of its ``requires_all`` patterns matches some line (the same one or another);
  * a line that matches one of its ``unless`` patterns never counts for it, which keeps
    "no breathing cyan" out of the breathing-cyan rule.
All patterns are case-insensitive regular expressions, searched within one line.

Ranking: priority first (how specific and decisive the evidence is), then how many lines
matched, then the order of the rules in the file. The score says exactly that:
``priority * 100 + evidence lines`` (the count capped at 99).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

RULES_FILE = "explain_rules.toml"
DEFAULT_PRIORITY = 50
# Evidence lines only order rules of equal priority: no number of matching lines lifts a
# vague rule over a decisive one.
PRIORITY_WEIGHT = 100
MAX_COUNTED_LINES = PRIORITY_WEIGHT - 1

_RULE_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_REQUIRED_KEYS = frozenset({"id", "cause", "fix", "patterns", "examples"})
_KNOWN_KEYS = _REQUIRED_KEYS | {"priority", "requires_all", "unless"}
# Serial monitors hand over \r\n, bare \n or, from some terminals, bare \r.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    priority: int
    cause: str
    fix: str
    patterns: tuple[re.Pattern[str], ...]
    requires_all: tuple[re.Pattern[str], ...]
    unless: tuple[re.Pattern[str], ...]
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class EvidenceLine:
    line_number: int  # counted from 1, as editors and `grep -n` count
    text: str


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: str
    cause: str
    fix: str
    evidence: tuple[EvidenceLine, ...]
    score: int


@cache
def load_rules() -> tuple[Rule, ...]:
    """The rules shipped with Cyan, parsed once per process."""
    text = resources.files("cyan.diagnose").joinpath(RULES_FILE).read_text(encoding="utf-8")
    return parse_rules(text)


def parse_rules(toml_text: str) -> tuple[Rule, ...]:
    """Rules from the text of a rules file; a malformed rule raises ValueError naming it."""
    try:
        document = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"the rules file is not valid TOML: {exc}") from exc
    tables = document.get("rule")
    if not isinstance(tables, list) or not tables:
        raise ValueError("the rules file has no [[rule]] tables")
    rules = tuple(_parse_rule(table, position) for position, table in enumerate(tables, 1))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise ValueError(f"rule {rule.id!r} is defined twice")
        seen.add(rule.id)
    return rules


def explain(text: str, rules: Sequence[Rule] | None = None) -> list[Finding]:
    """Every rule that fires on ``text``, most likely cause first; empty if none does."""
    lines = _LINE_BREAK.split(text)
    findings = [
        finding
        for rule in (load_rules() if rules is None else rules)
        if (finding := _match(rule, lines)) is not None
    ]
    # sort() is stable, so rules that tie keep their order in the file.
    findings.sort(key=lambda finding: finding.score, reverse=True)
    return findings


def _match(rule: Rule, lines: Sequence[str]) -> Finding | None:
    evidence: list[EvidenceLine] = []
    pattern_seen = False
    required_seen = [False] * len(rule.requires_all)
    for line_number, line in enumerate(lines, 1):
        if any(pattern.search(line) for pattern in rule.unless):
            continue
        matched = any(pattern.search(line) for pattern in rule.patterns)
        pattern_seen = pattern_seen or matched
        for index, pattern in enumerate(rule.requires_all):
            if pattern.search(line):
                required_seen[index] = matched = True
        if matched:
            evidence.append(EvidenceLine(line_number, line.strip()))
    if not pattern_seen or not all(required_seen):
        return None
    score = rule.priority * PRIORITY_WEIGHT + min(len(evidence), MAX_COUNTED_LINES)
    return Finding(rule.id, rule.cause, rule.fix, tuple(evidence), score)


def _parse_rule(table: Any, position: int) -> Rule:
    if not isinstance(table, dict):
        raise ValueError(f"rule #{position} is not a table")
    rule_id = table.get("id")
    where = f"rule {rule_id!r}" if isinstance(rule_id, str) else f"rule #{position}"
    missing = _REQUIRED_KEYS - table.keys()
    if missing:
        raise ValueError(f"{where} lacks {', '.join(sorted(missing))}")
    unknown = table.keys() - _KNOWN_KEYS
    if unknown:
        raise ValueError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    if not isinstance(rule_id, str) or not _RULE_ID.fullmatch(rule_id):
        raise ValueError(f"{where}: id must be lower-case words joined by '-'")
    priority = table.get("priority", DEFAULT_PRIORITY)
    # bool is an int to Python, but `priority = true` is a typo, not a priority.
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        raise ValueError(f"{where}: priority must be a whole number, 0 or more")
    return Rule(
        id=rule_id,
        priority=priority,
        cause=_sentence(table, "cause", where),
        fix=_sentence(table, "fix", where),
        patterns=_regexes(table, "patterns", where, required=True),
        requires_all=_regexes(table, "requires_all", where, required=False),
        unless=_regexes(table, "unless", where, required=False),
        examples=_strings(table, "examples", where, required=True),
    )


def _sentence(table: dict[str, Any], key: str, where: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {key} must be a non-empty string")
    return " ".join(value.split())


def _strings(table: dict[str, Any], key: str, where: str, *, required: bool) -> tuple[str, ...]:
    values = table.get(key, [])
    if not isinstance(values, list) or not all(
        isinstance(value, str) and value.strip() for value in values
    ):
        raise ValueError(f"{where}: {key} must be a list of non-empty strings")
    if required and not values:
        raise ValueError(f"{where}: {key} must not be empty")
    return tuple(values)


def _regexes(
    table: dict[str, Any], key: str, where: str, *, required: bool
) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for source in _strings(table, key, where, required=required):
        try:
            compiled.append(re.compile(source, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"{where}: bad pattern in {key} {source!r}: {exc}") from exc
    return tuple(compiled)
