"""The security posture a reviewer signs off, checked on the template as AWS receives it (after SAM)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tools.template import load_template

# Actions AWS defines only on Resource "*" (nothing narrower exists for them).
STAR_ONLY_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
}
# AWS managed policies SAM attaches, each scoped by AWS: basic logging and X-Ray writes.
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}
READ_PREFIXES = ("Get", "List", "Describe", "Query", "Scan", "BatchGet", "Receive", "Head")


def _resources(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in cfn["Resources"].items() if r["Type"] == kind}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _statements(cfn: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for name, role in _resources(cfn, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            out.extend((name, st) for st in _as_list(policy["PolicyDocument"]["Statement"]))
    return out


def test_no_wildcard_resource_on_a_write_action(translated_template: dict[str, Any]) -> None:
    statements = _statements(translated_template)
    assert statements
    for role, statement in statements:
        if statement["Effect"] != "Allow":
            continue
        for action in _as_list(statement["Action"]):
            if action in STAR_ONLY_ACTIONS or action.split(":")[1].startswith(READ_PREFIXES):
                continue
            assert "*" not in _as_list(statement["Resource"]), (role, action)
            assert "*" not in action, (role, action)


def test_only_known_managed_policies(translated_template: dict[str, Any]) -> None:
    for name, role in _resources(translated_template, "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            text = (arn["Fn::Sub"] if isinstance(arn, dict) else arn).replace("${AWS::Partition}", "aws")
            assert text in ALLOWED_MANAGED_POLICIES, (name, arn)


def test_no_wildcard_principal_in_an_allow(translated_template: dict[str, Any]) -> None:
    documents = [
        r["Properties"].get("PolicyDocument") or r["Properties"].get("AssumeRolePolicyDocument")
        for r in translated_template["Resources"].values()
        if r["Type"] in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::IAM::Role")
    ]
    for document in documents:
        for statement in _as_list(document["Statement"]):
            if statement["Effect"] == "Allow":
                assert statement.get("Principal") not in ("*", {"AWS": "*"}), statement
    for name, permission in _resources(translated_template, "AWS::Lambda::Permission").items():
        assert permission["Properties"]["Principal"] != "*", name
        assert "SourceArn" in permission["Properties"], name


def test_storage_is_encrypted_retained_and_recoverable() -> None:
    cfn = load_template()
    table = cfn["Resources"]["Table"]
    assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True
    assert table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    bucket = cfn["Resources"]["DataBucket"]
    for resource in (table, bucket):
        assert (resource["DeletionPolicy"], resource["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert bucket["Properties"]["VersioningConfiguration"]["Status"] == "Enabled"
    assert bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    for name, queue in _resources(cfn, "AWS::SQS::Queue").items():
        # SQS-managed keys: EventBridge cannot write to a queue under a customer key without a grant.
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, name
    # The stack's key encrypts the secret, the alarm topic and every log group, and lets CloudWatch
    # publish to the topic (the AWS-managed SNS key cannot grant it that).
    key = cfn["Resources"]["DataKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert cfn["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "DataKey"}
    assert cfn["Resources"]["TokenSecret"]["Properties"]["KmsKeyId"] == {"Ref": "DataKey"}
    for name, group in _resources(cfn, "AWS::Logs::LogGroup").items():
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, name
    grants = {s["Sid"]: s for s in key["KeyPolicy"]["Statement"]}
    assert grants["CloudWatchAlarmsPublish"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(grants["CloudWatchAlarmsPublish"]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert "aws:SourceAccount" in grants["CloudWatchAlarmsPublish"]["Condition"]["StringEquals"]
    assert "kms:EncryptionContext:aws:logs:arn" in grants["LogGroups"]["Condition"]["ArnLike"]


def test_every_rule_target_has_a_retry_policy_and_a_dead_letter_queue(
    translated_template: dict[str, Any],
) -> None:
    rules = _resources(translated_template, "AWS::Events::Rule")
    assert len(rules) >= 4
    for name, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            assert target.get("DeadLetterConfig", {}).get("Arn"), name
            assert target.get("RetryPolicy", {}).get("MaximumRetryAttempts", 0) > 0, name


def test_every_consumer_has_an_on_failure_destination(translated_template: dict[str, Any]) -> None:
    configs = _resources(translated_template, "AWS::Lambda::EventInvokeConfig")
    targets = {
        t["Arn"]["Fn::GetAtt"][0]
        for rule in _resources(translated_template, "AWS::Events::Rule").values()
        for t in rule["Properties"]["Targets"]
    }
    configured = {c["Properties"]["FunctionName"]["Ref"] for c in configs.values()}
    assert targets <= configured
    for config in configs.values():
        assert config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        assert config["Properties"]["MaximumRetryAttempts"] <= 2


def test_every_function_logs_with_retention_and_traces(translated_template: dict[str, Any]) -> None:
    groups = _resources(translated_template, "AWS::Logs::LogGroup")
    for name, function in _resources(translated_template, "AWS::Lambda::Function").items():
        props = function["Properties"]
        assert groups[props["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]["RetentionInDays"], name
        assert props["TracingConfig"]["Mode"] == {"Fn::If": ["TracingActive", "Active", "PassThrough"]}, name
        assert props["Architectures"] == ["arm64"], name
        assert props["Runtime"] == "python3.13", name


def test_tracing_is_on_unless_the_parameter_opts_out() -> None:
    cfn = load_template()
    assert cfn["Parameters"]["Tracing"]["Default"] == "Active"
    assert cfn["Conditions"]["TracingActive"] == {"Fn::Equals": [{"Ref": "Tracing"}, "Active"]}
    variables = cfn["Globals"]["Function"]["Environment"]["Variables"]
    # Powertools' tracer follows the same switch (off: no X-Ray SDK import at all).
    assert variables["POWERTOOLS_TRACE_DISABLED"] == {"Fn::If": ["TracingActive", "false", "true"]}


def test_the_public_route_is_throttled() -> None:
    cfn = load_template()
    (api,) = _resources(cfn, "AWS::Serverless::HttpApi").values()
    settings = api["Properties"]["DefaultRouteSettings"]
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ThrottlingBurstLimit"}
    assert settings["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}


def test_bucket_blocks_public_access_and_insecure_transport() -> None:
    cfn = load_template()
    block = cfn["Resources"]["DataBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    policies = _resources(cfn, "AWS::S3::BucketPolicy")
    assert {p["Properties"]["Bucket"]["Ref"] for p in policies.values()} == {"DataBucket", "AccessLogsBucket"}
    for policy in policies.values():
        statement = policy["Properties"]["PolicyDocument"]["Statement"][0]
        assert (statement["Effect"], statement["Condition"]) == (
            "Deny",
            {"Bool": {"aws:SecureTransport": "false"}},
        )


def test_the_data_bucket_is_access_logged_to_a_private_bucket_that_expires_them() -> None:
    cfn = load_template()
    logging = cfn["Resources"]["DataBucket"]["Properties"]["LoggingConfiguration"]
    assert logging["DestinationBucketName"] == {"Ref": "AccessLogsBucket"}
    logs = cfn["Resources"]["AccessLogsBucket"]["Properties"]
    assert logs["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    # S3 delivers access logs only to a bucket under SSE-S3; the logs expire as the parameter says.
    encryption = logs["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ]
    assert encryption == {"SSEAlgorithm": "AES256"}
    (rule,) = logs["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == {"Ref": "AccessLogRetentionDays"}
    # Only S3's log delivery writes there, only for this stack's data bucket, under its prefix.
    statement = cfn["Resources"]["AccessLogsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][1]
    assert statement["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert statement["Resource"] == {"Fn::Sub": "${AccessLogsBucket.Arn}/" + logging["LogFilePrefix"] + "*"}
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == {"Fn::GetAtt": ["DataBucket", "Arn"]}


@pytest.mark.parametrize(
    "name",
    [
        "Stage",
        "EventSource",
        "ClaimCheckThresholdBytes",
        "TranscriptRetentionDays",
        "ItemRetentionDays",
        "LogRetentionDays",
        "ThrottlingBurstLimit",
        "ThrottlingRateLimit",
        "AlarmEmail",
        "ArchiveRetentionDays",
        "Archive",
    ],
)
def test_operator_parameters_exist_and_are_documented(name: str) -> None:
    parameters = load_template()["Parameters"]
    assert name in parameters
    assert len(parameters[name]["Description"]) > 20


def test_every_parameter_is_documented() -> None:
    for name, parameter in load_template()["Parameters"].items():
        assert parameter.get("Description"), name
    assert json.dumps(load_template()).count("Description") > 10
