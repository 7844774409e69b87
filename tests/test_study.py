"""scripts/study_512.py: trains and scores each arm per seed, tabulates against the identity, and reruns
without retraining."""

import json
import os
import sys

import pytest

from conftest import ROOT, make_pairs

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import study_512  # noqa: E402


def test_study_runs_arms_scores_them_and_reuses_finished_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = tmp_path / "data"
    make_pairs(str(data / "train"), 3, seed=1)
    make_pairs(str(data / "val"), 2, seed=2)
    out = tmp_path / "study"
    argv = ["--dataroot", str(data), "--out", str(out), "--arms", "baseline,wide", "--seeds", "0", "--width", "4"]
    argv += ["--size", "32", "--epochs", "1", "0", "--extra", "--num_downs 5 --num_threads 0"]
    assert study_512.main(argv) == 0
    result = json.loads((out / "study.json").read_text())
    assert [r["arm"] for r in result["rows"]] == ["baseline", "wide"]
    wide = next(r for r in result["runs"] if r["arm"] == "wide")
    base = next(r for r in result["runs"] if r["arm"] == "baseline")
    assert wide["flags"] == ["--ngf", "8", "--ndf", "8"] and wide["params_G"] > 3 * base["params_G"]
    assert base["iterations"] == 3 and set(base["scores"]) == {"psnr", "ssim", "swd"}
    # B = 255 - A in these pairs: the identity is far off, and the table says so first.
    table = (out / "study.md").read_text()
    assert table.splitlines()[2].startswith(f"| identity | output = input | {result['identity']['psnr']:.2f}")
    assert "| wide | `--ngf 8 --ndf 8` |" in table
    page = (out / "index.html").read_text()
    for src in ("baseline_s0/val_latest/images/img000_real_A.png", "wide_s0/val_latest/images/img000_fake_B.png"):
        assert src in page and os.path.exists(out / "results" / src)
    # A second call reuses the finished runs instead of training again.
    mtime = os.path.getmtime(out / "runs" / "baseline_s0.json")
    assert study_512.main(argv) == 0
    assert os.path.getmtime(out / "runs" / "baseline_s0.json") == mtime
    with pytest.raises(SystemExit):
        study_512.main([*argv, "--arms", "baseline,nope"])
    assert "--arms: unknown nope" in capsys.readouterr().err
