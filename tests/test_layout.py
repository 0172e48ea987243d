"""The layout's guarantees: the leaf packages import nothing from fairgen; the world is one plug-in."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("leaf", ["steering", "audits"])
def test_leaf_packages_import_nothing_from_fairgen(leaf):
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in imported_modules(path) if m.split(".")[0] == "fairgen"
        )
        for path in (ROOT / leaf).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_world_plugin_and_the_cli_import_the_world():
    offenders = []
    for path in (ROOT / "fairgen").rglob("*.py"):
        rel = path.relative_to(ROOT / "fairgen")
        if rel.parts[0] in ("world", "cli") or rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        source = path.read_text()
        if "from ..world" in source or "from .world" in source or "fairgen.world" in source:
            offenders.append(str(rel))
    assert offenders == []
