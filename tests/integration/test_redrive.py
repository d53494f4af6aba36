"""Redrive: spilled events back onto the bus, dead-lettered events back to the function that failed
them (not onto the bus), each deleted only after delivery, safe to run twice; plus an exact account
of every webhook through a bus outage and a consumer that fails until its retries run out."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws

from ingest.app import respond
from ingest.auth import TokenVerifier
from ingest.request import HttpRequest
from ingest.service import IngestService
from motostack.deploy import Clients, Deployment, deploy
from motostack.runtime import AsyncInvoker, invocation_record
from shared.runtime.settings import IngestSettings
from tests.conftest import ROOT, TOPICS, Invocations, sample_bytes
from tools.redrive import LambdaDeliverer, redrive

DEAD = Config(connect_timeout=0.3, read_timeout=0.3, retries={"mode": "standard", "max_attempts": 1})
TOKEN = "redrive-token-0123456789abcdef"


class Redelivered:
    """Where redrive's asynchronous invokes go: recorded with the rule deliveries, as moto cannot
    run a function (the Invoke request itself is checked with the Stubber below)."""

    def __init__(self, invocations: Invocations) -> None:
        self._invocations = invocations

    def to_function(self, function_arn: str, event: dict[str, Any]) -> None:
        self._invocations("redrive", {"Arn": function_arn}, event)


class World:
    def __init__(self, clients: Clients, deployment: Deployment, invocations: Invocations) -> None:
        self.clients, self.deployment, self.invocations = clients, deployment, invocations
        self.by_function = {t.function: deployment.functions[t.function].arn for t in deployment.targets}
        self.outputs = deployment.outputs

    def ingest(self, events: Any | None = None) -> IngestService:
        env = {
            "EVENT_BUS_NAME": self.outputs["EventBusName"],
            "BUCKET_NAME": self.outputs["DataBucketName"],
            "TOKEN_SECRET_ID": "unused",
        }
        return IngestService(
            IngestSettings.from_env(env),
            verifier=TokenVerifier(lambda: json.dumps({"token": TOKEN})),
            events=events or self.clients.events,
            s3=self.clients.s3,
        )

    def drain(self, function: str) -> list[dict[str, Any]]:
        return self.invocations.take(self.by_function[function])

    def drain_all(self) -> dict[str, list[dict[str, Any]]]:
        return {function: self.drain(function) for function in self.by_function}

    def redrive(self) -> Any:
        return redrive(
            s3=self.clients.s3,
            sqs=self.clients.sqs,
            events=self.clients.events,
            deliverer=Redelivered(self.invocations),
            bucket=self.outputs["DataBucketName"],
            dlq_url=self.outputs["DeliveryDLQUrl"],
            failed_url=self.outputs["FailedEventsQueueUrl"],
        )

    def spilled(self) -> list[str]:
        listing = self.clients.s3.list_objects_v2(Bucket=self.outputs["DataBucketName"], Prefix="spill/")
        return [o["Key"] for o in listing.get("Contents", [])]


@pytest.fixture
def world(translated_template: dict[str, Any], lambda_invocations: Invocations) -> Iterator[World]:
    with mock_aws():
        clients = Clients()
        deployment = deploy(clients, cfn=translated_template)
        yield World(clients, deployment, lambda_invocations)


def post(service: IngestService, topic: str) -> str:
    response = respond(service, HttpRequest(sample_bytes(topic).decode(), False, {}, TOKEN))
    assert response.status == 202
    return str(response.body["status"])


def test_bus_outage_every_webhook_accounted_for_then_redriven(world: World) -> None:
    # GIVEN the bus is unreachable for every other webhook
    dead_bus = boto3.client("events", endpoint_url="http://127.0.0.1:9", config=DEAD)
    outcomes = {
        topic: post(world.ingest(dead_bus if i % 2 else None), topic) for i, topic in enumerate(TOPICS)
    }
    # THEN each one is either on the bus or spilled, none lost
    accepted = sorted(t for t, o in outcomes.items() if o == "accepted")
    spilled = sorted(t for t, o in outcomes.items() if o == "spilled")
    assert len(accepted) + len(spilled) == 12
    assert len(spilled) == 6
    assert len(world.spilled()) == 6
    first = world.drain_all()
    assert sorted(e["detail-type"] for events in first.values() for e in events) == accepted
    # WHEN the operator redrives
    report = world.redrive()
    # THEN the spilled six reach their consumers, the objects are gone, and a second run does nothing
    assert (report.spilled, report.dead_lettered, report.failed_invocations, report.errors) == (6, 0, 0, [])
    second = world.drain_all()
    assert sorted(e["detail-type"] for events in second.values() for e in events) == spilled
    assert world.spilled() == []
    again = world.redrive()
    assert (again.spilled, again.dead_lettered, again.failed_invocations) == (0, 0, 0)
    assert world.drain_all() == {f: [] for f in world.by_function}


def test_dead_lettered_events_go_back_to_the_function_not_the_bus(world: World) -> None:
    event = json.loads((ROOT / "events" / "eventbridge" / "chat.create.json").read_text())
    chats = world.deployment.functions["ChatsFunction"]
    (target,) = [t for t in world.deployment.targets if t.function == "ChatsFunction"]
    world.clients.sqs.send_message(
        QueueUrl=world.outputs["DeliveryDLQUrl"],
        MessageBody=json.dumps(event),
        MessageAttributes={
            "RULE_ARN": {"DataType": "String", "StringValue": target.rule_arn},
            "TARGET_ARN": {"DataType": "String", "StringValue": chats.arn},
            "ERROR_CODE": {"DataType": "String", "StringValue": "SDK_CLIENT_ERROR"},
        },
    )
    messages = world.deployment.functions["MessagesFunction"]
    record = invocation_record(
        {"arn": messages.arn},
        json.loads((ROOT / "events" / "eventbridge" / "chat.user.message.json").read_text()),
        RuntimeError("boom"),
        3,
    )
    world.clients.sqs.send_message(
        QueueUrl=world.outputs["FailedEventsQueueUrl"], MessageBody=json.dumps(record)
    )
    world.clients.sqs.send_message(
        QueueUrl=world.outputs["FailedEventsQueueUrl"], MessageBody='{"not": "ours"}'
    )
    report = world.redrive()
    assert (report.dead_lettered, report.failed_invocations) == (1, 1)
    assert len(report.errors) == 1  # the foreign message is kept, and said
    delivered = world.drain_all()
    assert [e["detail-type"] for e in delivered["ChatsFunction"]] == ["chat.create"]
    assert [e["detail-type"] for e in delivered["MessagesFunction"]] == ["chat.user.message"]
    assert delivered["TranscriptsFunction"] == delivered["ScenariosFunction"] == []
    again = world.redrive()
    assert (again.dead_lettered, again.failed_invocations) == (0, 0)


def test_a_consumer_that_fails_until_retries_run_out_then_is_fixed_and_redriven(world: World) -> None:
    # GIVEN a consumer whose handler raises (3 attempts: 1 + MaximumRetryAttempts 2)
    chats = world.deployment.functions["ChatsFunction"]
    function = {
        "logical_id": "ChatsFunction",
        "arn": chats.arn,
        "max_retry_attempts": chats.max_retry_attempts,
        "on_failure_url": world.outputs["FailedEventsQueueUrl"],
    }
    attempts: list[str] = []

    class Broken:
        def __init__(self) -> None:
            self.function = function

        def invoke(self, event: dict[str, Any]) -> None:
            attempts.append(event["detail-type"])
            raise RuntimeError("bug")

    post(world.ingest(), "chat.create")
    (event,) = world.drain("ChatsFunction")
    ok = AsyncInvoker(Broken(), world.clients.sqs, retry_delay_s=0, report=lambda _: None).handle(event)  # type: ignore[arg-type]
    # THEN it lands on the on-failure queue as Lambda's record, after exactly three attempts
    assert ok is False
    assert attempts == ["chat.create"] * 3
    # WHEN the bug is fixed and the operator redrives, the event reaches the function again
    report = world.redrive()
    assert report.failed_invocations == 1
    (redelivered,) = world.drain("ChatsFunction")
    assert redelivered == event


def test_on_aws_a_dead_letter_is_invoked_asynchronously_on_its_function() -> None:
    awslambda = boto3.client("lambda")
    arn = "arn:aws:lambda:us-east-1:123456789012:function:chats"
    event = {"detail-type": "chat.create", "detail": {"metadata": {}}}
    with Stubber(awslambda) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {"FunctionName": arn, "InvocationType": "Event", "Payload": json.dumps(event).encode()},
        )
        LambdaDeliverer(awslambda).to_function(arn, event)
        stub.assert_no_pending_responses()


def test_a_claim_checked_body_is_renewed_at_redrive_and_one_already_expired_is_kept(world: World) -> None:
    # GIVEN a chat.close large enough to travel by claim check, failed by its consumer
    body = json.loads(sample_bytes("chat.close"))
    body["data"]["conversation"] *= 150  # about 330 KB: over the 256 KB threshold
    raw = json.dumps(body).encode()
    response = respond(world.ingest(), HttpRequest(raw.decode(), False, {}, TOKEN))
    assert response.body["status"] == "accepted"
    (event,) = world.drain("TranscriptsFunction")
    ref = event["detail"]["webhookRef"]
    bucket, key = ref["bucket"], ref["key"]
    written = world.clients.s3.head_object(Bucket=bucket, Key=key)
    transcripts = world.deployment.functions["TranscriptsFunction"]
    # AND a second one whose body the lifecycle has already expired
    gone = json.loads(json.dumps(event))
    gone["detail"]["webhookRef"]["key"] = key.replace(".json", "-expired.json")
    for failed in (event, gone):
        record = invocation_record({"arn": transcripts.arn}, failed, RuntimeError("boom"), 3)
        world.clients.sqs.send_message(
            QueueUrl=world.outputs["FailedEventsQueueUrl"], MessageBody=json.dumps(record)
        )
    time.sleep(1.1)  # S3 reports ages to the second
    # WHEN the operator redrives
    report = world.redrive()
    # THEN the first goes back to its function with its body rewritten in place: same bytes, type
    # and metadata, written now, so its expiry starts again
    assert report.failed_invocations == 1
    (redelivered,) = world.drain("TranscriptsFunction")
    assert redelivered == event
    renewed = world.clients.s3.head_object(Bucket=bucket, Key=key)
    assert renewed["LastModified"] > written["LastModified"]
    assert world.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == raw
    assert (renewed["ContentType"], renewed["Metadata"]) == (written["ContentType"], written["Metadata"])
    # AND the one whose body is gone is kept and said, not delivered to fail again
    (error,) = report.errors
    assert "has expired; kept" in error


def test_a_spilled_claim_checked_event_gets_its_body_back_from_the_spill_copy(world: World) -> None:
    """Spill objects never expire but claim checks do: the spill carries the body, and redrive puts it
    back if the bus stayed down longer than the body's lifecycle. A spill written without the copy
    (as before it was kept) is kept and reported when its body is gone."""
    body = json.loads(sample_bytes("chat.close"))
    body["data"]["conversation"] *= 150  # claim-checked
    raws = [json.dumps({**body, "requestId": f"r-{i}"}).encode() for i in range(3)]
    dead_bus = boto3.client("events", endpoint_url="http://127.0.0.1:9", config=DEAD)
    for raw in raws:
        response = respond(world.ingest(dead_bus), HttpRequest(raw.decode(), False, {}, TOKEN))
        assert response.body["status"] == "spilled"
    s3, bucket = world.clients.s3, world.outputs["DataBucketName"]

    def spill_of(raw: bytes) -> tuple[str, dict[str, Any]]:
        for key in world.spilled():
            spilled = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if base64.b64decode(spilled["claimCheckedBody"]) == raw:
                return key, spilled
        raise AssertionError("no spill holds this body")

    (_, kept), (_, expired), (old_key, old) = (spill_of(raw) for raw in raws)
    ref = {
        name: json.loads(spilled["entry"]["Detail"])["webhookRef"]["key"]
        for name, spilled in (("kept", kept), ("expired", expired), ("old", old))
    }
    s3.delete_object(Bucket=bucket, Key=ref["expired"])  # as the lifecycle would
    s3.delete_object(Bucket=bucket, Key=ref["old"])
    del old["claimCheckedBody"]
    s3.put_object(Bucket=bucket, Key=old_key, Body=json.dumps(old).encode())
    written = s3.head_object(Bucket=bucket, Key=ref["kept"])["LastModified"]
    time.sleep(1.1)  # S3 reports ages to the second
    report = world.redrive()
    assert report.spilled == 2
    (error,) = report.errors
    assert old_key in error
    assert "has expired; kept" in error
    assert world.spilled() == [old_key]
    delivered = {e["detail"]["webhookRef"]["key"] for e in world.drain("TranscriptsFunction")}
    assert delivered == {ref["kept"], ref["expired"]}
    assert s3.get_object(Bucket=bucket, Key=ref["expired"])["Body"].read() == raws[1]  # put back exactly
    assert s3.head_object(Bucket=bucket, Key=ref["kept"])["LastModified"] > written  # renewed


def test_each_item_is_delivered_or_kept_on_its_own(world: World) -> None:
    """Poison items do not stop a redrive: each is kept where it is, with its reason, and the
    good ones behind it still go; kept messages are visible again as soon as the run ends."""
    s3, sqs, bucket = world.clients.s3, world.clients.sqs, world.outputs["DataBucketName"]
    failed_url = world.outputs["FailedEventsQueueUrl"]
    messages = world.deployment.functions["MessagesFunction"]
    good_event = json.loads((ROOT / "events" / "eventbridge" / "chat.user.message.json").read_text())
    no_bucket = json.loads(json.dumps(good_event))
    no_bucket["detail"] = {
        "metadata": good_event["detail"]["metadata"],
        "webhookRef": {"key": "claim-check/x"},
    }
    poison_bodies = [
        "this is not JSON",
        "[1, 2, 3]",
        json.dumps(invocation_record({"arn": messages.arn}, no_bucket, RuntimeError("boom"), 3)),
    ]
    for body in [
        *poison_bodies,
        json.dumps(invocation_record({"arn": messages.arn}, good_event, RuntimeError("x"), 3)),
    ]:
        sqs.send_message(QueueUrl=failed_url, MessageBody=body)
    # AND in spill/: a truncated object, one the bus refuses as a whole (its bus is gone), a good one
    good_spill: dict[str, Any] = {
        "entry": {
            "Source": "ebbot.webhooks",
            "DetailType": "chat.user.message",
            "Detail": json.dumps(good_event["detail"]),
            "EventBusName": world.outputs["EventBusName"],
        },
        "deliveryId": "d-good",
    }
    refused = {**good_spill, "entry": {**good_spill["entry"], "EventBusName": "no-such-bus"}}
    s3.put_object(Bucket=bucket, Key="spill/dt=2023-01-01/a-truncated.json", Body=b'{"entry": {"Sour')
    s3.put_object(Bucket=bucket, Key="spill/dt=2023-01-01/b-refused.json", Body=json.dumps(refused).encode())
    s3.put_object(Bucket=bucket, Key="spill/dt=2023-01-01/c-good.json", Body=json.dumps(good_spill).encode())
    # WHEN the operator redrives
    report = world.redrive()
    # THEN the two good ones went, the five others were kept, each said why
    assert (report.spilled, report.failed_invocations, report.kept, report.expired) == (1, 1, 5, 0)
    reasons = "\n".join(report.errors)
    for reason in (
        "not a spill object",
        "the bus did not take it",
        "its body is not JSON",
        "neither a DLQ event nor an invocation record",
        "its claim-check reference is incomplete",
    ):
        assert reason in reasons
    assert "this is not JSON" not in reasons  # reasons, never content
    delivered = world.drain_all()
    assert [e["detail-type"] for e in delivered["MessagesFunction"]] == ["chat.user.message"] * 2
    assert sorted(world.spilled()) == [
        "spill/dt=2023-01-01/a-truncated.json",
        "spill/dt=2023-01-01/b-refused.json",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=failed_url, AttributeNames=["All"])["Attributes"]
    assert (
        attributes["ApproximateNumberOfMessages"],
        attributes["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "3",
        "0",
    )
    # AND the command says so with its exit status
    assert "kept, each with its reason below:         5" in str(report)


def test_a_queue_drains_with_long_polling_until_an_empty_answer_and_kept_messages_do_not_loop() -> None:
    """On AWS a short-polling receive can answer empty while messages remain; a long poll asks every
    server. The drain ends at the first empty long poll, and a kept message, made visible again only
    once the drain ends, is not received again in the same run."""
    from tools.redrive import Report, redrive_queue

    sqs = boto3.client("sqs")
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/failed"
    receive = {
        "QueueUrl": url,
        "MaxNumberOfMessages": 10,
        "VisibilityTimeout": 300,
        "WaitTimeSeconds": 3,
        "MessageAttributeNames": ["All"],
    }
    poison = {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": "not JSON"}
    with Stubber(sqs) as stub:
        stub.add_response("receive_message", {"Messages": [poison]}, receive)
        stub.add_response("receive_message", {"Messages": []}, receive)
        stub.add_response(
            "change_message_visibility", {}, {"QueueUrl": url, "ReceiptHandle": "r-1", "VisibilityTimeout": 0}
        )
        report = Report()
        redrive_queue(sqs, None, url, None, kind="on-failure", dry_run=False, report=report, wait_s=3)  # type: ignore[arg-type]
        stub.assert_no_pending_responses()
    assert (report.failed_invocations, report.kept) == (0, 1)
