"""The template's rules, deployed in moto, send each topic to the right consumers (moto's matcher)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from motostack.deploy import Clients, Deployment, deploy
from tests.conftest import ROOT, TOPICS, Invocations

# Written by hand: which functions each topic must reach.
EXPECTED_ROUTES = {
    "chat.create": {"ChatsFunction"},
    "chat.update": {"ChatsFunction"},
    "chat.status.change": {"ChatsFunction"},
    "chat.user.update": {"ChatsFunction"},
    "chat.data.update": {"ChatsFunction"},
    "chat.user.message": {"MessagesFunction"},
    "chat.bot.message": {"MessagesFunction"},
    "chat.agent.message": {"MessagesFunction"},
    "chat.system.message": {"MessagesFunction"},
    "chat.message": {"MessagesFunction"},
    "chat.scenario.run": {"ScenariosFunction"},
    "chat.close": {"TranscriptsFunction"},
}


@pytest.fixture
def deployed(
    translated_template: dict[str, Any], lambda_invocations: Invocations
) -> Iterator[tuple[Clients, Deployment, Invocations]]:
    with mock_aws():
        clients = Clients()
        deployment = deploy(clients, cfn=translated_template)
        yield clients, deployment, lambda_invocations


def _reached(deployment: Deployment, invocations: Invocations) -> set[str]:
    by_arn = {f.arn: name for name, f in deployment.functions.items()}
    return {by_arn[target["Arn"]] for _, target, _ in invocations.deliveries}


@pytest.mark.parametrize("topic", TOPICS)
def test_each_topic_reaches_exactly_its_consumers(
    deployed: tuple[Clients, Deployment, Invocations], topic: str
) -> None:
    clients, deployment, invocations = deployed
    event = json.loads((ROOT / "events" / "eventbridge" / f"{topic}.json").read_text())
    clients.events.put_events(
        Entries=[
            {
                "Source": event["source"],
                "DetailType": topic,
                "Detail": json.dumps(event["detail"]),
                "EventBusName": deployment.outputs["EventBusName"],
            }
        ]
    )
    assert _reached(deployment, invocations) == EXPECTED_ROUTES[topic]


def test_unknown_topics_and_other_sources_reach_no_consumer(
    deployed: tuple[Clients, Deployment, Invocations],
) -> None:
    clients, deployment, invocations = deployed
    bus = deployment.outputs["EventBusName"]
    clients.events.put_events(
        Entries=[
            {
                "Source": "ebbot.webhooks",
                "DetailType": "chat.rating.given",
                "Detail": "{}",
                "EventBusName": bus,
            },
            {"Source": "someone.else", "DetailType": "chat.create", "Detail": "{}", "EventBusName": bus},
        ]
    )
    assert _reached(deployment, invocations) == set()


def test_every_rule_target_keeps_retry_policy_and_dead_letter_queue(
    deployed: tuple[Clients, Deployment, Invocations],
) -> None:
    clients, deployment, _ = deployed
    dlq_arn = clients.sqs.get_queue_attributes(
        QueueUrl=deployment.outputs["DeliveryDLQUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert deployment.targets
    for target in deployment.targets:
        assert target.dead_letter_arn == dlq_arn
        assert target.retry_attempts > 0
        (deployed_target,) = clients.events.list_targets_by_rule(
            Rule=target.rule_name, EventBusName=target.bus_name
        )["Targets"]
        assert deployed_target["DeadLetterConfig"] == {"Arn": dlq_arn}
        assert deployed_target["RetryPolicy"]["MaximumRetryAttempts"] == target.retry_attempts


def test_every_consumer_has_an_on_failure_destination(
    deployed: tuple[Clients, Deployment, Invocations],
) -> None:
    clients, deployment, _ = deployed
    failed_arn = clients.sqs.get_queue_attributes(
        QueueUrl=deployment.outputs["FailedEventsQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    consumers = {t.function for t in deployment.targets}
    assert consumers == {"ChatsFunction", "MessagesFunction", "ScenariosFunction", "TranscriptsFunction"}
    for name in consumers:
        function = deployment.functions[name]
        assert function.on_failure_arn == failed_arn
        assert 0 <= function.max_retry_attempts <= 2
