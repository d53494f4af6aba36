"""Every alarm reaches a person, has its runbook entry, and watches a metric that exists."""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest

from tests.conftest import ROOT
from tools.template import load_template, resources

TEMPLATE = load_template()
ALARMS = resources(TEMPLATE, "AWS::CloudWatch::Alarm")
RUNBOOK = (ROOT / "docs" / "operations.md").read_text()


def emitted_metrics() -> set[str]:
    """Every metric name the functions add (`metrics.add_metric(name=...)`), read from the source."""
    names = set()
    for path in (ROOT / "functions").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_metric":
                for keyword in node.keywords:
                    if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                        names.add(str(keyword.value.value))
    return names


def filtered_metrics() -> set[str]:
    return {
        transformation["MetricName"]
        for f in resources(TEMPLATE, "AWS::Logs::MetricFilter").values()
        for transformation in f["Properties"]["MetricTransformations"]
    }


def metrics_of(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    props = alarm["Properties"]
    if "MetricName" in props:
        return [props]
    return [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]


def test_there_are_alarms_and_the_checks_see_them() -> None:
    assert len(ALARMS) >= 15
    assert "PutEventsRetries" in emitted_metrics()  # a call spread over lines is read too
    assert filtered_metrics() == {"RequestsThrottled"}


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_each_alarm_notifies_the_topic_and_has_its_runbook_entry(name: str) -> None:
    props = ALARMS[name]["Properties"]
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert f"\n## {name}\n" in RUNBOOK, f"docs/operations.md has no entry for {name}"
    assert f"docs/operations.md#{name.lower()}" in props["AlarmDescription"]
    assert props["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_each_alarm_watches_a_metric_the_code_a_filter_or_aws_publishes(name: str) -> None:
    ours = emitted_metrics() | filtered_metrics()
    for metric in metrics_of(ALARMS[name]):
        namespace = metric["Namespace"]
        if isinstance(namespace, dict):  # our namespace, EbbotWebhooks/<Stage>
            assert namespace == {"Fn::Sub": "EbbotWebhooks/${Stage}"}
            assert metric["MetricName"] in ours, metric["MetricName"]
        else:
            assert namespace in {"AWS/Lambda", "AWS/SQS", "AWS/ApiGateway", "AWS/Events"}, namespace


def test_the_runbook_has_no_entry_for_an_alarm_that_is_gone() -> None:
    entries = set(re.findall(r"^## (\w+Alarm)$", RUNBOOK, flags=re.MULTILINE))
    assert entries == set(ALARMS)


def test_the_ingest_function_has_time_for_its_answer_budget() -> None:
    from ingest.deadline import ANSWER_WITHIN_S, LAMBDA_MARGIN_S

    function = TEMPLATE["Resources"]["IngestFunction"]["Properties"]
    timeout = function.get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"])
    assert timeout >= ANSWER_WITHIN_S + LAMBDA_MARGIN_S
