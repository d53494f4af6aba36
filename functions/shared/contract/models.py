"""Ebbot's outgoing webhooks, one pydantic model per topic.

The seed examples are the only documentation of the format, so the models are strict only on what
routing and storage need (topic, botId, the chat id, a message id where there is one, instants we
order by) and lenient on the rest: unknown fields are kept (`extra="allow"`), lenient fields are
typed `Any`, and no pattern is enforced on id formats. Where each id lives is recorded in
docs/decisions.md. Validation errors never echo the payload (`hide_input_in_errors`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StrictStr,
    ValidationError,
)
from pydantic_core import CoreSchema, core_schema

from shared.contract.envelope import METADATA_KEYS, SCHEMA_VERSION, routing_fields
from shared.contract.errors import FieldProblem, WebhookInvalidError, format_path
from shared.contract.timestamps import ns_to_iso, precision_digits, to_ns

# Ids are opaque: Ebbot's chat ids contain dots, bot ids are 30 alphanumerics, message ids UUIDs,
# but nothing here depends on that. 128 characters are at most 512 UTF-8 bytes: with the prefixes we
# add, inside DynamoDB's key limits (2,048 bytes for a partition key, 1,024 for a sort key); S3 keys
# hash an id too long for them (shared.storage.bucket).
MAX_ID_CHARS = 128
Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
Topic = Annotated[StrictStr, Field(min_length=1, max_length=128)]  # EventBridge's detail-type limit


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


def from_pydantic_errors(errors: Sequence[Any]) -> WebhookInvalidError:
    """Our error from pydantic's `errors(include_input=False, include_url=False)` list."""
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
    return WebhookInvalidError(first.code, f"{first.field}: {first.message}{more}", problems)


# Checked per message of a transcript (thousands in a large chat.close), so the forms that
# are always instants (PLAIN_INSTANT, integers of up to 13 digits) are accepted inside
# pydantic-core, without a call into Python; anything else gets the exact parse.
_PLAIN_INSTANT_INT_LIMIT = 10**13
_ASCII_SPACE = r"[ \t\n\r\x0b\x0c]*"  # what PLAIN_INSTANT's \s is under re.ASCII
# PLAIN_INSTANT for the Rust regex engine ([0-9], not \d, which is Unicode there), anchored (a
# pydantic pattern is a search).
_PLAIN_INSTANT_RUST = rf"^{_ASCII_SPACE}[0-9]{{1,13}}(?:\.[0-9]{{0,9}})?{_ASCII_SPACE}$"


def _check_instant(value: str | int | float) -> str | int | float:
    """The full check, for what the union's fast members (the plain forms) did not accept."""
    to_ns(value)  # raises InvalidInstantError (a ValueError) with a message free of the value
    return value


class _InstantSchema:
    """An instant as Ebbot sends it: a string, integer or float that `to_ns` reads, kept as sent."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        full = core_schema.no_info_after_validator_function(
            _check_instant,
            core_schema.union_schema(
                [
                    core_schema.str_schema(strict=True),
                    core_schema.int_schema(strict=True),
                    core_schema.float_schema(strict=True),
                ]
            ),
        )
        return core_schema.union_schema(
            [
                (core_schema.str_schema(strict=True, pattern=_PLAIN_INSTANT_RUST), FAST_PATH),
                (core_schema.int_schema(strict=True, ge=0, lt=_PLAIN_INSTANT_INT_LIMIT), FAST_PATH),
                (full, FULL_CHECK),
            ],
            mode="left_to_right",
        )


# The value is kept as sent (so the body round-trips); `to_ns` gives the exact instant.
Instant = Annotated[str | int | float, _InstantSchema]


class EbbotModel(BaseModel):
    """Keeps every field it does not know, and never repeats input values in its errors."""

    model_config = ConfigDict(extra="allow", hide_input_in_errors=True, frozen=True, defer_build=True)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


class Webhook(EbbotModel):
    """What every topic has. Subclasses narrow `topic` and say where the chat and message ids live."""

    topic: Topic
    botId: Id
    requestId: Any = None
    timestamp: Instant | None = None  # integer milliseconds in every example

    @property
    def chat_id(self) -> str | None:
        return None

    @property
    def message_id(self) -> str | None:
        """The message's id; for a message without one, a stable key (see MessageData.key)."""
        return None

    @property
    def request_id(self) -> str | None:
        return _str(self.requestId) or _str(
            _get(self.model_extra and self.model_extra.get("context"), "request_id")
        )

    @property
    def sent_at_ns(self) -> int | None:
        """When Ebbot sent the webhook (the envelope's timestamp)."""
        return None if self.timestamp is None else to_ns(self.timestamp)

    @property
    def occurred_at_ns(self) -> int | None:
        """When the thing the webhook reports happened; the envelope time unless the body is more precise."""
        return self.sent_at_ns

    def routing(self) -> dict[str, Any]:
        return routing_fields()


# --- chat-state topics: the chat id is data.id (chat.update: chat.id) ---------------------------


class ChatData(EbbotModel):
    id: Id
    status: Any = None
    handled_by: Any = None


class _ChatDataWebhook(Webhook):
    data: ChatData

    @property
    def chat_id(self) -> str:
        return self.data.id

    def routing(self) -> dict[str, Any]:
        return routing_fields(chatStatus=_str(self.data.status), handledBy=_str(self.data.handled_by))


class ChatCreate(_ChatDataWebhook):
    topic: Literal["chat.create"]


class ChatDataUpdate(_ChatDataWebhook):
    topic: Literal["chat.data.update"]


class ChatUserUpdate(_ChatDataWebhook):
    topic: Literal["chat.user.update"]


class ChatStatusChange(_ChatDataWebhook):
    topic: Literal["chat.status.change"]


class ChatState(EbbotModel):
    """chat.update's `chat`: the whole chat row as Ebbot holds it."""

    id: Id
    status: Any = None
    handled_by: Any = None
    scenario: Any = None
    rating: Any = None


class ChatUpdate(Webhook):
    topic: Literal["chat.update"]
    chat: ChatState

    @property
    def chat_id(self) -> str:
        return self.chat.id

    def routing(self) -> dict[str, Any]:
        scenario = self.chat.scenario
        return routing_fields(
            chatStatus=_str(self.chat.status),
            handledBy=_str(self.chat.handled_by),
            scenarioId=_str(scenario) or _str(_get(scenario, "id")),
            rating=_number(self.chat.rating),
        )


# --- messages: data.chatId is the chat, data.id the message -------------------------------------


class MessageFields(EbbotModel):
    """A message as it appears in message webhooks and in chat.close transcripts."""

    id: Id | None = None
    sender: Any = None
    type: Any = None
    value: Any = None
    timestamp: Instant | None = None

    @property
    def timestamp_ns(self) -> int | None:
        return None if self.timestamp is None else to_ns(self.timestamp)

    @property
    def timestamp_precision(self) -> int | None:
        """Digits of a second its own timestamp gives (shared.contract.timestamps), None without one."""
        return None if self.timestamp is None else precision_digits(self.timestamp)

    def key(self, chat_id: str) -> str:
        """The message id, or for an id-less message (Ebbot omits it on button_click) a stable key.

        The stable key hashes what identifies the message wherever it is delivered: chat, sender,
        type, exact instant and canonical value. The same message in chat.message, chat.<sender>.message
        and the chat.close transcript gets the same key; seconds- and millisecond-stamped forms of one
        instant give the same nanoseconds, so they match too.
        """
        if self.id is not None:
            return self.id
        canonical = json.dumps(
            [chat_id, _str(self.sender), _str(self.type), self.timestamp_ns, self.value],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
            default=str,
        )
        return "nokey-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def routing(self) -> dict[str, Any]:
        kind = _str(self.type)
        return routing_fields(
            sender=_str(self.sender),
            messageType=kind,
            scenarioId=_str(_get(self.value, "scenario")) if kind == "scenario" else None,
            rating=self.rating(),
        )

    def rating(self) -> int | float | None:
        """The score of a rating message (type "rating", value {"rating": n}); None otherwise."""
        return _number(_get(self.value, "rating")) if self.type == "rating" else None


class MessageData(MessageFields):
    chatId: Id


class MessageWebhook(Webhook):
    """Every message topic: chat.<sender>.message and chat.message."""

    data: MessageData

    @property
    def chat_id(self) -> str:
        return self.data.chatId

    @property
    def message_id(self) -> str:
        return self.data.key(self.data.chatId)

    @property
    def occurred_at_ns(self) -> int | None:
        stamped = self.data.timestamp_ns
        return stamped if stamped is not None else self.sent_at_ns

    def routing(self) -> dict[str, Any]:
        return self.data.routing()


class ChatUserMessage(MessageWebhook):
    topic: Literal["chat.user.message"]


class ChatBotMessage(MessageWebhook):
    topic: Literal["chat.bot.message"]


class ChatAgentMessage(MessageWebhook):
    topic: Literal["chat.agent.message"]


class ChatSystemMessage(MessageWebhook):
    topic: Literal["chat.system.message"]


class ChatMessage(MessageWebhook):
    topic: Literal["chat.message"]


# --- scenario runs --------------------------------------------------------------------------------


class Scenario(EbbotModel):
    id: Any = None
    name: Any = None
    states: Any = None


class ScenarioRunData(EbbotModel):
    chatId: Id
    scenario: Scenario = Field(default_factory=Scenario)


class ChatScenarioRun(Webhook):
    topic: Literal["chat.scenario.run"]
    data: ScenarioRunData

    @property
    def chat_id(self) -> str:
        return self.data.chatId

    def routing(self) -> dict[str, Any]:
        return routing_fields(scenarioId=_str(self.data.scenario.id))


# --- chat.close: the whole transcript -------------------------------------------------------------


class CloseData(EbbotModel):
    id: Id
    conversation: list[MessageFields] = Field(default_factory=list)
    status: Any = None
    handled_by: Any = None


class ChatClose(Webhook):
    topic: Literal["chat.close"]
    data: CloseData

    @property
    def chat_id(self) -> str:
        return self.data.id

    def routing(self) -> dict[str, Any]:
        # The last rating in the transcript (a model per message would cost more than the parse).
        rating = next((r for m in reversed(self.data.conversation) if (r := m.rating()) is not None), None)
        return routing_fields(
            chatStatus=_str(self.data.status) or "chat_closed",
            handledBy=_str(self.data.handled_by),
            rating=rating,
        )


# --- anything else --------------------------------------------------------------------------------


class UnknownWebhook(Webhook):
    """A well-formed webhook on a topic we have no model for: routed under its own name.

    The chat id is looked for where the known topics keep it (data.chatId, chat.id, data.id), as a
    convenience for rules; nothing is required beyond topic and botId.
    """

    @property
    def chat_id(self) -> str | None:
        extra = self.model_extra or {}
        data, chat = extra.get("data"), extra.get("chat")
        return _str(_get(data, "chatId")) or _str(_get(chat, "id")) or _str(_get(data, "id"))


def topic_of(model: type[Webhook]) -> str:
    """The topic a model is for: its `topic` field's one literal."""
    (topic,) = get_args(model.model_fields["topic"].annotation)
    return str(topic)


TOPIC_MODELS: dict[str, type[Webhook]] = {
    topic_of(model): model
    for model in (
        ChatCreate,
        ChatUpdate,
        ChatDataUpdate,
        ChatUserUpdate,
        ChatUserMessage,
        ChatBotMessage,
        ChatAgentMessage,
        ChatSystemMessage,
        ChatMessage,
        ChatScenarioRun,
        ChatStatusChange,
        ChatClose,
    )
}


def parse_webhook(body: object) -> Webhook:
    """The body as the model of its topic (UnknownWebhook for a topic we have no model for)."""
    if not isinstance(body, dict):
        raise WebhookInvalidError("not_an_object", "the body must be a JSON object")
    topic = body.get("topic")
    model = TOPIC_MODELS.get(topic, UnknownWebhook) if isinstance(topic, str) else UnknownWebhook
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_pydantic_errors(exc.errors(include_url=False, include_input=False)) from None


def build_metadata(webhook: Webhook, raw: bytes, *, received_ns: int, delivery_id: str) -> dict[str, Any]:
    """Normalise what the consumers and rules need from a validated webhook and its raw bytes.

    Returns the metadata as it goes on the bus: the dict `Metadata` dumps to, keys in its order.
    Every value comes from the validated webhook, the clock or the bytes, so validating a Metadata
    per webhook would only repeat checks already made; tests hold this dict equal to Metadata's
    reading of it, for every topic.
    """
    occurred_ns = webhook.occurred_at_ns
    sent_ns = webhook.sent_at_ns
    values = {
        **webhook.routing(),
        "schemaVersion": SCHEMA_VERSION,
        "deliveryId": delivery_id,
        "topic": webhook.topic,
        "botId": webhook.botId,
        "chatId": webhook.chat_id,
        "messageId": webhook.message_id,
        "requestId": webhook.request_id,
        "receivedAt": ns_to_iso(received_ns),
        "sentAt": None if sent_ns is None else ns_to_iso(sent_ns),
        "occurredAt": None if occurred_ns is None else ns_to_iso(occurred_ns),
        "occurredAtNs": None if occurred_ns is None else str(occurred_ns),
        "bodySize": len(raw),
        "bodySha256": hashlib.sha256(raw).hexdigest(),
    }
    return {key: values[key] for key in METADATA_KEYS}
