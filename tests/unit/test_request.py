"""The body checks before validation: nesting depth and numbers AWS would refuse, named by path."""

from __future__ import annotations

import json

import pytest

from ingest.request import MAX_DEPTH, parse_json
from shared.contract.errors import WebhookInvalidError


def _nested(levels: int) -> bytes:
    """An object whose deepest container sits at path length `levels` (alternating dicts and lists)."""
    body: object = {"leaf": 1}
    for i in range(levels):
        body = {"d": body} if i % 2 else [body]
    return json.dumps({"topic": "x.y", "botId": "b", "n": body}).encode()


def test_nesting_up_to_the_limit_is_accepted_and_one_more_is_refused() -> None:
    # The innermost object sits at path length 1 + levels: 63 is the deepest accepted.
    assert parse_json(_nested(MAX_DEPTH - 2))["topic"] == "x.y"
    with pytest.raises(WebhookInvalidError) as caught:
        parse_json(_nested(MAX_DEPTH - 1))
    assert caught.value.code == "too_deep"
    assert caught.value.problems[0].field.startswith("n")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"a": [1, 2, {"b": [3, 1e400]}]}', "a[2].b[1]"),
        ('{"a": {"b": 1}, "c": [{"d": 9223372036854775808}]}', "c[0].d"),
        ("[NaN]", "[0]"),
    ],
)
def test_a_number_aws_refuses_is_named_by_its_path(body: str, field: str) -> None:
    with pytest.raises(WebhookInvalidError) as caught:
        parse_json(body.encode())
    assert caught.value.code == "number_out_of_range"
    assert caught.value.problems[0].field == field


def test_a_large_well_formed_body_passes_unchanged() -> None:
    messages = [{"id": f"m{i}", "value": {"rating": i % 5, "tags": ["a", {"x": i}]}} for i in range(2000)]
    raw = json.dumps({"topic": "chat.close", "botId": "b", "data": {"conversation": messages}}).encode()
    assert parse_json(raw) == json.loads(raw)
