"""Tracing off means no X-Ray SDK at all; tracing on means Powertools' Tracer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import observability

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "disabled"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("", False)],
)
def test_the_switch_reads_powertools_spellings(value: str, disabled: bool) -> None:
    assert observability.tracing_disabled({"POWERTOOLS_TRACE_DISABLED": value}) is disabled


def test_tracing_off_leaves_the_handler_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    tracer = observability.make_tracer()

    def handler(event: dict[str, str], context: object) -> str:
        return event["x"]

    assert tracer.capture_lambda_handler(capture_response=False)(handler) is handler
    assert tracer.capture_lambda_handler(capture_response=False)(handler)({"x": "y"}, None) == "y"


def test_tracing_on_is_powertools_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_lambda_powertools import Tracer

    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    assert isinstance(observability.make_tracer(), Tracer)


@pytest.mark.parametrize(("disabled", "imported"), [("true", False), ("false", True)])
def test_a_handler_imports_the_xray_sdk_only_when_tracing(disabled: str, imported: bool) -> None:
    env = {
        **os.environ,
        "POWERTOOLS_TRACE_DISABLED": disabled,
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "t",
        "BUCKET_NAME": "b",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import sys, messages.app; print('aws_xray_sdk' in sys.modules)"],
        cwd=ROOT / "functions",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(imported)
