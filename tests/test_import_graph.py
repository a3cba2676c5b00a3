"""House rule: layers point down and the package has no import cycles (lazy imports inside functions included)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gemseg"
# cycles that exist and belong to another piece of work; this list may only shrink
KNOWN_CYCLES: list = []  # diffusion↔writer was dissolved by synthesis/errors.py (SynthError)
# modeling sits below these layers (cli → engine → evaluation → inference/data → losses → modeling → config/io)
ABOVE_MODELING = ("gemseg.cli", "gemseg.engine", "gemseg.evaluation", "gemseg.inference", "gemseg.data",
                  "gemseg.losses")


def import_graph():
    """module name -> the gemseg modules it imports anywhere in its source."""
    files = {}
    for f in PACKAGE.rglob("*.py"):
        parts = f.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = f
    names = set(files)
    graph = {}
    for name, f in files.items():
        pkg = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                # `from pkg import submodule` depends on the submodule (any import runs its parent packages
                # anyway, and those are not counted either); `from module import name` on the module
                subs = {f"{base}.{a.name}" for a in node.names}
                found = subs & names
                deps.update(found)
                if len(found) < len(subs):
                    deps.add(base)
        # the root package is a lazy facade (``__version__`` and ``__getattr__`` re-exports): importing it from a
        # submodule does not import that submodule's importers, so it is no edge of a cycle
        graph[name] = {d for d in deps if d in files and d not in (name, "gemseg")}
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_new_import_cycles():
    found = cycles(import_graph())
    assert [c for c in found if c not in KNOWN_CYCLES] == []


def test_modeling_imports_no_upper_layer():
    graph = import_graph()
    bad = {m: sorted(d for d in deps if d.startswith(ABOVE_MODELING))
           for m, deps in graph.items() if m.startswith("gemseg.modeling")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_moved_names_still_import_from_their_old_homes():
    from gemseg.inference.preprocess import Prediction as P1
    from gemseg.inference.preprocess import postprocess_scores, resize_square  # noqa: F401
    from gemseg.modeling.gem import Prediction as P2

    assert P1 is P2
