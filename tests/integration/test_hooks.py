"""The git hooks (.pre-commit-config.yaml), run by pre-commit itself: local hooks only (a hook
cloned from a remote cannot be fetched where only the package registries answer), each running
the project's own tools, and they stop a commit that `make test` would fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

CONFIG = ROOT / ".pre-commit-config.yaml"
PRE_COMMIT = Path(sys.executable).parent / "pre-commit"


def _pre_commit(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PRE_COMMIT), *args],
        cwd=cwd,
        env={**os.environ, "PRE_COMMIT_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_hooks_are_local_and_run_what_make_test_runs(tmp_path: Path) -> None:
    validated = _pre_commit("validate-config", str(CONFIG), cwd=ROOT, home=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"]
    entries = {hook["id"]: hook["entry"].split()[0] for hook in config["repos"][0]["hooks"]}
    assert entries == {"ruff": ".venv/bin/ruff", "ruff-format": ".venv/bin/ruff", "mypy": ".venv/bin/mypy"}
    makefile = (ROOT / "Makefile").read_text()
    for command in ("$(VENV)/bin/ruff check", "$(VENV)/bin/ruff format --check", "$(VENV)/bin/mypy"):
        assert command in makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0], command


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with the project's hook config, ruff settings and venv, and nothing else."""
    tree = tmp_path / "repo"
    tree.mkdir()
    subprocess.run(["git", "init", "--quiet", str(tree)], check=True, timeout=60)
    shutil.copy(CONFIG, tree / CONFIG.name)
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    (tree / ".venv").symlink_to(Path(sys.executable).parents[1])
    return tree


@pytest.mark.parametrize(
    ("hook", "source", "says", "after"),
    [
        # a badly formatted file fails its commit and comes out formatted
        ("ruff-format", "x=[1,2 ,3]\n", "files were modified by this hook", "x = [1, 2, 3]\n"),
        # an unused import fails the lint hook, and the file is left as it was
        ("ruff", "import os\n", "F401", "import os\n"),
    ],
)
def test_a_hook_fails_a_commit_that_make_test_would_fail(
    repo: Path, tmp_path: Path, hook: str, source: str, says: str, after: str
) -> None:
    (repo / "change.py").write_text(source)
    subprocess.run(["git", "add", "change.py"], cwd=repo, check=True, timeout=60)
    result = _pre_commit("run", hook, cwd=repo, home=tmp_path / "home")
    assert result.returncode == 1, result.stdout
    assert says in result.stdout
    assert (repo / "change.py").read_text() == after
