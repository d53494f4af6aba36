"""Every Ebbot topic parses into its model, keeps every field, and fails precisely and privately."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contract.envelope import Metadata, RoutingFields
from shared.contract.errors import WebhookInvalidError
from shared.contract.models import TOPIC_MODELS, UnknownWebhook, build_metadata, parse_webhook
from shared.contract.timestamps import PLAIN_INSTANT, to_ns
from tests.conftest import TOPICS, load_sample

BOT = "ebq7k3m9x2p4n8r1t5v6w0y3z7c2d4"
CHAT = "1672531200.420.50c9b6c7-96b6-4794-b09f-3ac7ae27c598"

# Written by hand from the sample files, not computed by the code under test:
# topic -> (model, chat id, message id, occurred-at ns, routing fields that are set)
EXPECTED: dict[str, tuple[str, str | None, int, dict[str, Any]]] = {
    "chat.create": ("ChatCreate", None, 1672531200000000000, {"chatStatus": "ongoing"}),
    "chat.data.update": ("ChatDataUpdate", None, 1672531201000000000, {}),
    "chat.user.update": ("ChatUserUpdate", None, 1672531202000000000, {}),
    "chat.scenario.run": (
        "ChatScenarioRun",
        None,
        1672531203000000000,
        {"scenarioId": "4a1f2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d_9f8e7d6c-5b4a-4c3d-9e2f-1a0b9c8d7e6f"},
    ),
    "chat.bot.message": (
        "ChatBotMessage",
        "f7011d1a-e192-4351-9251-c0c6d3b32524",
        1672531203241731866,
        {"sender": "bot", "messageType": "url"},
    ),
    "chat.user.message": (
        "ChatUserMessage",
        "9d0c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
        1672531205397183857,
        {"sender": "user", "messageType": "text"},
    ),
    "chat.status.change": ("ChatStatusChange", None, 1672531206000000000, {"chatStatus": "queued"}),
    "chat.update": (
        "ChatUpdate",
        None,
        1672531207000000000,
        {"chatStatus": "ongoing", "handledBy": "agent"},
    ),
    "chat.system.message": (
        "ChatSystemMessage",
        "2276d442-3af1-4f80-a21b-c405632e3b60",
        1672531208158836861,
        {"sender": "system", "messageType": "text_info"},
    ),
    "chat.agent.message": (
        "ChatAgentMessage",
        "e8328e60-6757-48ea-87d1-3be485348b4c",
        1672531210310412954,
        {"sender": "agent", "messageType": "text"},
    ),
    "chat.message": (
        "ChatMessage",
        "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
        1672531215004417021,
        {"sender": "user", "messageType": "text"},
    ),
    "chat.close": ("ChatClose", None, 1672531221000000000, {"chatStatus": "chat_closed", "rating": 4}),
}


def test_every_topic_has_a_model_and_a_sample() -> None:
    assert sorted(TOPIC_MODELS) == sorted(EXPECTED) == TOPICS
    assert len(TOPICS) == 12


@pytest.mark.parametrize("topic", TOPICS)
def test_sample_parses_with_the_expected_ids_and_instants(topic: str) -> None:
    model_name, message_id, occurred_ns, routing = EXPECTED[topic]
    webhook = parse_webhook(load_sample(topic))
    assert type(webhook).__name__ == model_name
    assert webhook.topic == topic
    assert webhook.botId == BOT
    assert webhook.chat_id == CHAT
    assert webhook.message_id == message_id
    assert webhook.occurred_at_ns == occurred_ns
    assert webhook.request_id is not None
    assert webhook.request_id.startswith("req-")
    set_fields = {k: v for k, v in webhook.routing().items() if v is not None}
    assert set_fields == routing


@pytest.mark.parametrize("topic", TOPICS)
def test_sample_round_trips_without_losing_a_field(topic: str) -> None:
    body = load_sample(topic)
    dumped = parse_webhook(body).model_dump(mode="json", exclude_unset=True)
    assert dumped == body


def _add_extra_everywhere(node: Any, marker: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        out = {key: _add_extra_everywhere(value, marker) for key, value in node.items()}
        out["x_future_field"] = copy.deepcopy(marker)
        return out
    if isinstance(node, list):
        return [_add_extra_everywhere(item, marker) for item in node]
    return node


@pytest.mark.parametrize("topic", [*TOPICS, "chat.some.future.topic"])
def test_unknown_fields_survive_at_every_level(topic: str) -> None:
    body = load_sample(topic if topic in TOPIC_MODELS else "chat.update")
    body["topic"] = topic
    marker = {"nested": [1, 2.5, None, True, "x"], "deep": {"k": "v"}}
    enriched = _add_extra_everywhere(body, marker)
    dumped = parse_webhook(enriched).model_dump(mode="json", exclude_unset=True)
    assert dumped == enriched
    assert json.dumps(dumped, sort_keys=True).count("x_future_field") == json.dumps(
        enriched, sort_keys=True
    ).count("x_future_field")


def test_unknown_topic_needs_only_topic_and_bot() -> None:
    webhook = parse_webhook({"topic": "chat.rating.given", "botId": BOT, "whatever": {"x": 1}})
    assert isinstance(webhook, UnknownWebhook)
    assert webhook.topic == "chat.rating.given"
    assert webhook.chat_id is None
    assert webhook.occurred_at_ns is None


@pytest.mark.parametrize(
    ("body", "expected_chat"),
    [
        ({"data": {"chatId": "c.1"}}, "c.1"),
        ({"chat": {"id": "c.2"}}, "c.2"),
        ({"data": {"id": "c.3"}}, "c.3"),
        ({"data": {"chatId": 7}}, None),
    ],
)
def test_unknown_topic_chat_id_is_found_where_known_topics_keep_it(
    body: dict[str, Any], expected_chat: str | None
) -> None:
    webhook = parse_webhook({"topic": "chat.new.thing", "botId": BOT, **body})
    assert webhook.chat_id == expected_chat


def test_message_without_id_gets_a_stable_key_equal_across_time_units() -> None:
    body = load_sample("chat.user.message")
    del body["data"]["id"]
    body["data"]["type"] = "button_click"
    millis = parse_webhook(body)
    seconds_body = copy.deepcopy(body)
    seconds_body["data"]["timestamp"] = "1672531205.397183857"  # the same instant in seconds
    seconds = parse_webhook(seconds_body)
    assert millis.message_id is not None
    assert millis.message_id.startswith("nokey-")
    assert millis.message_id == seconds.message_id
    other_body = copy.deepcopy(body)
    other_body["data"]["value"] = "another click"
    assert parse_webhook(other_body).message_id != millis.message_id


SECRET = "Identical Goat +46701234567"  # a value that must never appear in an error


def _with(topic: str, path: list[str | int], value: Any) -> dict[str, Any]:
    body = load_sample(topic)
    node: Any = body
    for part in path[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return body


_DELETE = object()

MALFORMED = [
    # (topic, path to change, new value, expected code, expected field path)
    ("chat.create", ["topic"], _DELETE, "missing_field", "topic"),
    ("chat.create", ["topic"], 42, "wrong_type", "topic"),
    ("chat.create", ["topic"], "", "empty_value", "topic"),
    ("chat.create", ["botId"], _DELETE, "missing_field", "botId"),
    ("chat.create", ["botId"], [SECRET], "wrong_type", "botId"),
    ("chat.create", ["botId"], "", "empty_value", "botId"),
    ("chat.create", ["data", "id"], _DELETE, "missing_field", "data.id"),
    ("chat.create", ["data"], SECRET, "wrong_type", "data"),
    ("chat.update", ["chat", "id"], 1234, "wrong_type", "chat.id"),
    ("chat.update", ["chat"], _DELETE, "missing_field", "chat"),
    ("chat.user.message", ["data", "chatId"], _DELETE, "missing_field", "data.chatId"),
    ("chat.user.message", ["data", "chatId"], {"v": SECRET}, "wrong_type", "data.chatId"),
    ("chat.user.message", ["data", "id"], 99, "wrong_type", "data.id"),
    ("chat.user.message", ["data", "timestamp"], SECRET, "invalid_value", "data.timestamp"),
    ("chat.bot.message", ["timestamp"], "yesterday " + SECRET, "invalid_value", "timestamp"),
    ("chat.scenario.run", ["data", "chatId"], "x" * 300, "value_too_long", "data.chatId"),
    ("chat.close", ["data", "conversation"], SECRET, "wrong_type", "data.conversation"),
    ("chat.close", ["data", "conversation", 3, "id"], 5, "wrong_type", "data.conversation[3].id"),
    ("chat.close", ["data", "conversation", 1], SECRET, "wrong_type", "data.conversation[1]"),
    ("chat.status.change", ["data", "id"], None, "wrong_type", "data.id"),
]


@pytest.mark.parametrize(("topic", "path", "value", "code", "field"), MALFORMED)
def test_malformed_samples_fail_naming_the_field_and_never_the_value(
    topic: str, path: list[str | int], value: Any, code: str, field: str
) -> None:
    body = _with(topic, path, value)
    with pytest.raises(WebhookInvalidError) as caught:
        parse_webhook(body)
    error = caught.value
    assert (error.code, error.problems[0].field) == (code, field)
    assert error.message.startswith(field)
    rendered = repr(error) + str(error) + json.dumps([p.message for p in error.problems])
    for secret in (SECRET, "Identical", "+46701234567", "yesterday", "x" * 300):
        assert secret not in rendered


@pytest.mark.parametrize("body", [[], "chat.create", 12, None])
def test_body_that_is_not_an_object(body: Any) -> None:
    with pytest.raises(WebhookInvalidError) as caught:
        parse_webhook(body)
    assert caught.value.code == "not_an_object"


def test_a_mistyped_known_topic_field_names_its_model_path() -> None:
    body = load_sample("chat.create")
    body["data"] = {"status": "ongoing"}
    with pytest.raises(WebhookInvalidError) as caught:
        parse_webhook(body)
    assert [p.field for p in caught.value.problems] == ["data.id"]


@pytest.mark.parametrize("topic", [*TOPICS, "chat.some.future.topic"])
def test_metadata_round_trips_with_routing_fields_first(topic: str) -> None:
    """What build_metadata puts on the bus reads back as the same Metadata, field for field and in
    the documented order, with instants in ISO-8601 UTC to the microsecond."""
    body = load_sample(topic) if topic in TOPICS else {**load_sample("chat.create"), "topic": topic}
    raw = json.dumps(body).encode()
    built = build_metadata(parse_webhook(body), raw, received_ns=1672531200427187915, delivery_id="d-1")
    # Built as a dict without the model: what Metadata reads from it must dump back to it exactly,
    # same keys, same order (routing fields first, as docs/events.md says), same values and types.
    validated = Metadata.model_validate(built)
    assert list(validated.model_dump().items()) == list(built.items())
    assert {k: type(v) for k, v in validated.model_dump().items()} == {k: type(v) for k, v in built.items()}
    assert built["receivedAt"] == "2023-01-01T00:00:00.427187Z"
    assert built["bodySize"] == len(raw)


@pytest.mark.parametrize("topic", [*TOPICS, "chat.some.future.topic"])
def test_routing_dict_is_what_the_routing_model_dumps(topic: str) -> None:
    body = load_sample(topic) if topic in TOPICS else {**load_sample("chat.create"), "topic": topic}
    routing = parse_webhook(body).routing()
    assert list(RoutingFields.model_validate(routing).model_dump().items()) == list(routing.items())


def test_close_routes_on_the_last_numeric_rating_of_the_transcript() -> None:
    body = load_sample("chat.close")
    conversation = body["data"]["conversation"]
    rating = {"sender": "user", "type": "rating", "timestamp": conversation[-1]["timestamp"]}
    body["data"]["conversation"] = [
        *conversation,
        {**rating, "id": "r1", "value": {"rating": 2}},
        {**rating, "id": "r2", "value": {"rating": 5}},
        {**rating, "id": "r3", "value": {"rating": "five"}},  # not a number: not a rating to route on
        {**rating, "id": "r4", "type": "text", "value": {"rating": 1}},  # not a rating message
    ]
    assert parse_webhook(body).routing()["rating"] == 5
    body["data"]["conversation"] = [m for m in conversation if m.get("type") != "rating"]
    assert parse_webhook(body).routing()["rating"] is None


@given(st.from_regex(PLAIN_INSTANT, fullmatch=True))
def test_what_the_instant_shortcut_accepts_is_an_instant(text: str) -> None:
    """Message timestamps in the plain form skip the exact parse when validated: every such text
    must be one to_ns accepts."""
    assert to_ns(text) >= 0


def _instant_outcome(value: Any) -> tuple[bool, list[tuple[str, str, str]]]:
    """(accepted, problems) for `value` as a message timestamp, in a message webhook and in a
    transcript (the same type is checked in both)."""
    outcomes: list[tuple[bool, list[tuple[str, str, str]]]] = []
    paths: list[tuple[str, list[str | int]]] = [
        ("chat.user.message", ["data", "timestamp"]),
        ("chat.close", ["data", "conversation", 2, "timestamp"]),
    ]
    for topic, path in paths:
        try:
            parse_webhook(_with(topic, path, value))
            outcomes.append((True, []))
        except WebhookInvalidError as error:
            outcomes.append(
                (False, [(p.code, p.field.rsplit(".", 1)[-1], p.message) for p in error.problems])
            )
    assert outcomes[0] == outcomes[1]
    return outcomes[0]


def _full_check(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return False
    try:
        to_ns(value)
    except ValueError:
        return False
    return True


INSTANT_LIKE = (
    st.from_regex(PLAIN_INSTANT, fullmatch=True)
    | st.from_regex(r"\s*-?[0-9\u0660-\u0669]{1,16}(\.[0-9]{0,12})?([eE][+-]?[0-9]{1,3})?\s*", fullmatch=True)
    | st.text(max_size=30)
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.lists(st.integers(), max_size=2)
)


@given(INSTANT_LIKE)
def test_an_instant_is_accepted_exactly_when_the_full_check_accepts_it(value: Any) -> None:
    """Plain instants are accepted inside pydantic-core (a pattern, a bounded integer) without the
    full check; that shortcut must accept nothing the full check refuses and refuse nothing it
    accepts, and a refusal reads as the full check's alone (no error of the shortcut)."""
    accepted, problems = _instant_outcome(value)
    assert accepted == _full_check(value)
    if not accepted:
        assert problems
        assert all(field in ("timestamp", "str", "int", "float") for _, field, _ in problems)
        assert not any("pattern" in message or "greater than" in message for _, _, message in problems)


def test_a_refused_instant_reports_one_problem_in_the_full_checks_words() -> None:
    assert _instant_outcome("yesterday") == (
        False,
        [("invalid_value", "timestamp", "Value error, an instant string must hold a decimal number")],
    )
    accepted, problems = _instant_outcome(["1672531205397"])
    assert not accepted
    assert [(code, field) for code, field, _ in problems] == [
        ("wrong_type", "str"),
        ("wrong_type", "int"),
        ("wrong_type", "float"),
    ]
