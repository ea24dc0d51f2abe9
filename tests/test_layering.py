"""The layering rule, enforced: the engine (ops, nn, optim, data, tensor, function) never imports the
tools built on top of it (training loop, command line, inspection, experiments, recipes, benchmarks),
not even inside a function.  Imports are read from the source with ``ast``, so nothing is executed."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "convnp"
ENGINE = ["ops", "nn", "optim", "data", "tensor.py", "function.py"]
ABOVE = ["train", "cli", "inspect", "experiments", "recipes", "bench"]


def module_name(path):
    """src/convnp/ops/conv.py -> 'convnp.ops.conv'; .../data/__init__.py -> 'convnp.data'."""
    parts = ["convnp", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source, module, is_package):
    """Every module an import statement in ``source`` names (absolute), at any depth of the file;
    ``from X import y`` counts both X and X.y, since y may be a module."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names]
    return found


def violations(source, module, is_package=False):
    forbidden = tuple(f"convnp.{name}" for name in ABOVE)
    return sorted({name for name in imported_modules(source, module, is_package)
                   if name in forbidden or name.startswith(tuple(f + "." for f in forbidden))})


def engine_files():
    for entry in ENGINE:
        path = PACKAGE / entry
        yield from (sorted(path.rglob("*.py")) if path.is_dir() else [path])


@pytest.mark.parametrize("path", list(engine_files()), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_engine_imports_nothing_above_it(path):
    bad = violations(path.read_text(), module_name(path), path.name == "__init__.py")
    assert not bad, f"{path.relative_to(PACKAGE)} imports {', '.join(bad)}: the engine must not depend on the tools"


def test_the_checker_catches_every_spelling_of_an_upward_import():
    """The rule must be able to fail: relative, absolute, from-package and function-local imports."""
    assert violations("from ..train import fit", "convnp.ops.conv") == ["convnp.train", "convnp.train.fit"]
    assert violations("from .. import recipes", "convnp.nn.layers") == ["convnp.recipes"]
    assert violations("import convnp.cli", "convnp.data.idx") == ["convnp.cli"]
    assert violations("def f():\n    from .inspect.viz import plot_filters\n", "convnp.tensor") == \
        ["convnp.inspect.viz", "convnp.inspect.viz.plot_filters"]
    assert violations("from . import transforms", "convnp.data", is_package=True) == []
    assert violations("from ..backend import get_array_module\nimport numpy", "convnp.ops.conv") == []
    assert violations("from .training import x", "convnp.data") == []  # a name that merely starts alike
