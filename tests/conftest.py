"""Shared fixtures. AWS is never reachable: every test that touches AWS goes through moto."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Powertools reads these when logger, tracer and metrics are created, at import of the handlers.
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "EbbotWebhooks/test")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "test")
# Never a real account, even for module- and session-scoped fixtures that run before the autouse one.
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
)

# moto as it ships: its speed patches (motostack.speedups) are for the local stack's server only,
# and tests/integration/test_moto_speedups.py compares their answers with stock moto's.

ROOT = Path(__file__).resolve().parent.parent
WEBHOOKS = ROOT / "events" / "webhooks"
TOPICS = sorted(path.name.removesuffix(".json") for path in WEBHOOKS.glob("*.json"))

# Property tests go through moto in places: no per-example deadline, bounded examples, and in CI
# a fixed seed so a red build is reproducible (HYPOTHESIS_PROFILE=dev explores more locally).
settings.register_profile("ci", deadline=None, max_examples=50, derandomize=True, print_blob=True)
settings.register_profile(
    "dev", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def load_sample(topic: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((WEBHOOKS / f"{topic}.json").read_text())
    return result


def sample_bytes(topic: str) -> bytes:
    return (WEBHOOKS / f"{topic}.json").read_bytes()


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a fixed region, so nothing can ever reach a real account."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def clients_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The service name of every boto3 client made while the test runs, in order."""
    import boto3

    made: list[str] = []
    real_client = boto3.client

    def client(service_name: str, *args: Any, **kwargs: Any) -> Any:
        made.append(service_name)
        return real_client(service_name, *args, **kwargs)

    monkeypatch.setattr(boto3, "client", client)
    return made


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the functions' Powertools logger writes during the test. Its handler keeps the stream
    it was made with (pytest's, at import), so capsys never sees these lines."""
    from shared.runtime.observability import logger

    buffer = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def metric_lines_in(text: str) -> list[dict[str, Any]]:
    """The metric lines (CloudWatch embedded metric format) among what a handler printed."""
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def metric_names(output: str) -> set[str]:
    """The names of the metrics among what a handler printed."""
    return {
        metric["Name"]
        for line in metric_lines_in(output)
        for metric in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }


@pytest.fixture
def fresh_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    """Powertools keeps metrics in one process-wide set until a handler flushes them: what other
    tests added without flushing is dropped, with anything printed before the test."""
    from shared.runtime.observability import metrics

    metrics.clear_metrics()
    capsys.readouterr()


@pytest.fixture(scope="session")
def translated_template() -> dict[str, Any]:
    """template.yaml through SAM's translator, once per test session."""
    from tools.localstack import translate

    return translate(parameters={"AWS::StackName": "local"})


class Invocations:
    """What moto's rules delivered to Lambda targets, by function ARN, with the rule and target
    (the dispatch of motostack.lambda_targets, recording instead of invoking)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def __call__(self, rule_arn: str, target: dict[str, Any], event: dict[str, Any]) -> None:
        self.deliveries.append((rule_arn, target, event))

    def take(self, function_arn: str | None = None) -> list[dict[str, Any]]:
        """The events delivered to this function (or to any), forgetting them."""
        taken = [d for d in self.deliveries if function_arn in (None, d[1]["Arn"])]
        self.deliveries = [d for d in self.deliveries if d not in taken]
        return [event for _, _, event in taken]


@pytest.fixture
def lambda_invocations() -> Iterator[Invocations]:
    """Inside moto: events matched for Lambda targets are recorded here."""
    from motostack.lambda_targets import patch_lambda_targets

    recorded = Invocations()
    with patch_lambda_targets(recorded):
        yield recorded


def python_in_functions(code: str, env: dict[str, str]) -> str:
    """Run `code` in a fresh interpreter from functions/ (as Lambda starts one); its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "functions",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"


def samcli_probe(*args: str) -> Any:
    """What SAM CLI's own code answers (tests/samcli_probe.py in the SAM CLI's venv), in an
    environment without the shell's AWS settings, which SAM would pass on to declared variables."""
    assert SAM_PYTHON.exists(), "run `make setup` for the SAM CLI venv"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(ROOT / ".local" / "samcli-home"),
        "SAM_CLI_TELEMETRY": "0",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    result = subprocess.run(
        [str(SAM_PYTHON), str(ROOT / "tests" / "samcli_probe.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


class HungEndpoint:
    """A socket on loopback that accepts connections and never answers: a service that hangs."""

    def __init__(self) -> None:
        import socket
        import threading

        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self.connections.append(connection)  # held open, never read, never answered

    def close(self) -> None:
        self._server.close()
        for connection in self.connections:
            connection.close()


@pytest.fixture
def hung_endpoint() -> Iterator[HungEndpoint]:
    endpoint = HungEndpoint()
    yield endpoint
    endpoint.close()
