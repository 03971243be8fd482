"""The tree is the architecture: every module sits in a layer package, and imports are at the
top of their module except the heavy libraries (start-up speed) and the few marked `# lazy:`.
The layers themselves are import-linter's contract (pyproject.toml), checked by `make test`."""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sparkml_platform"
LAYERS = {"cli", "api", "orchestration", "features", "trainsets", "training", "serving", "insight",
          "modeling", "runtime", "tracking", "storage", "config", "core"}
SHIPPED = {"reference", "templates", "jvm"}  # the reference pipeline's code, `init`'s skeleton, Java


def _modules():
    return [p for p in PACKAGE.rglob("*.py") if "templates" not in p.parts]


def test_every_module_sits_in_a_layer_package():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == LAYERS | SHIPPED
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").read_text().startswith('"""'), f"{layer} says what it is"


def test_imports_inside_functions_are_heavy_libraries_or_marked_lazy():
    misplaced = []
    for path in _modules():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        top = {id(n) for n in tree.body}
        top |= {id(m) for n in tree.body if isinstance(n, ast.If) for m in ast.walk(n)}  # TYPE_CHECKING
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in top:
                continue
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            internal = getattr(node, "level", 0) > 0 or (module or "").startswith("sparkml_platform")
            standard = not internal and module.split(".")[0] in sys.stdlib_module_names
            if (internal or standard) and "# lazy:" not in lines[node.lineno - 1]:
                misplaced.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert misplaced == []

