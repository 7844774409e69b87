"""The Python code blocks of README.md and docs/*.md run as printed.

Rules, for whoever writes the docs:
    * Every fenced ```python block runs, from a scratch folder with the repository on PYTHONPATH, and must exit 0.
    * A block that cannot run by itself (an excerpt, or one that needs data, a trained run or a long time) has
      `<!-- not run: the reason -->` on the line before its fence; it is reported as skipped, with the reason.
    * `<!-- prints: -->` on the line after a block's closing fence, then a fenced block: the code's output must be
      that block's text, line for line (surrounding blank space aside).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
_OPEN = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[\w+-]*)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->\s*$")
_PRINTS = re.compile(r"^\s*<!--\s*prints:\s*-->\s*$")
TIMEOUT_S = 60


class Block(NamedTuple):
    where: str  # file:line of the opening fence
    info: str  # the fence's language
    code: str
    not_run: str | None  # the reason, when marked
    prints: str | None  # the expected output, when given


def _fence_end(lines: list[str], start: int, indent: str) -> int:
    for j in range(start, len(lines)):
        if lines[j].strip() == "```" and lines[j].startswith(indent):
            return j
    raise ValueError(f"line {start}: a fence that is never closed")


def _previous_text(lines: list[str], i: int) -> str:
    """The nearest non-blank line before line i ("" at the start)."""
    for j in range(i - 1, -1, -1):
        if lines[j].strip():
            return lines[j]
    return ""


def _expected_output(lines: list[str], end: int) -> str | None:
    """The text of the fenced block after a `<!-- prints: -->` that follows the block closing at line end."""
    rest = [(j, line) for j, line in enumerate(lines[end + 1 :], end + 1) if line.strip()]
    if len(rest) < 2 or not _PRINTS.match(rest[0][1]):
        return None
    j, opening = rest[1]
    match = _OPEN.match(opening)
    if match is None:
        raise ValueError(f"line {j + 1}: `<!-- prints: -->` must be followed by a fenced block")
    close = _fence_end(lines, j + 1, match["indent"])
    return textwrap.dedent("\n".join(lines[j + 1 : close]))


def extract_blocks(text: str, name: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with their `not run` reasons and expected outputs."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = _OPEN.match(lines[i])
        if match is None or not match["info"]:
            i += 1
            continue
        end = _fence_end(lines, i + 1, match["indent"])
        marker = _NOT_RUN.match(_previous_text(lines, i))
        code = textwrap.dedent("\n".join(lines[i + 1 : end]))
        prints = _expected_output(lines, end)
        blocks.append(Block(f"{name}:{i + 1}", match["info"], code, marker["reason"] if marker else None, prints))
        i = end + 1
    return blocks


def python_blocks() -> list[Block]:
    found = []
    for path in DOCS:
        blocks = extract_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(REPO_ROOT)))
        found += [b for b in blocks if b.info in ("python", "py")]
    return found


def run_block(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = "1"  # small work: one thread is as fast, and kinder to a shared machine
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


BLOCKS = python_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_docs_python_block_runs(block, tmp_path):
    if block.not_run is not None:
        pytest.skip(f"marked not run: {block.not_run}")
    result = run_block(block.code, tmp_path)
    assert result.returncode == 0, f"{block.where} failed:\n{result.stdout}{result.stderr}"
    if block.prints is not None:
        assert result.stdout.strip() == block.prints.strip(), f"{block.where} printed:\n{result.stdout}"


def test_the_receptive_field_snippet_runs_and_states_its_output():
    snippets = [b for b in BLOCKS if b.where.startswith("docs/going-to-512.md") and "receptive_field" in b.code]
    assert len(snippets) == 1 and snippets[0].not_run is None and snippets[0].prints is not None


SAMPLE = """\
Text.

```python
print("fine")
```
<!-- prints: -->
```text
fine
```

<!-- not run: needs a trained run -->

```python
raise SystemExit(3)
```

- a list item:

  ```python
  raise ValueError("an indented block")
  ```
"""


def test_extraction_marks_and_failures(tmp_path):
    blocks = [b for b in extract_blocks(SAMPLE, "sample.md") if b.info == "python"]
    assert [(b.where, b.not_run, b.prints) for b in blocks] == [
        ("sample.md:3", None, "fine"),
        ("sample.md:13", "needs a trained run", None),
        ("sample.md:19", None, None),
    ]
    assert run_block(blocks[0].code, tmp_path).stdout == "fine\n"
    failed = run_block(blocks[2].code, tmp_path)  # a runnable block that raises is a failure
    assert failed.returncode != 0 and "an indented block" in failed.stderr
