"""template.yaml: the linters pass, and the properties users and reviewers rely on are there."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.requirements import DEV_LOCK, LAYER_REQUIREMENTS, pins
from tools.template import load_template, resources

ROOT = Path(__file__).resolve().parents[2]
SAM_VENV = ROOT / ".venv-sam" / "bin"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _run_sam_tool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = SAM_VENV / args[0]
    assert tool.exists(), f"{tool} is missing: `make setup` creates the SAM CLI venv"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    return subprocess.run(
        [str(tool), *args[1:]], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )


def test_cfn_lint_with_the_serverless_rules_passes() -> None:
    result = _run_sam_tool(
        "cfn-lint",
        "--append-rules",
        "cfn_lint_serverless.rules",
        "--",
        "template.yaml",
        "examples/low-rating-alert/template.yaml",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes() -> None:
    result = _run_sam_tool("sam", "validate", "--lint", "--template-file", "template.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_globals_runtime_architecture_tracing_and_no_event_logging(template: dict[str, Any]) -> None:
    function = template["Globals"]["Function"]
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    assert function["Tracing"] == {"Fn::If": ["TracingActive", "Active", "PassThrough"]}
    # Lambda's log-level controls follow the LogLevel and PlatformLogLevel parameters.
    logging = function["LoggingConfig"]
    assert logging["LogFormat"] == "JSON"
    level = {"Fn::FindInMap": ["LambdaLogLevel", {"Ref": "LogLevel"}, "Name"]}
    assert logging["ApplicationLogLevel"] == level
    assert logging["SystemLogLevel"] == {"Ref": "PlatformLogLevel"}
    names = template["Mappings"]["LambdaLogLevel"]
    assert {level: names[level]["Name"] for level in template["Parameters"]["LogLevel"]["AllowedValues"]} == {
        "DEBUG": "DEBUG",
        "INFO": "INFO",
        "WARNING": "WARN",
        "ERROR": "ERROR",
    }
    variables = function["Environment"]["Variables"]
    assert variables["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"
    assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"


def test_layer_is_built_for_arm64_python313_from_the_hashes(template: dict[str, Any]) -> None:
    (layer,) = resources(template, "AWS::Serverless::LayerVersion").values()
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    content = ROOT / layer["Properties"]["ContentUri"]
    assert (content / "requirements.txt").exists()
    # SAM runs the target named build-<logical id> (rehearsed for real by test_rehearsal.py)
    recipe = (content / "Makefile").read_text()
    assert "build-DependenciesLayer:" in recipe
    for flag in ("--require-hashes", "--only-binary=:all:", "--python-version 3.13", "manylinux2014_aarch64"):
        assert flag in recipe


def test_http_api_access_log_has_the_route_key_and_never_the_path_or_ip(template: dict[str, Any]) -> None:
    (api,) = resources(template, "AWS::Serverless::HttpApi").values()
    log_format = api["Properties"]["AccessLogSettings"]["Format"]
    fields = json.loads(log_format)
    assert fields["routeKey"] == "$context.routeKey"
    for forbidden in (
        "$context.path",
        "$context.http.path",
        "$context.identity.sourceIp",
        "$context.rawPath",
    ):
        assert forbidden not in log_format
    settings = api["Properties"]["DefaultRouteSettings"]
    assert {"ThrottlingBurstLimit", "ThrottlingRateLimit"} <= set(settings)


def test_ingest_routes_with_and_without_the_token_in_the_path(template: dict[str, Any]) -> None:
    ingest = template["Resources"]["IngestFunction"]["Properties"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in ingest["Events"].values()}
    assert routes == {("POST", "/webhook/{token}"), ("POST", "/webhook")}
    assert ingest["Handler"] == "ingest.app.lambda_handler"
    assert set(ingest["Environment"]["Variables"]) >= {
        "EVENT_BUS_NAME",
        "EVENT_SOURCE",
        "TOKEN_SECRET_ID",
        "MAX_BODY_BYTES",
        "CLAIM_CHECK_THRESHOLD_BYTES",
        "ALLOWED_BOT_IDS",
        "POWERTOOLS_SERVICE_NAME",
    }
    # Reserved concurrency is optional and off by default: a throttled webhook is a lost webhook.
    assert template["Parameters"]["IngestReservedConcurrency"]["Default"] == 0


def evaluate(template: dict[str, Any], value: Any, parameters: dict[str, Any]) -> Any:
    """A template value as CloudFormation resolves it for these parameter values (the defaults
    otherwise): Ref to a parameter, Fn::If, Fn::Equals, Fn::And, Fn::Or, Fn::Not and Condition."""

    def condition(name: str) -> bool:
        return bool(evaluate(template, template["Conditions"][name], parameters))

    if isinstance(value, dict) and len(value) == 1:
        ((key, args),) = value.items()
        if key == "Ref" and args in template["Parameters"]:
            return str(parameters.get(args, template["Parameters"][args].get("Default")))
        if key == "Condition":
            return condition(args)
        if key == "Fn::If":
            return evaluate(template, args[1] if condition(args[0]) else args[2], parameters)
        if key == "Fn::Equals":
            left, right = (str(evaluate(template, a, parameters)) for a in args)
            return left == right
        if key == "Fn::And":
            return all(evaluate(template, a, parameters) for a in args)
        if key == "Fn::Or":
            return any(evaluate(template, a, parameters) for a in args)
        if key == "Fn::Not":
            return not evaluate(template, args[0], parameters)
    return value


@pytest.mark.parametrize("archive", ["Enabled", "Disabled"])
def test_bus_has_an_archive_unless_it_is_disabled(template: dict[str, Any], archive: str) -> None:
    (archive_id,) = resources(template, "AWS::Events::Archive")
    resource = template["Resources"][archive_id]
    assert resource["Properties"]["SourceArn"] == {"Fn::GetAtt": ["EventBus", "Arn"]}
    assert resource["Properties"]["RetentionDays"] == {"Ref": "ArchiveRetentionDays"}
    deployed = evaluate(template, {"Condition": resource["Condition"]}, {"Archive": archive})
    assert deployed == (archive == "Enabled")
    output = template["Outputs"]["EventArchiveName"]
    assert evaluate(template, {"Condition": output["Condition"]}, {"Archive": archive}) == deployed
    assert template["Parameters"]["Archive"]["Default"] == "Enabled"


def test_bucket_is_private_encrypted_versioned_tls_only_and_retained(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["DataBucket"]
    props = bucket["Properties"]
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    policy = resources(template, "AWS::S3::BucketPolicy")["DataBucketPolicy"]
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize(
    ("archive", "days", "expected"),
    [
        ("Enabled", 90, 90),  # the defaults: as long as the archive can replay them
        ("Enabled", 365, 365),
        ("Enabled", 16, 16),
        ("Enabled", 0, None),  # an archive kept forever: claim checks too
        # Shorter than a dead-lettered event can wait for its redrive (14 days in a queue after a
        # day of retries): 16 days, or a redriven event would find its body gone.
        ("Enabled", 15, 16),
        ("Enabled", 7, 16),
        ("Enabled", 1, 16),
        ("Disabled", 90, 16),  # no archive, no replay: only the redrive window counts
        ("Disabled", 0, 16),
    ],
)
def test_claim_checks_outlive_both_the_archive_and_the_dead_letter_queues(
    template: dict[str, Any], archive: str, days: int, expected: int | None
) -> None:
    rules = {
        r["Id"]: r
        for r in template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    claim = rules["claim-check"]
    assert claim["Prefix"] == "claim-check/"
    parameters = {"Archive": archive, "ArchiveRetentionDays": days}
    status = evaluate(template, claim["Status"], parameters)
    expiry = None if status == "Disabled" else int(evaluate(template, claim["ExpirationInDays"], parameters))
    assert expiry == expected
    # The 16 days cover what the queues hold; a test of the queues' retention is in test_rehearsal.
    queues = list(resources(template, "AWS::SQS::Queue").values())
    assert max(int(q["Properties"]["MessageRetentionPeriod"]) for q in queues) <= 14 * 86400


def test_lifecycle_per_prefix(template: dict[str, Any]) -> None:
    rules = {
        r["Id"]: r
        for r in template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert rules["quarantine"]["Prefix"] == "quarantine/"
    # Spilled events wait for a redrive: no rule may expire them.
    assert not any(str(r.get("Prefix", "")).startswith("spill") for r in rules.values())


def test_token_secret_is_generated_at_deploy_time(template: dict[str, Any]) -> None:
    secrets = resources(template, "AWS::SecretsManager::Secret")
    assert set(secrets) == {"TokenSecret", "PrivacyKeySecret"}
    generate = secrets["TokenSecret"]["Properties"]["GenerateSecretString"]
    assert generate["GenerateStringKey"] == "token"
    assert generate["PasswordLength"] >= 32
    assert generate["ExcludePunctuation"] is True  # the token travels in a URL path
    # The privacy key: its own secret (the token secret's every key is read as a token), generated
    # at deploy time, under the stack's key, long enough for shared.storage.privacy.
    from shared.storage.privacy import MIN_KEY_CHARS, PRIVACY_SECRET_FIELD

    privacy = secrets["PrivacyKeySecret"]["Properties"]
    assert privacy["GenerateSecretString"]["GenerateStringKey"] == PRIVACY_SECRET_FIELD
    assert privacy["GenerateSecretString"]["PasswordLength"] >= 2 * MIN_KEY_CHARS
    assert privacy["KmsKeyId"] == {"Ref": "DataKey"}


def test_every_function_logs_to_a_group_with_retention(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")
    for name, function in resources(template, "AWS::Serverless::Function").items():
        group_ref = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert group_ref in groups, name
        assert groups[group_ref]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert {"WebhookUrl", "WebhookTokenCommand", "EventBusName", "EventBusArn"} <= set(outputs)
    assert "token" not in json.dumps(outputs["WebhookUrl"]["Value"]).lower()
    assert "get-secret-value" in outputs["WebhookTokenCommand"]["Value"]["Fn::Sub"]
    assert outputs["EventBusName"]["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-EventBusName"}


def test_the_layer_is_the_locks_runtime_closure() -> None:
    # `make lock` generates the layer's requirements from the lock: the same versions, the same
    # files (every hash of a layer pin is one of the lock's), and nothing the runtime does not need.
    layer, lock = pins(LAYER_REQUIREMENTS), pins(DEV_LOCK)
    assert {"aws-lambda-powertools", "pydantic", "pydantic-core", "boto3", "botocore"} <= set(layer)
    for name, pin in layer.items():
        assert name in lock, f"{name} is in the layer, not in the lock"
        assert (pin.version, pin.hashes <= lock[name].hashes) == (lock[name].version, True), name
        assert pin.hashes, f"{name} has no hash: pip's hash-checking mode would refuse the file"
    assert not {"moto", "pytest", "ruff", "mypy", "uv"} & set(layer)


def test_the_lock_satisfies_pyproject() -> None:
    # An edit of pyproject.toml's dependencies without `make lock` fails here, offline.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock, layer = pins(DEV_LOCK), pins(LAYER_REQUIREMENTS)
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} (pyproject.toml) is not in requirements/dev.txt: run make lock"
        assert requirement.specifier.contains(lock[name].version), f"{name}: {lock[name].version}"
        assert all(pin.hashes for pin in lock.values())
    for spec in project["dependencies"]:
        assert canonicalize_name(Requirement(spec).name) in layer, spec


def test_the_sam_cli_venv_is_locked_as_its_input_asks() -> None:
    # requirements/sam.in names the SAM CLI and the linters; sam.txt (make lock) pins their whole
    # closure with hashes, and an edit of sam.in without `make lock` fails here.
    locked = pins(ROOT / "requirements" / "sam.txt")
    lines = (ROOT / "requirements" / "sam.in").read_text().splitlines()
    asked = [line for line in lines if line[:1].isalnum()]
    assert asked
    for spec in asked:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in locked, spec
        assert requirement.specifier.contains(locked[name].version), spec
    assert all(pin.hashes for pin in locked.values())
