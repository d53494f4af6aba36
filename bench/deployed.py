"""The functions' code laid out as `sam build` ships it, for the cold-start benchmark.

`sam build` copies functions/ and installs the layer's requirements by unpacking wheels: neither
has bytecode, and Lambda's code directories are read-only, so every cold start compiles every
module it imports from them. The venv this benchmark runs in has bytecode for its libraries
(pip compiles on install), which hides that cost. `build_tree` makes a tree of symlinks to the
same sources (functions/, and the files of every distribution the layer installs, found from
layers/dependencies/requirements.txt, the closure `make lock` writes) with no bytecode, or with the
bytecode `make sam-build` adds (tools.precompile). The runtime's own modules (the standard
library, and the baseline's boto3 from the runtime) keep theirs, as Lambda's do.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from tools.requirements import LAYER_REQUIREMENTS, pins

ROOT = Path(__file__).resolve().parent.parent


def layer_distributions() -> list[importlib.metadata.Distribution]:
    """The installed distributions the layer installs: its requirements are the whole closure
    (`make lock` writes it), those whose marker holds on Linux, where Lambda runs."""
    return [
        importlib.metadata.distribution(pin.name)
        for pin in pins(LAYER_REQUIREMENTS).values()
        if pin.applies({"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"})
    ]


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
