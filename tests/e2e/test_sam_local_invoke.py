"""`sam local invoke` with the samples, as SAM CLI really resolves it, against the local stack.

There is no Docker here, so the container is stood in for by a fresh interpreter that gets exactly
the environment SAM CLI's own code resolves (`LocalLambdaRunner._make_env_vars`, run from the SAM
CLI's venv by tests/samcli_probe.py) from template.yaml and the `.local/env.json` that `make run`
writes, for `--region us-east-1`; it then runs the function's handler on the sample, as the
container's runtime would. What this cannot show is Docker's networking: with `--docker-network
host` a Linux container shares this loopback, which is what the stand-in uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from tests.conftest import ROOT, samcli_probe
from tools.running import aws_client as _aws
from tools.running import wait_until_drained
from tools.template import load_template

REGION = "us-east-1"  # the local stack's; `sam local invoke --region` sets AWS_REGION from it
# The container's runtime, in short: import the handler, call it with the event and a context.
RUNTIME = """
import importlib, json, os, sys
from tests.lambda_context import FakeLambdaContext
module, name = os.environ["AWS_LAMBDA_FUNCTION_HANDLER"].rsplit(".", 1)
handler = getattr(importlib.import_module(module), name)
event = json.load(open(sys.argv[1]))
context = FakeLambdaContext(function_name=os.environ["AWS_LAMBDA_FUNCTION_NAME"])
print("RESULT " + json.dumps(handler(event, context)))
"""


def samples_of(function: dict[str, Any]) -> list[Path]:
    """The sample events in events/ for a function, by what its template events subscribe it to."""
    found: list[Path] = []
    for event in function["Properties"].get("Events", {}).values():
        if event["Type"] == "HttpApi":
            found.extend(sorted((ROOT / "events" / "apigw").glob("*.json")))
        elif event["Type"] == "EventBridgeRule":
            topics = event["Properties"]["Pattern"]["detail-type"]
            found.extend(ROOT / "events" / "eventbridge" / f"{topic}.json" for topic in topics)
    return sorted(set(found))


def invoke(environment: dict[str, str], event: Path) -> dict[str, Any]:
    """One `sam local invoke`: a fresh interpreter with exactly this environment."""
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME, str(event)],
        cwd=ROOT / "functions",  # the container's /var/task
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{event.name}: {result.stderr[-2000:]}"
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    answer: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return answer


@pytest.fixture(scope="module")
def resolved(plain_stack: dict[str, Any]) -> dict[str, Any]:
    env_file = plain_stack["dir"] / "state" / "env.json"
    return {
        "file": json.loads(env_file.read_text()),
        "functions": samcli_probe("env", str(ROOT / "template.yaml"), str(env_file), REGION),
    }


def test_make_run_writes_env_files_for_linux_and_docker_desktop(plain_stack: dict[str, Any]) -> None:
    state = plain_stack["dir"] / "state"
    port = plain_stack["env"]["EBBOT_LOCAL_AWS_PORT"]
    linux = json.loads((state / "env.json").read_text())
    desktop = json.loads((state / "env.docker-desktop.json").read_text())
    functions = {
        n for n, r in load_template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    }
    assert set(linux) == set(desktop) == functions
    for name in functions:
        assert linux[name]["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert desktop[name]["AWS_ENDPOINT_URL"] == f"http://host.docker.internal:{port}"
        assert {k: v for k, v in linux[name].items() if k != "AWS_ENDPOINT_URL"} == {
            k: v for k, v in desktop[name].items() if k != "AWS_ENDPOINT_URL"
        }


def test_sam_passes_every_variable_of_the_env_file_and_the_real_resource_names(
    plain_stack: dict[str, Any], resolved: dict[str, Any]
) -> None:
    outputs = plain_stack["outputs"]
    for name, variables in resolved["file"].items():
        environment = resolved["functions"][name]["environment"]
        # Only what the template declares reaches the container: every variable of the file does.
        assert {k: environment.get(k) for k in variables} == variables, name
        assert environment["AWS_REGION"] == REGION
        assert environment["TABLE_NAME"] == outputs["TableName"]  # not the logical id "Table"
        assert environment["BUCKET_NAME"] == outputs["DataBucketName"]
    ingest = resolved["functions"]["IngestFunction"]["environment"]
    assert ingest["EVENT_BUS_NAME"] == outputs["EventBusName"]
    assert ingest["TOKEN_SECRET_ID"].startswith("arn:aws:secretsmanager:us-east-1:")


def test_every_function_runs_every_sample_against_the_local_stack(
    plain_stack: dict[str, Any], resolved: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = plain_stack["outputs"]
    functions = {
        n: r for n, r in load_template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    }
    runs = {
        name: [(sample, resolved["functions"][name]) for sample in samples_of(function)]
        for name, function in functions.items()
    }
    assert {name: len(samples) for name, samples in runs.items()} == {
        "IngestFunction": 12,
        "ChatsFunction": 5,
        "MessagesFunction": 5,
        "ScenariosFunction": 1,
        "TranscriptsFunction": 1,
    }
    for function in functions:
        assert resolved["functions"][function]["handler"] == functions[function]["Properties"]["Handler"]

    # GIVEN an empty stack, WHEN each consumer is invoked on each of its samples
    consumers = [(n, s, f) for n, samples in runs.items() if n != "IngestFunction" for s, f in samples]
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda run: invoke(run[2]["environment"], run[1]), consumers))
    # THEN each wrote what its sample carries
    for (name, sample, _), answer in zip(consumers, answers, strict=True):
        if name == "TranscriptsFunction":
            assert answer["objectWritten"] is True, sample.name
        else:
            assert answer["written"] is True, (name, sample.name)
    stored = _items(outputs)
    (chat,) = [i for i in stored if i["sk"] == "CHAT"]
    assert (chat["status"], chat["handledBy"]) == ("chat_closed", "agent")
    message_ids = {i["messageId"] for i in stored if i["sk"].startswith("MSG#")}
    for sample in (ROOT / "events" / "webhooks").glob("chat*.message.json"):
        assert json.loads(sample.read_text())["data"]["id"] in message_ids
    assert [i["scenarioName"] for i in stored if i["sk"].startswith("RUN#")] == ["Order status"]
    s3 = _aws(outputs, "s3")
    s3.head_object(Bucket=outputs["DataBucketName"], Key=chat["transcriptKey"])

    # WHEN the ingest function is invoked on each API Gateway sample
    ingest = runs["IngestFunction"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(lambda run: invoke(run[1]["environment"], run[0]), ingest))
    # THEN every one is on the bus (not spilled), and the pipeline stores them again without a change
    for (sample, _), response in zip(ingest, responses, strict=True):
        assert (response["statusCode"], json.loads(response["body"])["status"]) == (202, "accepted"), sample
    monkeypatch.setenv("EBBOT_LOCAL_DIR", plain_stack["env"]["EBBOT_LOCAL_DIR"])
    wait_until_drained(outputs)
    after = _items(outputs)
    assert [(i["pk"], i["sk"]) for i in after] == [(i["pk"], i["sk"]) for i in stored]
    assert s3.list_objects_v2(Bucket=outputs["DataBucketName"], Prefix="spill/").get("KeyCount", 0) == 0
    sqs = _aws(outputs, "sqs")
    for queue in ("DeliveryDLQUrl", "FailedEventsQueueUrl"):
        attributes = sqs.get_queue_attributes(QueueUrl=outputs[queue], AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0", queue


def _items(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    deserializer = TypeDeserializer()
    pages = _aws(outputs, "dynamodb").get_paginator("scan").paginate(TableName=outputs["TableName"])
    items = [{k: deserializer.deserialize(v) for k, v in i.items()} for page in pages for i in page["Items"]]
    return sorted(items, key=lambda i: (i["pk"], i["sk"]))
