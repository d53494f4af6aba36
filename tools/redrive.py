"""Re-deliver what did not make it, once its cause is fixed. Safe to run twice.

- Spilled events (S3 `spill/`, written by the ingest function while the bus was unavailable) are
  put on the bus again.
- Dead-lettered events go back to the function that failed them, not onto the bus (where every
  rule would fire again): a rule DLQ message is the raw event, with the rule and target in its
  RULE_ARN and TARGET_ARN attributes; an on-failure record is Lambda's invocation record, with the
  function in requestContext.functionArn and the event in requestPayload.

Each object or message is deleted only after its delivery succeeded. Consumers are idempotent, so
a delivery repeated after a crash between delivery and delete is harmless. A claim-checked event's
body is rewritten in place before the event goes out (`shared.storage.claim_check.renew`), so its expiry
starts again and a second failure and wait cannot outlive it; an event whose body has already
expired is kept and reported, not delivered (a spilled one carries a copy of its body and has it put
back).

    python -m tools redrive --local            # the running local stack
    python -m tools redrive --stack NAME       # a deployed stack (usual AWS profile and region)
    python -m tools redrive ... --dry-run      # count only
"""

from __future__ import annotations

import argparse
import base64
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.storage.bucket import SPILL_PREFIX, SPILLED_BODY_FIELD
from shared.storage.bus import BusPublisher
from shared.storage.claim_check import ClaimCheckGoneError, check_in_again, renew


class Deliverer(Protocol):
    def to_function(self, function_arn: str, event: dict[str, Any]) -> None: ...


class LambdaDeliverer:
    """AWS: invoke the function asynchronously, exactly as EventBridge does."""

    def __init__(self, awslambda: Any) -> None:
        self._lambda = awslambda

    def to_function(self, function_arn: str, event: dict[str, Any]) -> None:
        self._lambda.invoke(
            FunctionName=function_arn, InvocationType="Event", Payload=json.dumps(event).encode()
        )


class LocalDeliverer:
    """The local stack: the same asynchronous invoke, on the Invoke API each function's worker serves."""

    def __init__(self, invoke_url_by_function_arn: dict[str, str]) -> None:
        self._urls = invoke_url_by_function_arn
        self._clients: dict[str, LambdaDeliverer] = {}

    def to_function(self, function_arn: str, event: dict[str, Any]) -> None:
        url = self._urls.get(function_arn)
        if url is None:
            raise LookupError(f"no function {function_arn} in the local stack")
        if url not in self._clients:
            import boto3

            self._clients[url] = LambdaDeliverer(boto3.client("lambda", endpoint_url=url))
        self._clients[url].to_function(function_arn, event)


@dataclass
class Report:
    spilled: int = 0
    dead_lettered: int = 0
    failed_invocations: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"spilled events put back on the bus:       {self.spilled}",
            f"rule DLQ events re-delivered:             {self.dead_lettered}",
            f"failed invocations re-delivered:          {self.failed_invocations}",
        ]
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


def function_arn(arn: str) -> str:
    """The function's ARN without a version or alias qualifier ($LATEST in invocation records)."""
    parts = arn.split(":")
    return ":".join(parts[:7]) if len(parts) > 7 else arn


def redrive_spill(s3: Any, bucket: str, publisher: BusPublisher, *, dry_run: bool, report: Report) -> None:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=SPILL_PREFIX):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            spilled = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            entry = spilled["entry"]
            if dry_run:
                report.spilled += 1
                continue
            detail = json.loads(entry["Detail"])
            try:
                renew(s3, detail)
            except ClaimCheckGoneError as exc:
                copy = spilled.get(SPILLED_BODY_FIELD)
                if copy is None or not check_in_again(s3, detail["webhookRef"], base64.b64decode(copy)):
                    report.errors.append(f"s3://{bucket}/{key}: {exc}; kept")
                    continue
            (result,) = publisher.put([entry])
            if not result.published:
                report.errors.append(f"s3://{bucket}/{key}: the bus refused it ({result.error_code}); kept")
                continue
            s3.delete_object(Bucket=bucket, Key=key)
            report.spilled += 1


def _drain(sqs: Any, url: str) -> Any:
    """Every message in the queue, received in batches (each stays invisible until deleted or timed out)."""
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return
        yield from messages


def redrive_queue(
    sqs: Any, s3: Any, url: str, deliverer: Deliverer, *, kind: str, dry_run: bool, report: Report
) -> None:
    """kind: "dlq" (raw events with RULE_ARN/TARGET_ARN) or "on-failure" (Lambda invocation records)."""
    if dry_run:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]
        for _ in range(int(attrs["ApproximateNumberOfMessages"])):
            _count(report, kind)
        return
    for message in _drain(sqs, url):
        body = json.loads(message["Body"])
        attributes = message.get("MessageAttributes", {})
        if "requestPayload" in body and "requestContext" in body:
            target, event = function_arn(body["requestContext"]["functionArn"]), body["requestPayload"]
        elif "TARGET_ARN" in attributes:
            target, event = function_arn(attributes["TARGET_ARN"]["StringValue"]), body
        else:
            report.errors.append(
                f"{message['MessageId']}: neither a DLQ event nor an invocation record; kept"
            )
            continue
        try:
            renew(s3, event.get("detail"))
        except ClaimCheckGoneError as exc:
            report.errors.append(f"{message['MessageId']}: {exc}; kept")
            continue
        try:
            deliverer.to_function(target, event)
        except Exception as exc:
            report.errors.append(
                f"{message['MessageId']}: delivery to {target} failed ({type(exc).__name__}); kept"
            )
            continue
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        _count(report, kind)


def _count(report: Report, kind: str) -> None:
    if kind == "dlq":
        report.dead_lettered += 1
    else:
        report.failed_invocations += 1


def redrive(
    *,
    s3: Any,
    sqs: Any,
    events: Any,
    deliverer: Deliverer,
    bucket: str,
    dlq_url: str,
    failed_url: str,
    dry_run: bool = False,
) -> Report:
    report = Report()
    redrive_spill(s3, bucket, BusPublisher(events), dry_run=dry_run, report=report)
    redrive_queue(sqs, s3, dlq_url, deliverer, kind="dlq", dry_run=dry_run, report=report)
    redrive_queue(sqs, s3, failed_url, deliverer, kind="on-failure", dry_run=dry_run, report=report)
    return report


def main(args: argparse.Namespace) -> int:
    import boto3

    if args.local == bool(args.stack):
        print("error: say --local (the running local stack) or --stack NAME (a deployed stack)")
        return 2
    deliverer: Deliverer
    if args.local:
        from tools.running import aws_client, running_outputs, state_dir

        outputs = running_outputs()
        routes = json.loads((state_dir() / "routes.json").read_text())
        s3, sqs, events = aws_client(outputs, "s3"), aws_client(outputs, "sqs"), aws_client(outputs, "events")
        deliverer = LocalDeliverer(routes)
    else:
        cloudformation = boto3.client("cloudformation")
        stack = cloudformation.describe_stacks(StackName=args.stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        s3, sqs, events = boto3.client("s3"), boto3.client("sqs"), boto3.client("events")
        deliverer = LambdaDeliverer(boto3.client("lambda"))
    report = redrive(
        s3=s3,
        sqs=sqs,
        events=events,
        deliverer=deliverer,
        bucket=outputs["DataBucketName"],
        dlq_url=outputs["DeliveryDLQUrl"],
        failed_url=outputs["FailedEventsQueueUrl"],
        dry_run=args.dry_run,
    )
    print(("(dry run: nothing delivered)\n" if args.dry_run else "") + str(report))
    return 1 if report.errors else 0
