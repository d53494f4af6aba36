"""Typed errors, each with a stable code. Messages name field paths, never the values in them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One thing wrong with one field: `field` is a path such as `data.conversation[2].id`."""

    code: str
    field: str
    message: str


@dataclass(slots=True)
class WebhookInvalidError(Exception):
    """The body is not a webhook we can route and store. Maps to HTTP 400."""

    code: str
    message: str
    problems: list[FieldProblem] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


# pydantic error type -> our stable code. Anything not listed is `invalid_value`.
_PYDANTIC_CODES = {
    "missing": "missing_field",
    "string_too_short": "empty_value",
    "string_too_long": "value_too_long",
    "literal_error": "wrong_value",
}
_TYPE_SUFFIX = "_type"
# Union members that only speed up a check a later member (labelled FULL_CHECK) makes in full: when
# every member fails, the fast ones' errors would repeat the full check's and are left out, and the
# full check's label is dropped from its paths, so the errors are those of the full check alone.
FAST_PATH = "fast-path"
FULL_CHECK = "full-check"


def format_path(loc: Sequence[int | str]) -> str:
    """('data', 'conversation', 2, 'id') -> 'data.conversation[2].id'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(body)"


def from_pydantic_errors(errors: Sequence[Any]) -> WebhookInvalidError:
    """Build our error from pydantic's `errors(include_input=False, include_url=False)` list."""
    problems = []
    for error in errors:
        loc = error["loc"]
        if FAST_PATH in loc:
            continue
        if FULL_CHECK in loc:
            loc = tuple(part for part in loc if part != FULL_CHECK)
        kind = str(error["type"])
        code = _PYDANTIC_CODES.get(kind) or ("wrong_type" if kind.endswith(_TYPE_SUFFIX) else "invalid_value")
        problems.append(FieldProblem(code=code, field=format_path(loc), message=str(error["msg"])))
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return WebhookInvalidError(
        code=first.code, message=f"{first.field}: {first.message}{more}", problems=problems
    )
