"""The layout holds: arrows point down, and no import circle anywhere in service/ or audit/.

The layer order is written once, in pyproject.toml's `[tool.importlinter]` contracts, and
`lint-imports` checks it (grimp reads every import statement, those under TYPE_CHECKING and
inside functions too). `test_no_import_circles` is the belt to those braces: a circle
between a package's `__init__` and one of its own modules is invisible to the contracts
(the package and its child are not siblings), and this check reads the files themselves.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "audit")


def test_the_layer_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is in the dev extra: pip install -e '.[dev]'"
    done = subprocess.run([lint_imports, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_import_circles() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert len(graph) > 50  # the walk found the packages
    assert circles(graph) == []


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Every module of `packages` and the modules of `packages` it imports, wherever the
    import statement stands (module level, under TYPE_CHECKING, inside a function)."""
    files = {name: path for package in packages for name, path in _modules(root, package)}
    graph = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importing module's package, up level-1
                    package = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                    base = f"{package}.{base}".rstrip(".")
                # `from p import m` imports the module p.m when there is one, else names of p
                imported.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                                for alias in node.names)
        graph[name] = {owner for target in imported if (owner := _owner(target, files)) not in (None, name)}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for module in sorted(graph):
            if module not in index:
                visit(module)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def test_a_circle_is_found_wherever_its_imports_stand(tmp_path: Path) -> None:
    # The check must see what the contracts' tool might not: an import under TYPE_CHECKING,
    # one inside a function, a relative one, and a package importing back from its child.
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n")
    (package / "b.py").write_text("def f():\n    from . import a\n")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.c import C\n")
    (package / "sub" / "c.py").write_text("from .. import sub\n")
    (package / "d.py").write_text("import pkg.a\n")
    assert circles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b"], ["pkg.sub", "pkg.sub.c"]]


def _modules(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _owner(target: str, files: dict[str, Path]) -> str | None:
    """The module of ours that `target` (a dotted import) names, or None (not ours)."""
    while target and target not in files:
        target = target.rpartition(".")[0]
    return target or None


def test_the_public_api_is_importable_and_light() -> None:
    # In a fresh interpreter: `import service` alone loads none of the frameworks (the CLI and
    # the audit import single modules), and every name of `__all__` resolves to a non-module.
    script = ("import sys, types, service\n"
              "heavy = sorted({'fastapi', 'sqlalchemy', 'pydantic', 'httpx', 'pandas'} & set(sys.modules))\n"
              "assert not heavy, heavy\n"
              "import service.prompt_key, service.settings  # submodules bound on the package shadow nothing public\n"
              "for name in service.__all__:\n"
              "    assert not isinstance(getattr(service, name), types.ModuleType), name\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_every_module_but_the_bot_adapters_imports_without_the_bot_frameworks() -> None:
    # The contracts see import statements; this sees what importing does. aiogram and
    # python-telegram-bot (`telegram`) are made unimportable, as in an install without the
    # [aiogram] and [ptb] extras, and every other module of service/ is imported.
    script = ("import importlib, pkgutil, sys\n"
              "class NoFrameworks:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] in ('aiogram', 'telegram'):\n"
              "            raise ImportError(f'{name} is not installed')\n"
              "sys.meta_path.insert(0, NoFrameworks())\n"
              "import service\n"
              "adapters = {'service.telegram.aiogram', 'service.telegram.ptb'}\n"
              "names = [m.name for m in pkgutil.walk_packages(service.__path__, 'service.')\n"
              "         if m.name not in adapters and '.migrations' not in m.name]\n"
              "for name in names:\n"
              "    importlib.import_module(name)\n"
              "assert 'service.telegram.dialogue' in names and len(names) > 40, names\n"
              "for name in adapters:\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except ImportError as exc:\n"
              "        assert 'pip install' in str(exc), exc  # names the extra to install\n"
              "    else:\n"
              "        raise AssertionError(f'{name} imported without its framework')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
