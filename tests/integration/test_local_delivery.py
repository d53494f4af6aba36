"""The local stack's EventBridge -> Lambda step: the event a function receives, asynchronous
invocation over Lambda's Invoke API, and the rule target's retry policy and DLQ when delivery fails."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from motostack.deploy import Clients, deploy
from motostack.lambda_targets import Forwarder, Routes, delivered_event, is_lambda_arn
from motostack.launcher import PARENT_VARIABLE, _die_with_parent, free_port
from motostack.runtime import AsyncInvoker, EventQueue, serve_invoke
from tests.conftest import ROOT, Invocations

ARN = "arn:aws:lambda:us-east-1:123456789012:function:local-ChatsFunction-ABC"
RULE = "arn:aws:events:us-east-1:123456789012:rule/bus/chats"
DLQ = "arn:aws:sqs:us-east-1:123456789012:local-DeliveryDLQ"
MOTO_EVENT = {
    "version": "0",
    "id": "1f0c",
    "detail-type": "chat.create",
    "source": "ebbot.webhooks",
    "account": "123456789012",
    "time": 1672531200.25,
    "region": "us-east-1",
    "resources": [],
    "detail": {"metadata": {"topic": "chat.create"}, "webhook": {"topic": "chat.create"}},
    "ingestion-time": 1672531200.3,
}


def wait_for(predicate: Callable[[], Any], timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# --- the payload ------------------------------------------------------------------------------------


def test_a_function_gets_the_event_as_eventbridge_sends_it() -> None:
    event = delivered_event(dict(MOTO_EVENT), {"Arn": ARN})
    assert event["time"] == "2023-01-01T00:00:00Z"
    assert "ingestion-time" not in event  # moto's own bookkeeping, not part of an EventBridge event
    assert {k: v for k, v in event.items() if k != "time"} == {
        k: v for k, v in MOTO_EVENT.items() if k not in ("time", "ingestion-time")
    }


def test_input_inputpath_and_input_transformer_shape_the_payload() -> None:
    assert delivered_event(dict(MOTO_EVENT), {"Arn": ARN, "Input": '{"fixed": 1}'}) == {"fixed": 1}
    assert delivered_event(dict(MOTO_EVENT), {"Arn": ARN, "InputPath": "$.detail.metadata"}) == {
        "topic": "chat.create"
    }
    transformed = delivered_event(
        dict(MOTO_EVENT),
        {
            "Arn": ARN,
            "InputTransformer": {
                "InputPathsMap": {"topic": "$.detail.metadata.topic"},
                "InputTemplate": '{"t": "<topic>"}',
            },
        },
    )
    assert transformed == {"t": "chat.create"}


def test_only_function_arns_count_as_lambda_targets() -> None:
    assert is_lambda_arn(ARN)
    assert is_lambda_arn(f"{ARN}:live")
    assert not is_lambda_arn(DLQ)
    assert not is_lambda_arn("arn:aws:lambda:us-east-1:123456789012:layer:deps:3")


def test_the_deployed_rules_deliver_aws_shaped_events(
    translated_template: dict[str, Any], lambda_invocations: Invocations
) -> None:
    with mock_aws():
        clients = Clients()
        deployment = deploy(clients, cfn=translated_template)
        sample = json.loads((ROOT / "events" / "eventbridge" / "chat.create.json").read_text())
        clients.events.put_events(
            Entries=[
                {
                    "Source": sample["source"],
                    "DetailType": "chat.create",
                    "Detail": json.dumps(sample["detail"]),
                    "EventBusName": deployment.outputs["EventBusName"],
                }
            ]
        )
        ((rule_arn, target, event),) = lambda_invocations.deliveries
    assert target["Arn"] == deployment.functions["ChatsFunction"].arn
    assert rule_arn.startswith("arn:aws:events:us-east-1:123456789012:rule/")
    assert set(event) == set(sample)  # the same keys as AWS's (and our sample's): account included
    assert event["detail"] == sample["detail"]
    assert time.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")


# --- delivery: the Forwarder against a function's Invoke API ---------------------------------------------


class Function:
    """A worker's Invoke API in this process, around a handler."""

    def __init__(self, handler: Callable[[dict[str, Any]], Any], on_failure_url: str | None = None) -> None:
        self.function = {
            "logical_id": "ChatsFunction",
            "name": "local-ChatsFunction-ABC",
            "arn": ARN,
            "handler": "unused",
            "max_retry_attempts": 2,
            "max_event_age_s": 21600,
            "on_failure_url": on_failure_url,
        }
        self._handler = handler

    def invoke(self, event: dict[str, Any]) -> Any:
        return self._handler(event)


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    servers: list[Any] = []

    def start(function: Function, sqs: Any = None) -> str:
        events = EventQueue(AsyncInvoker(function, sqs, retry_delay_s=0, report=lambda _: None))  # type: ignore[arg-type]
        server = serve_invoke(function, events, report=lambda _: None)  # type: ignore[arg-type]
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()


def routes_file(tmp_path: Path, routes: dict[str, str]) -> Routes:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(routes))
    return Routes(path)


def target(retries: int = 2) -> dict[str, Any]:
    return {
        "Id": "chats",
        "Arn": ARN,
        "RetryPolicy": {"MaximumRetryAttempts": retries, "MaximumEventAgeInSeconds": 3600},
        "DeadLetterConfig": {"Arn": DLQ},
    }


def test_matched_events_are_invoked_asynchronously_on_the_function(
    tmp_path: Path, serve: Callable[..., str]
) -> None:
    received: list[dict[str, Any]] = []
    url = serve(Function(received.append))
    dead: list[Any] = []
    forwarder = Forwarder(routes_file(tmp_path, {ARN: url}), lambda *a: dead.append(a), retry_delay_s=0.01)
    for n in range(5):
        forwarder.dispatch(RULE, target(), {**MOTO_EVENT, "id": str(n)})
    wait_for(lambda: len(received) == 5)
    assert sorted(e["id"] for e in received) == ["0", "1", "2", "3", "4"]
    wait_for(lambda: forwarder.stats() == {"pending": 0, "delivered": 5, "retried": 0, "dead_lettered": 0})
    assert dead == []
    status = json.loads(urllib.request.urlopen(f"{url}/status").read())  # noqa: S310 (loopback)
    assert status == {"queued": 0, "running": 0, "succeeded": 5, "failed": 0}


def test_an_unreachable_function_is_retried_as_the_target_says_then_dead_lettered(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    dead: list[tuple[str, str, dict[str, Any]]] = []
    forwarder = Forwarder(routes_file(tmp_path, {ARN: closed}), lambda *a: dead.append(a), retry_delay_s=0.01)
    forwarder.dispatch(RULE, target(retries=3), MOTO_EVENT)
    wait_for(lambda: dead)
    ((queue, body, attributes),) = dead
    assert queue == DLQ
    assert json.loads(body) == MOTO_EVENT  # the event itself, as EventBridge dead-letters it
    assert {k: v["StringValue"] for k, v in attributes.items()} == {
        "RULE_ARN": RULE,
        "TARGET_ARN": ARN,
        "ERROR_CODE": "SDK_CLIENT_ERROR",
        "ERROR_MESSAGE": "ConnectionRefusedError",
        "RETRY_ATTEMPTS": "3",
    }
    assert forwarder.stats() == {"pending": 0, "delivered": 0, "retried": 3, "dead_lettered": 1}


def test_a_function_missing_from_the_stack_is_resource_not_found(tmp_path: Path) -> None:
    dead: list[tuple[str, str, dict[str, Any]]] = []
    forwarder = Forwarder(routes_file(tmp_path, {}), lambda *a: dead.append(a), retry_delay_s=0.01)
    forwarder.dispatch(RULE, target(retries=0), MOTO_EVENT)
    wait_for(lambda: dead)
    assert dead[0][2]["ERROR_CODE"]["StringValue"] == "RESOURCE_NOT_FOUND"
    assert dead[0][2]["RETRY_ATTEMPTS"]["StringValue"] == "0"


def test_a_function_that_comes_up_late_still_gets_its_events(
    tmp_path: Path, serve: Callable[..., str]
) -> None:
    routes = tmp_path / "routes.json"
    dead: list[Any] = []
    forwarder = Forwarder(Routes(routes), lambda *a: dead.append(a), retry_delay_s=0.05, max_backoff_s=0.1)
    forwarder.dispatch(RULE, target(retries=50), MOTO_EVENT)
    time.sleep(0.2)  # retried meanwhile: no routes file yet
    received: list[dict[str, Any]] = []
    routes.write_text(json.dumps({ARN: serve(Function(received.append))}))
    wait_for(lambda: received)
    assert dead == []


def test_a_failing_handler_is_retried_then_recorded_on_the_on_failure_queue(
    tmp_path: Path, serve: Callable[..., str]
) -> None:
    attempts: list[str] = []

    def broken(event: dict[str, Any]) -> None:
        attempts.append(event["id"])
        raise RuntimeError("contains chat text that must not leak")

    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        failed = sqs.create_queue(QueueName="failed")["QueueUrl"]
        url = serve(Function(broken, on_failure_url=failed), sqs)
        dead: list[Any] = []
        forwarder = Forwarder(routes_file(tmp_path, {ARN: url}), lambda *a: dead.append(a))
        forwarder.dispatch(RULE, target(), MOTO_EVENT)
        (message,) = wait_for(lambda: sqs.receive_message(QueueUrl=failed).get("Messages"))
    record = json.loads(message["Body"])
    assert attempts == ["1f0c"] * 3  # 1 + MaximumRetryAttempts 2
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["functionArn"] == f"{ARN}:$LATEST"
    assert record["requestPayload"]["id"] == "1f0c"
    assert "chat text" not in message["Body"]
    assert dead == []  # delivery itself succeeded: the rule DLQ is not involved


def test_request_response_invocations_answer_with_the_result_or_the_error(serve: Callable[..., str]) -> None:
    def handler(event: dict[str, Any]) -> dict[str, Any]:
        if event.get("fail"):
            raise ValueError("no")
        return {"echo": event["n"]}

    url = serve(Function(handler))
    client = boto3.client("lambda", endpoint_url=url, region_name="us-east-1")
    ok = client.invoke(FunctionName=ARN, Payload=json.dumps({"n": 7}).encode())
    assert json.loads(ok["Payload"].read()) == {"echo": 7}
    bad = client.invoke(FunctionName=ARN, Payload=json.dumps({"fail": True}).encode())
    assert bad["FunctionError"] == "Unhandled"
    assert json.loads(bad["Payload"].read())["errorType"] == "ValueError"
    accepted = client.invoke(FunctionName=ARN, InvocationType="Event", Payload=b'{"n": 1}')
    assert accepted["StatusCode"] == 202


def test_an_event_that_waited_too_long_is_recorded_as_event_age_exceeded() -> None:
    sent: list[dict[str, Any]] = []

    class Sqs:
        def send_message(self, **kwargs: Any) -> None:
            sent.append(json.loads(kwargs["MessageBody"]))

    function = Function(lambda e: None, on_failure_url="queue-url")
    invoker = AsyncInvoker(function, Sqs(), report=lambda _: None)  # type: ignore[arg-type]
    assert invoker.handle(MOTO_EVENT, queued_s=21601) is False
    (record,) = sent
    assert record["requestContext"]["condition"] == "EventAgeExceeded"
    assert record["requestContext"]["approximateInvokeCount"] == 0
    assert "responsePayload" not in record


def test_the_function_queue_runs_events_concurrently_and_counts_them() -> None:
    release = threading.Event()
    running: list[int] = []

    def slow(event: dict[str, Any]) -> None:
        running.append(1)
        release.wait(5)

    function = Function(slow)
    events = EventQueue(AsyncInvoker(function, None, report=lambda _: None), concurrency=2)  # type: ignore[arg-type]
    for _ in range(3):
        events.put(MOTO_EVENT)
    wait_for(lambda: len(running) == 2)
    assert events.status() == {"queued": 1, "running": 2, "succeeded": 0, "failed": 0}
    release.set()
    wait_for(lambda: events.status()["succeeded"] == 3)


def test_a_child_whose_launcher_died_during_the_fork_leaves(tmp_path: Path) -> None:
    # The launcher can die between the fork and the child's PR_SET_PDEATHSIG: no signal then
    # comes, so the child checks that its parent is still the launcher and leaves otherwise.

    not_the_parent = os.getpid() + 1_000_000
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        preexec_fn=functools.partial(_die_with_parent, not_the_parent),
    )
    assert child.wait(timeout=20) == 1
    stays = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        preexec_fn=functools.partial(_die_with_parent, os.getpid()),
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            stays.wait(timeout=1)
    finally:
        stays.kill()
        stays.wait()


def test_a_worker_whose_launcher_is_gone_before_the_stack_is_up_leaves(tmp_path: Path) -> None:
    # A worker waits for the stack's state file; if its launcher died first, it must not wait on
    # (its parent is then another process than the launcher named in its environment).

    worker = subprocess.Popen(
        [sys.executable, "-m", "motostack.worker", str(tmp_path / "never-written.json"), "AnyFunction"],
        cwd=ROOT,
        env={**os.environ, PARENT_VARIABLE: str(os.getpid() + 1_000_000)},
    )
    assert worker.wait(timeout=30) == 0
