"""Keep less, by the operator's choice (template.yaml's PayloadFieldPolicy, docs/privacy.md):
payload fields dropped, or replaced with a keyed hash, before anything is stored or put on the bus.

A rule is `<action>:<topic>:<path>`, rules separated by commas:
- action `drop` removes the field; `hash` replaces its value with `hmac:<32 hex digits>`, HMAC-SHA256
  under the stack's privacy key (the same value always gives the same hash, so it can still be
  counted or joined on, but not read back);
- topic is a topic (`chat.data.update`) or `*` for every topic;
- path is the field's keys from the body's top, separated by dots; `*` stands for every element of
  an array or every value of an object (`data.conversation.*.user_ip`).
A rule whose path is not in a body changes nothing. Only what routing and storage do not need may
be named: the ids, the topic and the timestamps are refused (ingest must still read them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ACTIONS = ("drop", "hash")
RULE = re.compile(r"^(?P<action>drop|hash):(?P<topic>\*|[a-z]+(?:\.[a-z]+)+):(?P<path>[^,:\s]+)$")
# What the pipeline itself reads: a rule may not remove or hide these.
PROTECTED = frozenset({"topic", "botId", "timestamp", "chatId", "id", "chat.id", "data.id", "data.chatId"})
HASHED_PREFIX = "hmac:"


class FieldPolicyError(ValueError):
    """A policy that cannot be applied as written."""


@dataclass(frozen=True, slots=True)
class FieldRule:
    action: str
    topic: str
    path: tuple[str, ...]


def parse_policy(spec: str) -> tuple[FieldRule, ...]:
    rules = []
    for part in spec.split(",") if spec else []:  # as the template's AllowedPattern: no empty rule
        match = RULE.match(part)
        if match is None:
            raise FieldPolicyError(f"not a rule (action:topic:path): {part!r}")
        path = tuple(match["path"].split("."))
        if "" in path or ".".join(path) in PROTECTED or path[-1] == "*":
            raise FieldPolicyError(f"a rule may not name {match['path']!r}")
        rules.append(FieldRule(match["action"], match["topic"], path))
    return tuple(rules)


def _apply(node: Any, path: tuple[str, ...], replace: Callable[[Any], Any] | None) -> bool:
    """Drop (replace None) or replace the field at `path` under `node`; True if anything changed."""
    head, rest = path[0], path[1:]
    if head == "*":
        children = list(node.values()) if isinstance(node, dict) else node if isinstance(node, list) else []
        return sum(_apply(child, rest, replace) for child in children) > 0  # every child, no short cut
    if not isinstance(node, dict) or head not in node:
        return False
    if rest:
        return _apply(node[head], rest, replace)
    if replace is None:
        del node[head]
    else:
        node[head] = replace(node[head])
    return True


def apply_policy(
    rules: tuple[FieldRule, ...], document: dict[str, Any], hasher: Callable[[str], str] | None
) -> bool:
    """Apply the rules for the body's topic, in place. `hasher` gives the keyed hash of a value's
    JSON text; None (the key could not be read) drops a field a rule would hash: never kept in
    clear against the operator's choice. True if the body changed."""
    topic = document.get("topic")
    changed = False
    for rule in rules:
        if rule.topic not in ("*", topic):
            continue
        if rule.action == "drop" or hasher is None:
            changed |= _apply(document, rule.path, None)
        else:
            changed |= _apply(
                document,
                rule.path,
                lambda value: HASHED_PREFIX + hasher(json.dumps(value, ensure_ascii=False, sort_keys=True)),
            )
    return changed


def needs_key(rules: tuple[FieldRule, ...]) -> bool:
    return any(rule.action == "hash" for rule in rules)
