"""The structure issue 11 set out cannot decay: no import cycles, no private imports across modules,
no module over 500 lines, no ``sys.path`` edits outside the tests, thin runners."""

from __future__ import annotations

import ast

import grimp
from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "looking_glass"
PROGRAMS = [REPO_ROOT / d for d in ("looking_glass", "lambdas", "batch_jobs", "training", "stacks", "benchmarks")]
MAX_MODULE_LINES = 500


def _sources(roots=PROGRAMS):
    for root in roots:
        yield from (p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_cycle_finder_finds_a_cycle():
    class Graph:
        modules = {"a", "b", "c", "d"}
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges.get(m, set())

    assert _cycles(Graph()) == [["a", "b", "c"]]


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("looking_glass")
    assert _cycles(graph) == []


def test_no_module_over_500_lines():
    long = {str(p.relative_to(REPO_ROOT)): n for p in _sources([PACKAGE])
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_no_private_names_imported_from_other_modules():
    offenders = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                offenders += [f"{path.relative_to(REPO_ROOT)}: {node.module}.{a.name}"
                              for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def test_no_sys_path_edits_outside_the_tests():
    offenders = [str(p.relative_to(REPO_ROOT)) for p in _sources() if "sys.path" in p.read_text()]
    assert offenders == []


def test_the_sagemaker_runner_is_thin():
    assert len((REPO_ROOT / "training" / "train.py").read_text().splitlines()) <= 60
