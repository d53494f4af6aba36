"""The README's worked trigger (examples/low-rating-alert): its rule under moto's matcher, its function."""

from __future__ import annotations

import copy
import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.conftest import ROOT
from tools.template import load_template

EXAMPLE = ROOT / "examples" / "low-rating-alert"
BUS = "ebbot-webhooks-dev-bus"


def rule_pattern() -> dict[str, Any]:
    """The rule's pattern as written in the example template, with the main stack's export it
    imports (its EventSource output) filled in as CloudFormation would: the main template's default."""
    template = load_template(EXAMPLE / "template.yaml")
    pattern = template["Resources"]["LowRatingFunction"]["Properties"]["Events"]["LowRating"]["Properties"][
        "Pattern"
    ]
    main = load_template()
    export = main["Outputs"]["EventSource"]
    assert export["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-EventSource"}
    assert export["Value"] == {"Ref": "EventSource"}
    imported = {"Fn::ImportValue": {"Fn::Sub": "${WebhooksStackName}-EventSource"}}
    assert pattern["source"] == [imported]
    result: dict[str, Any] = {**pattern, "source": [main["Parameters"]["EventSource"]["Default"]]}
    return result


def close_event(rating: int | None, handled_by: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "eventbridge" / "chat.close.json").read_text())
    event["detail"]["metadata"]["rating"] = rating
    event["detail"]["metadata"]["handledBy"] = handled_by
    return event


@pytest.fixture
def bus() -> Iterator[tuple[Any, Any, str]]:
    with mock_aws():
        events, sqs = boto3.client("events"), boto3.client("sqs")
        events.create_event_bus(Name=BUS)
        url = sqs.create_queue(QueueName="trigger")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="low-rating", EventBusName=BUS, EventPattern=json.dumps(rule_pattern()))
        events.put_targets(Rule="low-rating", EventBusName=BUS, Targets=[{"Id": "t", "Arn": arn}])
        yield events, sqs, url


def _put(events: Any, event: dict[str, Any]) -> None:
    entry = {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Detail": json.dumps(event["detail"]),
    }
    events.put_events(Entries=[{**entry, "EventBusName": BUS}])


def _received(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(m["Body"]) for m in messages]


@pytest.mark.parametrize(("rating", "fires"), [(1, True), (2, True), (3, False), (5, False), (None, False)])
def test_the_rule_fires_only_for_low_ratings(
    bus: tuple[Any, Any, str], rating: int | None, fires: bool
) -> None:
    events, sqs, url = bus
    _put(events, close_event(rating))
    assert len(_received(sqs, url)) == (1 if fires else 0)


def test_other_topics_never_fire(bus: tuple[Any, Any, str]) -> None:
    events, sqs, url = bus
    update = close_event(1)
    update["detail-type"] = "chat.update"
    _put(events, update)
    assert _received(sqs, url) == []


def test_a_replay_from_the_archive_does_not_fire_the_notification_again(bus: tuple[Any, Any, str]) -> None:
    events, sqs, url = bus
    archive_arn = events.create_archive(
        ArchiveName="all", EventSourceArn=events.describe_event_bus(Name=BUS)["Arn"]
    )["ArchiveArn"]
    _put(events, close_event(1))
    assert len(_received(sqs, url)) == 1
    bus_arn = events.describe_event_bus(Name=BUS)["Arn"]
    rule_arn = events.describe_rule(Name="low-rating", EventBusName=BUS)["Arn"]
    events.start_replay(
        ReplayName="backfill",
        EventSourceArn=archive_arn,
        EventStartTime=0,
        EventEndTime=time.time() + 60,
        Destination={"Arn": bus_arn, "FilterArns": [rule_arn]},
    )
    # replay-name exists:false keeps the notice from going out twice...
    assert _received(sqs, url) == []
    # ...while a rule without that filter (a backfill target) does receive the replayed event.
    open_pattern = {k: v for k, v in rule_pattern().items() if k != "replay-name"}
    events.put_rule(Name="low-rating", EventBusName=BUS, EventPattern=json.dumps(open_pattern))
    events.start_replay(
        ReplayName="backfill-2",
        EventSourceArn=archive_arn,
        EventStartTime=0,
        EventEndTime=time.time() + 60,
        Destination={"Arn": bus_arn, "FilterArns": [rule_arn]},
    )
    replayed = _received(sqs, url)
    assert len(replayed) == 1
    assert replayed[0]["replay-name"] == "backfill-2"


def _load_example_app() -> Any:
    spec = importlib.util.spec_from_file_location("low_rating_app", EXAMPLE / "src" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_function_publishes_ids_and_rating_never_content(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _load_example_app()
    topic = "arn:aws:sns:us-east-1:123456789012:notices"
    monkeypatch.setenv("TOPIC_ARN", topic)
    event = close_event(1)
    sns = boto3.client("sns")
    expected_message = json.dumps(
        {
            "botId": "ebq7k3m9x2p4n8r1t5v6w0y3z7c2d4",
            "chatId": "1672531200.420.50c9b6c7-96b6-4794-b09f-3ac7ae27c598",
            "rating": 1,
            "closedAt": "2023-01-01T00:00:21.000000Z",
        }
    )
    with Stubber(sns) as stub:
        stub.add_response(
            "publish",
            {"MessageId": "m-1"},
            {"TopicArn": topic, "Subject": "Ebbot chat rated 1", "Message": expected_message},
        )
        assert app.lambda_handler(copy.deepcopy(event), None, sns=sns) == {"messageId": "m-1"}
        stub.assert_no_pending_responses()
    assert "How did we do" not in expected_message


def test_example_template_passes_cfn_lint() -> None:
    import os
    import subprocess

    tool = ROOT / ".venv-sam" / "bin" / "cfn-lint"
    assert tool.exists(), "run `make setup` for the SAM CLI venv"
    result = subprocess.run(
        [str(tool), str(Path("examples") / "low-rating-alert" / "template.yaml")],
        cwd=ROOT,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
