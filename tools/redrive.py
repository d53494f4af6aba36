"""Re-deliver what did not make it, once its cause is fixed. Safe to run twice.

- Spilled events (S3 `spill/`, written by the ingest function while the bus was unavailable) are
  put on the bus again.
- Dead-lettered events go back to the function that failed them, not onto the bus (where every
  rule would fire again): a rule DLQ message is the raw event, with the rule and target in its
  RULE_ARN and TARGET_ARN attributes; an on-failure record is Lambda's invocation record, with the
  function in requestContext.functionArn and the event in requestPayload.

Each object or message is handled on its own, and deleted only after its delivery succeeded; one
that cannot go (not JSON, not ours, its body expired, refused by the bus) is kept, made visible again
once the queue has drained, and reported with its reason. The exit status is 1 when anything was
kept. A queue drains with long polling (`--wait`, 2 seconds by default), so an empty queue takes one
wait to be known empty. Consumers are idempotent, so
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.storage.bucket import SPILL_PREFIX, SPILLED_BODY_FIELD
from shared.storage.bus import BusPublisher, BusUnavailableError
from shared.storage.claim_check import ClaimCheckGoneError, check_in_again, renew
from tools.cli import progress


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
    """What a redrive did: each item delivered, or kept with its reason. An item whose claim-checked
    body has expired is kept, and counted as expired too."""

    spilled: int = 0
    dead_lettered: int = 0
    failed_invocations: int = 0
    expired: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> int:
        return self.spilled + self.dead_lettered + self.failed_invocations

    @property
    def kept(self) -> int:
        return len(self.errors)

    def keep(self, where: str, reason: str, *, expired: bool = False) -> None:
        self.errors.append(f"{where}: {reason}; kept")
        self.expired += expired

    def __str__(self) -> str:
        lines = [
            f"spilled events put back on the bus:       {self.spilled}",
            f"rule DLQ events re-delivered:             {self.dead_lettered}",
            f"failed invocations re-delivered:          {self.failed_invocations}",
            f"delivered:                                {self.delivered}",
            f"kept, each with its reason below:         {self.kept}",
            f"  of which their claim-checked body has expired: {self.expired}",
        ]
        lines += [f"error: {e}" for e in self.errors]
        return "\n".join(lines)


class Kept(Exception):
    """An item that stays where it is, and why (never its content)."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.expired = reason, expired


def function_arn(arn: str) -> str:
    """The function's ARN without a version or alias qualifier ($LATEST in invocation records)."""
    parts = arn.split(":")
    return ":".join(parts[:7]) if len(parts) > 7 else arn


def _renew(s3: Any, detail: Any, copy: bytes | None = None) -> None:
    """Restart a claim-checked body's expiry, or put it back from `copy`; Kept when it cannot."""
    try:
        renew(s3, detail)
    except ClaimCheckGoneError:
        if copy is None or not check_in_again(s3, detail["webhookRef"], copy):
            raise Kept("its claim-checked body has expired", expired=True) from None
    except (KeyError, TypeError):
        raise Kept("its claim-check reference is incomplete") from None


def redrive_spill(s3: Any, bucket: str, publisher: BusPublisher, *, dry_run: bool, report: Report) -> None:
    """Every object under spill/ back onto the bus, each on its own: one that cannot go is kept and
    said, and the others still go."""
    paginator = s3.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=bucket, Prefix=SPILL_PREFIX)
    for obj in progress((o for page in pages for o in page.get("Contents", [])), "spill/"):
        key = obj["Key"]
        if dry_run:
            report.spilled += 1
            continue
        try:
            _redrive_spilled(s3, bucket, key, publisher)
        except Kept as kept:
            report.keep(f"s3://{bucket}/{key}", kept.reason, expired=kept.expired)
        except Exception as exc:  # any other failure stops this item only
            report.keep(f"s3://{bucket}/{key}", f"{type(exc).__name__}")
        else:
            report.spilled += 1


def _redrive_spilled(s3: Any, bucket: str, key: str, publisher: BusPublisher) -> None:
    try:
        spilled = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        entry = spilled["entry"]
        detail = json.loads(entry["Detail"])
        copy = spilled.get(SPILLED_BODY_FIELD)
        body = base64.b64decode(copy) if copy is not None else None
    except (ValueError, KeyError, TypeError):
        raise Kept("not a spill object (truncated, or not one this stack wrote)") from None
    _renew(s3, detail, body)
    try:
        (result,) = publisher.put([entry])
    except BusUnavailableError as exc:
        raise Kept(f"the bus did not take it ({exc})") from None
    if not result.published:
        raise Kept(f"the bus refused it ({result.error_code})")
    s3.delete_object(Bucket=bucket, Key=key)


def _drain(sqs: Any, url: str, wait_s: int) -> Iterator[dict[str, Any]]:
    """Every message in the queue, in batches, each invisible until it is deleted or let go. Long
    polling (`wait_s` of 1 or more) asks every SQS server, so an empty answer means an empty queue;
    the drain ends there, after one wait of `wait_s` seconds."""
    while True:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=300,
            WaitTimeSeconds=wait_s,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return
        yield from messages


def redrive_queue(
    sqs: Any,
    s3: Any,
    url: str,
    deliverer: Deliverer,
    *,
    kind: str,
    dry_run: bool,
    report: Report,
    wait_s: int = 0,
) -> None:
    """kind: "dlq" (raw events with RULE_ARN/TARGET_ARN) or "on-failure" (Lambda invocation records).
    Each message on its own: delivered and deleted, or kept; the kept ones stay invisible while the
    queue drains (so the drain ends) and are made visible again as soon as it has."""
    if dry_run:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"
        ]
        for _ in range(int(attrs["ApproximateNumberOfMessages"])):
            _count(report, kind)
        return
    kept: list[str] = []
    try:
        for message in progress(_drain(sqs, url, wait_s), kind):
            try:
                _redrive_message(s3, message, deliverer)
            except Kept as exc:
                report.keep(message["MessageId"], exc.reason, expired=exc.expired)
                kept.append(message["ReceiptHandle"])
            except Exception as exc:  # any other failure stops this message only
                report.keep(message["MessageId"], type(exc).__name__)
                kept.append(message["ReceiptHandle"])
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                _count(report, kind)
    finally:
        for receipt in kept:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)


def _redrive_message(s3: Any, message: dict[str, Any], deliverer: Deliverer) -> None:
    try:
        body = json.loads(message["Body"])
    except ValueError:
        raise Kept("its body is not JSON") from None
    attributes = message.get("MessageAttributes", {})
    if isinstance(body, dict) and "requestPayload" in body and isinstance(body.get("requestContext"), dict):
        target, event = function_arn(str(body["requestContext"].get("functionArn"))), body["requestPayload"]
    elif isinstance(body, dict) and "TARGET_ARN" in attributes:
        target, event = function_arn(attributes["TARGET_ARN"]["StringValue"]), body
    else:
        raise Kept("neither a DLQ event nor an invocation record")
    _renew(s3, event.get("detail") if isinstance(event, dict) else None)
    try:
        deliverer.to_function(target, event)
    except Exception as exc:
        raise Kept(f"delivery to {target} failed ({type(exc).__name__})") from None


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
    wait_s: int = 0,
) -> Report:
    """Spilled events, then both dead-letter queues; `wait_s` is each queue's long poll."""
    report = Report()
    redrive_spill(s3, bucket, BusPublisher(events), dry_run=dry_run, report=report)
    for url, kind in ((dlq_url, "dlq"), (failed_url, "on-failure")):
        redrive_queue(sqs, s3, url, deliverer, kind=kind, dry_run=dry_run, report=report, wait_s=wait_s)
    return report


def main(args: argparse.Namespace) -> int:
    """The `redrive` command: exit 0 when everything went, 1 when something was kept (tools/cli.py)."""

    from tools.cli import DONE, NOT_ALL_DONE
    from tools.running import state_dir, target_clients

    deliverer: Deliverer
    if args.local:
        outputs, (s3, sqs, events) = target_clients(args, ("s3", "sqs", "events"))
        deliverer = LocalDeliverer(json.loads((state_dir() / "routes.json").read_text()))
    else:
        outputs, (s3, sqs, events, awslambda) = target_clients(args, ("s3", "sqs", "events", "lambda"))
        deliverer = LambdaDeliverer(awslambda)
    report = redrive(
        s3=s3,
        sqs=sqs,
        events=events,
        deliverer=deliverer,
        bucket=outputs["DataBucketName"],
        dlq_url=outputs["DeliveryDLQUrl"],
        failed_url=outputs["FailedEventsQueueUrl"],
        dry_run=args.dry_run,
        # moto (the local stack) answers every receive exactly, and a wait there would hold it.
        wait_s=0 if args.local else args.wait,
    )
    print(("(dry run: nothing delivered)\n" if args.dry_run else "") + str(report))
    return NOT_ALL_DONE if report.errors else DONE
