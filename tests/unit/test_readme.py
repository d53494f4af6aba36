"""The README is read in five minutes: it stays short, opens with its two commands, and every
`make` target it names exists (the rest of the documentation lives in docs/)."""

from __future__ import annotations

import re

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
MAX_WORDS = 1800  # what a newcomer reads in about five minutes; the detail belongs in docs/


def test_the_readme_stays_within_its_length() -> None:
    words = len(README.split())  # as `wc -w` counts them, code blocks included
    assert words <= MAX_WORDS, f"README.md has {words} words (at most {MAX_WORDS}): move detail to docs/"


def test_the_two_commands_come_first() -> None:
    before_any_section = README.split("\n## ", 1)[0]
    first_block = re.search(r"```bash\n(?P<body>.*?)```", before_any_section, re.S)
    assert first_block, "the README must open with its commands, before any section"
    commands = [line.split("#", 1)[0].strip() for line in first_block["body"].splitlines()]
    assert commands == ["make run", "make test"]
    # CI runs the README's test command on a clean clone
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_every_make_target_the_readme_names_exists() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"\bmake ([a-z][a-z-]*)", README))
    assert named, "the README names make targets"
    assert named <= targets, f"README names targets the Makefile lacks: {sorted(named - targets)}"
