"""A deploy rehearsal: `sam build` as users run it, then the built stack packaged into moto's S3,
transformed with SAM's translator and created by moto's CloudFormation; the result is checked
through each service's own API, not through CloudFormation's word.

What moto lacks is worked around here and written down (docs/decisions.md), never in template.yaml:
- moto skips some resource types silently (SKIPPED_BY_MOTO, pinned below) and fails on SAM's HTTP
  API resources, which motostack.deploy.for_moto leaves out;
- moto's CloudFormation drops some properties (MOTO_DROPS): the table's point-in-time recovery, SSE
  and TTL, the bucket's versioning, public access block and lifecycle, functions' architecture, layers and
  tracing. Those are checked on the translated template AWS will receive instead;
- moto wants an archive's EventPattern as a string (motostack.deploy gives it one).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from moto.cloudformation.parsing import resource_class_from_type
from packaging.utils import canonicalize_name

from motostack.deploy import (
    REMOVED_FOR_MOTO,
    SKIPPED_BY_MOTO,
    Clients,
    Deployment,
    deploy,
    quiet_about_skipped_types,
)
from tools.localstack import translate
from tools.requirements import LAYER_REQUIREMENTS, pins
from tools.template import load_template

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = "rehearsal-artifacts"
CONSUMERS = {"ChatsFunction", "MessagesFunction", "ScenariosFunction", "TranscriptsFunction"}
# Properties moto 5.2's CloudFormation does not apply; each is asserted on the translated template.
MOTO_DROPS = {
    "Table": ["PointInTimeRecoverySpecification", "SSESpecification", "TimeToLiveSpecification"],
    "DataBucket": ["VersioningConfiguration", "PublicAccessBlockConfiguration", "LifecycleConfiguration"],
    "AWS::Lambda::Function": ["Architectures", "Layers", "TracingConfig"],
}


def python313() -> str:
    found = subprocess.run(
        [str(ROOT / "scripts" / "find-python313")], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        pytest.fail(f"sam build needs python3.13 (the Lambda runtime's):\n{found.stderr}")
    return found.stdout.strip()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` of the template as it ships: python3.13 on arm64, no container."""
    build_dir = tmp_path_factory.mktemp("sam-build")
    env = {
        **os.environ,
        "PATH": f"{Path(python313()).parent}{os.pathsep}{os.environ['PATH']}",
        "SAM_CLI_TELEMETRY": "0",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(
        [
            str(ROOT / ".venv-sam" / "bin" / "sam"),
            "build",
            "--build-dir",
            str(build_dir),
            "--template-file",
            "template.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return build_dir


def test_sam_build_makes_arm64_python313_artifacts(built: Path) -> None:
    assert (built / "template.yaml").exists()
    layer = built / "DependenciesLayer" / "python"
    cores = list(layer.glob("pydantic_core/_pydantic_core.cpython-313-aarch64-linux-gnu.so"))
    assert cores, "the layer must hold pydantic-core built for python3.13 on aarch64"
    for function in ("IngestFunction", *CONSUMERS):
        assert (built / function / "shared" / "contract" / "models.py").exists(), function
    # The layer holds exactly the lock's closure, at the lock's versions (layers/dependencies/Makefile)
    stems = [d.name.removesuffix(".dist-info").rsplit("-", 1) for d in layer.glob("*.dist-info")]
    installed = {canonicalize_name(name): version for name, version in stems}
    assert installed == {name: pin.version for name, pin in pins(LAYER_REQUIREMENTS).items()}


def test_the_layer_build_refuses_a_file_whose_hash_is_not_the_locks(tmp_path: Path) -> None:
    # pip checks every file it installs into the layer against requirements.txt: a wrong hash stops
    # the build (what the lock protects against: a file on the index that is not the one locked).
    six = pins(LAYER_REQUIREMENTS)["six"]
    (tmp_path / "Makefile").write_text((ROOT / "layers" / "dependencies" / "Makefile").read_text())
    (tmp_path / "requirements.txt").write_text(f"six=={six.version} --hash=sha256:{'0' * 64}\n")
    result = subprocess.run(
        ["make", "build-DependenciesLayer", f"ARTIFACTS_DIR={tmp_path / 'out'}", f"PYTHON={python313()}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "DO NOT MATCH THE HASHES" in result.stderr
    assert not list((tmp_path / "out").glob("python/six*"))


def _package(built: Path, s3: Any, out: Path) -> Path:
    """What `sam package` does: zip each artifact into S3 and point the template at it."""
    template = load_template(built / "template.yaml")
    s3.create_bucket(Bucket=ARTIFACTS)
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                    for path in sorted((built / props[key]).rglob("*")):
                        if path.is_file():
                            archive.write(path, path.relative_to(built / props[key]))
                s3.put_object(Bucket=ARTIFACTS, Key=f"{name}.zip", Body=buffer.getvalue())
                props[key] = f"s3://{ARTIFACTS}/{name}.zip"
    template.get("Globals", {}).get("Function", {}).pop("CodeUri", None)
    out.write_text(json.dumps(template))
    return out


@pytest.fixture(scope="module")
def rehearsal(
    built: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Clients, Deployment, set[str]]]:
    with mock_aws():
        clients = Clients()
        packaged = _package(built, clients.s3, tmp_path_factory.mktemp("packaged") / "packaged.json")
        cfn = translate(packaged, {"AWS::StackName": "rehearsal"})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            deployment = deploy(
                clients, stack_name="rehearsal", cfn=cfn, secret_values={"TokenSecret": "t" * 32}
            )
        # moto's own test of a type: what its CloudFormation parses (None: skipped with a warning)
        skipped = {
            resource["Type"]
            for resource in cfn["Resources"].values()
            if resource["Type"] not in REMOVED_FOR_MOTO and resource_class_from_type(resource["Type"]) is None
        }
        # ... and deploy() says nothing of those it fills in itself (make bench, make run's moto log)
        assert [str(w.message) for w in caught if "Tried to parse" in str(w.message)] == []
        # (leaving catch_warnings put back the filters from before it: moto parses the template again
        # when the tests below read the stack, and stays quiet only with deploy()'s filter back)
        quiet_about_skipped_types()
        yield clients, deployment, skipped


def test_stack_is_created_and_moto_skips_exactly_the_known_types(
    rehearsal: tuple[Clients, Deployment, set[str]],
) -> None:
    clients, deployment, skipped = rehearsal
    status = clients.cloudformation.describe_stacks(StackName="rehearsal")["Stacks"][0]["StackStatus"]
    assert status == "CREATE_COMPLETE"
    # If this fails after a moto upgrade, revisit motostack/deploy.py: it creates what moto skips.
    assert skipped == set(SKIPPED_BY_MOTO)
    assert set(deployment.left_out) == {
        "ApiServerErrorsAlarm",  # it names the HTTP API's id
        "Dashboard",  # so does it
        "HttpApi",
        "HttpApiApiGatewayDefaultStage",
        "IngestFunctionBearerHeaderPermission",
        "IngestFunctionTokenInPathPermission",
    }


def test_table_as_the_data_model_says(rehearsal: tuple[Clients, Deployment, set[str]]) -> None:
    clients, deployment, _ = rehearsal
    table = clients.dynamodb.describe_table(TableName=deployment.outputs["TableName"])["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {"pk": "HASH", "sk": "RANGE"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    (gsi,) = table["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "gsi1"
    assert gsi["Projection"]["ProjectionType"] == "INCLUDE"
    # What moto drops, on the template AWS will receive:
    props = deployment.template["Resources"]["Table"]["Properties"]
    assert set(MOTO_DROPS["Table"]) <= set(props)
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}


def test_bucket_private_encrypted_versioned_with_lifecycles(
    rehearsal: tuple[Clients, Deployment, set[str]],
) -> None:
    clients, deployment, _ = rehearsal
    bucket = deployment.outputs["DataBucketName"]
    s3 = clients.s3
    versioning = deployment.template["Resources"]["DataBucket"]["Properties"]["VersioningConfiguration"]
    assert versioning == {"Status": "Enabled"}  # moto drops it: checked on the template
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = deployment.template["Resources"]["DataBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert list(block.values()) == [True] * 4  # moto drops it: checked on the template
    lifecycle = deployment.template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]
    rules = {r["Id"]: r for r in lifecycle["Rules"]}  # moto drops it: checked on the template
    assert {"claim-check", "quarantine", "transcripts", "oversize", "noncurrent-versions"} <= set(rules)
    assert rules["claim-check"]["ExpirationInDays"] == {
        "Fn::If": ["ClaimChecksFollowArchive", {"Ref": "ArchiveRetentionDays"}, 16]
    }


def test_bus_archive_rules_and_targets(rehearsal: tuple[Clients, Deployment, set[str]]) -> None:
    clients, deployment, _ = rehearsal
    bus = deployment.outputs["EventBusName"]
    assert clients.events.describe_event_bus(Name=bus)["Name"] == bus == "rehearsal-bus"
    archives = clients.events.list_archives()["Archives"]
    assert [a["RetentionDays"] for a in archives] == [90]
    rules = clients.events.list_rules(EventBusName=bus)["Rules"]
    patterns = {r["Name"]: json.loads(r["EventPattern"]) for r in rules}
    consumer_rules = [p for p in patterns.values() if "detail-type" in p]
    assert sorted(t for p in consumer_rules for t in p["detail-type"]) == sorted(
        [
            "chat.create",
            "chat.update",
            "chat.status.change",
            "chat.user.update",
            "chat.data.update",
            "chat.user.message",
            "chat.bot.message",
            "chat.agent.message",
            "chat.system.message",
            "chat.message",
            "chat.scenario.run",
            "chat.close",
        ]
    )
    dlq = clients.sqs.get_queue_attributes(
        QueueUrl=deployment.outputs["DeliveryDLQUrl"], AttributeNames=["QueueArn"]
    )
    for target in deployment.targets:
        (deployed,) = clients.events.list_targets_by_rule(Rule=target.rule_name, EventBusName=bus)["Targets"]
        assert deployed["Arn"] == deployment.functions[target.function].arn
        assert deployed["DeadLetterConfig"]["Arn"] == dlq["Attributes"]["QueueArn"]
        assert deployed["RetryPolicy"] == {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
    assert {t.function for t in deployment.targets} == CONSUMERS


def test_queues_are_encrypted_and_keep_two_weeks(rehearsal: tuple[Clients, Deployment, set[str]]) -> None:
    clients, deployment, _ = rehearsal
    for key in ("DeliveryDLQUrl", "FailedEventsQueueUrl"):
        attrs = clients.sqs.get_queue_attributes(QueueUrl=deployment.outputs[key], AttributeNames=["All"])[
            "Attributes"
        ]
        assert attrs["SqsManagedSseEnabled"] == "true", key
        assert attrs["MessageRetentionPeriod"] == "1209600", key


def test_functions_and_their_settings(rehearsal: tuple[Clients, Deployment, set[str]]) -> None:
    clients, deployment, _ = rehearsal
    assert set(deployment.functions) == {"IngestFunction", *CONSUMERS}
    for name, function in deployment.functions.items():
        config = clients.awslambda.get_function_configuration(FunctionName=function.name)
        assert config["Runtime"] == "python3.13", name
        template_props = deployment.template["Resources"][name]["Properties"]  # moto drops these three
        # Tracing=Active by default: X-Ray on, and Powertools' tracer with it.
        assert template_props["TracingConfig"] == {
            "Mode": {"Fn::If": ["TracingActive", "Active", "PassThrough"]}
        }, name
        assert template_props["LoggingConfig"]["LogFormat"] == "JSON", name
        assert template_props["Architectures"] == ["arm64"], name
        assert template_props["Layers"] == [{"Ref": next(iter(_layers(deployment)))}], name
        assert config["Handler"].endswith(".app.lambda_handler"), name
        env = config["Environment"]["Variables"]
        assert env["BUCKET_NAME"] == deployment.outputs["DataBucketName"], name
        assert env["POWERTOOLS_LOGGER_LOG_EVENT"] == "false", name
        assert env["POWERTOOLS_TRACE_DISABLED"] == "false", name
    ingest = deployment.functions["IngestFunction"]
    assert ingest.environment["EVENT_BUS_NAME"] == "rehearsal-bus"
    assert ingest.environment["TOKEN_SECRET_ID"].startswith("arn:aws:secretsmanager:")
    for name in CONSUMERS:
        assert deployment.functions[name].environment["TABLE_NAME"] == deployment.outputs["TableName"]
        assert deployment.functions[name].max_retry_attempts == 2
    assert (
        clients.awslambda.get_function_configuration(
            FunctionName=deployment.functions["TranscriptsFunction"].name
        )["MemorySize"]
        == 512
    )


def _layers(deployment: Deployment) -> list[str]:
    return [
        n for n, r in deployment.template["Resources"].items() if r["Type"] == "AWS::Lambda::LayerVersion"
    ]


def test_log_groups_have_retention(rehearsal: tuple[Clients, Deployment, set[str]]) -> None:
    clients, _, _ = rehearsal
    groups = clients.logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/rehearsal/")["logGroups"]
    assert {g["logGroupName"].rsplit("/", 1)[1] for g in groups} == {
        "ingest",
        "chats",
        "messages",
        "scenarios",
        "transcripts",
    }
    assert all(g["retentionInDays"] == 30 for g in groups)


def test_archive_disabled_deploys_without_an_archive_and_still_delivers_every_topic() -> None:
    """Archive=Disabled (a cost lever: bench/cost.py) leaves out the archive and its output, and
    nothing else: the same rules and targets as with it."""
    with mock_aws():
        clients = Clients()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the types moto skips: the test above names them
            enabled = deploy(
                clients,
                stack_name="with",
                cfn=translate(parameters={"AWS::StackName": "with"}),
                secret_values={"TokenSecret": "t" * 32},
            )
            disabled = deploy(
                clients,
                stack_name="without",
                cfn=translate(parameters={"AWS::StackName": "without", "Archive": "Disabled"}),
                parameters={"Archive": "Disabled"},
                secret_values={"TokenSecret": "t" * 32},
            )
        archives = clients.events.list_archives()["Archives"]
    # (Other tests' stacks may share moto's state: only these two buses are looked at.)
    archived = {a["EventSourceArn"].rsplit("/", 1)[1] for a in archives}
    assert archived & {"with-bus", "without-bus"} == {"with-bus"}
    assert "EventArchive" in enabled.physical
    assert "EventArchive" not in disabled.physical
    assert "EventArchiveName" not in disabled.outputs

    def deliveries(deployment: Deployment) -> list[tuple[str, str, int]]:
        return sorted((t.rule_logical_id, t.function, t.retry_attempts) for t in deployment.targets)

    assert deliveries(enabled)
    assert deliveries(disabled) == deliveries(enabled)
