"""The project's template.yaml, read as CloudFormation's JSON (motostack.template)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from motostack.template import load_template as _load
from motostack.template import resources

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return _load(path)


__all__ = ["ROOT", "TEMPLATE", "load_template", "resources"]
