"""The package's import graph: no cycles, and no import that runs up the layers (every import statement
counts, at module level or inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "ganforge"

# Lowest first. A module may import from its own layer or a lower one. The package facade (ganforge/__init__)
# sits on top: it lazily imports training, infer and config for ganforge.train/.load/.resolve_config.
LAYERS: list[set[str]] = [
    {"core"},
    {"config", "seeds"},
    {"data", "nets", "losses", "losses_perceptual"},
    {"tasks"},
    {"training", "infer", "pretrained"},
    {"metrics"},
    {"cli", "studio", "__main__", "__init__"},
]


def _modules() -> dict[str, Path]:
    return {".".join(("ganforge",) + p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in ROOT.rglob("*.py")}


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    out = set()
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                cand = f"{base}.{alias.name}"
                out.add(cand if cand in mods else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {d for d in out if d in mods and d != name}


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    for i, layer in enumerate(LAYERS):
        if part in layer:
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add its package to LAYERS")


GRAPH = {name: _imports(name, path, _modules()) for name, path in _modules().items()}


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(GRAPH[node]):
            if node.startswith(dep + "."):  # a module importing its own package's __init__ (not an edge)
                continue
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_no_upward_imports(name):
    up = [dep for dep in GRAPH[name] if _layer(dep) > _layer(name)]
    assert not up, f"{name} (layer {_layer(name)}) imports from higher layers: {up}"


def test_the_walk_sees_the_package():
    assert len(GRAPH) > 40 and "ganforge.training.loop" in GRAPH["ganforge.cli.train"] | {"ganforge.training.loop"}
    assert "ganforge.tasks" in GRAPH["ganforge.training.loop"]
