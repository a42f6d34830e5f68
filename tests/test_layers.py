"""The house drawn from imports: every module imports only modules below it in the flow (imports
inside functions count), so the graph has no arrow running back up and no circle."""
import ast
from pathlib import Path

import hwcost

PACKAGE = Path(hwcost.__file__).parent

# lowest first; a module may import modules of a lower layer only (or of its own layer where listed
# together in one tuple, which must then not import each other)
LAYERS = [
    ("errors", "version"),
    ("conventions",),
    ("records", "report", "allocator"),
    ("inputs", "config_inputs", "zoo.cnn", "zoo.inception", "zoo.recurrent", "zoo.transformer"),
    ("zoo",),
    ("loaders",),
    ("trace",),
    ("formulas",),
    ("analysis",),
    ("devices",),
    ("features", "parts", "context"),
    ("reuse",),
    ("timemodel",),
    ("roofline",),
    ("execution",),
    ("energy",),
    ("predict",),
    ("meters", "host", "timing"),
    ("probe", "resources"),
    ("measure",),
    ("validate", "plot", "generation"),
    ("spaces",),
    ("specialize",),
    ("calibration.suite", "calibration.generate_overhead"),
    ("calibration.transformers_overhead", "calibration.selfcheck"),
    ("calibration.samples",),
    ("calibration.fit",),
    ("calibration.bench", "calibration.profile"),
    ("calibration.fresh",),
    ("calibration.runner",),
    ("calibration",),
    ("cli",),
    ("__main__", ""),
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """hwcost modules a file imports, wherever the import statement sits."""
    me = module_name(path)
    package = me.split(".")[:-1] if path.name != "__init__.py" else me.split(".") if me else []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
            elif (node.module or "").split(".")[0] == "hwcost":
                base, node_module = [], node.module.split(".", 1)[1] if "." in node.module else ""
                target = node_module
                found |= _targets(target, node.names)
                continue
            else:
                continue
            target = ".".join(base + ([node.module] if node.module else []))
            found |= _targets(target, node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hwcost."):
                    found.add(alias.name.split(".", 1)[1])
    return {f for f in found if f != me}


def _targets(target: str, names) -> set[str]:
    """`from . import report` imports the module report; `from .x import y` imports x."""
    out = set()
    for alias in names:
        sub = f"{target}.{alias.name}" if target else alias.name
        out.add(sub if sub in RANK else target)
    return out


def test_every_module_has_a_layer():
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    assert modules - set(RANK) == set(), "put new modules into LAYERS"


def test_imports_point_down_the_flow():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        me = module_name(path)
        for target in imported_modules(path):
            if target not in RANK:
                upward.append(f"{me} imports unknown {target}")
            elif RANK[target] >= RANK[me]:
                upward.append(f"{me} (layer {RANK[me]}) imports {target} (layer {RANK[target]})")
    assert upward == []


def test_every_module_says_its_job_first():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__main__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, f"{path.relative_to(PACKAGE)} has no docstring saying its job"


def test_long_modules_say_why():
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().count("\n")
        if lines > 350:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "Long because" in doc, f"{path.relative_to(PACKAGE)} has {lines} lines and no reason at its top"
