"""This project on motostack: the webhook pipeline on this machine, with no AWS account and no Docker.

What motostack needs to know of the project, and what the project adds on top: the token, the
ports, the Powertools settings of the workers, the webhook URL in outputs.json, the banner.
Settings come from the environment:

| variable | default | meaning |
|---|---|---|
| EBBOT_LOCAL_WEBHOOK_PORT | 3000 | port of the webhook routes on 127.0.0.1 |
| EBBOT_LOCAL_AWS_PORT | 4566 | port of moto's server (the AWS endpoint) on 127.0.0.1 |
| EBBOT_LOCAL_TOKEN | local-dev-token-change-me | the webhook token (events/apigw uses it) |
| EBBOT_LOCAL_DIR | .local | where outputs.json, state and logs are written |
| EBBOT_LOCAL_TEMPLATE | template.yaml | the template to run |
| EBBOT_LOCAL_RETRY_DELAY | 0.2 | first delay before retrying a failed invocation (Lambda: 60 s) or delivery |
| EBBOT_LOCAL_CONCURRENCY | 8 | events each function runs at once (its concurrent executions) |
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from motostack.deploy import translate as _translate
from motostack.launcher import LocalStack, LocalStackError, Settings
from motostack.launcher import start as _start
from tools.events import SAMPLE_TOKEN
from tools.template import ROOT, TEMPLATE

SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
STATE_DIR = ROOT / ".local"
# The secret the ingest function reads its tokens from, and the receipt instant on every event.
TOKEN_SECRET = "TokenSecret"  # noqa: S105 (a logical id in template.yaml)
RECEIVED_AT = ("detail", "metadata", "receivedAt")
# The Powertools settings of a local worker: no X-Ray daemon, no CloudWatch to take metrics.
WORKER_ENVIRONMENT = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}
# Imported by every worker before its function's environment is set: nothing here reads it.
PRELOAD = ("pydantic", "aws_lambda_powertools.utilities.parser")


def translate(template: Path = TEMPLATE, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """template.yaml through SAM's translator in the SAM CLI's venv (`make setup` makes it)."""
    return _translate(template, sam_python=SAM_PYTHON, parameters=parameters)


def settings_from_env(environ: Mapping[str, str] | None = None) -> tuple[Settings, str]:
    """motostack's settings and the webhook token, from EBBOT_LOCAL_* (the table above)."""
    env = dict(os.environ if environ is None else environ)
    token = env.get("EBBOT_LOCAL_TOKEN", SAMPLE_TOKEN)
    try:
        settings = Settings(
            template=Path(env.get("EBBOT_LOCAL_TEMPLATE", TEMPLATE)),
            state_dir=Path(env.get("EBBOT_LOCAL_DIR", STATE_DIR)),
            sam_python=SAM_PYTHON,
            http_port=int(env.get("EBBOT_LOCAL_WEBHOOK_PORT", 3000)),
            aws_port=int(env.get("EBBOT_LOCAL_AWS_PORT", 4566)),
            secret_values={TOKEN_SECRET: token},
            retry_delay_s=float(env.get("EBBOT_LOCAL_RETRY_DELAY", 0.2)),
            concurrency=max(1, int(env.get("EBBOT_LOCAL_CONCURRENCY", 8))),
            preload=PRELOAD,
            python_path=(ROOT / "functions", ROOT),
            latency_since=RECEIVED_AT,
            port_variables=("EBBOT_LOCAL_WEBHOOK_PORT", "EBBOT_LOCAL_AWS_PORT"),
            worker_environment=WORKER_ENVIRONMENT,
            # Speed matters where this stack runs (make run, demo, bench): moto's speed patches,
            # all unless MOTOSTACK_SPEEDUPS chooses (docs/moto-upstream.md); tests use stock moto.
            speedups=env.get("MOTOSTACK_SPEEDUPS", "all"),
        )
    except ValueError as exc:
        raise LocalStackError(f"bad EBBOT_LOCAL_* setting: {exc}") from None
    if not SAM_PYTHON.exists():
        raise LocalStackError(f"{SAM_PYTHON} is missing: run `make setup` (it installs the SAM translator)")
    return settings, token


def start(settings: Settings, token: str) -> LocalStack:
    """Start the stack and add the project's outputs: the webhook URL with its token."""
    stack = _start(settings)
    stack.outputs.update({"WebhookUrl": f"{settings.http_url}/webhook/{token}", "WebhookToken": token})
    (settings.state_dir / "outputs.json").write_text(json.dumps(stack.outputs, indent=2) + "\n")
    return stack


def banner(stack: LocalStack) -> str:
    o = stack.outputs
    s = stack.settings
    webhook = f"{s.http_url}/webhook"
    lines = [
        "The Ebbot webhook pipeline is running locally (Ctrl-C stops it).",
        "",
        f"  Webhook URL     {webhook}/<token>",
        f"                  (or POST {webhook} with Authorization: Bearer <token>)",
        f"  Token           {o['WebhookToken']}",
        f"  AWS endpoint    {o['AwsEndpointUrl']}   (region {o['Region']}, any credentials)",
        f"  Event bus       {o.get('EventBusName')}",
        f"  Table           {o.get('TableName')}",
        f"  Bucket          {o.get('DataBucketName')}",
        f"  Outputs         {s.state_dir / 'outputs.json'}    Logs: {s.state_dir / 'logs'}/",
        f'  sam local       --env-vars {s.state_dir / "env.json"}   (docs/local.md, "Run one function")',
        "",
        "Try:",
        f"  curl -s -X POST {o['WebhookUrl']} -H 'content-type: application/json' \\",
        "       --data @events/webhooks/chat.create.json",
        f"  aws --endpoint-url {o['AwsEndpointUrl']} dynamodb scan --table-name {o.get('TableName')}",
        "  .venv/bin/python -m tools send      # posts every sample and shows what was stored",
        "",
    ]
    return "\n".join(lines)
