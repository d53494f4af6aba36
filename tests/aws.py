"""Helpers for tests that run against moto: the ingest resources and a capture queue on the bus."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

BUS = "ebbot-webhooks-test-bus"
BUCKET = "ebbot-webhooks-test-data"
SECRET = "ebbot-webhooks-test-token"
TOKEN = "test-token-0123456789abcdef"
SECOND_TOKEN = "rotated-token-fedcba9876543210"
SOURCE = "ebbot.webhooks"


@dataclass
class IngestStack:
    """Bus, bucket, token secret and a rule that copies every event on the bus to an SQS queue."""

    events: Any
    s3: Any
    sqs: Any
    secrets: Any
    capture_queue_url: str

    def env(self) -> dict[str, str]:
        return {
            "EVENT_BUS_NAME": BUS,
            "BUCKET_NAME": BUCKET,
            "TOKEN_SECRET_ID": SECRET,
            "EVENT_SOURCE": SOURCE,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "EbbotWebhooks/test",
            "POWERTOOLS_SERVICE_NAME": "ingest",
        }

    def captured(self) -> list[dict[str, Any]]:
        """Every event delivered to the capture queue so far, drained."""
        out: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.capture_queue_url, MaxNumberOfMessages=10)
            messages = batch.get("Messages", [])
            if not messages:
                return out
            for message in messages:
                out.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.capture_queue_url, ReceiptHandle=message["ReceiptHandle"]
                )

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return {o["Key"]: self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listing}

    def snapshot(self) -> dict[str, Any]:
        """Everything the ingest function could have written: objects, and events on the bus."""
        return {"objects": self.objects(), "events": self.captured()}


def create_ingest_stack(*, tokens: dict[str, str] | None = None) -> IngestStack:
    events = boto3.client("events")
    s3 = boto3.client("s3")
    sqs = boto3.client("sqs")
    secrets = boto3.client("secretsmanager")
    events.create_event_bus(Name=BUS)
    s3.create_bucket(Bucket=BUCKET)
    secrets.create_secret(Name=SECRET, SecretString=json.dumps(tokens or {"token": TOKEN}))
    queue_url = sqs.create_queue(QueueName="capture")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(Name="capture-all", EventBusName=BUS, EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule="capture-all", EventBusName=BUS, Targets=[{"Id": "capture", "Arn": queue_arn}])
    return IngestStack(events=events, s3=s3, sqs=sqs, secrets=secrets, capture_queue_url=queue_url)


TABLE = "ebbot-webhooks-test-table"


def create_table_from_template(name: str = TABLE) -> Any:
    """The table exactly as template.yaml declares it (keys, GSI, TTL), in moto."""
    from tools.template import load_template

    props = load_template()["Resources"]["Table"]["Properties"]
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName=name,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
        SSESpecification={"Enabled": props["SSESpecification"]["SSEEnabled"]},
    )
    ttl = props["TimeToLiveSpecification"]
    ddb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": ttl["Enabled"], "AttributeName": ttl["AttributeName"]},
    )
    return ddb


def table_items(ddb: Any, name: str = TABLE) -> list[dict[str, Any]]:
    """Every item, deserialised, sorted by key."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    items: list[dict[str, Any]] = []
    for page in ddb.get_paginator("scan").paginate(TableName=name):
        items.extend({k: deserializer.deserialize(v) for k, v in item.items()} for item in page["Items"])
    return sorted(items, key=lambda i: (i["pk"], i["sk"]))


def versioned_bucket(name: str = BUCKET) -> Any:
    """An S3 client and the data bucket, versioned as template.yaml's (moto)."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return s3
