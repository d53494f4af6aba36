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


def precompile(directory: Path) -> bool:
    """Compile every .py under `directory`; False if any file failed to compile."""
    if sys.version_info[:2] != RUNTIME:
        raise SystemExit(f"precompile needs Python {RUNTIME[0]}.{RUNTIME[1]}, the Lambda runtime's")
    return bool(
        compileall.compile_dir(
            directory,
            quiet=1,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
    )


def main(argv: list[str]) -> int:
    directory = Path(argv[0] if argv else ".aws-sam/build")
    if not directory.is_dir():
        print(f"{directory}: not a directory (run sam build first)", file=sys.stderr)
        return 2
    return 0 if precompile(directory) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
