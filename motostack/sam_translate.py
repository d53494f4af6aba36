"""Expand a SAM template with SAM's own translator into plain CloudFormation (JSON on stdout).

Runs in an interpreter of its own with aws-sam-translator installed (it pins pydantic, which the
functions may not share); motostack.deploy.translate calls it as a subprocess. Local paths in
CodeUri and ContentUri become placeholder s3:// URIs, as `sam package` would make them.

    SAM_PYTHON motostack/sam_translate.py TEMPLATE [Name=Value ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

PLACEHOLDER_BUCKET = "local-artifacts"


class _NoManagedPolicies:
    """The template names no AWS managed policies, so the loader is never asked for one."""

    def load(self) -> dict[str, str]:
        return {}


def _package_paths(template: dict[str, Any]) -> None:
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://{PLACEHOLDER_BUCKET}/{props[key].strip('/')}.zip"
    function_globals = template.get("Globals", {}).get("Function", {})
    if isinstance(function_globals.get("CodeUri"), str):
        function_globals["CodeUri"] = (
            f"s3://{PLACEHOLDER_BUCKET}/{function_globals['CodeUri'].strip('/')}.zip"
        )


def main(argv: list[str]) -> int:
    template = yaml_parse(Path(argv[0]).read_text())
    _package_paths(template)
    parameters = dict(arg.split("=", 1) for arg in argv[1:])
    parameters.setdefault("AWS::Region", "us-east-1")
    parameters.setdefault("AWS::AccountId", "123456789012")
    parameters.setdefault("AWS::Partition", "aws")
    parameters.setdefault("AWS::StackName", "local")
    output = transform(template, parameters, _NoManagedPolicies())
    json.dump(output, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
