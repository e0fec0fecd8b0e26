"""The package's layers: a lower layer never imports a higher one, not even under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "st_distill"

#: Lowest first. ``heads``, ``precision`` and ``scoring`` at the top level are deprecated aliases of
#: ``models.*`` and count as ``models``.
LAYERS = ["io", "logs", "models", "data", "teachers", "losses", "objectives", "dataset", "training",
          "evaluation", "export", "bench", "commands", "cli"]
ALIASES = {"heads": "models", "precision": "models", "scoring": "models"}
#: Deprecated alias modules left at an old, lower home: they re-export the new one and nothing else.
ALIAS_MODULES = {"st_distill.data.builder"}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return ALIASES.get(parts[1], parts[1])


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("st_distill"):
            names = [f"st_distill.{a.name}" for a in node.names] if node.module == "st_distill" else [node.module]
            found += [(name, node.lineno) for name in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("st_distill")]
    return found


def test_no_import_runs_back_up():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        mine = _layer(module)
        if mine not in LAYERS or module in ALIAS_MODULES:
            continue
        for name, line in _imports(path):
            other = _layer(name)
            if other in LAYERS and LAYERS.index(other) > LAYERS.index(mine):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mine} imports {name} ({other})")
    assert not upward, "\n".join(upward)


def test_every_package_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if not p.name.startswith(("_", "."))}
    tops -= {"resources"}  # packaged data (and the script that made the sample)
    assert {ALIASES.get(t, t) for t in tops} <= set(LAYERS), sorted(tops - set(LAYERS) - set(ALIASES))
