"""Deploy a SAM template into moto: SAM's own translator, moto's CloudFormation, then what moto skips.

The template stays the single source of truth: tables, buckets, buses, rules, queues and functions
are created from it, never from a second list. Where moto falls short, this module fills in from
the translated template itself:

- SAM's HTTP API resources fail in moto: they are left out (motostack.runtime serves the routes,
  read from the API's OpenAPI body: http_routes).
- moto's CloudFormation skips some types silently (SKIPPED_BY_MOTO). A secret with
  GenerateSecretString is created here (its value given by the caller, or generated), and function
  settings that referred to it are filled in; EventInvokeConfig is read from the template.
- moto wants an archive's EventPattern as a string; it is given one.
- moto cannot deliver to Lambda targets: motostack.lambda_targets hands matched events to each
  function's worker over Lambda's Invoke API, which runs the handler itself.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ARTIFACT_BUCKET = "local-artifacts"  # motostack/sam_translate.py points CodeUri and ContentUri here
SAM_TRANSLATE = Path(__file__).resolve().parent / "sam_translate.py"

# Types moto's CloudFormation reports CREATE_COMPLETE for without creating anything (moto 5.2).
# tests/template/test_rehearsal.py pins this list, so a moto upgrade that changes it is noticed.
SKIPPED_BY_MOTO = frozenset(
    {
        "AWS::SecretsManager::Secret",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::CloudWatch::Alarm",
        "AWS::SQS::QueuePolicy",
        "AWS::S3::BucketPolicy",
        "AWS::Logs::MetricFilter",
        "AWS::Logs::QueryDefinition",
    }
)


class _SkippedTypeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.msg == "No Moto CloudFormation support for %s"
            and isinstance(record.args, tuple)
            and record.args[:1] in {(t,) for t in SKIPPED_BY_MOTO}
        )


def quiet_about_skipped_types() -> None:
    """moto warns and logs once for each resource of a type its CloudFormation skips. The types
    of SKIPPED_BY_MOTO are filled in here, so for them that is noise; any other type still warns.
    For this process (moto's own, or one that runs moto in process)."""
    for kind in SKIPPED_BY_MOTO:
        warnings.filterwarnings(
            "ignore", message=f"Tried to parse {re.escape(kind)} but", category=UserWarning
        )
    moto_logger = logging.getLogger("moto")
    if not any(isinstance(f, _SkippedTypeFilter) for f in moto_logger.filters):
        moto_logger.addFilter(_SkippedTypeFilter())


# Types that make moto's create_stack fail: left out, with everything that refers to them.
REMOVED_FOR_MOTO = frozenset(
    {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage", "AWS::ApiGatewayV2::Route"}
)


class StackError(Exception):
    """The template could not be translated or deployed; the message says what to fix."""


def translate(
    template: Path, *, sam_python: Path, parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    """The template as plain CloudFormation, through SAM's translator run by `sam_python` (an
    interpreter with aws-sam-translator installed: it pins its own pydantic)."""
    if not sam_python.exists():
        raise StackError(f"{sam_python} is missing: it must have aws-sam-translator installed")
    args = [f"{k}={v}" for k, v in (parameters or {}).items()]
    result = subprocess.run(
        [str(sam_python), str(SAM_TRANSLATE), str(template), *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")},
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise StackError(f"{template.name} does not translate: {last}")
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _refers_to(node: Any, names: frozenset[str]) -> bool:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and value in names:
                return True
            if key == "Fn::GetAtt" and isinstance(value, list) and value and value[0] in names:
                return True
            if key == "Fn::Sub" and any(f"${{{n}" in json.dumps(value) for n in names):
                return True
            if _refers_to(value, names):
                return True
    elif isinstance(node, list):
        return any(_refers_to(item, names) for item in node)
    return False


def for_moto(cfn: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy moto's CloudFormation can create, and the logical ids left out of it."""
    out = copy.deepcopy(cfn)
    resources = out["Resources"]
    removed = {name for name, res in resources.items() if res["Type"] in REMOVED_FOR_MOTO}
    while True:  # and whatever refers to them, transitively
        more = {n for n, r in resources.items() if n not in removed and _refers_to(r, frozenset(removed))}
        if not more:
            break
        removed |= more
    for name in removed:
        del resources[name]
    frozen = frozenset(removed)
    out["Outputs"] = {k: v for k, v in out.get("Outputs", {}).items() if not _refers_to(v, frozen)}
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Events::Archive" and isinstance(props.get("EventPattern"), dict):
            props["EventPattern"] = _json_string(props["EventPattern"])
    return out, sorted(removed)


def _json_string(node: Any) -> Any:
    """A JSON value with intrinsic functions inside, as an Fn::Join that CloudFormation resolves to text."""
    parts: list[Any] = []

    def walk(value: Any) -> None:
        if (
            isinstance(value, dict)
            and len(value) == 1
            and next(iter(value)) in ("Ref", "Fn::GetAtt", "Fn::Sub")
        ):
            parts.extend(['"', value, '"'])
        elif isinstance(value, dict):
            parts.append("{")
            for i, (k, v) in enumerate(value.items()):
                parts.append(("," if i else "") + json.dumps(k) + ":")
                walk(v)
            parts.append("}")
        elif isinstance(value, list):
            parts.append("[")
            for i, v in enumerate(value):
                if i:
                    parts.append(",")
                walk(v)
            parts.append("]")
        else:
            parts.append(json.dumps(value))

    walk(node)
    return {"Fn::Join": ["", parts]}


@dataclass
class Function:
    logical_id: str
    name: str
    arn: str
    handler: str
    environment: dict[str, str]
    timeout_s: int
    max_retry_attempts: int = 2  # Lambda's default for asynchronous invocation
    max_event_age_s: int = 21600
    on_failure_arn: str | None = None


@dataclass
class RuleTarget:
    rule_logical_id: str
    rule_name: str
    rule_arn: str
    bus_name: str
    target_id: str
    function: str  # logical id
    dead_letter_arn: str | None
    retry_attempts: int
    max_event_age_s: int


@dataclass
class Deployment:
    stack_name: str
    template: dict[str, Any]
    physical: dict[str, str]
    outputs: dict[str, str]
    functions: dict[str, Function] = field(default_factory=dict)
    targets: list[RuleTarget] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    # Logical id -> the value of each secret this module created (GenerateSecretString).
    secrets: dict[str, str] = field(default_factory=dict)

    def resource(self, logical_id: str) -> str:
        return self.physical[logical_id]


def _placeholder_zip() -> bytes:
    # moto stores the code but never runs it: the local runtime imports the handlers from functions/.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "motostack runs the code from its CodeUri directory, not from here")
    return buffer.getvalue()


def _s3_uris(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if (
            "S3Bucket" in node
            and node.get("S3Bucket") == ARTIFACT_BUCKET
            and isinstance(node.get("S3Key"), str)
        ):
            found.add(node["S3Key"])
        for value in node.values():
            found |= _s3_uris(value)
    elif isinstance(node, list):
        for item in node:
            found |= _s3_uris(item)
    return found


def deploy(
    clients: Any,
    *,
    cfn: dict[str, Any],
    stack_name: str = "local",
    parameters: dict[str, str] | None = None,
    secret_values: dict[str, str] | None = None,
) -> Deployment:
    """Create the translated template `cfn` in moto through `clients` (an object with boto3 clients
    as attributes). `secret_values` gives the generated string of a secret by its logical id."""
    moto_cfn, left_out = for_moto(cfn)
    quiet_about_skipped_types()  # when moto runs in this process
    s3 = clients.s3
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    for key in _s3_uris(moto_cfn):
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=_placeholder_zip())
    cloudformation = clients.cloudformation
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(moto_cfn),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack = _wait(cloudformation, stack_name)
    physical = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name)
        for r in page["StackResourceSummaries"]
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    deployment = Deployment(stack_name, cfn, physical, outputs, left_out=left_out)
    _create_skipped(clients, deployment, secret_values or {})
    _read_functions(clients, deployment)
    _read_targets(clients, deployment)
    return deployment


def _wait(cloudformation: Any, stack_name: str) -> dict[str, Any]:
    for _ in range(600):
        stack: dict[str, Any] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return stack
        if status.endswith("FAILED") or "ROLLBACK" in status:
            raise StackError(f"stack {stack_name}: {status}: {stack.get('StackStatusReason', '')}")
        time.sleep(0.1)
    raise StackError(f"stack {stack_name} did not finish")


def _create_skipped(clients: Any, deployment: Deployment, secret_values: dict[str, str]) -> None:
    """Create what moto's CloudFormation skips and a stack needs: its generated secrets."""
    for name, resource in deployment.template["Resources"].items():
        if resource["Type"] != "AWS::SecretsManager::Secret":
            continue
        generate = resource["Properties"].get("GenerateSecretString")
        if generate is None:
            value = str(resource["Properties"].get("SecretString", secret_values.get(name, "")))
            secret_string = value
        else:
            key = generate.get("GenerateStringKey")
            value = secret_values.get(name) or str(
                clients.secretsmanager.get_random_password(
                    PasswordLength=generate.get("PasswordLength", 32),
                    ExcludePunctuation=generate.get("ExcludePunctuation", False),
                )["RandomPassword"]
            )
            base = json.loads(generate.get("SecretStringTemplate", "{}"))
            secret_string = json.dumps({**base, key: value}) if key else value
        arn = clients.secretsmanager.create_secret(
            Name=f"{deployment.stack_name}-{name}", SecretString=secret_string
        )["ARN"]
        deployment.physical[name] = arn
        deployment.secrets[name] = value
    # Outputs that name a resource created here: moto's CloudFormation left them out.
    for key, output in deployment.template.get("Outputs", {}).items():
        if key not in deployment.outputs and isinstance(
            value := _resolve(output.get("Value"), deployment), str
        ):
            deployment.outputs[key] = value


def _resolve(value: Any, deployment: Deployment) -> Any:
    """Refs and GetAtts to resources the local stack created itself."""
    if isinstance(value, dict) and "Ref" in value:
        return deployment.physical.get(value["Ref"], value)
    return value


def _queue_arn(clients: Any, deployment: Deployment, value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical, attribute = value["Fn::GetAtt"]
        if attribute == "Arn":
            url = deployment.physical[logical]
            attrs = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
            return str(attrs["QueueArn"])
    return None


def _read_functions(clients: Any, deployment: Deployment) -> None:
    resources = deployment.template["Resources"]
    invoke_configs = {
        json.dumps(res["Properties"]["FunctionName"]): res["Properties"]
        for res in resources.values()
        if res["Type"] == "AWS::Lambda::EventInvokeConfig"
    }
    for logical, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        name = deployment.physical[logical]
        config = clients.awslambda.get_function_configuration(FunctionName=name)
        environment = {k: str(v) for k, v in (config.get("Environment", {}).get("Variables") or {}).items()}
        # moto drops variables that refer to resources it skipped: fill them from the template.
        template_env = resource["Properties"].get("Environment", {}).get("Variables", {})
        for key, value in template_env.items():
            resolved = _resolve(value, deployment)
            if key not in environment and isinstance(resolved, str):
                environment[key] = resolved
        function = Function(
            logical, name, config["FunctionArn"], config["Handler"], environment, int(config["Timeout"])
        )
        invoke = invoke_configs.get(json.dumps({"Ref": logical}))
        if invoke:
            function.max_retry_attempts = int(invoke.get("MaximumRetryAttempts", 2))
            function.max_event_age_s = int(invoke.get("MaximumEventAgeInSeconds", 21600))
            on_failure = invoke.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            function.on_failure_arn = _queue_arn(clients, deployment, on_failure)
        deployment.functions[logical] = function


def _read_targets(clients: Any, deployment: Deployment) -> None:
    by_arn = {f.arn: f for f in deployment.functions.values()}
    for logical, resource in deployment.template["Resources"].items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        rule_name = deployment.physical[logical]
        bus = _bus_name(deployment, resource["Properties"].get("EventBusName"))
        rule = clients.events.describe_rule(Name=rule_name, EventBusName=bus)
        for target in clients.events.list_targets_by_rule(Rule=rule_name, EventBusName=bus)["Targets"]:
            function = by_arn.get(target["Arn"])
            if function is None:
                continue
            retry = target.get("RetryPolicy", {})
            deployment.targets.append(
                RuleTarget(
                    rule_logical_id=logical,
                    rule_name=rule_name,
                    rule_arn=rule["Arn"],
                    bus_name=bus,
                    target_id=target["Id"],
                    function=function.logical_id,
                    dead_letter_arn=target.get("DeadLetterConfig", {}).get("Arn"),
                    retry_attempts=int(retry.get("MaximumRetryAttempts", 185)),
                    max_event_age_s=int(retry.get("MaximumEventAgeInSeconds", 86400)),
                )
            )


def _bus_name(deployment: Deployment, value: Any) -> str:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return (
            deployment.outputs.get("EventBusName")
            or deployment.physical[value["Fn::GetAtt"][0]].split("/")[-1]
        )
    if isinstance(value, dict) and "Ref" in value:
        return deployment.physical[value["Ref"]].split("/")[-1]
    return str(value or "default")


@dataclass
class Clients:
    """boto3 clients for one endpoint (moto's server) or for moto's in-process mock (endpoint None)."""

    endpoint_url: str | None = None
    region: str = "us-east-1"

    def __getattr__(self, service: str) -> Any:
        import boto3

        name = "lambda" if service == "awslambda" else service
        client = boto3.client(name, region_name=self.region, endpoint_url=self.endpoint_url)
        setattr(self, service, client)
        return client


def http_routes(cfn: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(METHOD, path template, function logical id) of every route of the template's HTTP APIs,
    from their OpenAPI bodies as SAM writes them (`x-amazon-apigateway-integration` to a function)."""
    routes = []
    for resource in cfn["Resources"].values():
        if resource["Type"] != "AWS::ApiGatewayV2::Api":
            continue
        for path, methods in resource["Properties"].get("Body", {}).get("paths", {}).items():
            for method, operation in methods.items():
                uri = json.dumps(operation.get("x-amazon-apigateway-integration", {}).get("uri", ""))
                function = (
                    uri.split("/functions/${", 1)[1].split(".Arn}", 1)[0] if "/functions/${" in uri else ""
                )
                if function:
                    routes.append((method.upper(), path, function))
    return sorted(routes)


if __name__ == "__main__":  # print a translated template, for a look: deploy.py TEMPLATE SAM_PYTHON
    json.dump(translate(Path(sys.argv[1]), sam_python=Path(sys.argv[2])), sys.stdout, indent=1)
