"""The pictures match the code: the README's architecture names the template's functions, rules
and queues as they are wired, the outcomes diagram (docs/reliability.md) answers exactly the
statuses ingest can answer, and every diagram parses with Mermaid's own parser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools.template import load_template, resources

CHECK = ROOT / "scripts" / "mermaid" / "check.mjs"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def diagrams(path: Path) -> list[str]:
    return re.findall(r"^```mermaid\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def _parse(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not (CHECK.parent / "node_modules").exists():
        pytest.fail("the diagram check needs node and `make setup` (npm ci in scripts/mermaid)")
    return subprocess.run(
        [node, str(CHECK), *map(str, files)], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_diagram_parses_with_mermaids_own_parser(tmp_path: Path) -> None:
    result = _parse(*DOCUMENTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sum(len(diagrams(p)) for p in DOCUMENTS) >= 2
    assert "0 that do not parse" in result.stdout
    broken = tmp_path / "broken.md"
    broken.write_text("```mermaid\nflowchart LR\n  a[Ebbot] -->|POST b[API\n```\n")
    assert _parse(broken).returncode == 1  # the check can fail


def _edges(diagram: str) -> list[tuple[str, str, str]]:
    """(source labels, edge label, target label) with `a & b` sources expanded, by node label."""
    labels = dict(re.findall(r"(\w+)[\[\(\{]+([^\]\)\}]+)[\]\)\}]+", diagram))
    found: list[tuple[str, str, str]] = []
    for line in diagram.splitlines():
        match = re.match(r"\s*([\w &]+?)\s*-\.?->\s*(?:\|([^|]*)\|\s*)?(\w+)", line)
        if match:
            sources = [labels.get(s.strip(), s.strip()) for s in match[1].split("&")]
            found.extend((source, match[2] or "", labels[match[3]]) for source in sources)
    return found


def test_the_architecture_is_the_template_as_wired() -> None:
    (architecture,) = [d for d in diagrams(ROOT / "README.md") if "IngestFunction" in d]
    edges = _edges(architecture)
    template = load_template()
    functions = resources(template, "AWS::Serverless::Function")
    drawn = {target for _, _, target in edges if target.endswith("Function")}
    assert drawn == set(functions)
    # each rule, by its name, to the function whose rule it is
    rules = {
        event["Properties"]["RuleName"]: name
        for name, function in functions.items()
        for event in function["Properties"].get("Events", {}).values()
        if event["Type"] == "EventBridgeRule"
    }
    assert {
        (label.removeprefix("rule "), target) for _, label, target in edges if label.startswith("rule ")
    } == set(rules.items())
    # the queues: the rules' dead-letter queue from the bus, each consumer's on-failure destination
    queues = set(resources(template, "AWS::SQS::Queue"))
    assert (
        {target for _, _, target in edges if target in queues}
        == queues
        == {"DeliveryDLQ", "FailedEventsQueue"}
    )
    failing = {source for source, _, target in edges if target == "FailedEventsQueue"}
    assert failing == {
        name
        for name, function in functions.items()
        if function["Properties"].get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure")
    }
    assert ("ChatsFunction", "", "DynamoDB") in edges
    assert ("TranscriptsFunction", "", "S3 transcripts/") in edges


def test_the_outcomes_are_the_answers_ingest_gives() -> None:
    from ingest.app import STATUS
    from ingest.errors import KEPT_IN_QUARANTINE

    (outcomes,) = [d for d in diagrams(ROOT / "docs" / "reliability.md") if "POST from Ebbot" in d]
    answers = [label for _, _, label in _edges(outcomes) if re.match(r"\d{3} ", label)]
    assert {int(a[:3]) for a in answers} == set(STATUS.values()) | {202}
    assert {a for a in answers if a.startswith("202")} == {"202 accepted", "202 spilled: waits for a redrive"}
    quarantined = {STATUS[kind] for kind in KEPT_IN_QUARANTINE}
    assert {int(a[:3]) for a in answers if "quarantine" in a} == quarantined
    assert all("lost, alarmed" in a for a in answers if a.startswith("503"))
    # an error code a label names is one the code answers with
    source = "".join(p.read_text() for p in (ROOT / "functions").rglob("*.py"))
    for answer in answers:
        code = re.match(r"\d{3} ([a-z]+_[a-z_]+)", answer)
        if code:
            assert f'"{code[1]}"' in source, answer
