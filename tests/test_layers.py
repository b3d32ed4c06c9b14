"""The package's layers (SPEC §9): each module imports only from the layers below it.

Every import in kscore/ is read, inside functions and under TYPE_CHECKING too (lazy imports are where
a circle hides). Top to bottom:

    cli  >  kscore (the face)  >  jobs  >  plan, summaries, html_page, plot  >  core  >  engines  >  base

Also: no circle between modules, no `_private` name imported from another module, and Ray imported
only by the engines and the plan's Ray driver (the math receives an executor, never an engine).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kscore"

LAYERS = [
    ("cli",),
    ("kscore",),
    ("jobs",),
    ("plan", "summaries", "html_page", "plot"),
    ("core",),
    ("engines",),
    ("config", "io", "storage", "columns", "cache", "errors", "_version"),
]
RAY_ALLOWED = ("kscore.engines.ray", "kscore.plan.difficulty_ray", "kscore.plan.embeddings_ray")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer index of a kscore module (0 is the top)."""
    if module == "kscore" or module == "kscore.__main__":
        return 1 if module == "kscore" else 0
    first = module.split(".")[1]
    for index, names in enumerate(LAYERS):
        if first in names:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def imports(root: Path) -> list[tuple[str, str, list[str], int]]:
    """(importer, imported kscore module, names, line) for every import in the package at ROOT."""
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from kscore.x import y` imports a name of kscore.x, or its submodule y
                folder = root.joinpath(*node.module.split(".")[1:])
                for alias in node.names:
                    name = alias.name
                    is_module = (folder / name).is_dir() or (folder / f"{name}.py").is_file()
                    if is_module:
                        found.append((importer, f"{node.module}.{name}", [], node.lineno))
                    else:
                        found.append((importer, node.module, [name], node.lineno))
            elif isinstance(node, ast.Import):
                found += [(importer, alias.name, [], node.lineno) for alias in node.names]
    return found


def violations(root: Path) -> list[str]:
    """Every breach of the layer rules in the package at ROOT."""
    problems = []
    graph: dict[str, set[str]] = {}
    for importer, imported, names, line in imports(root):
        where = f"{importer}:{line}"
        if imported == "ray" or imported.startswith("ray."):
            if not importer.startswith(RAY_ALLOWED):
                problems.append(f"{where} imports {imported}: only the engines and the Ray plan may")
            continue
        if not (imported == "kscore" or imported.startswith("kscore.")):
            continue
        if importer.startswith("kscore.core") and imported.startswith("kscore.engines.ray"):
            problems.append(f"{where} imports {imported}: the math takes an executor, not an engine")
        if imported != importer and layer_of(imported) < layer_of(importer):
            problems.append(f"{where} imports {imported} from a higher layer")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private and imported != importer:
            problems.append(f"{where} imports the private {', '.join(private)} of {imported}")
        if imported != importer and imported != "kscore":
            graph.setdefault(importer, set()).add(imported)
    problems = list(dict.fromkeys(problems))
    problems += [f"circle: {' -> '.join(cycle)}" for cycle in circles(graph)]
    return problems


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of two or more modules."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return groups


def test_the_package_keeps_its_layers():
    assert violations(PACKAGE) == []


@pytest.mark.parametrize(
    ("module", "planted", "expected"),
    [
        ("core/density.py", "from kscore.jobs.difficulty import difficulty_scores", "from a higher layer"),
        ("engines/local.py", "from kscore.core.difficulty import score_in_memory", "from a higher layer"),
        ("columns.py", "from kscore.config import QualityStandard\nimport ray", "only the engines"),
        ("core/tasks.py", "from kscore.core.difficulty import _Frame", "private"),
        ("core/signals.py", "from kscore.core.difficulty import read_signals", "circle"),
    ],
)
def test_the_check_fails_on_a_planted_breach(tmp_path: Path, module: str, planted: str, expected: str):
    copy = tmp_path / "kscore"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("_web", "__pycache__"))
    target = copy / module
    # Planted inside a function, where a lazy import would hide it from a module-level scan.
    target.write_text(
        target.read_text() + f"\n\ndef _planted():\n    {planted.replace(chr(10), chr(10) + '    ')}\n"
    )
    assert any(expected in problem for problem in violations(copy)), violations(copy)
