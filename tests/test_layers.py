"""The shape of the package: DESIGN.md's layers, no import cycle, no reach into integrations.

``lint-imports`` (in ``.ci/run``) checks the contracts in ``pyproject.toml``; these tests hold
what the contracts cannot see by themselves: that every SDK module is placed in a layer (a new
module outside the list would be unconstrained), that there is no cycle anywhere in ``drip/``,
and that nothing in ``drip/`` imports ``drip.integrations`` (which lives in ``integrations/``,
outside the tree the linter walks).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import drip

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(drip.__file__).parent
PYPROJECT = ROOT.parent / "pyproject.toml"


def _contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("drip", exclude_type_checking_imports=True, cache_dir=None)


def test_every_sdk_module_has_a_layer() -> None:
    layers = _contracts()["sdk-layers"]["layers"]
    assert isinstance(layers, list)
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert modules - {"server"} == placed


def test_no_import_cycle_in_the_sdk() -> None:
    # drip.server is outside this test while it is restructured (its app <-> routes cycle goes
    # with the new ``deps`` module); the SDK below it must never have one
    graph = _graph()
    cycles = []
    for module in sorted(m for m in graph.modules if not m.startswith("drip.server")):
        for imported in graph.find_modules_directly_imported_by(module):
            # a package importing its own submodules is how packages work, not a cycle
            if imported.startswith(module + ".") or module.startswith(imported + "."):
                continue
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append((module, *back))
    assert cycles == []


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names.update(f"{base}.{alias.name}" for alias in node.names)
            names.add(base)
    return names


def test_nothing_in_drip_imports_the_integrations() -> None:
    offenders = {}
    for path in ROOT.rglob("*.py"):
        found = sorted(n for n in _imports(path) if n.startswith("drip.integrations"))
        if found:
            offenders[str(path.relative_to(ROOT.parent))] = found
    assert offenders == {}


def test_the_import_scan_sees_relative_imports() -> None:
    # the scan above could pass by seeing nothing: it resolves this module's relative imports
    names = _imports(ROOT / "_metered" / "__init__.py")
    assert "drip._checks.check_name" in names
    assert "drip._metered._call.Spec" in names


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=PYPROJECT.parent, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout
