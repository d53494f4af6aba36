"""Requirements files as `make lock` writes them (uv pip compile, universal, with hashes): each pin
with its version, its files' hashes and its environment marker."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.template import ROOT

DEV_LOCK = ROOT / "requirements" / "dev.txt"
LAYER_REQUIREMENTS = ROOT / "layers" / "dependencies" / "requirements.txt"


@dataclass(frozen=True)
class Pin:
    name: str  # canonical: lower case, dashes
    version: str
    hashes: frozenset[str]
    marker: Marker | None

    def applies(self, environment: dict[str, str] | None = None) -> bool:
        """Whether pip installs it where `environment` (default: here) says."""
        return self.marker is None or self.marker.evaluate(environment)


def pins(path: Path) -> dict[str, Pin]:
    """Every requirement of the file by its canonical name; a line that pins no exact version
    raises ValueError (pip's hash-checking mode would refuse it)."""
    found: dict[str, Pin] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *hashes = re.split(r"\s+--hash=", line)
        parsed = Requirement(requirement)
        exact = [s.version for s in parsed.specifier if s.operator == "=="]
        if len(exact) != 1:
            raise ValueError(f"{path.name}: {parsed.name} is not pinned to one version")
        name = canonicalize_name(parsed.name)
        found[name] = Pin(name, exact[0], frozenset(hashes), parsed.marker)
    return found
