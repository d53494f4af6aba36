"""The project's modules import one way: no cycle anywhere (imports made only for type checking
and inside functions count too), and the layers of functions/shared/ point down only.

Read from the source with `ast`, not by importing, so an import that runs only at call time is seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

# Where each import root lives: functions/ is on the path as Lambda puts it there, the root for
# motostack/, tools/ and bench/.
SOURCE_ROOTS = {
    ROOT / "functions": "",
    ROOT / "motostack": "motostack.",
    ROOT / "tools": "tools.",
    ROOT / "bench": "bench.",
}
# functions/shared/, bottom up: a layer imports only from itself and the layers below it.
SHARED_LAYERS = ("shared.contract", "shared.storage", "shared.runtime")


def project_modules() -> dict[str, Path]:
    modules = {}
    for root, prefix in SOURCE_ROOTS.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = prefix + ".".join(parts) if parts else prefix.rstrip(".")
            modules[name] = path
    return modules


def imported_names(path: Path, module: str) -> Iterator[str]:
    """Every module name an import in the file asks for, at any depth of the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".strip(".")
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        name: {
            imported for imported in imported_names(path, name) if imported in modules and imported != name
        }
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_cycles_and_type_only_imports(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    module = tmp_path / "envelope.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from shared.contract.models import Webhook\n"
        "def later():\n"
        "    from . import timestamps\n"
    )
    names = set(imported_names(module, "shared.contract.envelope"))
    assert {"shared.contract.models", "shared.contract.timestamps"} <= names


def test_the_graph_sees_the_projects_imports() -> None:
    graph = import_graph()
    assert "shared.contract.models" in graph["shared.storage.chat_state"]
    assert "shared.runtime.consumer" in graph["chats.app"]
    assert "tools.running" in graph["tools.redrive"]  # an import inside a function
    assert "motostack.launcher" in graph["tools.localstack"]


def test_no_import_cycle_among_the_projects_modules() -> None:
    assert cycles(import_graph()) == []


def test_the_layers_of_shared_import_only_downwards() -> None:
    graph = import_graph()
    for position, layer in enumerate(SHARED_LAYERS):
        allowed = SHARED_LAYERS[: position + 1]
        for module, imports in graph.items():
            if module.startswith(layer + ".") or module == layer:
                wrong = {
                    i
                    for i in imports
                    if i not in allowed and not i.startswith(tuple(a + "." for a in allowed))
                }
                assert wrong == set(), f"{module} imports from above its layer: {sorted(wrong)}"


def test_the_three_parts_stand_apart() -> None:
    """The product (functions/), the local engine (motostack/) and the operator's command line
    (tools/): the product imports neither of the others, and the engine nothing of the project."""
    graph = import_graph()
    for module, imports in graph.items():
        if module.startswith("motostack"):
            assert {i for i in imports if not i.startswith("motostack")} == set(), module
        elif not module.startswith(("tools", "bench")):
            assert {i for i in imports if i.startswith(("motostack", "tools", "bench"))} == set(), module


def test_the_local_engine_knows_nothing_of_this_project() -> None:
    # Its settings come in (motostack.launcher.Settings); no name of the project's is in its files.
    for path in sorted((ROOT / "motostack").rglob("*.py")):
        text = path.read_text().lower()
        for word in ("ebbot", "webhook", "token", "chat"):
            assert word not in text, f"{path.relative_to(ROOT)} mentions {word!r}"
