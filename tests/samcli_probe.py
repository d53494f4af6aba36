"""Ask SAM CLI's own code what a user of it would get, without Docker or AWS. Runs in .venv-sam.

    python tests/samcli_probe.py env TEMPLATE ENV_FILE REGION
        every function's handler and the environment `sam local invoke --env-vars ENV_FILE
        --region REGION` gives its container (samcli.commands.local.lib.local_lambda)
    python tests/samcli_probe.py guided TEMPLATE CONFIG_ENV
        every prompt of `sam deploy --guided`, in order, up to where it first calls AWS
        (samcli.commands.deploy.guided_context), each answered with its default or "y"

Prints JSON on stdout. The tests run it with a clean environment (no AWS variables of the shell,
which SAM would otherwise pass on to declared variables).
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any


def resolve_env(template: str, env_file: str, region: str) -> dict[str, Any]:
    from samcli.commands.local.cli_common.invoke_context import InvokeContext
    from samcli.commands.local.lib.local_lambda import LocalLambdaRunner
    from samcli.lib.providers.sam_function_provider import SamFunctionProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    # As InvokeContext does for `sam local invoke --region`.
    stacks, _ = SamLocalStackProvider.get_stacks(template, global_parameter_overrides={"AWS::Region": region})
    provider = SamFunctionProvider(stacks)
    runner = LocalLambdaRunner(
        local_runtime=None,  # the container runtime: not needed to resolve
        function_provider=provider,
        cwd=".",
        real_path=".",
        aws_region=region,
        env_vars_values=InvokeContext._get_env_vars_value(env_file),
    )
    return {
        function.name: {"handler": function.handler, "environment": runner._make_env_vars(function).resolve()}
        for function in provider.get_all()
    }


class _ReachedAws(Exception):
    """guided_prompts has asked everything and now looks for its deployment bucket on AWS."""


def guided_prompts(template: str, config_env: str) -> list[dict[str, Any]]:
    import click
    from samcli.cli.types import CfnParameterOverridesType
    from samcli.commands._utils.template import get_template_parameters
    from samcli.commands.deploy import guided_context
    from samcli.lib.config.samconfig import SamConfig

    asked: list[dict[str, Any]] = []

    def prompt(text: str, default: Any = None, **_: Any) -> Any:
        asked.append({"kind": "prompt", "text": click.unstyle(text).strip(), "default": default})
        return default

    def confirm(text: str, default: bool = False, **_: Any) -> bool:
        asked.append({"kind": "confirm", "text": click.unstyle(text).strip(), "default": default})
        return True

    def manage_stack(**_: Any) -> None:
        raise _ReachedAws

    guided_context.prompt = prompt
    guided_context.confirm = confirm
    guided_context.manage_stack = manage_stack
    # What `sam deploy --guided --config-env CONFIG_ENV` reads from samconfig.toml before it asks.
    saved = SamConfig(config_dir=".", filename="samconfig.toml").get_all(["deploy"], "parameters", config_env)
    overrides = saved.get("parameter_overrides")
    context = guided_context.GuidedContext(
        template_file=template,
        stack_name=saved.get("stack_name"),
        s3_bucket=None,
        image_repository=None,
        image_repositories=None,
        s3_prefix=saved.get("s3_prefix"),
        region=saved.get("region"),
        capabilities=tuple(saved.get("capabilities", "CAPABILITY_IAM").split()),
        parameter_overrides=CfnParameterOverridesType().convert(overrides, None, None) if overrides else {},
        config_env=config_env,
        config_file="samconfig.toml",
        confirm_changeset=saved.get("confirm_changeset", False),
        disable_rollback=saved.get("disable_rollback", False),
    )
    with contextlib.suppress(_ReachedAws):
        context.guided_prompts(get_template_parameters(template))
    return asked


def main(argv: list[str]) -> int:
    command, *args = argv
    with contextlib.redirect_stdout(sys.stderr):  # what SAM CLI prints itself
        if command == "env":
            result: Any = resolve_env(*args)
        elif command == "guided":
            result = guided_prompts(*args)
        else:
            print(f"unknown command {command!r}", file=sys.stderr)
            return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
