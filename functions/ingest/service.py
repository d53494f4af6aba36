"""The ingest service: authenticate, size, parse, validate, then make the webhook durable.

Order matters: an unauthenticated request is refused before anything is read, parsed or written.
After that nothing is dropped: an accepted webhook goes on the bus (its body in S3 when large), or
to S3 spill when the bus is down; an authenticated but invalid one is kept in S3 quarantine. Every
refusal is a typed error (ingest.errors); the handler decides what HTTP answer each one gets, and
NotDurableError (nothing could be made durable) is the only one a retrying sender should retry.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ingest.auth import TokenVerifier, bearer_token
from ingest.deadline import ANSWER_WITHIN_S, ATTEMPT_S, SPILL_RESERVE_S, Deadline, retry_within
from ingest.errors import (
    KEPT_IN_QUARANTINE,
    AuthUnavailableError,
    BotNotAllowedError,
    NotAuthenticatedError,
    NotDurableError,
    WebhookError,
    WebhookInvalidError,
)
from ingest.fields import apply_policy, needs_key, parse_policy
from ingest.request import HttpRequest, decode_body, parse_json
from shared.contract.models import Webhook, build_metadata, parse_webhook
from shared.runtime.observability import MetricUnit, logger, metrics
from shared.runtime.settings import IngestSettings
from shared.storage.bucket import (
    CLAIM_CHECK_PREFIX,
    QUARANTINE_PREFIX,
    REFUSED_FIELD,
    SPILL_PREFIX,
    SPILLED_BODY_FIELD,
    object_key,
)
from shared.storage.bus import BusPublisher, BusUnavailableError
from shared.storage.claim_check import check_in
from shared.storage.privacy import keyed_hash

# EventBridge's hard limit per entry (since 2026-01-29); what is above the claim-check threshold
# but below this may still travel inline if S3 is down.
EVENTBRIDGE_MAX_ENTRY_BYTES = 1024 * 1024
# Room for Source, DetailType and the entry's own JSON around Detail.
ENTRY_OVERHEAD_BYTES = 1024


@dataclass(frozen=True, slots=True)
class Accepted:
    """A webhook made durable: on the bus ("accepted"), or spilled to S3 for a redrive ("spilled")."""

    delivery_id: str
    outcome: str


class IngestService:
    def __init__(
        self,
        settings: IngestSettings,
        *,
        verifier: TokenVerifier,
        events: Any,
        s3: Any,
        clock_ns: Callable[[], int] = time.time_ns,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        publisher: BusPublisher | None = None,
        privacy_key: Callable[[], bytes] | None = None,
    ) -> None:
        self._settings = settings
        self._verifier = verifier
        self._s3 = s3
        self._publisher = publisher or BusPublisher(events)
        self._clock_ns = clock_ns
        self._new_id = new_id
        self._field_rules = parse_policy(settings.payload_field_policy)
        # Read only when a rule hashes, on first use (the hash key's own secret).
        self._privacy_key = privacy_key if needs_key(self._field_rules) else None

    def handle(self, request: HttpRequest, deadline: Deadline | None = None) -> Accepted:
        """Make one webhook durable, or raise the WebhookError that says why not (ingest.errors),
        within the deadline's budget (ingest.deadline)."""
        deadline = deadline or Deadline(ANSWER_WITHIN_S)
        # 1. Authenticate: nothing is read, parsed or written for a stranger.
        self._authenticate(request, deadline)
        received_ns = self._clock_ns()
        delivery_id = self._new_id()
        raw: bytes | None = None
        document: Any = None
        try:
            # 2. Size, then 3. parse and validate, then make it durable.
            raw = decode_body(
                request.body,
                is_base64=request.is_base64,
                content_encoding=request.headers.get("content-encoding"),
                max_bytes=self._settings.max_body_bytes,
            )
            document = parse_json(raw)
            webhook = parse_webhook(document)
            self._check_bot(webhook)
            metadata = build_metadata(webhook, raw, received_ns=received_ns, delivery_id=delivery_id)
            # The operator's field policy, before anything is kept: the bus, the claim check, a spill.
            kept = self._keep_less(document) or raw
            return self._make_durable(document, metadata, kept, received_ns, deadline)
        except WebhookError as exc:
            self._reject(exc, request, received_ns, delivery_id, raw, document, deadline)
            raise

    def _keep_less(self, document: Any) -> bytes | None:
        """Apply the field policy to the parsed body in place; its new bytes if it changed."""
        if not self._field_rules or not isinstance(document, dict):
            return None
        hasher: Callable[[str], str] | None = None
        if self._privacy_key is not None:
            try:
                key = self._privacy_key()
                hasher = lambda value: keyed_hash(key, "field", value)  # noqa: E731
            except (BotoCoreError, ClientError, ValueError) as exc:
                # Never kept in clear against the operator's choice: the fields are dropped instead.
                logger.warning("privacy key unavailable; hashed fields dropped", error=type(exc).__name__)
                metrics.add_metric(name="PrivacyKeyUnavailable", unit=MetricUnit.Count, value=1)
        if not apply_policy(self._field_rules, document, hasher):
            return None
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def _authenticate(self, request: HttpRequest, deadline: Deadline) -> None:
        try:
            authorised = self._verifier.verify(
                request.path_token,
                bearer_token(request.headers.get("authorization")),
                may_retry=deadline.another_attempt(),
            )
        except AuthUnavailableError as exc:
            # Nothing was authenticated, so nothing can be kept: a webhook lost, if it was one.
            logger.error("token secret unavailable", error=type(exc.__cause__).__name__)
            metrics.add_metric(name="AuthUnavailable", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="WebhooksLost", unit=MetricUnit.Count, value=1)
            raise
        if not authorised:
            metrics.add_metric(name="WebhooksUnauthorized", unit=MetricUnit.Count, value=1)
            raise NotAuthenticatedError

    def _check_bot(self, webhook: Webhook) -> None:
        allowed = self._settings.allowed_bot_ids
        if allowed and webhook.botId not in allowed:
            raise BotNotAllowedError("bot_not_allowed", "botId: this bot is not accepted by this endpoint")

    # --- the accepted path ---------------------------------------------------------------------

    def _make_durable(
        self,
        document: dict[str, Any],
        metadata: dict[str, Any],
        raw: bytes,
        received_ns: int,
        deadline: Deadline,
    ) -> Accepted:
        detail = _serialise({"metadata": metadata, "webhook": document})
        claim_checked = False
        if len(detail) > self._settings.claim_check_threshold_bytes:
            detail, claim_checked = self._claim_check(metadata, raw, received_ns, detail, deadline)
        entry = {
            "Source": self._settings.event_source,
            "DetailType": metadata["topic"],
            "Detail": detail.decode("utf-8"),
            "EventBusName": self._settings.event_bus_name,
        }
        outcome = self._publish(entry, metadata, raw if claim_checked else None, received_ns, deadline)
        if claim_checked:
            metrics.add_metric(name="WebhooksClaimChecked", unit=MetricUnit.Count, value=1)
        logger.info(
            "webhook accepted",
            topic=metadata["topic"],
            bot_id=metadata["botId"],
            chat_id=metadata["chatId"],
            delivery_id=metadata["deliveryId"],
            body_bytes=len(raw),
            claim_checked=claim_checked,
            outcome=outcome,
        )
        return Accepted(metadata["deliveryId"], outcome)

    def _claim_check(
        self, metadata: dict[str, Any], raw: bytes, received_ns: int, inline: bytes, deadline: Deadline
    ) -> tuple[bytes, bool]:
        key = object_key(CLAIM_CHECK_PREFIX, received_ns, metadata["deliveryId"], metadata["chatId"])
        try:
            ref = retry_within(
                lambda: check_in(self._s3, self._settings.bucket_name, key, raw),
                # After it: the bus, and the spill if the bus does not answer.
                deadline.another_attempt(ATTEMPT_S + SPILL_RESERVE_S),
            )
        except (ClientError, BotoCoreError) as exc:
            logger.warning("claim check failed", delivery_id=metadata["deliveryId"], error=type(exc).__name__)
            metrics.add_metric(name="ClaimCheckFailed", unit=MetricUnit.Count, value=1)
            if len(inline) + ENTRY_OVERHEAD_BYTES <= EVENTBRIDGE_MAX_ENTRY_BYTES:
                return inline, False  # still fits on the bus: send it inline rather than fail
            raise self._lost(metadata["deliveryId"], "claim check failed and the body is over 1 MB") from exc
        return _serialise({"metadata": metadata, "webhookRef": ref.model_dump()}), True

    def _publish(
        self,
        entry: dict[str, Any],
        metadata: dict[str, Any],
        claim_checked_body: bytes | None,
        received_ns: int,
        deadline: Deadline,
    ) -> str:
        delivery_id = metadata["deliveryId"]
        try:
            (result,) = self._publisher.put([entry], may_retry=deadline.another_attempt(SPILL_RESERVE_S))
        except BusUnavailableError as exc:
            logger.warning("event bus unavailable", delivery_id=delivery_id, error=str(exc))
            return self._spill(entry, metadata, received_ns, claim_checked_body, deadline)
        finally:
            if self._publisher.retries:
                metrics.add_metric(
                    name="PutEventsRetries", unit=MetricUnit.Count, value=self._publisher.retries
                )
                self._publisher.retries = 0
        if result.published:
            return "accepted"
        if result.transient:
            logger.warning("event bus kept failing", delivery_id=delivery_id, error=result.error_code)
        else:
            # Refused for good (AccessDenied, NotAuthorizedForSource, MalformedDetail...): a valid
            # webhook the bus would not take, most often a bus policy or permission mistake. Kept
            # where redrive finds it, counted and alarmed (BusRefused), never in quarantine.
            logger.error("event bus refused the event", delivery_id=delivery_id, error=result.error_code)
            metrics.add_metric(name="BusRefused", unit=MetricUnit.Count, value=1)
        return self._spill(
            entry, metadata, received_ns, claim_checked_body, deadline, refused=result.error_code
        )

    def _spill(
        self,
        entry: dict[str, Any],
        metadata: dict[str, Any],
        received_ns: int,
        body: bytes | None,
        deadline: Deadline,
        refused: str | None = None,
    ) -> str:
        """Keep the entry for a redrive. Spill objects never expire but claim checks do, so a
        claim-checked body travels in the spill object too (base64: the exact bytes) and redrive
        can put it back if it expired before the bus came back."""
        key = object_key(SPILL_PREFIX, received_ns, metadata["deliveryId"], metadata["chatId"])
        spilled: dict[str, Any] = {"entry": entry, "deliveryId": metadata["deliveryId"]}
        if body is not None:
            spilled[SPILLED_BODY_FIELD] = base64.b64encode(body).decode("ascii")
        if refused:
            spilled[REFUSED_FIELD] = refused
        try:
            retry_within(
                lambda: self._s3.put_object(
                    Bucket=self._settings.bucket_name,
                    Key=key,
                    Body=_serialise(spilled),
                    ContentType="application/json",
                    ChecksumAlgorithm="SHA256",
                ),
                deadline.another_attempt(),
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._lost(metadata["deliveryId"], "spill failed") from exc
        metrics.add_metric(name="WebhooksSpilled", unit=MetricUnit.Count, value=1)
        return "spilled"

    @staticmethod
    def _lost(delivery_id: str, why: str) -> NotDurableError:
        """An authenticated webhook that ended with nothing durable: counted once, here."""
        metrics.add_metric(name="WebhooksLost", unit=MetricUnit.Count, value=1)
        logger.error("nothing durable: " + why, delivery_id=delivery_id)
        return NotDurableError()

    # --- the rejected path ---------------------------------------------------------------------

    def _reject(
        self,
        error: WebhookError,
        request: HttpRequest,
        received_ns: int,
        delivery_id: str,
        raw: bytes | None,
        document: Any,
        deadline: Deadline,
    ) -> None:
        """`document`: the body as parsed, or None when it did not parse."""
        # The codes only: a field's path is built from the body's keys, which may be personal data.
        logger.info(
            "webhook rejected",
            code=error.code,
            field_codes=sorted({p.code for p in error.problems}),
            delivery_id=delivery_id,
        )
        metrics.add_metric(name="WebhooksRejected", unit=MetricUnit.Count, value=1)
        if isinstance(error, KEPT_IN_QUARANTINE):
            # Authenticated but unusable: keep the bytes so a schema question can be settled later.
            body = raw if raw is not None else _request_bytes(request)
            if body is not None:
                # A body that parsed has the field policy applied and is filed under the chat it
                # names; bytes that did not parse are kept exactly as they came.
                kept = (self._keep_less(document) or body) if document is not None else body
                self._quarantine(
                    kept, chat_id_hint(document), delivery_id, received_ns, error.code, request, deadline
                )

    def _quarantine(
        self,
        raw: bytes,
        chat_id: str | None,
        delivery_id: str,
        received_ns: int,
        reason: str,
        request: HttpRequest,
        deadline: Deadline,
    ) -> None:
        headers = request.headers
        try:
            retry_within(
                lambda: self._s3.put_object(
                    Bucket=self._settings.bucket_name,
                    Key=object_key(QUARANTINE_PREFIX, received_ns, delivery_id, chat_id, suffix=".bin"),
                    Body=raw,
                    ContentType="application/octet-stream",
                    # Only what explains the bytes: never the path (it may hold the token) or
                    # auth headers.
                    Metadata={
                        "reason": _ascii(reason),
                        "content-type": _ascii(headers.get("content-type", "")),
                        "content-encoding": _ascii(headers.get("content-encoding", "")),
                    },
                ),
                deadline.another_attempt(),
            )
        except (ClientError, BotoCoreError) as exc:
            metrics.add_metric(name="QuarantineFailed", unit=MetricUnit.Count, value=1)
            logger.error("quarantine failed", delivery_id=delivery_id, error=type(exc).__name__)
            return
        metrics.add_metric(name="WebhooksQuarantined", unit=MetricUnit.Count, value=1)


# Where a body that did not validate may name its chat: message, scenario-run and close topics in
# data.chatId, chat.update in chat.id, the other chat topics in data.id (shared.contract.models).
_CHAT_ID_PATHS = {"chat.update": ("chat", "id")}
_DATA_ID_TOPICS = frozenset({"chat.create", "chat.data.update", "chat.user.update", "chat.status.change"})


def chat_id_hint(document: Any) -> str | None:
    """The chat id a JSON body names where its topic keeps it, or None: for filing a quarantined
    body under its chat (shared.storage.bucket.chat_prefix), without trusting anything else in it."""
    if not isinstance(document, dict):
        return None
    data = document.get("data")
    topic = document.get("topic")
    if not isinstance(topic, str):
        return None
    if isinstance(data, dict) and isinstance(data.get("chatId"), str):
        value: Any = data["chatId"]
    elif topic in _CHAT_ID_PATHS:
        first, second = _CHAT_ID_PATHS[topic]
        node = document.get(first)
        value = node.get(second) if isinstance(node, dict) else None
    elif topic in _DATA_ID_TOPICS and isinstance(data, dict):
        value = data.get("id")
    else:
        value = None
    return value if isinstance(value, str) and value else None


def _ascii(value: str, limit: int = 200) -> str:
    """A header value as S3 user metadata takes it: printable ASCII (anything else escaped), cut."""
    escaped = value.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else "?" for c in escaped)[:limit]


def _request_bytes(request: HttpRequest) -> bytes | None:
    """The body as sent (before base64 and gzip), for quarantine when decoding itself failed."""
    if not request.body:
        return None
    if request.is_base64:
        try:
            return base64.b64decode(request.body, validate=True)
        except (binascii.Error, ValueError):
            pass
    return request.body.encode("utf-8", "surrogatepass")


def _serialise(document: Any) -> bytes:
    """Compact UTF-8 JSON as EventBridge and S3 receive it; lone surrogates cannot be encoded."""
    try:
        return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8"
        )
    except UnicodeEncodeError:
        raise WebhookInvalidError(
            "invalid_unicode", "the body holds a lone UTF-16 surrogate escape, which AWS cannot store"
        ) from None
