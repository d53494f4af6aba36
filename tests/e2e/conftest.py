"""Start the local stack (a copy of template.yaml with two extra functions) once for the e2e tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from motostack.launcher import free_port

ROOT = Path(__file__).resolve().parents[2]

# Appended to template.yaml's Resources as a user would add a trigger: no other change anywhere.
EXTRA_RESOURCES = """
  E2eTriggerFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: tests.e2e.handlers.record
      Policies:
        - S3WritePolicy:
            BucketName: !Ref DataBucket
      Events:
        LowishRating:
          Type: EventBridgeRule
          Properties:
            EventBusName: !GetAtt EventBus.Name
            Pattern:
              source: [!Ref EventSource]
              detail-type: [chat.close]
              detail:
                metadata:
                  rating: [{numeric: ["<=", 4]}]
            DeadLetterConfig:
              Arn: !GetAtt DeliveryDLQ.Arn

  E2eFailingFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: tests.e2e.handlers.fail
      EventInvokeConfig:
        MaximumRetryAttempts: 2
        DestinationConfig:
          OnFailure:
            Type: SQS
            Destination: !GetAtt FailedEventsQueue.Arn
      Events:
        StatusChanges:
          Type: EventBridgeRule
          Properties:
            EventBusName: !GetAtt EventBus.Name
            Pattern:
              source: [!Ref EventSource]
              detail-type: [chat.status.change]
            DeadLetterConfig:
              Arn: !GetAtt DeliveryDLQ.Arn
"""


def template_with_extras(directory: Path) -> Path:
    text = (ROOT / "template.yaml").read_text()
    head, outputs = text.split("\nOutputs:", 1)
    path = directory / "template.yaml"
    path.write_text(head.rstrip("\n") + "\n" + EXTRA_RESOURCES + "\nOutputs:" + outputs)
    # The copy lives elsewhere; relative CodeUri/ContentUri are resolved by the translator, not read.
    return path


def run_stack(directory: Path, template: Path) -> Iterator[dict[str, Any]]:
    """`python -m tools run` on free ports with this template, until the generator is closed."""
    env = {
        **os.environ,
        "EBBOT_LOCAL_WEBHOOK_PORT": str(free_port()),
        "EBBOT_LOCAL_AWS_PORT": str(free_port()),
        "EBBOT_LOCAL_DIR": str(directory / "state"),
        "EBBOT_LOCAL_TEMPLATE": str(template),
        "EBBOT_LOCAL_RETRY_DELAY": "0.05",
    }
    log = (directory / "console.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    outputs_file = directory / "state" / "outputs.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the local stack exited: {(directory / 'console.log').read_text()[-3000:]}")
        if outputs_file.exists():
            outputs: dict[str, Any] = json.loads(outputs_file.read_text())
            try:
                base = outputs["WebhookUrl"].rsplit("/webhook", 1)[0]
                with urllib.request.urlopen(f"{base}/health", timeout=1):  # noqa: S310
                    break
            except OSError:
                pass
        time.sleep(0.2)
    else:
        proc.terminate()
        pytest.fail("the local stack did not start within 120 s")
    try:
        yield {"outputs": outputs, "env": env, "dir": directory, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stack from a copy of template.yaml with two extra functions (a trigger, a failing consumer)."""
    directory = tmp_path_factory.mktemp("local-stack")
    yield from run_stack(directory, template_with_extras(directory))


@pytest.fixture(scope="module")
def plain_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The stack from template.yaml exactly as it ships, to itself (the load test)."""
    yield from run_stack(tmp_path_factory.mktemp("plain-stack"), ROOT / "template.yaml")
