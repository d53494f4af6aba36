"""Tracing off means no X-Ray SDK at all; tracing on means Powertools' Tracer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.runtime import observability
from tests.conftest import python_in_functions

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
    code = "import sys, messages.app; print('aws_xray_sdk' in sys.modules)"
    assert python_in_functions(code, env) == str(imported)


def test_in_threads_keeps_order_and_raises_after_every_call_ended() -> None:
    done: list[int] = []

    def work(n: int) -> int:
        done.append(n)
        if n == 3:
            raise ValueError("three")
        return n * 10

    assert observability.in_threads(lambda n: n * 10, list(range(20)), 8) == [n * 10 for n in range(20)]
    with pytest.raises(ValueError, match="three"):
        observability.in_threads(work, list(range(8)), 4)
    assert sorted(done) == list(range(8))  # the others still ran: their writes are not lost halfway


def test_threads_join_the_invocations_trace_when_tracing() -> None:
    # X-Ray in its Lambda mode (as bench/coldstart_child.py --traced); segments go over UDP to a
    # loopback address where nothing listens.
    env = {
        **os.environ,
        "POWERTOOLS_TRACE_DISABLED": "false",
        "AWS_LAMBDA_FUNCTION_NAME": "test",
        "LAMBDA_TASK_ROOT": str(ROOT / "functions"),
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "AWS_XRAY_CONTEXT_MISSING": "RUNTIME_ERROR",
    }
    code = (
        "from aws_xray_sdk.core import xray_recorder\n"
        "from shared.runtime.observability import in_threads\n"
        "main = xray_recorder.get_trace_entity()\n"
        "seen = in_threads(lambda _: xray_recorder.get_trace_entity(), list(range(6)), 3)\n"
        # The same entity, so the threads' calls nest under the handler's subsegment (X-Ray's Lambda
        # mode would otherwise give each thread a facade segment of its own).
        "print(all(entity is main for entity in seen))\n"
    )
    assert python_in_functions(code, env) == "True"
