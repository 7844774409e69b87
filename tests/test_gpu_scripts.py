"""The scripts behind docs/performance.md's loader figures and the GPU check, run small on the CPU."""

import json
import os
import sys
import time

import pytest

import train
from conftest import ROOT, make_pairs

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import cuda_agreement  # noqa: E402
import gpu_report  # noqa: E402
import loader_speed  # noqa: E402
import reference_speed  # noqa: E402


def test_loader_speed_measures_with_and_without_the_cache(tmp_path, capsys):
    make_pairs(str(tmp_path / "d" / "train"), 6, w=40, h=40)
    out = tmp_path / "l.json"
    argv = ["--dataroot", str(tmp_path / "d"), "--load_size", "36", "--crop_size", "32"]
    assert loader_speed.main([*argv, "--repeats", "1", "--workers", "0", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["cache_images"] for r in rows] == [False, True] and all(r["per_worker_pairs_s"] > 0 for r in rows)
    assert rows[1]["cache_mb"] == 6 * 80 * 40 * 3 / 2**20  # the combined files, as decoded
    assert "| d (6) | 36->32 | on (" in capsys.readouterr().out


def test_cuda_agreement_runs_and_compares(tmp_path, monkeypatch):
    # On the CPU against itself it must agree exactly; on a GPU the same code compares CPU with CUDA.
    out = tmp_path / "a.json"
    assert cuda_agreement.main(["--device", "cpu", "--sizes", "unet_128:128", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["ok"] and row["G_max_abs"] == 0.0 and row["D_max_abs"] == 0.0
    # A difference over the tolerance is reported and fails the run.
    monkeypatch.setattr(cuda_agreement, "TOLERANCE", -1.0)
    assert cuda_agreement.main(["--device", "cpu", "--sizes", "unet_128:128", "--json", str(out)]) == 1
    assert json.loads(out.read_text())["rows"][0]["ok"] is False


def bench_rows(rows):
    base = {"infer_img_s": 1.0, "train_tflops": 1.0, "peak_mem_mb": 1.0, "data_share": None}
    return {"netG": "unet_512", "crop_size": 512, "torch": "t", "rows": [{**base, **r} for r in rows]}


def test_gpu_report_states_each_target(tmp_path):
    def row(config, bs, amp, cl, img_s, share, **kw):
        r = {"config": config, "batch_size": bs, "amp": amp, "channels_last": cl, "train_img_s": img_s}
        return {**r, "train_vs_baseline": 1.0, "share_of_peak": share, "grad_checkpoint": False, **kw}

    files = {
        "unet256.json": bench_rows(
            [row("bs1", 1, "none", False, 60.0, 0.01), row("bf16,cl,bs64", 64, "bf16", True, 900, 0.3)]
        ),
        "unet512.json": bench_rows(
            [
                row("bs1", 1, "none", False, 70.0, 0.01),
                row("bf16,cl", 1, "bf16", True, 60.0, 0.01),  # slower than fp32 at batch 1: not met
                row("bf16,cl,graph", 1, "bf16", True, 200.0, 0.03, cuda_graph=True),  # 5 ms
                row("bs32", 32, "none", False, 100.0, 0.10),
                row("bf16,cl,bs32", 32, "bf16", True, 400.0, 0.12),
            ]
        ),
        "maxbatch512.json": {"max_batch": [{"config": "bs1", "max_batch": 8}, {"config": "bf16,gc", "max_batch": 24}]},
        "data512.json": bench_rows([row("bf16,cl,bs32", 32, "bf16", True, 380.0, 0.12, data_share=0.03)]),
        "reference512.json": {"ms_per_iter": {"reference": 17.0, "this project": 5.0}},
    }
    for name, record in files.items():
        (tmp_path / name).write_text(json.dumps(record))
    assert gpu_report.main([str(tmp_path)]) == 0
    got = [(t["figure"], t["met"]) for t in json.loads((tmp_path / "summary.json").read_text())["targets"]]
    assert got == [
        ("bf16,cl,graph: 5.0 ms", True),
        ("512 bs1: 0.86x, 512 bs32: 4.00x", False),
        ("bf16,cl,bs64: 30.0%", True),
        ("bf16,cl,bs32: 12.0%", False),
        ("bf16,cl,bs32: 3.0%", True),
        ("24 vs 8 (3.0x)", True),
    ]
    page = (tmp_path / "summary.md").read_text()
    assert "| bf16,cl,bs32 | 400.0 |" in page and "| reference | 17.0 |" in page


def test_reference_speed_times_both_programs_per_iteration(tmp_path, capsys, monkeypatch):
    """A stand-in reference whose run takes 0.3 s to start and 0.2 s per image (its clock, not the machine's: the
    commands run, and the reference's durations are what it says): the difference of two lengths recovers 200 ms
    per iteration without the start-up; this project's runs (and a --run variant) go through the same steps, their
    train.py command lines run in this process (a subprocess each would be most of the test's time)."""
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "train.py").write_text(
        "import sys\na = sys.argv\nassert a[a.index('--model') + 1] == 'pix2pix' and '--no_html' in a\n"
    )
    real = reference_speed.wall_seconds

    def timed(cmd, cwd, env):
        if cwd == str(ref):
            real(cmd, cwd, env)  # runs it: a failing command still fails the test
            return 0.3 + 0.2 * int(cmd[cmd.index("--max_dataset_size") + 1])
        assert (cwd, cmd[:2]) == (ROOT, [sys.executable, "train.py"]), (cwd, cmd)
        t0 = time.perf_counter()
        assert train.main(cmd[2:]) == 0
        return time.perf_counter() - t0

    monkeypatch.setattr(reference_speed, "wall_seconds", timed)
    make_pairs(str(tmp_path / "d" / "train"), 3, w=40, h=40)
    out = tmp_path / "r.json"
    flags = "--ngf 4 --ndf 4 --netG unet_256 --num_downs 5 --load_size 36 --crop_size 32 --num_threads 0"
    argv = ["--reference", str(ref), "--dataroot", str(tmp_path / "d"), "--flags", flags, "--iters", "1", "3"]
    assert reference_speed.main([*argv, "--repeats", "1", "--run", "bf16=--amp bf16", "--json", str(out)]) == 0
    ms = json.loads(out.read_text())["ms_per_iter"]
    assert list(ms) == ["reference", "this project", "bf16"]
    assert ms["reference"] == pytest.approx(200)  # the tiny runs of this project are too short to time: only run
    assert "reference" in capsys.readouterr().out
