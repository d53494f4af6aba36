"""The template's sizes hold together: the largest event fits both dead-letter queues, the largest
body fits Lambda's synchronous payload, and the table cannot be deleted by accident.

These stand for AWS's documented limits, which moto does not enforce (its queues take any size by
default): an SQS message of at most MaximumMessageSize bytes, body and attributes counted (1 MiB at
most); a synchronous Lambda invocation of at most 6 MB (6,291,456 bytes) for the whole event.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from motostack.runtime import invocation_record
from tests.conftest import ROOT
from tools.template import load_template

TEMPLATE = load_template()
PARAMETERS = TEMPLATE["Parameters"]
SQS_MAX_MESSAGE_BYTES = 1_048_576
LAMBDA_SYNC_PAYLOAD_BYTES = 6_291_456
# HTTP APIs take at most 10 KB of request headers (API Gateway's quotas).
API_HEADER_BYTES = 10 * 1024


def largest_event() -> dict[str, Any]:
    """The event EventBridge delivers for the largest detail that still travels inline: a detail of
    ClaimCheckThresholdBytes at its MaxValue, the longest source and detail-type."""
    threshold = PARAMETERS["ClaimCheckThresholdBytes"]["MaxValue"]
    detail_shell = {"metadata": {"deliveryId": str(uuid.uuid4())}, "webhook": {"filler": ""}}
    filler = threshold - len(json.dumps(detail_shell, separators=(",", ":")).encode())
    detail = {**detail_shell, "webhook": {"filler": "x" * filler}}
    assert len(json.dumps(detail, separators=(",", ":")).encode()) == threshold
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "t" * 128,  # EventBridge's longest detail-type
        "source": "s" * 256,  # EventSource's longest
        "account": "123456789012",
        "time": "2026-12-02T00:00:00Z",
        "region": "ap-southeast-2",
        "resources": [],
        "detail": detail,
    }


def test_both_dead_letter_queues_are_as_large_as_sqs_allows() -> None:
    for queue in ("DeliveryDLQ", "FailedEventsQueue"):
        assert TEMPLATE["Resources"][queue]["Properties"]["MaximumMessageSize"] == SQS_MAX_MESSAGE_BYTES


def test_the_largest_event_fits_both_dead_letter_queues_with_what_wraps_it() -> None:
    event = largest_event()
    arn = "arn:aws:lambda:ap-southeast-2:123456789012:function:" + "f" * 64
    # As a rule DLQ message: the event, and EventBridge's attributes naming rule, target and error.
    attributes = {
        "RULE_ARN": "arn:aws:events:ap-southeast-2:123456789012:rule/" + "b" * 256 + "/" + "r" * 64,
        "TARGET_ARN": arn,
        "ERROR_CODE": "SDK_CLIENT_ERROR",
        "ERROR_MESSAGE": "e" * 2048,
        "EXHAUSTED_RETRY_CONDITION": "MaximumRetryAttempts",
        "RETRY_ATTEMPTS": "185",
    }
    dlq_message = len(json.dumps(event).encode()) + sum(
        len(name) + len("String") + len(value) for name, value in attributes.items()
    )
    assert dlq_message <= SQS_MAX_MESSAGE_BYTES
    # As Lambda's on-failure record: the event, with the error and a stack trace of 32 KB.
    record = invocation_record({"arn": arn}, event, RuntimeError("boom"), 3)
    record["responsePayload"]["stackTrace"] = ["  File ..., line 1, in handler\n" * 16] * 64
    assert len(json.dumps(record).encode()) <= SQS_MAX_MESSAGE_BYTES


def test_the_largest_body_fits_lambdas_synchronous_payload_as_base64() -> None:
    largest = PARAMETERS["MaxBodyBytes"]["MaxValue"]
    event = json.loads((ROOT / "events" / "apigw" / "chat.create.json").read_text())
    event["headers"] = {"x-filler": "h" * API_HEADER_BYTES}
    event["body"] = base64.b64encode(b"x" * largest).decode()
    event["isBase64Encoded"] = True
    assert len(json.dumps(event).encode()) <= LAMBDA_SYNC_PAYLOAD_BYTES
    assert PARAMETERS["MaxBodyBytes"]["Default"] <= largest


def test_the_settings_refuse_what_the_template_refuses() -> None:
    from shared.runtime.settings import IngestSettings

    fields = IngestSettings.model_fields
    bound = {m.le for m in fields["max_body_bytes"].metadata if hasattr(m, "le")}
    assert bound == {PARAMETERS["MaxBodyBytes"]["MaxValue"]}
    bound = {m.le for m in fields["claim_check_threshold_bytes"].metadata if hasattr(m, "le")}
    assert bound == {PARAMETERS["ClaimCheckThresholdBytes"]["MaxValue"]}


def test_the_table_has_deletion_protection() -> None:
    assert TEMPLATE["Resources"]["Table"]["Properties"]["DeletionProtectionEnabled"] is True
