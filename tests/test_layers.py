"""The package's layers import downwards only: the training data knows nothing of the engine that trains on it."""

import ast
import os

from conftest import ROOT


def _imported_modules(path, package):
    """The absolute names of the modules ``path`` (a module of ``package``) imports."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)  # from vise_plugin import engine


def test_nothing_under_vise_plugin_data_imports_the_engine():
    folder = os.path.join(ROOT, "vise_plugin", "data")
    offenders = []
    for where, _, names in os.walk(folder):
        package = os.path.relpath(where, ROOT).replace(os.sep, ".")
        for name in sorted(n for n in names if n.endswith(".py")):
            for module in _imported_modules(os.path.join(where, name), package):
                if module == "vise_plugin.engine" or module.startswith("vise_plugin.engine."):
                    offenders.append(f"{os.path.join(package, name)}: {module}")
    assert offenders == []
