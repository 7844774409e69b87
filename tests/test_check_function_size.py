"""scripts/check_function_size.py: the 60-line rule CI enforces outside tests/."""

import os
import subprocess
import sys

from conftest import ROOT

CHECKER = os.path.join(ROOT, "scripts", "check_function_size.py")


def function(name: str, lines: int, indent: str = "") -> str:
    """A function of exactly `lines` lines, its def line included."""
    body = [f"{indent}    x = {i}\n" for i in range(lines - 2)]
    return f"{indent}def {name}():\n" + "".join(body) + f"{indent}    return x\n"


def check(root, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, CHECKER, *args, str(root)], capture_output=True, text=True, timeout=60)


def test_a_61_line_function_is_flagged_and_a_60_line_one_passes(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "ok.py").write_text("import os\n\n\n" + function("fits", 60))
    r = check(tmp_path)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    (tmp_path / "pkg" / "big.py").write_text("\n\nclass Holder:\n" + function("too_long", 61, indent="    "))
    r = check(tmp_path)
    assert r.returncode == 1 and r.stdout == f"{os.path.join('pkg', 'big.py')}:4 Holder.too_long (61 lines)\n"
    assert check(tmp_path, "--max", "61").returncode == 0


def test_tests_hidden_folders_and_virtual_environments_are_left_out(tmp_path):
    for folder in ("tests", ".venv-ci", "env"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "long.py").write_text(function("long", 61))
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert check(tmp_path).returncode == 0
    (tmp_path / "src" / "tests").mkdir(parents=True)  # only the top-level tests/ is exempt
    (tmp_path / "src" / "tests" / "long.py").write_text(function("long", 61))
    assert check(tmp_path).stdout == f"{os.path.join('src', 'tests', 'long.py')}:1 long (61 lines)\n"


def test_the_repository_keeps_the_rule():
    r = check(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
