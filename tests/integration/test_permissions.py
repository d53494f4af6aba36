"""Every AWS call a function makes is one its role allows.

moto does not enforce IAM, so a policy that lacks an action passes every other test and fails on
AWS with AccessDenied. Here each function runs against the stack deployed in moto (its own
environment from the template), on the samples and on its rare paths (claim checks, quarantine,
oversize parts, a transcript replaced or redelivered); every call is recorded (action and
resource, as IAM names them) and checked against the statements of the function's role in the
translated template, its intrinsic functions resolved to the deployed resources.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from motostack.deploy import Clients, Deployment, deploy
from shared.storage.bucket import S3_NOT_FOUND
from tests.conftest import ROOT, TOPICS, Invocations, sample_bytes
from tests.lambda_context import FakeLambdaContext

REGION, ACCOUNT = "us-east-1", "123456789012"
TOKEN = "t" * 32
# IAM's names for the S3 operations whose action is not their own name.
S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
}


class Calls:
    """(action, resource) of every call made by clients of boto3's default session, and the S3
    reads that found no object."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []
        self.not_found: list[tuple[str, str]] = []

    def __call__(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service = model.service_model.signing_name
        operation = S3_ACTIONS.get(model.name, model.name) if service == "s3" else model.name
        context["permissions.call"] = call = (f"{service}:{operation}", _resource(service, params))
        self.made.append(call)

    def after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        call = context.get("permissions.call")
        missing = parsed.get("Error", {}).get("Code") in S3_NOT_FOUND
        if call is not None and call[0] == "s3:GetObject" and missing:
            self.not_found.append(call)


def _resource(service: str, params: dict[str, Any]) -> str:
    if service == "dynamodb":
        table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}"
        return f"{table}/index/{params['IndexName']}" if "IndexName" in params else table
    if service == "s3":
        return f"arn:aws:s3:::{params['Bucket']}" + (f"/{params['Key']}" if "Key" in params else "")
    if service == "events":
        bus = params["Entries"][0].get("EventBusName", "default")
        return bus if bus.startswith("arn:") else f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"
    if service == "secretsmanager":
        return str(params["SecretId"])
    raise AssertionError(f"a call to {service} this test does not know how to name")


class Resolver:
    """The intrinsic functions the template's policies use, resolved to the deployed resources."""

    def __init__(self, deployment: Deployment) -> None:
        self._deployment = deployment
        self._types = {k: v["Type"] for k, v in deployment.template["Resources"].items()}

    def arn(self, logical_id: str) -> str:
        # moto leaves some physical ids empty (the event bus): the stack's `<id>Name` output then.
        physical = self._deployment.physical.get(logical_id) or self._deployment.outputs[f"{logical_id}Name"]
        kind = self._types[logical_id]
        if physical.startswith("arn:"):
            return physical
        return {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{physical}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{physical}",
            "AWS::Events::EventBus": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{physical}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{physical.rsplit('/', 1)[-1]}",
            "AWS::SecretsManager::Secret": physical,
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{physical}",
        }[kind]

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(item) for item in value]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            return self._deployment.physical[value["Ref"]]
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            assert attribute == "Arn", value
            return self.arn(logical_id)
        if "Fn::Sub" in value:
            text = value["Fn::Sub"]
            assert isinstance(text, str), value
            for logical_id in self._types:
                placeholder = f"${{{logical_id}.Arn}}"
                if placeholder in text:
                    text = text.replace(placeholder, self.arn(logical_id))
            for name, known in (
                ("AWS::Region", REGION),
                ("AWS::AccountId", ACCOUNT),
                ("AWS::Partition", "aws"),
            ):
                text = text.replace(f"${{{name}}}", known)
            assert "${" not in text, text
            return text
        return {k: self(v) for k, v in value.items()}


def allowed_statements(deployment: Deployment, function: str) -> list[dict[str, Any]]:
    """The Allow statements of the function's role, as the translated template gives them."""
    resolve = Resolver(deployment)
    role = deployment.template["Resources"][f"{function}Role"]["Properties"]
    statements = [
        statement
        for policy in role.get("Policies", [])
        for statement in resolve(policy["PolicyDocument"])["Statement"]
        if statement["Effect"] == "Allow"
    ]
    return statements


def is_allowed(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    def listed(value: str | list[str]) -> list[str]:
        return [value] if isinstance(value, str) else value

    return any(
        any(fnmatch.fnmatchcase(action, a) for a in listed(s["Action"]))
        and any(fnmatch.fnmatchcase(resource, r) for r in listed(s.get("Resource", [])))
        for s in statements
    )


@dataclass
class Stack:
    deployment: Deployment
    calls: Calls  # what the functions called
    own: Clients  # the test's own calls, not recorded


@pytest.fixture
def stack(translated_template: dict[str, Any], lambda_invocations: Invocations) -> Iterator[Stack]:
    """The template deployed in moto (rule deliveries recorded, not run), and a recorder on boto3's
    default session, whose clients are the ones the functions make."""
    from ingest import app
    from shared.runtime import consumer

    with mock_aws():
        own = Clients()
        deployment = deploy(own, cfn=translated_template, secret_values={"TokenSecret": TOKEN})
        calls = Calls()
        boto3.setup_default_session(region_name=REGION)
        boto3.DEFAULT_SESSION.events.register("before-parameter-build", calls)
        boto3.DEFAULT_SESSION.events.register("after-call", calls.after)
        try:
            yield Stack(deployment, calls, own)
        finally:
            boto3.DEFAULT_SESSION = None
            app.service.cache_clear()
            consumer.forget_clients()


def run(deployment: Deployment, function: str, events: list[dict[str, Any]], **environment: str) -> None:
    """Invoke the function's handler on each event with the environment the template gives it."""
    saved = dict(os.environ)
    os.environ.update(deployment.functions[function].environment, **environment)
    try:
        module_name, handler_name = deployment.functions[function].handler.rsplit(".", 1)
        module = importlib.import_module(module_name)
        if function == "IngestFunction":
            module.service.cache_clear()
        else:
            from shared.runtime import consumer

            consumer.forget_clients()
        for event in events:
            getattr(module, handler_name)(event, FakeLambdaContext())
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _sample(kind: str, topic: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / kind / f"{topic}.json").read_text())
    return event


def _api(body: bytes | str) -> dict[str, Any]:
    event = _sample("apigw", "chat.user.message")
    event["pathParameters"] = {}
    event["headers"] = {**event["headers"], "authorization": f"Bearer {TOKEN}"}
    event["body"] = body.decode() if isinstance(body, bytes) else body
    return event


def check(deployment: Deployment, calls: Calls, function: str) -> set[str]:
    """Every recorded call allowed; returns the actions seen, so a test can say which it covered."""
    statements = allowed_statements(deployment, function)
    refused = [(a, r) for a, r in calls.made if not is_allowed(statements, a, r)]
    assert refused == [], f"{function} makes calls its role does not allow: {refused}"
    # S3 answers a read of a missing key with 404 only to a role that may list the bucket; to any
    # other, 403 AccessDenied, so code waiting for the 404 fails on AWS (moto always says 404).
    blind = [r for _, r in calls.not_found if not is_allowed(statements, "s3:ListBucket", r.split("/")[0])]
    assert blind == [], f"{function} reads missing keys, which AWS answers with 403 for its role: {blind}"
    return {action for action, _ in calls.made}


def test_ingest_calls_are_allowed(stack: Stack) -> None:
    deployment, calls = stack.deployment, stack.calls
    bodies = [sample_bytes(topic) for topic in TOPICS]
    # Accepted (every sample), claim-checked (a small threshold), quarantined (not JSON).
    run(deployment, "IngestFunction", [_api(body) for body in bodies])
    run(deployment, "IngestFunction", [_api(bodies[0])], CLAIM_CHECK_THRESHOLD_BYTES="100")
    run(deployment, "IngestFunction", [_api("{not json")])
    assert check(deployment, calls, "IngestFunction") == {
        "secretsmanager:GetSecretValue",
        "events:PutEvents",
        "s3:PutObject",
    }
    written = {resource.split("/")[1] for action, resource in calls.made if action == "s3:PutObject"}
    assert written == {"claim-check", "quarantine"}


def test_ingest_spill_is_allowed(stack: Stack) -> None:
    deployment, calls = stack.deployment, stack.calls
    stack.own.events.delete_event_bus(Name=deployment.outputs["EventBusName"])  # the bus is gone
    calls.made.clear()
    run(deployment, "IngestFunction", [_api(sample_bytes("chat.create"))])
    assert any(a == "s3:PutObject" and "/spill/" in r for a, r in calls.made)  # it spilled
    check(deployment, calls, "IngestFunction")


CONSUMER_TOPICS = {
    "ChatsFunction": [
        "chat.create",
        "chat.update",
        "chat.status.change",
        "chat.user.update",
        "chat.data.update",
    ],
    "MessagesFunction": [t for t in TOPICS if t.endswith("message")],
    "ScenariosFunction": ["chat.scenario.run"],
}


@pytest.mark.parametrize("function", sorted(CONSUMER_TOPICS))
def test_consumer_calls_are_allowed(stack: Stack, function: str) -> None:
    deployment, calls = stack.deployment, stack.calls
    events = [_sample("eventbridge", topic) for topic in CONSUMER_TOPICS[function]]
    run(deployment, function, [*events, _claim_checked(stack, events[0])])
    check(deployment, calls, function)
    assert ("s3:GetObject", "claim-check") in {
        (a, r.split("/")[1]) for a, r in calls.made if a.startswith("s3:")
    }
    # and the privacy key, for the tombstone check (shared.runtime.consumer.privacy_key)
    assert ("secretsmanager:GetSecretValue", deployment.physical["PrivacyKeySecret"]) in calls.made


def test_chat_state_too_large_for_its_item_is_allowed(stack: Stack) -> None:
    deployment, calls = stack.deployment, stack.calls
    event = _sample("eventbridge", "chat.data.update")
    event["detail"]["webhook"]["data"]["blob"] = "x" * 200_000  # over the item's inline limit
    later = copy.deepcopy(event)
    later["detail"]["metadata"]["occurredAtNs"] = str(int(event["detail"]["metadata"]["occurredAtNs"]) + 1)
    run(deployment, "ChatsFunction", [event, later])  # the second reads the state back from S3
    check(deployment, calls, "ChatsFunction")
    assert {(a, r.split("/")[1]) for a, r in calls.made if a.startswith("s3:")} == {
        ("s3:PutObject", "oversize"),
        ("s3:GetObject", "oversize"),
    }


def test_transcript_calls_are_allowed(stack: Stack) -> None:
    deployment, calls = stack.deployment, stack.calls
    close = _sample("eventbridge", "chat.close")
    later = copy.deepcopy(close)
    later["detail"]["webhook"]["timestamp"] += 60_000
    later["detail"]["metadata"]["occurredAtNs"] = str(
        int(close["detail"]["metadata"]["occurredAtNs"]) + 60 * 10**9
    )
    later["detail"]["metadata"]["bodySha256"] = hashlib.sha256(b"later").hexdigest()
    # New (messages filled in), redelivered (HEAD), replaced by a later close (If-Match), claim-checked.
    run(deployment, "TranscriptsFunction", [close, close, later, _claim_checked(stack, close)])
    assert check(deployment, calls, "TranscriptsFunction") == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "s3:PutObject",
        "s3:GetObject",
        "secretsmanager:GetSecretValue",
    }


def _claim_checked(stack: Stack, event: dict[str, Any]) -> dict[str, Any]:
    """The event with its body moved to S3 under claim-check/, as ingest does for large bodies."""
    raw = json.dumps(event["detail"]["webhook"]).encode()
    bucket, key = stack.deployment.outputs["DataBucketName"], "claim-check/dt=2023-01-01/permissions.json"
    stack.own.s3.put_object(Bucket=bucket, Key=key, Body=raw)
    moved = copy.deepcopy(event)
    moved["detail"]["webhook"] = None
    moved["detail"]["webhookRef"] = {
        "bucket": bucket,
        "key": key,
        "size": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    return moved


def test_the_check_refuses_what_a_role_does_not_list(stack: Stack) -> None:
    # The checker itself: a call outside the statements is refused, a listed one is not.
    deployment = stack.deployment
    statements = allowed_statements(deployment, "MessagesFunction")
    table = Resolver(deployment).arn("Table")
    bucket = Resolver(deployment).arn("DataBucket")
    assert is_allowed(statements, "dynamodb:UpdateItem", table)
    assert not is_allowed(statements, "dynamodb:DeleteItem", table)
    assert not is_allowed(statements, "s3:GetObject", f"{bucket}/transcripts/x.json")
    assert is_allowed(statements, "s3:GetObject", f"{bucket}/claim-check/x.json")
