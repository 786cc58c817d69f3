"""The house holds its shape: packages import only downwards (design.md, "Nothing below
imports from above it"), no package or module import cycle, no module over 400 lines.

Read from the source with ``ast``: every ``cyan.*`` import counts, those under
``TYPE_CHECKING`` and inside functions too, for the package rule; the module-cycle rule
counts the imports that run when a module loads.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "cyan"
MAX_MODULE_LINES = 400

# Lowest first; a package may import from its own layer's modules only if it is the same
# package, and from any lower layer.
LAYERS: list[set[str]] = [
    {"errors", "files", "rates"},
    {"protocol", "firmware", "settings"},
    {"driver", "net", "keydir", "datadir", "dfu", "rsa_pool"},
    {"store", "bus"},
    {"cloud"},
    {"diagnose"},
    {"device", "gateway"},
    {"api"},
    {"node"},
    {"cli"},
    {"__main__"},
]
LEVEL = {unit: index for index, layer in enumerate(LAYERS) for unit in layer}
# The API reaches devices only through the router (design.md).
FORBIDDEN = {("api", "gateway"), ("api", "device")}


def _unit(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _module(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = ("cyan", *rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(module imported, whether it runs at load time) for every cyan import."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, at_load: bool) -> None:
        for child in ast.iter_child_nodes(node):
            loads = at_load
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                loads = False
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                loads = False
            if (
                isinstance(child, ast.ImportFrom)
                and child.module
                and child.module.startswith("cyan")
            ):
                found.append((child.module, loads))
                for alias in child.names:  # "from cyan.protocol import messages" is a module
                    found.append((f"{child.module}.{alias.name}", loads))
            elif isinstance(child, ast.Import):
                found.extend((a.name, loads) for a in child.names if a.name.startswith("cyan"))
            visit(child, loads)

    visit(tree, True)
    return found


def _sources() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if "migrations" not in p.parts]


def test_every_package_has_a_layer() -> None:
    units = {_unit(p) for p in _sources()} - {"__init__"}
    assert units <= set(LEVEL), f"give these a layer in LAYERS: {sorted(units - set(LEVEL))}"


def test_packages_import_only_downwards() -> None:
    wrong = []
    for path in _sources():
        unit = _unit(path)
        if unit == "__init__":
            continue
        for module, _ in _imports(ast.parse(path.read_text())):
            target = module.split(".")[1] if "." in module else None
            if target is None or target == unit or target not in LEVEL:
                continue
            if LEVEL[target] >= LEVEL[unit] or (unit, target) in FORBIDDEN:
                wrong.append(f"{path.relative_to(SRC)} imports {module}")
    assert wrong == []


def test_no_module_import_cycle_at_load_time() -> None:
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for module, at_load in _imports(ast.parse(path.read_text())):
            if at_load and module in modules and module != name:
                graph[name].add(module)
    cycles = _cycles(graph, sorted(modules))
    # A package's __init__ importing its own modules, which import the package's modules,
    # is the usual face of a package, not a cycle of logic.
    real = [c for c in cycles if not any(m == c[0] and m.count(".") == 1 for m in c[:1])]
    assert real == []


def _cycles(graph: dict[str, set[str]], nodes: list[str]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, each as the path that closes it."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*trail, nxt])
        state[node] = 2

    for start in nodes:
        if start not in state:
            walk(start, [start])
    return cycles


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph, ["a", "b", "c", "d"]) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}, ["a", "b"]) == []


def test_no_module_over_400_lines() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
