"""The shape of the package: every module imports alone, no module imports
itself back through others, no module grows past ~600 lines."""

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from conftest import REPO

PACKAGE = REPO / "hiber"
MAX_LINES = 650  # "under ~600": a module past this wants splitting


def module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _import_alone(name):
    """The error of ``import name`` in a fresh interpreter, or None."""
    result = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=REPO,
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    if result.returncode == 0:
        return None
    return f"import {name}: {result.stderr.decode().strip().splitlines()[-1]}"


def test_every_module_imports_alone_in_a_fresh_interpreter():
    # hiber.__main__ is the command line itself: importing it runs it
    names = [n for n in MODULES if n != "hiber.__main__"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        failed = [error for error in pool.map(_import_alone, names) if error]
    assert not failed, "\n".join(failed)


def imported_modules(name, path):
    """The hiber modules ``name`` imports (at module level or in a function),
    each resolved to the most precise module: ``from . import x`` names
    module x when there is one, else the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            bases = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            bases = [(base, [alias.name for alias in node.names])]
        else:
            continue
        for base, names in bases:
            if not base or not (base == "hiber" or base.startswith("hiber.")):
                continue
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            found.update(submodules)
            if len(submodules) < len(names) or not names:
                found.add(base)
    found.discard(name)
    return found


def test_no_import_cycles():
    graph = {name: imported_modules(name, path) for name, path in MODULES.items()}
    unknown = {(n, m) for n, ms in graph.items() for m in ms if m not in MODULES}
    assert not unknown, f"imports of modules that do not exist: {sorted(unknown)}"
    cycles = []
    state = {}  # name -> "open" while on the DFS stack, "done" after

    def visit(name, stack):
        state[name] = "open"
        stack.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycles.append(" -> ".join(stack[stack.index(other):] + [other]))
            elif other not in state:
                visit(other, stack)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_modules_stay_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    large = [f"{name}: {n} lines" for name, n in sorted(sizes.items()) if n > MAX_LINES]
    assert not large, "split these by what their parts do:\n" + "\n".join(large)
