"""The core does no I/O and reads no clock (docs/architecture.md: the core never imports I/O).

Checked two ways: statically, by parsing every core module with ``ast`` (so a
comment or a string that mentions ``socket`` does not count, and an import
inside a function does); and at run time, by importing ``chatproto`` in a
fresh interpreter and comparing ``sys.modules`` with one that imported
nothing. The edges (adapters, CLI, conformance suite, benchmarks) may do I/O.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import REPO

PACKAGE = REPO / "chatproto"
EDGES = ("adapters", "cli", "conformance", "bench", "tls")
# ``python -m chatproto`` runs the CLI: an entry point, not part of the core.
ENTRY_POINTS = ("__main__.py",)
FORBIDDEN = frozenset(
    {
        # From the brief: sockets, event loops, threads, the clock.
        "socket",
        "select",
        "selectors",
        "threading",
        "asyncio",
        "anyio",
        "gevent",
        "trio",
        "time",
        # Their close relatives, for the same reasons.
        "_thread",
        "multiprocessing",
        "concurrent",
        "ssl",
        "subprocess",
        "signal",
        "uvloop",
        "datetime",
    }
)


def core_modules() -> list[Path]:
    paths = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in EDGES or str(relative) in ENTRY_POINTS:
            continue
        paths.append(path)
    return paths


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports, at any depth of the file."""
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    return imports_in(path.read_text("utf-8"), package, str(path))


def imports_in(source: str, package: str, where: str = "<source>") -> set[str]:
    tree = ast.parse(source, where)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base)
                module = f"{prefix}.{node.module}" if node.module else prefix
            else:
                module = node.module or ""
            names.add(module)
            # "from chatproto import adapters" imports a submodule.
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert name not in ("import_module", "__import__"), (
                f"{where}: dynamic import defeats this check"
            )
    return names


def top(name: str) -> str:
    return name.partition(".")[0]


def test_the_checker_sees_imports_anywhere() -> None:
    source = (
        '"import socket"\n'  # a string, not an import
        "def f():\n    import time\n"
        "from .._x import y\nfrom . import adapters\nfrom select import poll\n"
    )
    names = imports_in(source, "chatproto.sub")
    assert {"time", "chatproto._x", "chatproto.sub.adapters", "select"} <= names
    assert "socket" not in names
    with pytest.raises(AssertionError, match="dynamic import"):
        imports_in("import importlib\nimportlib.import_module('socket')\n", "chatproto")


def test_there_is_a_core_to_check() -> None:
    names = {module_name(p) for p in core_modules()}
    assert {"chatproto", "chatproto._server", "chatproto._framing", "chatproto.vectors"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=module_name)
def test_core_module_imports_no_io(path: Path) -> None:
    imports = imported_modules(path)
    assert not {top(n) for n in imports} & FORBIDDEN, sorted(imports)
    # Nor the edges, which would bring the I/O in through the back door.
    edges = {f"chatproto.{edge}" for edge in EDGES}
    assert not {n for n in imports if ".".join(n.split(".")[:2]) in edges}


@pytest.mark.parametrize("path", core_modules(), ids=module_name)
def test_core_module_imports_only_stdlib(path: Path) -> None:
    for name in imported_modules(path):
        root = top(name)
        assert root == "chatproto" or root in sys.stdlib_module_names, name


def loaded_modules(code: str) -> set[str]:
    """``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(result.stdout))


def test_importing_chatproto_loads_no_io_module() -> None:
    baseline = loaded_modules("")
    after = loaded_modules("import chatproto, chatproto.vectors")
    assert "chatproto._server" in after  # the check did import the core
    new = after - baseline
    assert not {top(n) for n in new} & FORBIDDEN, sorted(new)
    # No third-party module either, and none of the edges.
    assert {top(n) for n in new} <= set(sys.stdlib_module_names) | {"chatproto"}, sorted(new)
    edges = {n for n in new if n.split(".")[:2][-1] in EDGES and n.startswith("chatproto.")}
    assert not edges


def test_state_diagrams_in_the_docs_are_drawn_from_the_tables() -> None:
    """docs/architecture.md shows the tables the code runs on, not a hand-drawn copy."""
    script = REPO / "docs" / "make_state_diagrams.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
