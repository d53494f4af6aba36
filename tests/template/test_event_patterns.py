"""Every event pattern in every template is one EventBridge accepts once CloudFormation has filled it in.

Neither linter checks this and moto accepts any pattern, so this check stands for two documented
behaviours. CloudFormation's parameter reference: a `Number` parameter is validated as a number,
"however, when you use the parameter elsewhere in your template (for example, by using the Ref
intrinsic function), the parameter value becomes a string"; the same holds for every intrinsic's
result. EventBridge's comparison operators: `numeric` takes operators and numbers, and a pattern
whose operand is a string fails to create its rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tools.template import load_template

TEMPLATES = [ROOT / "template.yaml", *sorted((ROOT / "examples").glob("*/template.yaml"))]
NUMERIC_OPERATORS = frozenset({"<", "<=", "=", ">", ">="})
INTRINSICS = ("Ref", "Condition")  # and every "Fn::..."


def event_patterns(template: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(where, pattern) for every rule and archive pattern, SAM's EventBridgeRule events included."""
    for name, resource in template.get("Resources", {}).items():
        props = resource.get("Properties", {})
        if resource["Type"] in ("AWS::Events::Rule", "AWS::Events::Archive") and "EventPattern" in props:
            yield name, props["EventPattern"]
        if resource["Type"] == "AWS::Serverless::Function":
            for event_name, event in props.get("Events", {}).items():
                if event.get("Type") in ("EventBridgeRule", "CloudWatchEvent"):
                    yield f"{name}.Events.{event_name}", event["Properties"]["Pattern"]


def _is_intrinsic(node: Any) -> bool:
    return (
        isinstance(node, dict)
        and len(node) == 1
        and (next(iter(node)) in INTRINSICS or next(iter(node)).startswith("Fn::"))
    )


def numeric_problems(pattern: Any, path: str = "") -> list[str]:
    """What EventBridge would refuse in the `numeric` filters of a pattern, after substitution."""
    problems: list[str] = []
    if isinstance(pattern, dict) and not _is_intrinsic(pattern):
        for key, value in pattern.items():
            if key == "numeric":
                problems.extend(_numeric_filter_problems(value, f"{path}.numeric"))
            else:
                problems.extend(numeric_problems(value, f"{path}.{key}" if path else key))
    elif isinstance(pattern, list):
        for index, item in enumerate(pattern):
            problems.extend(numeric_problems(item, f"{path}[{index}]"))
    return problems


def _numeric_filter_problems(spec: Any, path: str) -> list[str]:
    if not isinstance(spec, list) or not spec or len(spec) % 2:
        return [f"{path}: a numeric filter is a list of operator, number pairs"]
    problems = []
    for index in range(0, len(spec), 2):
        operator, operand = spec[index], spec[index + 1]
        if operator not in NUMERIC_OPERATORS:
            problems.append(f"{path}[{index}]: {operator!r} is not a numeric operator")
        if _is_intrinsic(operand):
            problems.append(
                f"{path}[{index + 1}]: {operand} reaches EventBridge as a string, which numeric refuses"
            )
        elif isinstance(operand, bool) or not isinstance(operand, (int, float)):
            problems.append(f"{path}[{index + 1}]: {operand!r} is not a number")
    return problems


def test_the_check_refuses_an_operand_from_a_parameter_and_accepts_a_literal() -> None:
    # The example's pattern before it was fixed: a Number parameter as the operand.
    from_parameter = {"detail": {"metadata": {"rating": [{"numeric": ["<=", {"Ref": "MaxRating"}]}]}}}
    assert numeric_problems(from_parameter) == [
        "detail.metadata.rating[0].numeric[1]: {'Ref': 'MaxRating'} reaches EventBridge as a string, "
        "which numeric refuses"
    ]
    assert numeric_problems({"rating": [{"numeric": ["<=", "2"]}]}) == [
        "rating[0].numeric[1]: '2' is not a number"
    ]
    assert numeric_problems({"rating": [{"numeric": [">", 0, "<=", 2.5]}]}) == []
    assert numeric_problems({"rating": [{"numeric": ["~", 2]}]}) == [
        "rating[0].numeric[0]: '~' is not a numeric operator"
    ]


def test_every_template_has_event_patterns_to_check() -> None:
    assert ROOT / "examples" / "low-rating-alert" / "template.yaml" in TEMPLATES
    for path in TEMPLATES:
        assert list(event_patterns(load_template(path))), f"{path} has no event pattern"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_numeric_operands_are_numbers_after_cloudformation_substitution(path: Path) -> None:
    problems = [
        f"{where}: {problem}"
        for where, pattern in event_patterns(load_template(path))
        for problem in numeric_problems(pattern)
    ]
    assert problems == []
