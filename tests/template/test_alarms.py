"""What an operator sees: every alarm reaches a person and has its runbook entry; every metric the
alarms and the dashboard name is one the code or a metric filter emits (same namespace, name and
dimensions) or one AWS documents for that resource type; the saved queries and log widgets ask
for what the functions log; the silence alarm is one CloudWatch can evaluate."""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from typing import Any

import pytest

from tests.conftest import ROOT
from tools.template import load_template, resources

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
ALARMS = resources(TEMPLATE, "AWS::CloudWatch::Alarm")
QUERIES = resources(TEMPLATE, "AWS::Logs::QueryDefinition")
RUNBOOK = (ROOT / "docs" / "operations.md").read_text()
OUR_NAMESPACE = "EbbotWebhooks/${Stage}"

# The metrics AWS documents for each resource type this stack has, with the dimensions each is
# published under (what CloudWatch answers to; a wrong dimension shows an empty graph, not an error):
# Lambda: docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html
# HTTP API: docs.aws.amazon.com/apigateway/latest/developerguide/http-api-metrics.html
# SQS: docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/
#      sqs-available-cloudwatch-metrics.html
# EventBridge: docs.aws.amazon.com/eventbridge/latest/userguide/eb-monitoring.html
AWS_METRICS: dict[str, tuple[set[str], dict[str, str]]] = {
    "AWS/Lambda": (
        {
            "Invocations",
            "Errors",
            "Throttles",
            "Duration",
            "AsyncEventAge",
            "AsyncEventsDropped",
            "AsyncEventsReceived",
            "DestinationDeliveryFailures",
            "ConcurrentExecutions",
        },
        {"FunctionName": "AWS::Serverless::Function"},
    ),
    "AWS/ApiGateway": (
        {"Count", "4xx", "5xx", "Latency", "IntegrationLatency", "DataProcessed"},
        {"ApiId": "AWS::Serverless::HttpApi"},
    ),
    "AWS/SQS": (
        {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateAgeOfOldestMessage",
            "NumberOfMessagesSent",
            "NumberOfMessagesReceived",
            "NumberOfMessagesDeleted",
            "ApproximateNumberOfMessagesNotVisible",
        },
        {"QueueName": "AWS::SQS::Queue"},
    ),
    "AWS/Events": (
        {
            "MatchedEvents",
            "Invocations",
            "FailedInvocations",
            "InvocationsFailedToBeSentToDlq",
            "InvocationsSentToDlq",
            "ThrottledRules",
            "TriggeredRules",
        },
        {"EventBusName": "AWS::Events::EventBus", "RuleName": "rule"},
    ),
}


def emitted_metrics() -> dict[str, set[str]]:
    """Every metric name the functions add (`metrics.add_metric(name=...)`), read from the source,
    with the services (Powertools' `service` dimension: the function's package) that add it."""
    names: dict[str, set[str]] = defaultdict(set)
    for path in (ROOT / "functions").rglob("*.py"):
        package = path.relative_to(ROOT / "functions").parts[0]
        # shared/runtime/consumer.py counts for whichever consumer runs it
        services = {"chats", "messages", "scenarios", "transcripts"} if package == "shared" else {package}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_metric":
                for keyword in node.keywords:
                    if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                        names[str(keyword.value.value)].update(services)
    return dict(names)


def filtered_metrics() -> dict[str, dict[str, str]]:
    """Each metric filter's metric, by name, with its dimensions."""
    return {
        transformation["MetricName"]: dict(transformation.get("Dimensions", {}))
        for f in resources(TEMPLATE, "AWS::Logs::MetricFilter").values()
        for transformation in f["Properties"]["MetricTransformations"]
    }


def rule_names() -> set[str]:
    return {
        event["Properties"]["RuleName"]
        for function in resources(TEMPLATE, "AWS::Serverless::Function").values()
        for event in function["Properties"].get("Events", {}).values()
        if event["Type"] == "EventBridgeRule"
    }


def _type_of(reference: str) -> str:
    """The resource type a `${X}` / `${X.Attr}` / Ref / GetAtt names; a literal is a rule's name."""
    logical = reference.split(".")[0]
    if logical in RESOURCES:
        return str(RESOURCES[logical]["Type"])
    assert reference in rule_names(), f"{reference} is neither a resource nor a rule of this template"
    return "rule"


def check(namespace: str, name: str, dimensions: dict[str, str]) -> None:
    """`dimensions` values: a resource as `X` or `X.Attr` (from ${...}, Ref, GetAtt), or a literal."""
    if namespace == OUR_NAMESPACE:
        emitted, filtered = emitted_metrics(), filtered_metrics()
        assert name in emitted or name in filtered, f"nothing emits {name}"
        if name in filtered:
            assert dimensions == filtered[name], (name, dimensions)
        else:
            assert set(dimensions) == {"service"}, (name, dimensions)
            assert dimensions["service"] in emitted[name], f"{name} is not emitted by {dimensions['service']}"
        return
    assert namespace in AWS_METRICS, namespace
    documented, dimension_types = AWS_METRICS[namespace]
    assert name in documented, f"{namespace} {name}"
    assert dimensions, f"{namespace} {name} without dimensions is the account's total"
    for dimension, value in dimensions.items():
        assert dimension in dimension_types, (namespace, name, dimension)
        assert _type_of(value) == dimension_types[dimension], (namespace, name, dimension, value)


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return str(value["Ref"])
    if "Fn::GetAtt" in value:
        return ".".join(value["Fn::GetAtt"])
    raise AssertionError(value)


def alarm_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    props = alarm["Properties"]
    stats = (
        [props]
        if "MetricName" in props
        else [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]
    )
    out = []
    for metric in stats:
        namespace = metric["Namespace"]
        namespace = namespace["Fn::Sub"] if isinstance(namespace, dict) else namespace
        dims = {d["Name"]: _value(d["Value"]) for d in metric.get("Dimensions", [])}
        out.append((namespace, metric["MetricName"], dims))
    return out


def dashboard() -> dict[str, Any]:
    (board,) = resources(TEMPLATE, "AWS::CloudWatch::Dashboard").values()
    body = board["Properties"]["DashboardBody"]["Fn::Sub"]
    # ${X} stays as the text ${X}: valid inside JSON strings, read back by _type_of
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def widgets(kind: str) -> list[dict[str, Any]]:
    return [w["properties"] for w in dashboard()["widgets"] if w["type"] == kind]


def dashboard_metrics() -> list[tuple[str, str, dict[str, str]]]:
    out = []
    for widget in widgets("metric"):
        for row in widget["metrics"]:
            fields = [f for f in row if not isinstance(f, dict)]
            namespace, name, *pairs = fields
            dims = {pairs[i]: re.sub(r"^\$\{(.+)\}$", r"\1", pairs[i + 1]) for i in range(0, len(pairs), 2)}
            out.append((namespace, name, dims))
    return out


def test_there_are_alarms_and_the_checks_see_them() -> None:
    assert len(ALARMS) >= 17
    assert "PutEventsRetries" in emitted_metrics()  # a call spread over lines is read too
    assert set(filtered_metrics()) == {"RequestsThrottled", "WebhooksAccepted"}
    assert rule_names() == {"chats", "messages", "scenarios", "transcripts"}
    with pytest.raises(AssertionError):
        check(OUR_NAMESPACE, "WebhooksLost", {"service": "chats"})  # the wrong function's dimension
    with pytest.raises(AssertionError):
        check("AWS/Lambda", "Errors", {"FunctionName": "DeliveryDLQ"})  # a queue is not a function


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_each_alarm_notifies_the_topic_and_has_its_runbook_entry(name: str) -> None:
    props = ALARMS[name]["Properties"]
    assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert f"\n## {name}\n" in RUNBOOK, f"docs/operations.md has no entry for {name}"
    description = props["AlarmDescription"]
    description = description["Fn::Sub"] if isinstance(description, dict) else description
    assert f"docs/operations.md#{name.lower()}" in description
    # Only silence is told by the absence of data; every other alarm counts something that happened.
    assert props["TreatMissingData"] == ("breaching" if name == "SilenceAlarm" else "notBreaching")


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_each_alarm_watches_a_metric_the_code_a_filter_or_aws_publishes(name: str) -> None:
    for namespace, metric, dims in alarm_metrics(ALARMS[name]):
        check(namespace, metric, dims)


def test_every_dashboard_metric_is_published_as_named() -> None:
    named = dashboard_metrics()
    assert len(named) > 40
    for namespace, metric, dims in named:
        check(namespace, metric, dims)


def test_the_dashboard_shows_what_an_operator_asks_for() -> None:
    (board,) = resources(TEMPLATE, "AWS::CloudWatch::Dashboard").values()
    assert board["Properties"]["DashboardName"] == {"Ref": "AWS::StackName"}
    shown = {(ns, name, tuple(sorted(d.items()))) for ns, name, d in dashboard_metrics()}
    functions = sorted(resources(TEMPLATE, "AWS::Serverless::Function"))
    for function in functions:
        for metric in ("Invocations", "Errors", "Throttles", "Duration"):
            assert ("AWS/Lambda", metric, (("FunctionName", function),)) in shown, (function, metric)
        if function != "IngestFunction":
            assert ("AWS/Lambda", "AsyncEventAge", (("FunctionName", function),)) in shown, function
    for rule in rule_names():
        for metric in ("MatchedEvents", "FailedInvocations"):
            assert ("AWS/Events", metric, (("EventBusName", "EventBus.Name"), ("RuleName", rule))) in shown
    for queue in resources(TEMPLATE, "AWS::SQS::Queue"):
        for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
            assert ("AWS/SQS", metric, (("QueueName", f"{queue}.QueueName"),)) in shown, (queue, metric)
    for metric in ("Count", "4xx", "5xx", "Latency"):
        assert ("AWS/ApiGateway", metric, (("ApiId", "HttpApi"),)) in shown, metric
    ours = {name for ns, name, _ in shown if ns == OUR_NAMESPACE}
    # every counter the code or a filter emits: outcomes, consumers' metrics, throttled requests
    assert ours == set(emitted_metrics()) | set(filtered_metrics())
    latency = [w for w in widgets("metric") if any(r[1] == "Latency" for r in w["metrics"])]
    assert {row[-1]["stat"] for w in latency for row in w["metrics"]} == {"p50", "p99"}


def logged() -> tuple[set[str], set[str]]:
    """The messages and the keys of every log line the functions write (logger.info(...) etc.)."""
    messages: set[str] = set()
    keys: set[str] = set()
    for path in (ROOT / "functions").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and getattr(node.func.value, "id", None) == "logger"
                and node.func.attr in {"debug", "info", "warning", "error", "exception"}
            ):
                if node.args and isinstance(node.args[0], ast.Constant):
                    messages.add(str(node.args[0].value))
                keys.update(k.arg for k in node.keywords if k.arg)
    return messages, keys


# Keys every line has without our asking: Powertools' own, and Lambda's platform records (JSON format).
STANDARD_KEYS = {"message", "service", "correlation_id", "level", "type", "record", "function_request_id"}


def insights_queries() -> dict[str, str]:
    found = {name: q["Properties"]["QueryString"] for name, q in QUERIES.items()}
    found |= {f"widget {w['title']}": w["query"].split(" | ", 1)[1] for w in widgets("log")}
    return found


@pytest.mark.parametrize(("name", "query"), sorted(insights_queries().items()))
def test_each_query_asks_for_what_the_functions_log(name: str, query: str) -> None:
    messages, keys = logged()
    for message in re.findall(r'message = "([^"]+)"', query):
        assert message in messages, f"{name}: no function logs {message!r}"
    for key in re.findall(r"(?:filter|or|and|by)\s+([a-z_]+)\s*(?:=|,|$)", query, re.M):
        assert key in keys | STANDARD_KEYS, f"{name}: no log line has {key}"


def test_the_saved_queries_answer_the_operators_questions() -> None:
    groups = {name: {g["Ref"] for g in q["Properties"]["LogGroupNames"]} for name, q in QUERIES.items()}
    every_function = {
        str(f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"])
        for f in resources(TEMPLATE, "AWS::Serverless::Function").values()
    }
    assert len(every_function) == 5
    assert groups == {
        "ChatJourneyQuery": every_function,
        "RejectedWebhooksQuery": {"IngestLogs"},
        "SlowestInvocationsQuery": every_function,
        "DeliveryQuery": every_function,
    }
    assert 'chat_id = "CHAT_ID"' in QUERIES["ChatJourneyQuery"]["Properties"]["QueryString"]
    assert 'delivery_id = "DELIVERY_ID"' in QUERIES["DeliveryQuery"]["Properties"]["QueryString"]
    assert "by code" in QUERIES["RejectedWebhooksQuery"]["Properties"]["QueryString"]
    assert "sort duration_ms desc" in QUERIES["SlowestInvocationsQuery"]["Properties"]["QueryString"]
    for query in QUERIES.values():
        assert query["Properties"]["Name"]["Fn::Sub"].startswith("${AWS::StackName}/")  # a folder per stack


def test_the_silence_alarm_is_off_at_zero_and_evaluable_at_every_allowed_length() -> None:
    alarm = ALARMS["SilenceAlarm"]
    assert alarm["Condition"] == "SilenceAlarmOn"
    assert TEMPLATE["Conditions"]["SilenceAlarmOn"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SilenceAlarmMinutes"}, 0]}]
    }
    props = alarm["Properties"]
    assert (props["MetricName"], props["ComparisonOperator"], props["Threshold"]) == (
        "WebhooksAccepted",
        "LessThanThreshold",
        1,
    )
    accepted = resources(TEMPLATE, "AWS::Logs::MetricFilter")["WebhooksAcceptedMetric"]["Properties"]
    assert accepted["LogGroupName"] == {"Ref": "HttpApiAccessLogs"}
    assert accepted["FilterPattern"] == '{ $.status = "202" }'
    window = TEMPLATE["Mappings"]["SilenceWindow"]
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        field = "Period" if key == "Period" else "Periods"
        assert props[key] == {"Fn::FindInMap": ["SilenceWindow", {"Ref": "SilenceAlarmMinutes"}, field]}
    allowed = TEMPLATE["Parameters"]["SilenceAlarmMinutes"]["AllowedValues"]
    assert set(window) == {str(m) for m in allowed}
    for minutes in allowed:
        if minutes == 0:
            continue
        period, periods = window[str(minutes)]["Period"], window[str(minutes)]["Periods"]
        # PutMetricAlarm: Period a multiple of 60; Period x EvaluationPeriods at most 7 days, and at
        # most one day when the period is under an hour.
        assert period % 60 == 0
        assert period * periods == minutes * 60, minutes
        assert period * periods <= (604_800 if period >= 3600 else 86_400), minutes


def runbook_sections() -> dict[str, str]:
    parts = re.split(r"^## (\w+)\n", RUNBOOK, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_each_runbook_entry_says_which_widget_and_query_confirm_it(name: str) -> None:
    section = " ".join(runbook_sections()[name].split())  # a title may break across lines
    titles = {w["title"] for kind in ("metric", "log") for w in widgets(kind)}
    queries = {q["Properties"]["Name"]["Fn::Sub"].split("/", 1)[1] for q in QUERIES.values()}
    named_widgets = re.findall(r'widget "([^"]+)"', section)
    named_queries = re.findall(r'query "([^"]+)"', section)
    assert named_widgets, f"{name}: the runbook names no dashboard widget"
    for title in named_widgets:
        assert title in titles, f"{name}: no widget {title!r}"
    for query in named_queries:
        assert query in queries, f"{name}: no saved query {query!r}"
    for part in ("**Means:**", "**Confirm:**", "**Do:**"):
        assert part in section, (name, part)


def test_the_runbook_has_no_entry_for_an_alarm_that_is_gone() -> None:
    entries = set(re.findall(r"^## (\w+Alarm)$", RUNBOOK, flags=re.MULTILINE))
    assert entries == set(ALARMS)


def test_the_ingest_function_has_time_for_its_answer_budget() -> None:
    from ingest.deadline import ANSWER_WITHIN_S, LAMBDA_MARGIN_S

    function = TEMPLATE["Resources"]["IngestFunction"]["Properties"]
    timeout = function.get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"])
    assert timeout >= ANSWER_WITHIN_S + LAMBDA_MARGIN_S
