"""The written dependency order of tfrobust's packages holds in the code (docs/architecture.md).

A few lines over ``ast``: every ``import`` / ``from ... import`` of ``tfrobust`` code, module level
or inside a function, must point at a package on a lower level than the importing one (or at its
own package), and the modules must not import each other in a circle. No new dependency.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tfrobust"

# Lower number = lower floor. A package may import only packages on lower floors (and itself).
LEVELS = {
    "_version": 0, "_keras": 0, "_validate": 0,
    "utils": 1, "data": 1, "layers": 1,
    "losses": 2,
    "models": 3, "tflite_tools": 3, "testing": 3,
    "attacks": 4,
    "evaluation": 5,
    "trainers": 6,
    "compression": 7,
    "cli": 8, "__init__": 8,  # the package root re-exports the public packages
    "__main__": 9,
}


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "tfrobust":
        return None
    return "__init__" if len(parts) == 1 else parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, here: str | None = None):
    """(imported module, line) for every tfrobust import in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = here or _module_name(path)
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tfrobust":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] != "tfrobust":
                continue
            if module == "tfrobust":  # `from tfrobust import layers`: the package named
                for alias in node.names:
                    yield f"tfrobust.{alias.name}", node.lineno
            else:
                yield module, node.lineno


def _files():
    return sorted(p for p in ROOT.rglob("*.py"))


def test_every_package_has_a_floor():
    packages = {_package(_module_name(p)) for p in _files()}
    assert packages <= set(LEVELS), f"give these packages a floor in LEVELS: {packages - set(LEVELS)}"


def _violations(path: Path, here: str | None = None) -> list[str]:
    here = here or _module_name(path)
    src = _package(here)
    bad = []
    for module, line in _imports(path, here):
        dst = _package(module)
        if dst is None or dst == src:
            continue
        if dst == "__init__":
            bad.append(f"{here}:{line} imports the package root")
        elif LEVELS[dst] >= LEVELS[src]:
            bad.append(f"{here}:{line} ({src}, floor {LEVELS[src]}) imports {module} ({dst}, floor "
                       f"{LEVELS[dst]})")
    return bad


def test_no_import_runs_against_the_dependency_order():
    bad = [v for path in _files() for v in _violations(path)]
    assert not bad, "imports running up the dependency order:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules():
    names = {_module_name(p): p for p in _files()}
    graph = {}
    for name, path in names.items():
        targets = set()
        for module, _ in _imports(path):
            # `from tfrobust.attacks import _common` names a module; `from x import y` a name in x.
            target = module if module in names else module.rsplit(".", 1)[0]
            if target in names and target != name and not names[target].name == "__init__.py":
                targets.add(target)
        graph[name] = targets
    # Tarjan-free DFS with colours: report the first cycle found.
    colour, stack = {}, []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = "black"
        return None

    for node in sorted(graph):
        if node not in colour:
            cycle = visit(node)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_upward_and_root_imports(tmp_path):
    # The rules are not vacuous: an in-function upward import and a root import are both caught.
    probe = tmp_path / "probe.py"
    probe.write_text("import tfrobust\n\ndef f():\n    from tfrobust.attacks import pgd\n")
    bad = _violations(probe, here="tfrobust.layers._probe")
    assert len(bad) == 2 and "imports the package root" in bad[0] and "tfrobust.attacks" in bad[1]


def _private_imports(tree) -> list[tuple[str, int]]:
    """``tfrobust.<package>._<module>`` named by an import (``from tfrobust.p import _m`` too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [(node.module, node.lineno)]
            modules += [(f"{node.module}.{a.name}", node.lineno) for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
        else:
            continue
        for module, line in modules:
            parts = module.split(".")
            private = [p for p in parts[2:] if p.startswith("_") and not p.startswith("__")]
            if parts[0] == "tfrobust" and private:
                found.append((module, line))
    return found


def test_no_module_imports_a_private_module_of_another_package():
    bad = []
    for path in _files():
        here = _module_name(path)
        for module, line in _private_imports(ast.parse(path.read_text())):
            if _package(module) != _package(here):
                bad.append(f"{here}:{line} imports {module}")
    assert not bad, "use the package's public or shared names:\n" + "\n".join(bad)


def test_tests_and_notebooks_use_public_or_shared_names_only():
    # tests/cli/ too: what it checks of the CLI's own stages comes through tfrobust.cli.shared.
    repo = ROOT.parent
    sources = [(p, p.read_text()) for p in sorted((repo / "tests").rglob("*.py"))]
    assert any(p.parent.name == "cli" for p, _ in sources)  # the CLI's tests are read as well
    for nb in sorted((repo / "colab").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        sources.append((nb, "\n".join(line for cell in code for line in cell.splitlines()
                                       if not line.lstrip().startswith(("!", "%")))))
    bad = [f"{path.relative_to(repo)}:{line} imports {module}"
           for path, text in sources for module, line in _private_imports(ast.parse(text))]
    assert not bad, "import the public name or the package's shared module:\n" + "\n".join(bad)


def test_the_private_import_checker_sees_both_spellings():
    tree = ast.parse("from tfrobust.layers._common import f\nfrom tfrobust.attacks import _common, pgd\n"
                     "from tfrobust._version import __version__\nfrom tfrobust.layers.shared import f\n")
    assert _private_imports(tree) == [("tfrobust.layers._common", 1), ("tfrobust.attacks._common", 2)]
