"""The code's own rules: one source for every option default, thin scripts, packages in layers."""

import ast
import importlib
import inspect
import os
import pkgutil
import subprocess
import sys

import pytest

from conftest import ROOT
from options import options
from util.config import Config

OPTION_NAMES = options.TrainOptions.names() | options.TestOptions.names()


def public_callables(package: str):
    """(qualified name, callable) for every function, class and method defined in the package's modules."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"{package}.{info.name}")
        for name, obj in vars(mod).items():
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{mod.__name__}.{name}", obj
            elif inspect.isclass(obj) and not issubclass(obj, Config):  # a config's fields are the one source
                for meth_name, meth in vars(obj).items():
                    if inspect.isfunction(meth):
                        yield f"{mod.__name__}.{name}.{meth_name}", meth


# The Python API's keyword arguments need defaults: each is read from its config's field (amp=SpeedConfig.amp).
PUBLIC_API = {"engine.inference.load_translator"}


def defaults_read_from_fields(fn) -> set[str]:
    """Parameters whose default is written as <Group>.<the parameter's own name>."""
    tree = ast.parse(inspect.getsource(fn).lstrip())
    args = tree.body[0].args
    pairs = list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    pairs += list(zip(args.args[len(args.args) - len(args.defaults) :], args.defaults, strict=True))
    return {a.arg for a, d in pairs if isinstance(d, ast.Attribute) and d.attr == a.arg}


@pytest.mark.parametrize("package", ["models", "data", "util", "engine"])
def test_no_option_default_is_written_twice(package):
    # A parameter named like an option takes no default: the option's dataclass field holds the only one.
    found = []
    for qualname, fn in public_callables(package):
        derived = defaults_read_from_fields(fn) if qualname in PUBLIC_API else set()
        for p in inspect.signature(fn).parameters.values():
            if p.name in OPTION_NAMES and p.default is not inspect.Parameter.empty and p.name not in derived:
                found.append(f"{qualname}({p.name}={p.default!r})")
    assert not found, "defaults that belong to the options: " + ", ".join(found)


# The layers, lowest first: a package imports only from lower layers (or itself); data/ and models/ are siblings.
LAYERS = {"util": 0, "data": 1, "models": 1, "metrics": 1, "reporting": 2, "options": 3, "engine": 4, "webapp": 5}


def imports_of(path: str):
    """(module imported, whether at module level) for every first-party import of a file; an import under
    `if TYPE_CHECKING:` counts as module level (it runs for type checkers only)."""
    tree = ast.parse(open(path).read())
    top = set()
    for node in tree.body:
        top.add(id(node))
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            top.update(id(n) for n in node.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in LAYERS:
                yield name, id(node) in top


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_packages_form_layers_without_cycles_or_hidden_imports(package):
    wrong, hidden = [], []
    for path in python_files(package):
        where = os.path.relpath(path, ROOT)
        for name, module_level in imports_of(path):
            other = name.split(".")[0]
            if other != package and LAYERS[other] >= LAYERS[package]:
                wrong.append(f"{where} imports {name}")
            if not module_level:
                hidden.append(f"{where} imports {name} inside a function")
    assert not wrong, (
        "imports against the layers (util < data, models, metrics < reporting < options < engine): " + ", ".join(wrong)
    )
    assert not hidden, "first-party imports belong at the top of the module: " + ", ".join(hidden)


def module_of(path: str) -> str:
    """models/config.py -> models.config; models/__init__.py -> models."""
    name = os.path.relpath(path, ROOT).removesuffix(".py").replace(os.sep, ".")
    return name.removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Each first-party module -> the first-party modules it imports, wherever the import stands (under
    TYPE_CHECKING too). `from pkg import name` counts as importing pkg.name when that is a module, else pkg;
    a package's __init__, which runs before any of its modules, is not counted as their import."""
    modules = {module_of(p): p for package in LAYERS for p in python_files(package)}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                edges.update(
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                    for a in node.names
                )
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of graph as [a, b, ..., a], or [] if there is none (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(m: str) -> list[str]:
        state[m], cycle = "open", []
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return path[path.index(n) :] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        path.pop()
        state[m] = "done"
        return []

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return []


def test_no_import_cycle_among_first_party_modules():
    graph = import_graph()
    assert {"models.config", "models.generators", "models.registry"} <= set(graph)
    assert "models.registry" in graph["models.generators"]  # the graph sees `from x.y import name` edges
    cycle = find_cycle(graph)
    assert not cycle, "an import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def python_files(*paths):
    for p in paths:
        full = os.path.join(ROOT, p)
        if os.path.isdir(full):
            yield from (os.path.join(full, f) for f in sorted(os.listdir(full)) if f.endswith(".py"))
        else:
            yield full


def test_scripts_stay_thin():
    # The 60-line rule for functions is scripts/check_function_size.py's, run by CI (tests/test_check_function_size.py).
    assert len(open(os.path.join(ROOT, "train.py")).read().splitlines()) <= 200


def test_no_flag_text_is_parsed_below_options():
    """A structured flag (a range, channel list, device ids, metric names) is parsed once, by its value type's
    parse() (util.config.FlagValue), when its config is made: nowhere else below options/ is text split."""
    found = []
    for package in ("util", "data", "models", "engine"):
        for path in python_files(package):
            tree = ast.parse(open(path).read())
            allowed = set()
            for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
                if any(getattr(b, "id", "") == "FlagValue" for b in cls.bases):
                    parse = [f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "parse"]
                    allowed.update(id(n) for f in parse for n in ast.walk(f))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", "") == "split"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value == ","
                    and id(node) not in allowed
                ):
                    found.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    assert not found, "text split outside a FlagValue's parse(): " + ", ".join(found)


# The Python API, named in docs/interop.md: what `from engine import ...` offers. A change here is a change users see.
PUBLIC_API_NAMES = ["CheckpointError", "ImageTranslator", "WeightsMismatch", "load_translator"]
# What importing it must not load: the options, the reporting (pages, plots, visdom, loggers), dominate.
NOT_FOR_THE_API = ("options", "reporting", "metrics", "dominate", "visdom", "matplotlib")


def test_public_api_is_pinned_and_light():
    import engine

    assert sorted(engine.__all__) == PUBLIC_API_NAMES
    assert all(hasattr(engine, name) for name in engine.__all__)
    code = "import sys; from engine import load_translator; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = out.stdout.split()
    heavy = [m for m in loaded if any(m == p or m.startswith(p + ".") for p in NOT_FOR_THE_API)]
    assert not heavy, f"from engine import load_translator loads {heavy}"
