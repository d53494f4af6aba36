"""The functions' code laid out as `sam build` ships it, for the cold-start benchmark.

`sam build` copies functions/ and installs the layer's requirements by unpacking wheels: neither
has bytecode, and Lambda's code directories are read-only, so every cold start compiles every
module it imports from them. The venv this benchmark runs in has bytecode for its libraries
(pip compiles on install), which hides that cost. `build_tree` makes a tree of symlinks to the
same sources (functions/, and the files of every distribution the layer installs, found from
layers/dependencies/requirements.txt and their requirements) with no bytecode, or with the
bytecode `make sam-build` adds (tools.precompile). The runtime's own modules (the standard
library, and the baseline's boto3 from the runtime) keep theirs, as Lambda's do.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LAYER_REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"


def layer_distributions() -> list[importlib.metadata.Distribution]:
    """The installed distributions the layer's requirements pull in, extras and markers applied."""
    lines = [re.sub(r"#.*", "", line).strip() for line in LAYER_REQUIREMENTS.read_text().splitlines()]
    todo = [Requirement(line) for line in lines if line]
    extras: dict[str, set[str]] = {}
    found: dict[str, importlib.metadata.Distribution] = {}
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        wanted = set(requirement.extras)
        if name in found and wanted <= extras[name]:
            continue
        extras[name] = extras.get(name, set()) | wanted
        found[name] = distribution = importlib.metadata.distribution(requirement.name)
        for spec in distribution.requires or []:
            needed = Requirement(spec)
            marker = needed.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras[name] | {""}):
                todo.append(needed)
    return list(found.values())


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(source)


def build_tree(destination: Path) -> Path:
    """destination/functions and destination/layer as `sam build` makes them, sources by symlink."""
    for source in (ROOT / "functions").rglob("*"):
        if source.is_file() and "__pycache__" not in source.parts:
            _link(source, destination / "functions" / source.relative_to(ROOT / "functions"))
    for distribution in layer_distributions():
        for file in distribution.files or []:
            if "__pycache__" in file.parts or file.suffix == ".pyc" or ".." in file.parts:
                continue
            source = Path(str(file.locate()))
            if source.is_file():
                _link(source, destination / "layer" / Path(*file.parts))
    return destination
