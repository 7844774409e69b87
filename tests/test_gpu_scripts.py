"""The scripts behind docs/performance.md's loader figures and the GPU check, run small on the CPU."""

import json
import os
import sys

from conftest import ROOT, make_pairs

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import cuda_agreement  # noqa: E402
import gpu_report  # noqa: E402
import loader_speed  # noqa: E402


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
    fp32 = {"config": "bs1", "batch_size": 1, "amp": "none", "train_img_s": 10.0, "train_vs_baseline": 1.0}
    fast = {"config": "bf16,cl", "batch_size": 1, "amp": "bf16", "train_img_s": 25.0, "train_vs_baseline": 2.5}
    big = {"config": "bf16,cl,bs32", "batch_size": 32, "amp": "bf16", "train_img_s": 400.0, "train_vs_baseline": 40}
    files = {
        "unet256.json": bench_rows([{**fp32, "share_of_peak": 0.01}, {**big, "share_of_peak": 0.30}]),
        "unet512.json": bench_rows(
            [{**fp32, "share_of_peak": 0.01}, {**fast, "share_of_peak": 0.02}, {**big, "share_of_peak": 0.12}]
        ),  # fmt: skip
        "maxbatch512.json": {"max_batch": [{"config": "bs1", "max_batch": 8}, {"config": "bf16,gc", "max_batch": 24}]},
        "data512.json": bench_rows([{**big, "data_share": 0.08}]),
    }
    for name, record in files.items():
        (tmp_path / name).write_text(json.dumps(record))
    assert gpu_report.main([str(tmp_path)]) == 0
    got = [(t["figure"], t["met"]) for t in json.loads((tmp_path / "summary.json").read_text())["targets"]]
    assert got == [
        ("30.0%", True),
        ("12.0%", False),
        ("2.50x", True),
        ("24 vs 8 (3.0x)", True),
        ("bf16,cl,bs32: 8.0%", False),
    ]
    assert "| bf16,cl,bs32 | 400.0 |" in (tmp_path / "summary.md").read_text()
