"""The layout's guarantees, read from the imports themselves (ast): four layers, arrows one way.

plumbing   files, outputs, validation, tables: imports nothing of ours
steering   imports plumbing only
audits     imports plumbing only (not steering)
fairgen    may import all three; only its world plug-in (and the CLI) knows the world

Run with ``-s`` to see the layers as they are (package -> what it imports).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("plumbing", "steering", "audits", "fairgen")
ALLOWED = {
    "plumbing": set(),
    "steering": {"plumbing"},
    "audits": {"plumbing"},
    "fairgen": {"plumbing", "steering", "audits"},
}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (at the top or inside functions)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def our_imports(package: str) -> dict[str, set[str]]:
    """``{file: our other packages it imports}`` for every module of ``package``."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tops = {m.split(".")[0] for m in imported_modules(path)}
        found[str(path.relative_to(ROOT))] = (tops & set(OURS)) - {package}
    return found


def layers() -> dict[str, set[str]]:
    return {p: set().union(*our_imports(p).values()) for p in OURS}


def test_the_layers_are_as_designed():
    found = layers()
    print()
    for package in OURS:
        print(f"{package:9s} -> {', '.join(sorted(found[package])) or '(nothing of ours)'}")
    assert found["plumbing"] == set()
    assert found["steering"] <= ALLOWED["steering"]
    assert found["audits"] <= ALLOWED["audits"]


@pytest.mark.parametrize("package", ["plumbing", "steering", "audits"])
def test_each_module_imports_only_the_layers_below(package):
    offenders = {
        path: sorted(names - ALLOWED[package])
        for path, names in our_imports(package).items()
        if names - ALLOWED[package]
    }
    assert offenders == {}


def test_the_checker_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from fairgen.stream import Stream\n    import audits.stats\n")
    assert imported_modules(module) == {"fairgen.stream", "audits.stats"}


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
