"""The size rule: no function or method longer than --max lines (60) outside tests/. Run by .ci/run after ruff.

    python scripts/check_function_size.py [--max 60] [ROOT]

Walks every .py file under ROOT (the repository by default), leaving out the top-level tests/ folder, hidden
folders (.git, .venv-ci, ...) and any virtual environment (a folder holding pyvenv.cfg). A function's length runs
from its def line to its last line (decorators not counted, its docstring and comments counted), and a function
nested in another is checked on its own too. Prints `path:line name (N lines)` for each one over the limit and
exits with status 1 if there is any; a file that does not parse is reported the same way.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED = ("tests",)  # top-level folders the rule does not cover


def python_files(root: str) -> Iterator[str]:
    """The .py files under root the rule covers, in a stable order."""
    for folder, dirs, files in os.walk(root):
        top = folder == root  # os.walk gives root itself first, as passed
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and not (top and d in SKIPPED)
            and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg"))
        )
        yield from (os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))


def long_functions(path: str, limit: int) -> Iterator[tuple[int, str, int]]:
    """(line, qualified name, length) of each function in the file longer than limit lines."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    yield from _walk(tree, "", limit)


def _walk(node: ast.AST, prefix: str, limit: int) -> Iterator[tuple[int, str, int]]:
    for child in ast.iter_child_nodes(node):
        name = prefix
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                length = child.end_lineno - child.lineno + 1
                if length > limit:
                    yield child.lineno, name, length
            name += "."
        yield from _walk(child, name, limit)


def violations(root: str, limit: int) -> list[str]:
    """One `path:line name (N lines)` per function over the limit, paths relative to root."""
    out = []
    for path in python_files(root):
        rel = os.path.relpath(path, root)
        try:
            out += [f"{rel}:{line} {name} ({n} lines)" for line, name, n in long_functions(path, limit)]
        except (SyntaxError, UnicodeDecodeError) as e:
            out.append(f"{rel}:{getattr(e, 'lineno', 0) or 0} does not parse: {e}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max", type=int, default=60, help="the most lines a function may have")
    p.add_argument("root", nargs="?", default=ROOT, help="the folder to check (default: the repository)")
    args = p.parse_args(argv)
    found = violations(args.root, args.max)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} function(s) over {args.max} lines: split them", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
