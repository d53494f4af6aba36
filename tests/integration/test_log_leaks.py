"""No log line carries a token or chat content, at any log level the template allows.

Each level runs in a fresh interpreter set up as Lambda's Python runtime sets itself up for the
function's ApplicationLogLevel (AWS_LAMBDA_LOG_LEVEL): the root logger at that level, with the
runtime's handler on it, so that at DEBUG every library's debug lines reach the log. The handlers
then take the paths that touch the token and the body: an accepted webhook, a refused one whose
field path is built from an e-mail address, one spilled because the bus is gone, and the consumers
that store messages and transcripts. Everything written (stdout, stderr) is searched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.aws import TOKEN
from tests.conftest import ROOT
from tools.template import load_template

MESSAGE_TEXT = "leak-probe: my card number is 4111 1111 1111 1111"
PERSON = "jane.leakprobe@example.com"

RUNTIME = r"""
import json, logging, os, sys
from pathlib import Path

root = logging.getLogger()
root.setLevel(os.environ["AWS_LAMBDA_LOG_LEVEL"])
runtime_handler = logging.StreamHandler(sys.stderr)
runtime_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
root.addHandler(runtime_handler)

# The functions' modules first, as Lambda's init imports them before any request.
from ingest import app as ingest
from messages import app as messages
from transcripts import app as transcripts

if sys.argv[4] == "unpinned":  # the check of the check: what the SDK's loggers would write
    from shared.runtime.observability import SDK_LOGGERS

    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)

# moto stands in for AWS here and logs the requests it serves: AWS's side, not the function's.
logging.getLogger("moto").setLevel(logging.WARNING)
from moto import mock_aws

from tests.aws import BUS, TABLE, create_ingest_stack, create_table_from_template
from tests.lambda_context import FakeLambdaContext

samples = Path("../events")
text, person, token = sys.argv[1:4]

def apigw(body):
    event = json.loads((samples / "apigw" / "chat.create.json").read_text())
    event["pathParameters"] = {"token": token}
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event

def with_text(topic):
    body = json.loads((samples / "webhooks" / f"{topic}.json").read_text())
    body["data"]["value"] = text
    return body

with mock_aws():
    stack = create_ingest_stack(tokens={"token": token})
    create_table_from_template()
    os.environ.update(stack.env(), TABLE_NAME=TABLE, ITEM_RETENTION_DAYS="0")

    user = json.loads((samples / "webhooks" / "chat.user.update.json").read_text())
    user["data"]["user"]["email"] = person
    refused = {"topic": "chat.create", "botId": "b" * 30, "data": {"id": "c", person: 1e400}}
    answers = [
        ingest.lambda_handler(apigw(with_text("chat.user.message")), FakeLambdaContext()),
        ingest.lambda_handler(apigw(user), FakeLambdaContext()),
        ingest.lambda_handler(apigw(json.dumps(refused).replace("1e+400", "1e400")), FakeLambdaContext()),
    ]
    stack.events.delete_event_bus(Name=BUS)
    answers.append(ingest.lambda_handler(apigw(with_text("chat.bot.message")), FakeLambdaContext()))
    print("ANSWERS", json.dumps([(a["statusCode"], json.loads(a["body"])) for a in answers]))

    for topic, handler in (("chat.user.message", messages), ("chat.close", transcripts)):
        event = json.loads((samples / "eventbridge" / f"{topic}.json").read_text())
        if topic == "chat.close":
            event["detail"]["webhook"]["data"]["conversation"][0]["value"] = text
        else:
            event["detail"]["webhook"]["data"]["value"] = text
        handler.lambda_handler(event, FakeLambdaContext())
"""


def run_probe(level: str, sdk_loggers: str = "pinned") -> tuple[subprocess.CompletedProcess[str], str]:
    env = {
        **os.environ,
        "AWS_LAMBDA_LOG_LEVEL": level,  # what the template's ApplicationLogLevel sets
        "POWERTOOLS_LOG_LEVEL": level,
        "POWERTOOLS_SERVICE_NAME": "probe",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME, MESSAGE_TEXT, PERSON, TOKEN, sdk_loggers],
        cwd=ROOT / "functions",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    (answers,) = [line for line in result.stdout.splitlines() if line.startswith("ANSWERS ")]
    statuses = [status for status, _ in json.loads(answers.removeprefix("ANSWERS "))]
    assert statuses == [202, 202, 400, 202]  # accepted, accepted, refused by path, spilled
    # The answers go to the sender, not to a log (the refusal's answer names the path).
    return result, (result.stdout + result.stderr).replace(answers, "")


@pytest.mark.parametrize("level", load_template()["Parameters"]["LogLevel"]["AllowedValues"])
def test_no_token_and_no_chat_content_in_any_log_line(level: str) -> None:
    _, logged = run_probe(level)
    for secret in (TOKEN, MESSAGE_TEXT, PERSON):
        assert secret not in logged, f"{secret!r} reached the log at {level}"


def test_the_probe_sees_what_the_sdk_would_log_at_debug_without_the_pins() -> None:
    _, logged = run_probe("DEBUG", "unpinned")
    assert TOKEN in logged  # the GetSecretValue answer
    assert MESSAGE_TEXT in logged  # the PutEvents detail
