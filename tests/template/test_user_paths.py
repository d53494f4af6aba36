"""The paths a user walks with AWS's own tools: the deployed environment, `sam deploy --guided`,
samconfig.toml's environments and the outputs the README's commands read.

Each check runs the real tool's code where there is one (SAM's translator, SAM CLI's guided deploy
and samconfig reader, botocore's endpoint resolution) and says which documented AWS behaviour it
stands for where there is none.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT, samcli_probe
from tools.template import load_template

# Lambda's API reference (Environment): keys match [a-zA-Z]([a-zA-Z0-9_])+; its developer guide
# lists the reserved keys a function may not set, and caps all variables together at 4 KB.
LAMBDA_KEY = re.compile(r"[a-zA-Z][a-zA-Z0-9_]+")
LAMBDA_RESERVED = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "TZ",
    }
)
LAMBDA_ENVIRONMENT_BYTES = 4096
# What an intrinsic can resolve to here at most: a table name (255), a bus name (256), an ARN.
LONGEST_RESOLVED_VALUE = 300


def lambda_functions(translated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in translated["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}


def test_deployed_functions_have_an_empty_endpoint_override(translated_template: dict[str, Any]) -> None:
    functions = lambda_functions(translated_template)
    assert len(functions) == 5
    for name, function in functions.items():
        assert function["Properties"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"] == "", name


def test_botocore_treats_an_empty_endpoint_variable_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a deployed function's clients do with the template's empty AWS_ENDPOINT_URL: the
    # service's own regional endpoint, exactly as without the variable.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    unset = {s: boto3.client(s, region_name="eu-north-1").meta.endpoint_url for s in ("events", "s3")}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "")
    empty = {s: boto3.client(s, region_name="eu-north-1").meta.endpoint_url for s in ("events", "s3")}
    assert (
        empty
        == unset
        == {
            "events": "https://events.eu-north-1.amazonaws.com",
            "s3": "https://s3.eu-north-1.amazonaws.com",
        }
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")  # and what the local env file does
    assert boto3.client("events", region_name="eu-north-1").meta.endpoint_url == "http://127.0.0.1:4566"


def _longest(value: Any) -> int:
    """The most bytes a variable's value can resolve to: a parameter's own bound where it has one
    (a Number's digits, MaxLength, the longest AllowedValue), else LONGEST_RESOLVED_VALUE."""
    if isinstance(value, str):
        return len(value.encode())
    parameter = load_template()["Parameters"].get(value.get("Ref", "")) if isinstance(value, dict) else None
    if parameter is None:
        return LONGEST_RESOLVED_VALUE
    if "AllowedValues" in parameter:
        return max(len(str(v)) for v in parameter["AllowedValues"])
    if parameter["Type"] == "Number":
        return 20
    return int(parameter.get("MaxLength", LONGEST_RESOLVED_VALUE))


def test_every_declared_variable_is_one_lambda_accepts(translated_template: dict[str, Any]) -> None:
    for name, function in lambda_functions(translated_template).items():
        variables = function["Properties"]["Environment"]["Variables"]
        for key in variables:
            assert LAMBDA_KEY.fullmatch(key), (name, key)
            assert key not in LAMBDA_RESERVED, (name, key)
        size = sum(len(key) + _longest(value) for key, value in variables.items())
        assert size <= LAMBDA_ENVIRONMENT_BYTES, (name, size)


def test_the_readme_commands_find_what_they_need_in_the_outputs() -> None:
    main = load_template()["Outputs"]
    example = load_template(ROOT / "examples" / "low-rating-alert" / "template.yaml")["Outputs"]
    # The trigger example imports the event source; the replay command reads the archive's ARN.
    assert main["EventSource"]["Value"] == {"Ref": "EventSource"}
    assert main["EventSource"]["Export"]["Name"] == {"Fn::Sub": "${AWS::StackName}-EventSource"}
    assert main["EventArchiveArn"]["Value"] == {"Fn::GetAtt": ["EventArchive", "Arn"]}
    assert main["EventArchiveArn"]["Condition"] == "HasArchive"
    # Every `$(out STACK OUTPUT)` of the README's replay command names an output its stack has.
    read = re.findall(r"\$\(out (\S+) (\w+)\)", (ROOT / "README.md").read_text())
    assert {key for _, key in read} == {"EventArchiveArn", "EventBusArn", "RuleArn"}
    for stack, key in read:
        assert key in (example if stack == "low-rating-alert" else main), (stack, key)


# --- samconfig.toml and `sam deploy --guided` ---------------------------------------------------------

SAMCONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text())


def _pairs(text: str) -> dict[str, str]:
    """`Key="value" Other="v"`, as SAM CLI writes parameter_overrides and tags."""
    return dict(re.findall(r'(\w+)="([^"]*)"', text))


@pytest.mark.parametrize("environment", sorted(SAMCONFIG.keys() - {"version"}))
def test_each_samconfig_environment_tags_its_stack_with_its_stage(environment: str) -> None:
    deploy = SAMCONFIG[environment]["deploy"]["parameters"]
    tags = _pairs(deploy["tags"])
    stage = _pairs(deploy.get("parameter_overrides", "")).get(
        "Stage", load_template()["Parameters"]["Stage"]["Default"]
    )
    assert tags == {"app": "ebbot-webhooks", "stage": stage}
    assert deploy["s3_prefix"] == SAMCONFIG[environment]["global"]["parameters"]["stack_name"]


def test_default_is_its_own_stack_not_a_copy_of_dev() -> None:
    names = {env: SAMCONFIG[env]["global"]["parameters"]["stack_name"] for env in ("default", "dev", "prod")}
    assert len(set(names.values())) == 3, names
    assert SAMCONFIG["default"]["deploy"]["parameters"] != SAMCONFIG["dev"]["deploy"]["parameters"]


def test_the_deploy_guide_walks_every_prompt_of_sam_deploy_guided_in_order() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    asked = samcli_probe("guided", "template.yaml", "default")
    texts = [a["text"] for a in asked]
    assert "IngestFunction has no authentication. Is this okay?" in texts
    position = 0
    for text in texts:
        found = guide.find(text, position)
        assert found >= 0, f"docs/deploy.md does not walk the prompt {text!r} (in SAM CLI's order)"
        position = found
    for name in ("default", "dev", "prod"):
        assert f"[{name}]" in guide, name


def test_the_parameters_the_guide_explains_are_the_templates() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    explained = set(re.findall(r"^\| `Parameter (\w+)`", guide, flags=re.MULTILINE))
    assert explained == set(load_template()["Parameters"])


def test_the_readme_links_the_deploy_guide() -> None:
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()
