"""Compile the built functions and layer to bytecode, so Lambda does not compile them at every
cold start: `sam build` installs the layer by unpacking wheels (no bytecode) and copies our code,
and Lambda's code directories are read-only, so Python can keep no bytecode cache there.

    python -m tools.precompile [DIR]     (DIR: .aws-sam/build; `make sam-build` runs it)

The bytecode is "checked-hash": Python compares it with a hash of its source at import, so a
source changed after compiling never runs stale, and zip timestamps do not matter. It must be
compiled by the runtime's Python minor version (3.13); another version's bytecode is ignored.
"""

from __future__ import annotations

import compileall
import py_compile
import sys
from pathlib import Path

RUNTIME = (3, 13)


def lambda_path(artifact: Path) -> str:
    """Where Lambda puts a built artifact: a layer (it has python/) under /opt, code in /var/task."""
    return "/opt" if (artifact / "python").is_dir() else "/var/task"


def precompile(directory: Path) -> bool:
    """Compile every .py under each artifact directory in `directory`; False if any failed.

    The bytecode records each source by the path it has in Lambda (/var/task/..., /opt/python/...),
    so tracebacks there name files that exist and show their lines.
    """
    if sys.version_info[:2] != RUNTIME:
        raise SystemExit(f"precompile needs Python {RUNTIME[0]}.{RUNTIME[1]}, the Lambda runtime's")
    ok = True
    for artifact in sorted(p for p in directory.iterdir() if p.is_dir()):
        ok &= bool(
            compileall.compile_dir(
                artifact,
                quiet=1,
                workers=0,
                stripdir=str(artifact),
                prependdir=lambda_path(artifact),
                invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
            )
        )
    return ok


def main(argv: list[str]) -> int:
    directory = Path(argv[0] if argv else ".aws-sam/build")
    if not directory.is_dir():
        print(f"{directory}: not a directory (run sam build first)", file=sys.stderr)
        return 2
    return 0 if precompile(directory) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
