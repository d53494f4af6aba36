"""Chats, messages and scenario runs land in the table as specified, whatever the order or repetition."""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from chats import app as chats_app
from chats.service import apply_chat_event
from messages import app as messages_app
from messages.service import store_message
from scenarios import app as scenarios_app
from scenarios.service import store_scenario_run
from shared.contract.envelope import BusDetail
from shared.runtime import consumer
from shared.storage.chat_state import CHAT_STATE_TOPICS
from shared.storage.store import Store
from tests.aws import BUCKET, TABLE, create_table_from_template, table_items
from tests.conftest import ROOT, metric_lines_in
from tests.lambda_context import FakeLambdaContext

CHAT = "1672531200.420.50c9b6c7-96b6-4794-b09f-3ac7ae27c598"
PK = f"CHAT#{CHAT}"
BOT = "ebq7k3m9x2p4n8r1t5v6w0y3z7c2d4"
NOW = 1_700_000_000
CHAT_TOPICS = list(CHAT_STATE_TOPICS)
MESSAGE_TOPICS = [
    "chat.user.message",
    "chat.bot.message",
    "chat.agent.message",
    "chat.system.message",
    "chat.message",
]


def bridge_event(topic: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "eventbridge" / f"{topic}.json").read_text())
    return event


def detail(topic: str) -> BusDetail:
    return BusDetail.model_validate(bridge_event(topic)["detail"])


class Env:
    def __init__(self) -> None:
        self.ddb = create_table_from_template()
        self.s3 = boto3.client("s3")
        self.s3.create_bucket(Bucket=BUCKET)

    def store(self, ddb: Any | None = None, retention_days: int = 0) -> Store:
        return Store(
            ddb or self.ddb,
            self.s3,
            table=TABLE,
            bucket=BUCKET,
            retention_days=retention_days,
            clock_s=lambda: NOW,
            sleep=lambda _: None,
        )

    def items(self) -> list[dict[str, Any]]:
        return table_items(self.ddb)

    def reset(self) -> None:
        for item in self.items():
            self.ddb.delete_item(TableName=TABLE, Key={"pk": {"S": item["pk"]}, "sk": {"S": item["sk"]}})


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        yield Env()


def deliver(env: Env, topic: str, store: Store | None = None) -> bool:
    target = store or env.store()
    if topic in CHAT_TOPICS:
        return apply_chat_event(detail(topic), target)
    if topic in MESSAGE_TOPICS:
        return store_message(detail(topic), target)
    return store_scenario_run(detail(topic), target)


# --- messages ------------------------------------------------------------------------------------

# Hand-written from the samples: topic -> (sort key, instant in ns, sender, type, at)
EXPECTED_MESSAGES = {
    "chat.user.message": (
        "MSG#id#9d0c1b2a-3e4f-4a5b-8c6d-7e8f9a0b1c2d",
        "1672531205397183857",
        "user",
        "text",
        "2023-01-01T00:00:05.397183Z",
    ),
    "chat.bot.message": (
        "MSG#id#f7011d1a-e192-4351-9251-c0c6d3b32524",
        "1672531203241731866",
        "bot",
        "url",
        "2023-01-01T00:00:03.241731Z",
    ),
    "chat.agent.message": (
        "MSG#id#e8328e60-6757-48ea-87d1-3be485348b4c",
        "1672531210310412954",
        "agent",
        "text",
        "2023-01-01T00:00:10.310412Z",
    ),
    "chat.system.message": (
        "MSG#id#2276d442-3af1-4f80-a21b-c405632e3b60",
        "1672531208158836861",
        "system",
        "text_info",
        "2023-01-01T00:00:08.158836Z",
    ),
    "chat.message": (
        "MSG#id#5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e",
        "1672531215004417021",
        "user",
        "text",
        "2023-01-01T00:00:15.004417Z",
    ),
}


@pytest.mark.parametrize("topic", MESSAGE_TOPICS)
def test_each_message_sample_is_one_item(env: Env, topic: str) -> None:
    assert deliver(env, topic) is True
    sk, ns, sender, kind, at = EXPECTED_MESSAGES[topic]
    (item,) = env.items()
    body = json.loads((ROOT / "events" / "webhooks" / f"{topic}.json").read_text())
    assert item == {
        "pk": PK,
        "sk": sk,
        "entity": "message",
        "botId": BOT,
        "chatId": CHAT,
        "messageId": sk.removeprefix("MSG#id#"),
        "hasId": True,
        "sender": sender,
        "type": kind,
        "at": at,
        "atNs": ns,
        "sources": {topic},
        "version": item["version"],
        "message": item["message"],
    }
    # Its own instant to the nanosecond, from its own topic (or chat.message): docs/data-model.md.
    assert item["version"].startswith("19#2#" if topic == "chat.message" else "19#3#")
    # The message as Ebbot sent it, every field but those the item carries itself.
    assert json.loads(item["message"]) == {
        k: v for k, v in body["data"].items() if k not in ("timestamp", "chatId")
    }


@pytest.mark.parametrize("topic", MESSAGE_TOPICS)
def test_a_message_delivered_three_times_and_by_both_topics_is_stored_once(env: Env, topic: str) -> None:
    assert deliver(env, topic) is True
    assert deliver(env, topic) is False
    assert deliver(env, topic) is False
    # The same message through chat.message (the sender topic's superset).
    generic = copy.deepcopy(bridge_event(topic))
    generic["detail-type"] = generic["detail"]["metadata"]["topic"] = "chat.message"
    generic["detail"]["webhook"]["topic"] = "chat.message"
    assert store_message(BusDetail.model_validate(generic["detail"]), env.store()) is False
    (item,) = env.items()
    assert item["sources"] == {topic, "chat.message"}


def test_seconds_and_milliseconds_stamps_of_one_message_are_one_item(env: Env) -> None:
    event = bridge_event("chat.user.message")
    assert event["detail"]["webhook"]["data"]["timestamp"] == "1672531205397.183857000"  # milliseconds
    seconds = copy.deepcopy(event)
    seconds["detail"]["webhook"]["data"]["timestamp"] = "1672531205.397183857"
    assert store_message(BusDetail.model_validate(event["detail"]), env.store()) is True
    assert store_message(BusDetail.model_validate(seconds["detail"]), env.store()) is False
    assert len(env.items()) == 1


def test_id_less_button_click_is_stored_once_under_its_stable_key(env: Env) -> None:
    event = bridge_event("chat.user.message")
    data = event["detail"]["webhook"]["data"]
    del data["id"]
    data["type"] = "button_click"
    data["value"] = {"label": "Yes"}
    for _ in range(2):
        store_message(BusDetail.model_validate(event["detail"]), env.store())
    (item,) = env.items()
    assert item["hasId"] is False
    assert item["messageId"].startswith("nokey-")


def test_message_with_deep_nesting_and_big_value_never_fails(env: Env) -> None:
    # 40 levels: deeper than DynamoDB's 32 for maps; and 300 KB: over the inline JSON limit.
    event = bridge_event("chat.bot.message")
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"d": deep}
    event["detail"]["webhook"]["data"]["value"] = {
        "deep": deep,
        "blob": "x" * 300_000,
        "n": 12345678901234567,
    }
    assert store_message(BusDetail.model_validate(event["detail"]), env.store()) is True
    (item,) = env.items()
    assert "message" not in item
    stored = env.s3.get_object(Bucket=BUCKET, Key=item["messageRef"])["Body"].read()
    assert json.loads(stored)["value"]["deep"] == deep


def test_retention_sets_ttl(env: Env) -> None:
    store_message(detail("chat.user.message"), env.store(retention_days=30))
    (item,) = env.items()
    assert item["expiresAt"] == NOW + 30 * 86400


# --- scenario runs -------------------------------------------------------------------------------


def test_scenario_run_is_one_item_and_idempotent(env: Env) -> None:
    assert deliver(env, "chat.scenario.run") is True
    assert deliver(env, "chat.scenario.run") is False
    (item,) = env.items()
    assert item["pk"] == PK
    assert item["sk"].startswith("RUN#01672531203000000000#")
    assert item["scenarioId"] == "4a1f2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d_9f8e7d6c-5b4a-4c3d-9e2f-1a0b9c8d7e6f"
    assert item["scenarioName"] == "Order status"
    assert item["at"] == "2023-01-01T00:00:03.000000Z"
    assert json.loads(item["scenario"]) == {
        "id": "4a1f2c3d-5e6f-4a7b-8c9d-0e1f2a3b4c5d_9f8e7d6c-5b4a-4c3d-9e2f-1a0b9c8d7e6f",
        "name": "Order status",
        "states": 1,
    }


# --- chat state ----------------------------------------------------------------------------------

# Hand-written: the chat after the five chat-state samples, whatever their order.
EXPECTED_CHAT = {
    "pk": PK,
    "sk": "CHAT",
    "entity": "chat",
    "botId": BOT,
    "chatId": CHAT,
    "status": "ongoing",  # chat.update (0:07) beats chat.status.change's "queued" (0:06)
    "handledBy": "agent",
    "chatType": "close_chat",
    "gsi1pk": f"BOT#{BOT}",
    "gsi1sk": "01672531200000000000",  # by start: chat.create (0:00)
    "lastActivityAt": "2023-01-01T00:00:07.000000Z",
    "firstSeenAt": "2023-01-01T00:00:00.000000Z",
}
EXPECTED_USER = {  # chat.create's last_name survives chat.user.update, which only sends first_name and id
    "first_name": "Identical",
    "last_name": "Goat",
    "id": "b1e3f5a7-2c4d-4e6f-8a0b-1c3d5e7f9a2b",
}


def chat_item(env: Env) -> dict[str, Any]:
    (item,) = [i for i in env.items() if i["sk"] == "CHAT"]
    return item


def state_values(item: dict[str, Any]) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = json.loads(item["state"])["values"]
    return values


def test_chat_state_in_order_matches_the_hand_written_chat(env: Env) -> None:
    for topic in CHAT_TOPICS:
        deliver(env, topic)
    item = chat_item(env)
    assert {k: item[k] for k in EXPECTED_CHAT} == EXPECTED_CHAT
    values = state_values(item)
    assert {k: values["user"][k] for k in EXPECTED_USER} == EXPECTED_USER
    assert values["status"] == {
        "status": "ongoing",
        "type": "close_chat",
        "handled_by": "agent",
        "supervised": False,
    }
    assert values["session"]["os"] == "Windows"
    assert values["session"]["current_host"] == "shop.example.com"
    assert values["chat"]["language"] == "sv"


def test_the_stored_state_names_each_version_once_and_which_fields_it_wrote(env: Env) -> None:
    for topic in CHAT_TOPICS:
        deliver(env, topic)
    state = json.loads(chat_item(env)["state"])
    assert state["format"] == 2
    # One version per webhook that still holds a field, oldest first: <20-digit ns>#<16 hex of sha256>.
    versions = state["versions"]
    assert versions == sorted(set(versions))
    assert [v.split("#")[0] for v in versions] == [
        "01672531200000000000",  # chat.create: user.last_name, chat fields it alone sent
        "01672531201000000000",  # chat.data.update
        "01672531202000000000",  # chat.user.update: user.first_name
        "01672531207000000000",  # chat.update
    ]  # chat.status.change (0:06) wrote only status fields, all overwritten by chat.update (0:07)
    # A group one webhook wrote whole names that version once; otherwise one index per field, in
    # name order.
    assert state["written"]["chat"] == 3
    assert state["written"]["session"] == 1
    assert isinstance(state["written"]["user"], list)
    by_field = {}
    for group, values in state["values"].items():
        assert list(values) == sorted(values)
        written = state["written"][group]
        indexes = [written] * len(values) if isinstance(written, int) else written
        assert len(indexes) == len(values)
        by_field.update({(group, name): versions[i] for name, i in zip(values, indexes, strict=True)})
    assert by_field["user", "last_name"].startswith("01672531200000000000#")
    assert by_field["user", "first_name"].startswith("01672531202000000000#")
    assert by_field["status", "status"].startswith("01672531207000000000#")
    assert by_field["session", "os"].startswith("01672531201000000000#")


def test_a_chat_stored_in_the_first_format_is_read_and_merged(env: Env) -> None:
    """Items written before the versions were listed once keep working: the next event rewrites them."""
    deliver(env, "chat.create")
    item = chat_item(env)
    current = json.loads(item["state"])
    (version,) = current["versions"]  # chat.create wrote every field
    first_format = {
        group: {name: [version, value] for name, value in values.items()}
        for group, values in current["values"].items()
    }
    env.ddb.update_item(
        TableName=TABLE,
        Key={"pk": {"S": PK}, "sk": {"S": "CHAT"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":s": {"S": json.dumps(first_format)}},
    )
    for topic in CHAT_TOPICS[1:]:
        deliver(env, topic)
    migrated = chat_item(env)
    env.reset()
    for topic in CHAT_TOPICS:
        deliver(env, topic)
    assert migrated == chat_item(env)


def test_a_bots_chats_by_start_newest_first(env: Env) -> None:
    later = bridge_event("chat.create")
    later["detail"]["metadata"] = {
        **later["detail"]["metadata"],
        "chatId": "later-chat",
        "occurredAtNs": str(int(later["detail"]["metadata"]["occurredAtNs"]) + 60 * 10**9),
    }
    for topic in CHAT_TOPICS:
        deliver(env, topic)
    apply_chat_event(BusDetail.model_validate(later["detail"]), env.store())
    response = env.ddb.query(
        TableName=TABLE,
        IndexName="gsi1",
        KeyConditionExpression="gsi1pk = :bot",
        ExpressionAttributeValues={":bot": {"S": f"BOT#{BOT}"}},
        ScanIndexForward=False,
    )
    listed = [(i["chatId"]["S"], i["firstSeenAt"]["S"], i["status"]["S"]) for i in response["Items"]]
    # The first chat had four later events; its place in the list is still its start.
    assert listed == [
        ("later-chat", "2023-01-01T00:01:00.000000Z", "ongoing"),
        (CHAT, "2023-01-01T00:00:00.000000Z", "ongoing"),
    ]
    assert all("lastActivityAt" not in i for i in response["Items"])  # read the chat item for it


def _final_items(env: Env, order: list[str]) -> list[dict[str, Any]]:
    env.reset()
    for topic in order:
        deliver(env, topic)
    return [{k: v for k, v in item.items() if k != "rev"} for item in env.items()]


def test_every_order_of_the_chat_topics_gives_the_same_chat(env: Env) -> None:
    expected = _final_items(env, CHAT_TOPICS)
    for order in itertools.permutations(CHAT_TOPICS):
        assert _final_items(env, list(order)) == expected, order


@pytest.mark.parametrize("topic", [*CHAT_TOPICS, *MESSAGE_TOPICS, "chat.scenario.run"])
def test_duplicates_and_reversed_order_per_topic(env: Env, topic: str) -> None:
    everything = [*CHAT_TOPICS, *MESSAGE_TOPICS, "chat.scenario.run"]
    expected = _final_items(env, everything)
    reversed_with_duplicates = [*reversed(everything), topic, topic]
    assert _final_items(env, reversed_with_duplicates) == expected
    shuffled = everything * 2
    random.Random(topic).shuffle(shuffled)
    assert _final_items(env, shuffled) == expected


def test_an_update_before_chat_create_still_lands(env: Env) -> None:
    deliver(env, "chat.status.change")
    assert chat_item(env)["status"] == "queued"
    deliver(env, "chat.create")  # older: status stays, chat.create's other fields arrive
    item = chat_item(env)
    assert item["status"] == "queued"
    assert state_values(item)["user"]["last_name"] == "Goat"
    assert item["firstSeenAt"] == "2023-01-01T00:00:00.000000Z"


def test_same_millisecond_tie_is_broken_the_same_way_in_both_orders(env: Env) -> None:
    first = bridge_event("chat.status.change")
    second = copy.deepcopy(first)
    second["detail"]["webhook"]["data"]["status"] = "ongoing"
    second["detail"]["metadata"] = {**second["detail"]["metadata"], "bodySha256": "f" * 64}
    first["detail"]["metadata"] = {**first["detail"]["metadata"], "bodySha256": "0" * 64}
    results = []
    for order in ([first, second], [second, first]):
        env.reset()
        for event in order:
            apply_chat_event(BusDetail.model_validate(event["detail"]), env.store())
        results.append(chat_item(env)["status"])
    assert results == ["ongoing", "ongoing"]  # the higher sha256 wins a tie, in either order


# --- failures -------------------------------------------------------------------------------------


class FailingClient:
    """A DynamoDB client whose call number `fail_at` raises, as a throttled or failing AWS call would."""

    def __init__(self, real: Any, fail_at: int) -> None:
        self._real = real
        self._fail_at = fail_at
        self.calls = 0

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._real, name)

        def call(**kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self._fail_at:
                raise ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}}, name
                )
            return method(**kwargs)

        return call


def _count_calls(env: Env, order: list[str]) -> int:
    env.reset()
    counter = FailingClient(env.ddb, fail_at=0)
    for topic in order:
        deliver(env, topic, env.store(counter))
    return counter.calls


@pytest.mark.parametrize("topic", [*CHAT_TOPICS, "chat.user.message", "chat.scenario.run"])
def test_a_write_failure_at_any_step_then_the_retry_reaches_the_clean_state(env: Env, topic: str) -> None:
    prefix = [t for t in CHAT_TOPICS if t != topic][:2]
    clean = _final_items(env, [*prefix, topic])
    env.reset()
    for t in prefix:
        deliver(env, t)
    steps = _count_calls(env, [topic])
    assert steps >= 1
    for fail_at in range(1, steps + 1):
        env.reset()
        for t in prefix:
            deliver(env, t)
        failing = FailingClient(env.ddb, fail_at)
        with pytest.raises(ClientError):
            deliver(env, topic, env.store(failing))
        deliver(env, topic)  # Lambda's retry
        assert [{k: v for k, v in i.items() if k != "rev"} for i in env.items()] == clean, fail_at


def test_a_race_on_the_chat_item_is_retried_until_it_merges(env: Env) -> None:
    deliver(env, "chat.create")
    store = env.store()
    real_get = store.get_chat
    raced: list[bool] = []

    def get_then_race(chat_id: str) -> Any:
        result = real_get(chat_id)
        if not raced:
            raced.append(True)
            deliver(env, "chat.data.update")  # another invocation writes in between
        return result

    store.get_chat = get_then_race  # type: ignore[method-assign]
    apply_chat_event(detail("chat.status.change"), store)
    values = state_values(chat_item(env))
    assert values["status"]["status"] == "queued"
    assert values["session"]["os"] == "Windows"  # the racing write was not lost


# --- handlers -------------------------------------------------------------------------------------


@pytest.fixture
def handler_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    consumer.forget_clients()
    yield env
    consumer.forget_clients()


@pytest.mark.parametrize(
    ("handler", "topics"),
    [
        (chats_app.lambda_handler, CHAT_TOPICS),
        (messages_app.lambda_handler, MESSAGE_TOPICS),
        (scenarios_app.lambda_handler, ["chat.scenario.run"]),
    ],
)
def test_handlers_parse_the_eventbridge_samples_and_store(
    handler_env: Env, handler: Callable[..., Any], topics: list[str], clients_made: list[str]
) -> None:
    for topic in topics:
        result = handler(bridge_event(topic), FakeLambdaContext())
        assert result["deliveryId"] == bridge_event(topic)["detail"]["metadata"]["deliveryId"]
    assert handler_env.items()
    # Inline bodies need no S3: its client is made only when an event needs it (LazyClient).
    assert clients_made == ["dynamodb"]


def test_handler_rejects_an_event_that_is_not_ours(handler_env: Env) -> None:
    event = bridge_event("chat.user.message")
    del event["detail"]["metadata"]
    with pytest.raises(Exception, match="metadata"):
        messages_app.lambda_handler(event, FakeLambdaContext())
    assert handler_env.items() == []


@pytest.mark.usefixtures("fresh_metrics")
def test_metrics_count_what_aws_does_not_and_the_happy_path_writes_none(
    handler_env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """Volume is in Lambda's and EventBridge's own metrics; a metric line per event would cost its
    log bytes on every webhook. Duplicates and superseded updates are counted."""
    handlers = [
        (chats_app.lambda_handler, "chat.create"),
        (messages_app.lambda_handler, "chat.user.message"),
        (scenarios_app.lambda_handler, "chat.scenario.run"),
    ]
    for handler, topic in handlers:
        handler(bridge_event(topic), FakeLambdaContext())
    assert metric_lines_in(capsys.readouterr().out) == []
    for handler, topic in handlers:
        handler(bridge_event(topic), FakeLambdaContext())  # the same events again
    counted = [
        name for line in metric_lines_in(capsys.readouterr().out) for name in line if name[0].isupper()
    ]
    assert counted == ["ChatUpdatesSuperseded", "MessagesDuplicate", "ScenarioRunsDuplicate"]
