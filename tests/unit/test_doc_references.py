"""Every document the project points a reader to exists, and so does the section it names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

# `docs/x.md`, `README` or `README.md`, optionally followed by the section a reader should look for:
# docs/decisions.md, "Local stack" / README ("Add a trigger").
REFERENCE = re.compile(r'(?P<doc>docs/[A-Za-z0-9_-]+\.md|README(?:\.md)?)(?:,? \(?"(?P<section>[^"\n]+)")?')
MARKDOWN_LINK = re.compile(r"\]\((?P<target>[^)#\s]+)(?:#[^)]*)?\)")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    suffixes = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ""}
    return [
        ROOT / name
        for name in listed
        if Path(name).suffix in suffixes and (ROOT / name).is_file() and ROOT / name != Path(__file__)
    ]


def headings(document: Path) -> list[str]:
    """Its headings, without the `#`s and without a leading date (`2026-11-28 — `)."""
    found = []
    for line in document.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
            found.append(re.sub(r"^\d{4}-\d{2}-\d{2} — ", "", title))
    return found


def references() -> list[tuple[str, str, str | None]]:
    out: list[tuple[str, str, str | None]] = []
    for path in tracked_text_files():
        text = path.read_text(errors="replace")
        where = str(path.relative_to(ROOT))
        out.extend((where, match["doc"], match["section"]) for match in REFERENCE.finditer(text))
        if path.suffix == ".md":
            for match in MARKDOWN_LINK.finditer(text):
                target = match["target"]
                if "://" not in target and not target.startswith("mailto:"):
                    resolved = (path.parent / target).resolve().relative_to(ROOT)
                    out.append((where, str(resolved), None))
    return out


def test_the_checker_sees_references_in_code_docs_and_the_template() -> None:
    found = {(where, doc) for where, doc, _ in references()}
    assert ("template.yaml", "docs/operations.md") in found
    assert ("functions/ingest/auth.py", "docs/operations.md") in found
    assert any(doc == "docs/decisions.md" for _, doc, _ in references())


@pytest.mark.parametrize(("where", "doc", "section"), sorted(set(references()), key=str))
def test_every_referenced_document_and_section_exists(where: str, doc: str, section: str | None) -> None:
    path = ROOT / ("README.md" if doc == "README" else doc)
    assert path.exists(), f"{where} points to {doc}, which does not exist"
    if section:
        assert any(title.startswith(section) for title in headings(path)), (
            f'{where} points to the section "{section}" of {doc}, which has no such heading'
        )
