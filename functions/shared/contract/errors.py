"""Why a webhook is not taken: typed errors, each with a stable code. Messages name field paths,
never the values in them (the values are personal data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one field: `field` is a path such as `data.conversation[2].id`."""

    code: str
    field: str
    message: str


@dataclass
class WebhookError(Exception):
    """A webhook that cannot be taken: `code` is stable (it goes into the answer), `message` says
    what to fix, `problems` names each field at fault."""

    code: str
    message: str
    problems: list[FieldProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class WebhookInvalidError(WebhookError):
    """The body is not a webhook we can route and store: not JSON, a wrong type at a named field..."""


# A path is built from the body's keys, which can be anything (an e-mail address, a phone number):
# it goes back to the sender only, and only this long. Logs never carry it.
MAX_PATH_CHARS = 100


def format_path(loc: Sequence[int | str]) -> str:
    """('data', 'conversation', 2, 'id') -> 'data.conversation[2].id', cut to MAX_PATH_CHARS."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    if len(path) > MAX_PATH_CHARS:
        path = path[: MAX_PATH_CHARS - 1] + "…"
    return path or "(body)"
