"""A chat's state as last-writer-wins registers, so delivery order never matters.

EventBridge delivers at least once and in no order. Each chat-state topic writes some fields of
some groups (status, user, session data, chat attributes); every field remembers the version that
wrote it: the Ebbot timestamp of the webhook in nanoseconds, then the body's sha256 as a
deterministic tie-break. A field takes a new value only from a higher version. That merge is
commutative, associative and idempotent, so any order and any number of deliveries give the same
state, and chat.data.update and chat.status.change never erase each other (different groups, and
within a group, different fields).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.contract import models
from shared.contract.envelope import Metadata
from shared.contract.models import EbbotModel, Webhook

GROUPS = ("status", "user", "session", "chat", "close")
# The topics the chats function merges into the chat item (in the samples' time order).
CHAT_STATE_TOPICS = tuple(
    models.topic_of(model)
    for model in (
        models.ChatCreate,
        models.ChatDataUpdate,
        models.ChatUserUpdate,
        models.ChatStatusChange,
        models.ChatUpdate,
    )
)
# Fields of the status group wherever they appear (chat.create, chat.update, chat.status.change).
STATUS_FIELDS = ("status", "type", "handled_by", "supervised")
# The stored form of the state (to_json); from_json reads this one and the first.
STATE_FORMAT = 2


def version_of(metadata: Metadata, ns: int | None = None) -> str:
    """Sortable version: 20-digit nanoseconds, then 64 bits of the body's sha256 as a tie-break that
    every delivery and every order agrees on."""
    instant = ns if ns is not None else int(metadata.occurredAtNs or 0)
    return f"{instant:020d}#{metadata.bodySha256[:16]}"


@dataclass(frozen=True, slots=True)
class ChatUpdate:
    """What one webhook says about a chat: group -> field -> value, all at one version."""

    version: str
    fields: Mapping[str, Mapping[str, Any]]


@dataclass(slots=True)
class ChatState:
    """group -> field -> (version, value)."""

    groups: dict[str, dict[str, tuple[str, Any]]] = field(default_factory=dict)

    def merge(self, update: ChatUpdate) -> bool:
        """Apply an update; True if anything changed."""
        changed = False
        for group, values in update.fields.items():
            registers = self.groups.setdefault(group, {})
            for name, value in values.items():
                current = registers.get(name)
                if current is None or update.version > current[0]:
                    registers[name] = (update.version, value)
                    changed = True
        return changed

    def value(self, group: str, name: str) -> Any:
        register = self.groups.get(group, {}).get(name)
        return None if register is None else register[1]

    def values(self, group: str) -> dict[str, Any]:
        return {name: register[1] for name, register in sorted(self.groups.get(group, {}).items())}

    def versions(self) -> list[str]:
        """Every version some field still holds, oldest first."""
        return sorted({v for registers in self.groups.values() for v, _ in registers.values()})

    def span_ns(self) -> tuple[int, int]:
        """The oldest and newest versions' instants: when the chat was first seen, and its last
        activity (0, 0 for an empty state)."""
        versions = self.versions()
        if not versions:
            return 0, 0
        return int(versions[0].split("#", 1)[0]), int(versions[-1].split("#", 1)[0])

    def latest_ns(self) -> int:
        """The chat's last activity."""
        return self.span_ns()[1]

    def to_json(self) -> str:
        """The stored form: the values as one readable document, and beside them which version
        wrote each field, as an index into the list of versions (per field, in name order; one
        index for a group whose fields one version wrote). One webhook writes many fields, so a
        version is stored once, not once per field: half the item, half its write units."""
        versions = self.versions()
        index = {version: i for i, version in enumerate(versions)}
        values: dict[str, dict[str, Any]] = {}
        written: dict[str, int | list[int]] = {}
        for group, registers in sorted(self.groups.items()):
            if registers:
                names = sorted(registers)
                values[group] = {name: registers[name][1] for name in names}
                indexes = [index[registers[name][0]] for name in names]
                # A group one webhook wrote whole (the common case) names its version once.
                written[group] = indexes[0] if len(set(indexes)) == 1 else indexes
        document = {"format": STATE_FORMAT, "versions": versions, "values": values, "written": written}
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> ChatState:
        if not text:
            return cls()
        document = json.loads(text)
        if "versions" not in document:  # the first format: group -> field -> [version, value]
            return cls({g: {n: (r[0], r[1]) for n, r in regs.items()} for g, regs in document.items()})
        versions = document["versions"]
        groups: dict[str, dict[str, tuple[str, Any]]] = {}
        for group, values in document["values"].items():
            names = sorted(values)
            written = document["written"][group]
            indexes = [written] * len(names) if isinstance(written, int) else written
            groups[group] = {
                name: (versions[i], values[name]) for name, i in zip(names, indexes, strict=True)
            }
        return cls(groups)


def _without(data: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in names}


def _user_fields(user: Any) -> dict[str, Any]:
    """A user object's keys as fields; a non-object user is kept whole."""
    if isinstance(user, dict):
        return dict(user)
    return {} if user is None else {"value": user}


def _as_sent(part: EbbotModel) -> dict[str, Any]:
    """A part of the body as Ebbot sent it: its keys (known or not), and only those it had."""
    return part.model_dump(exclude_unset=True)


def update_from_webhook(webhook: Webhook, metadata: Metadata) -> ChatUpdate | None:
    """Which fields of which groups a chat-state webhook sets (None for any other webhook).
    Unknown keys are kept, in their group."""
    fields: dict[str, dict[str, Any]] = {}
    match webhook:
        case models.ChatCreate(data=part):
            data = _as_sent(part)
            fields["status"] = {k: data[k] for k in STATUS_FIELDS if k in data}
            fields["user"] = _user_fields(data.get("user"))
            fields["chat"] = _without(data, "id", "user", *STATUS_FIELDS)
        case models.ChatUpdate(chat=part):
            chat = _as_sent(part)
            fields["status"] = {k: chat[k] for k in STATUS_FIELDS if k in chat}
            fields["chat"] = _without(chat, "id", "chat_user", *STATUS_FIELDS)
            chat_user = chat.get("chat_user")
            if isinstance(chat_user, dict):
                fields["user"] = {"chat_user": chat_user}
        case models.ChatStatusChange(data=part):
            fields["status"] = _without(_as_sent(part), "id")
        case models.ChatUserUpdate(data=part):
            fields["user"] = _user_fields(_as_sent(part).get("user"))
        case models.ChatDataUpdate(data=part):
            fields["session"] = _without(_as_sent(part), "id")
        case _:
            return None
    # Chat-state topics are ordered by the envelope timestamp (all of them carry one).
    version = version_of(metadata, int(metadata.occurredAtNs or 0))
    return ChatUpdate(version, {g: v for g, v in fields.items() if v})
