"""scripts/benchmark.py: counted FLOPs, the baseline run first and last, ratios, JSON (tiny sizes, no timing checks)."""

import json
import os
import sys
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import benchmark  # noqa: E402


def test_benchmark_rows_and_json(tmp_path, capsys):
    out = tmp_path / "b.json"
    argv = [
        "--netG",
        "unet_256",
        "--num_downs",
        "5",
        "--crop_size",
        "32",
        "--ngf",
        "4",
        "--ndf",
        "4",
        "--configs",
        "bs2",
        "cl,bf16",
        "--steps",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "1",
        "--device",
        "cpu",
        "--json",
        str(out),
    ]
    assert benchmark.main(argv) == 0
    rows = json.load(open(out))["rows"]
    assert [r["config"] for r in rows] == ["bs1", "bs2", "cl,bf16", "bs1"]
    assert rows[1]["batch_size"] == 2 and rows[2]["amp"] == "bf16" and rows[2]["channels_last"]
    # FLOPs per image do not depend on batch size or precision (counted on the same network).
    assert rows[1]["train_gflop_per_img"] == pytest.approx(rows[0]["train_gflop_per_img"], rel=1e-6)
    assert rows[0]["train_gflop_per_img"] > rows[0]["infer_gflop_per_img"] > 0
    base = (rows[0]["train_img_s"] + rows[-1]["train_img_s"]) / 2
    assert rows[1]["train_vs_baseline"] == pytest.approx(rows[1]["train_img_s"] / base)
    assert "train img/s" in capsys.readouterr().out


def test_unknown_config_token():
    with pytest.raises(SystemExit, match="unknown config token 'fp8'"):
        benchmark.parse_config("fp8,bs2")


@pytest.mark.parametrize("first_failure,limit,expected", [(38, 256, 37), (1000, 16, 16), (1, 64, 0), (2, 64, 1)])
def test_largest_batch_search(first_failure, limit, expected):
    tried = []

    def fits(n):
        tried.append(n)
        return n < first_failure

    assert benchmark.largest_batch(fits, limit) == expected
    assert max(tried) <= limit and len(tried) <= 2 * max(limit, 2).bit_length()


def test_max_batch_needs_cuda(capsys):
    with pytest.raises(SystemExit) as e:
        benchmark.main(["--device", "cpu", "--max_batch", "24"])
    assert e.value.code == 2 and "--max_batch measures CUDA memory" in capsys.readouterr().err


def test_max_batch_on_cuda_caps_memory_on_an_indexed_device(tmp_path, monkeypatch, capsys):
    """`--device cuda` names no index, and torch's set_per_process_memory_fraction refuses such a device; the
    memory cap must go to cuda:N. CUDA is imitated: torch's own device-index check decides, the search is real."""
    from torch.cuda._utils import _get_device_index

    capped = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(
        torch.cuda, "set_per_process_memory_fraction", lambda f, d: capped.append((f, _get_device_index(d)))
    )
    monkeypatch.setattr(benchmark, "fits_in_memory", lambda args, name, device, b: b <= (12 if "bf16" in name else 5))
    out = tmp_path / "mb.json"
    argv = ["--device", "cuda", "--max_batch", "24", "--configs", "bf16", "--max_batch_limit", "64"]
    assert benchmark.main([*argv, "--json", str(out)]) == 0
    assert capped == [(0.3, 0)]
    rows = json.loads(out.read_text())["max_batch"]
    assert [(r["config"], r["max_batch"]) for r in rows] == [(benchmark.BASELINE, 5), ("bf16", 12)]
    assert "largest batch in 24 GB: 12" in capsys.readouterr().out


def test_data_share_reads_real_images_through_the_training_pipeline(tiny_data, capsys):
    argv = ["--dataroot", tiny_data, "--netG", "unet_256", "--num_downs", "5", "--crop_size", "32", "--ngf", "4"]
    argv += ["--ndf", "4", "--configs", "bs1", "--steps", "2", "--repeats", "1", "--warmup", "1", "--device", "cpu"]
    assert benchmark.main([*argv, "--num_threads", "0"]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("bs1")][0]
    share = float(row.split()[-1])  # the "data %" column: measured, so present and a percentage
    assert 0 <= share <= 100


def test_data_share_builds_the_cache_once_and_preprocesses_on_the_device(tiny_data, capsys):
    """Three rows at two batch sizes: one cache, a progress line per row, the wait measured with the device step."""
    argv = ["--dataroot", tiny_data, "--netG", "unet_256", "--num_downs", "5", "--crop_size", "32", "--ngf", "4"]
    argv += ["--ndf", "4", "--configs", "bs2", "--steps", "2", "--repeats", "1", "--warmup", "1", "--device", "cpu"]
    assert benchmark.main([*argv, "--num_threads", "0", "--cache_images", "--device_preprocess"]) == 0
    out = capsys.readouterr().out
    assert out.count("cached 4 pairs") == 1
    assert "[1/3] bs1:" in out and "[2/3] bs2:" in out and "[3/3] bs1:" in out
    rows = [ln for ln in out.splitlines() if ln.startswith(("bs1", "bs2"))]
    assert len(rows) == 3 and all(0 <= float(r.split()[-1]) <= 100 for r in rows)
