"""Personal data kept out of keys (docs/privacy.md).

Two kinds of item are found by a value that is personal data, or that must not stay in the table
once its chat is erased, so their keys hold a keyed hash of it (HMAC-SHA256 under the stack's
privacy key, its own secret) instead of the value:
- `ERASED#<hash of the chat id>`  the tombstone of an erased chat: the consumers store nothing
                                  more for it (a late webhook, a redrive, an archive replay)
- `USER#<hash of an Ebbot user id>`, `CHAT#<chatId>`  the user index: a person's chats, without a scan
Whoever holds the table but not the key cannot tell whose chats the index lists, nor which chat a
tombstone stands for.

And `OBJ#<key>` items in a chat's partition record where its S3 objects are, as they are written,
so that erasing or exporting a chat never lists the whole bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

TOMBSTONE_PREFIX = "ERASED#"
TOMBSTONE_SK = "ERASED"
USER_PREFIX = "USER#"
OBJECT_RECORD_PREFIX = "OBJ#"
# The privacy secret's one key (template.yaml, PrivacyKeySecret); at least this many characters.
PRIVACY_SECRET_FIELD = "key"  # noqa: S105 (the JSON key's name, not a secret)
MIN_KEY_CHARS = 32


def keyed_hash(key: bytes, kind: str, value: str) -> str:
    """128 bits of HMAC-SHA256 over `kind` and `value`: a chat id and a user id that are the same
    string still hash apart."""
    return hmac.new(key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()[:32]


def tombstone_pk(key: bytes, chat_id: str) -> str:
    return TOMBSTONE_PREFIX + keyed_hash(key, "chat", chat_id)


def user_pk(key: bytes, user_id: str) -> str:
    return USER_PREFIX + keyed_hash(key, "user", user_id)


def object_record_sk(object_key: str) -> str:
    return OBJECT_RECORD_PREFIX + object_key


def _text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | str) and str(value).strip():
        return str(value)
    return None


def _at(document: Any, *path: str) -> Any:
    node = document
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


# Where the chat-state webhooks carry an Ebbot user id (docs/privacy.md, "Find a person's chats").
USER_ID_PATHS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("chat.user.update", ("data", "user", "id")),
    ("chat.update", ("chat", "chatUserId")),
    ("chat.update", ("chat", "chat_user", "id")),
    ("*", ("context", "user_id")),
)


def user_ids(topic: str, document: Mapping[str, Any]) -> set[str]:
    """The Ebbot user ids a webhook body names, at USER_ID_PATHS; empty values are none."""
    found = set()
    for where, path in USER_ID_PATHS:
        if where in ("*", topic) and (value := _text(_at(document, *path))) is not None:
            found.add(value)
    return found


def parse_secret(secret_string: str) -> bytes:
    """The privacy key from its secret's JSON (`{"key": "..."}`); ValueError if it is not usable."""
    try:
        value = json.loads(secret_string).get(PRIVACY_SECRET_FIELD)
    except (ValueError, AttributeError) as exc:
        raise ValueError("the privacy secret is not a JSON object") from exc
    if not isinstance(value, str) or len(value) < MIN_KEY_CHARS:
        raise ValueError(f'the privacy secret has no "{PRIVACY_SECRET_FIELD}" of {MIN_KEY_CHARS}+ characters')
    return value.encode()


def load_privacy_key(secretsmanager: Any, secret_id: str) -> bytes:
    """The privacy key, read from its secret (the consumers, ingest when it hashes, the tools)."""
    return parse_secret(secretsmanager.get_secret_value(SecretId=secret_id)["SecretString"])
