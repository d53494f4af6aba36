"""The build's bytecode (tools.precompile): used by the import, and never run stale."""

from __future__ import annotations

import marshal
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tools.precompile import main

PROBE = "import shared.contract.timestamps as t; print(t.__spec__.cached, t.ns_to_date(0))"


def _source_path(pyc: Path) -> str:
    """The source path a .pyc records (what tracebacks show): its code object's file name."""
    code = marshal.loads(pyc.read_bytes()[16:])  # noqa: S302 (a file this test just compiled)
    return str(code.co_filename)


def _import(functions: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-B", "-c", PROBE],  # -B: the interpreter itself writes no bytecode
        cwd=functions,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def test_compiled_functions_import_from_bytecode_and_follow_source_changes(tmp_path: Path) -> None:
    functions = tmp_path / "functions"
    shutil.copytree(ROOT / "functions", functions, ignore=shutil.ignore_patterns("__pycache__"))
    assert main([str(tmp_path)]) == 0

    cached, date = _import(functions)
    pyc = Path(cached)
    assert pyc.is_file()
    assert pyc.parent.name == "__pycache__"
    assert pyc.read_bytes()[4:8] == (3).to_bytes(4, "little")  # flags: hash-based, checked
    assert date == "1970-01-01"
    # Tracebacks in Lambda name the file where Lambda has it (the function's code is /var/task).
    assert _source_path(pyc) == "/var/task/shared/contract/timestamps.py"

    # A source edited after the build is what runs (checked-hash bytecode is validated at import).
    source = functions / "shared" / "contract" / "timestamps.py"
    source.write_text(source.read_text() + "\n\ndef ns_to_date(ns: int) -> str:\n    return 'edited'\n")
    assert _import(functions)[1] == "edited"


def test_a_missing_build_directory_is_a_clear_error(tmp_path: Path) -> None:
    assert main([str(tmp_path / "nothing")]) == 2


def test_the_benchmarks_sam_build_tree_is_the_layer_without_bytecode(tmp_path: Path) -> None:
    """bench/deployed.py lays out what `sam build` ships: our functions and every distribution the
    layer's requirements pull in (extras and markers applied), as sources without bytecode."""
    from bench.deployed import build_tree, layer_distributions

    names = {d.metadata["Name"].lower().replace("_", "-") for d in layer_distributions()}
    # The pins, the tracer extra's SDK, and what pydantic and botocore need in turn.
    assert {"aws-lambda-powertools", "pydantic", "boto3", "botocore", "aws-xray-sdk"} <= names
    assert {"pydantic-core", "typing-extensions", "urllib3", "jmespath"} <= names
    assert "moto" not in names  # a dev dependency, not in the layer

    tree = build_tree(tmp_path)
    assert (tree / "functions" / "ingest" / "app.py").is_file()
    assert (tree / "layer" / "pydantic" / "__init__.py").is_file()
    assert not list(tree.rglob("__pycache__"))
    code = "import pydantic, boto3; print(pydantic.__file__, boto3.__file__)"
    result = subprocess.run(
        [sys.executable, "-B", "-c", f"import sys; sys.path[:0] = ['{tree}/layer']; {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(path.startswith(str(tree / "layer")) for path in result.stdout.split())


def test_a_layer_is_compiled_for_where_lambda_puts_it(tmp_path: Path) -> None:
    module = tmp_path / "DependenciesLayer" / "python" / "somelib" / "__init__.py"
    module.parent.mkdir(parents=True)
    module.write_text("VALUE = 1\n")
    assert main([str(tmp_path)]) == 0
    (pyc,) = (module.parent / "__pycache__").glob("__init__.*.pyc")
    assert _source_path(pyc) == "/opt/python/somelib/__init__.py"
