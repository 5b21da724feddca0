"""Dependencies between the product's packages go one way only.

Every ``import`` of every module (also those inside functions) is read with ``ast``; each
module belongs to a layer, and a layer may import only the layers listed for it in
``ALLOWED``. ``engage_streams.cli`` (the command) sits on top and may import anything. The
development kit (``devkit``: the local broker, the demo) is imported by no product code.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engage_streams", "connectors", "simulator", "streams", "devkit")

KERNEL = "engage_streams"
ALLOWED: dict[str, set[str]] = {
    KERNEL: set(),
    "connectors": {KERNEL},
    "simulator": {KERNEL},
    "streams.core": {KERNEL},
    "streams.worker": {KERNEL, "streams.core"},
    "streams.app": {KERNEL, "streams.worker"},
    "devkit": {KERNEL},
    "engage_streams.cli": {KERNEL, "connectors", "simulator", "streams.worker", "devkit"},
}


def layer_of(module: str) -> str | None:
    """The layer of a module of ours (longest matching prefix), None for anything else."""
    best = None
    for layer in ALLOWED:
        if (module == layer or module.startswith(layer + ".")) and (
            best is None or len(layer) > len(best)
        ):
            best = layer
    if best is None and module in ("streams", "streams.__init__"):
        return "streams.core"  # the package's own __init__ imports nothing
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterable[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def layer_graph() -> dict[str, set[str]]:
    """Layer -> the layers its modules import."""
    graph: dict[str, set[str]] = defaultdict(set)
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            source = layer_of(module_name(path))
            assert source is not None, path
            for target in {layer_of(name) for name in imports_of(path)} - {None, source}:
                graph[source].add(target)  # type: ignore[arg-type]
    return graph


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    return sorted(
        f"{source} imports {target}"
        for source, targets in graph.items()
        for target in targets
        if target not in ALLOWED[source]
    )


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for target in graph.get(node, ()):
            if target in path:
                found.append([*path[path.index(target) :], target])
            else:
                visit(target, [*path, target])

    for node in graph:
        visit(node, [node])
    return found


def test_every_layer_imports_only_what_it_may() -> None:
    assert violations(layer_graph()) == []


def test_no_package_imports_one_that_imports_it_back() -> None:
    assert cycles(layer_graph()) == []


def test_the_checks_catch_a_backwards_import() -> None:
    graph = {"streams.core": {"streams.worker"}, "streams.worker": {"streams.core"}}
    assert violations(graph) == ["streams.core imports streams.worker"]
    assert cycles(graph)
    assert layer_of("streams.core.responses.threads") == "streams.core"
    assert layer_of("engage_streams.cli") == "engage_streams.cli"
    assert layer_of("engage_streams.rest.classic") == KERNEL
    assert layer_of("faust") is None
