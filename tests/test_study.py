"""scripts/study_512.py: trains and scores each arm per seed, tabulates against the identity, and reruns
without retraining."""

import json
import os
import sys

import pytest
from PIL import Image

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
    assert base["iterations"] == 3 and {"psnr", "ssim", "swd", "swd_32", "swd_16"} <= set(base["scores"])
    # B = 255 - A in these pairs: the identity is far off, and the table says so first.
    table = (out / "study.md").read_text()
    assert table.splitlines()[2].startswith(f"| identity | output = input | {result['identity']['psnr']:.2f}")
    assert "| wide | `--ngf 8 --ndf 8` |" in table and "*" not in table  # one seed: no difference is marked
    assert "| arm | swd_32 | swd_16 |" in table  # SWD per pyramid level, finest first
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


def test_study_per_direction_metrics_crops_parallel_jobs_and_seed_agreement(tmp_path, monkeypatch):
    """Two jobs at once, val scaled to --load_size and centre-cropped, the metrics chosen, and a difference marked
    only where both seeds lie on one side of both baseline seeds."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = tmp_path / "data"
    make_pairs(str(data / "train"), 2, seed=1, w=40, h=40)
    make_pairs(str(data / "val"), 2, seed=2, w=40, h=40)
    out = tmp_path / "study"
    argv = ["--dataroot", str(data), "--out", str(out), "--arms", "baseline,l1_10", "--seeds", "0,1", "--width", "4"]
    argv += ["--size", "32", "--load_size", "40", "--epochs", "1", "0", "--metrics", "pixacc,l1", "--jobs", "2"]
    assert study_512.main([*argv, "--extra", "--num_downs 5 --num_threads 0"]) == 0
    result = json.loads((out / "study.json").read_text())
    assert len(result["runs"]) == 4 and set(result["identity"]) == {"n", "pixacc", "l1"}
    assert {"pixacc", "l1"} <= set(result["runs"][0]["scores"]) and "psnr" not in result["runs"][0]["scores"]
    meta = json.loads((out / "results" / "baseline_s1" / "val_latest" / "metrics.json").read_text())
    assert meta["summary"]["n"] == 2
    image = out / "results" / "baseline_s1" / "val_latest" / "images" / "img000_fake_B.png"
    assert Image.open(image).size == (32, 32)
    header = (out / "study.md").read_text().splitlines()[0]
    assert header.startswith("| arm | flags | pixacc (seeds) | vs base | l1 (seeds) | vs base |")


def test_summary_marks_only_differences_the_seeds_agree_on():
    def rec(arm, seed, psnr, swd):
        return {"arm": arm, "seed": seed, "flags": [], "scores": {"psnr": psnr, "swd": swd}, "s_per_iter": 1.0}

    records = [rec("baseline", 0, 30.0, 50.0), rec("baseline", 1, 30.4, 52.0)]
    records += [rec("a", 0, 30.5, 49.0), rec("a", 1, 30.6, 51.0), rec("b", 0, 29.0, 60.0)]
    rows = study_512.summarise(records, {"psnr": 29.5}, ["baseline", "a", "b"], ["psnr", "swd"])
    a, b = rows[1], rows[2]
    assert a["psnr_apart"] and not a["swd_apart"]  # PSNR: both seeds above both baseline seeds; SWD overlaps
    assert a["psnr_vs_base"] == pytest.approx(0.35) and a["beats_identity"]
    assert "psnr_apart" not in b  # one seed cannot agree with anything
    table = study_512.markdown(rows, {"psnr": 29.5}, ["psnr", "swd"])
    assert "| a | `(baseline)` | 30.55 (30.50, 30.60) | +0.35* | 50.0 (49.0, 51.0) | -1.0 |" in table


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "x"], "--seeds 'x': comma-separated integers"),
        (["--width", "0"], "--width 0: a positive integer"),
        (["--metrics", "psnr,fidd"], "unknown metric 'fidd'"),
        (["--netG", "unet_999"], "--netG unet_999: one of unet_128"),
        (["--epochs", "0", "0"], "--epochs [0, 0]"),
        (["--arms", "nope"], "--arms: unknown nope"),
    ],
)
def test_arguments_are_checked_before_any_run(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        study_512.main(["--dataroot", str(tmp_path), "--out", str(tmp_path / "out"), *args])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing started


def test_equal_compute_gives_each_arm_the_baselines_flops(tmp_path, monkeypatch):
    """--equal_compute: an arm with 2.5x the FLOPs per step trains on 2/5 of the pairs (one random subset, linked),
    one with half of them for twice the epochs; FLOPs are counted, and a deeper network counts more."""
    data = tmp_path / "data"
    make_pairs(str(data / "train"), 10, seed=1)
    make_pairs(str(data / "val"), 2, seed=2)
    args = study_512.argparse.Namespace(
        out=str(tmp_path / "out"), dataroot=str(data), epochs=[1, 1], val_phase="val", size=32, width=4,
        netG="unet_256", extra="--num_downs 5", equal_compute=True,
    )  # fmt: skip
    counted = {"double_unet_512": 25.0, "c2f_unet_512": 5.0}  # the arms' --netG; anything else: the baseline's 10

    def step_flops(flags: list[str], size: int) -> float:
        return next((v for k, v in counted.items() if k in flags), 10.0)

    monkeypatch.setattr(study_512, "step_flops", step_flops)
    root, epochs, flops = study_512.budget(args, "double_unet")
    assert (epochs, flops) == ([1, 1], 25.0)
    linked = sorted(os.listdir(os.path.join(root, "train")))
    assert len(linked) == 4 and all(os.path.islink(os.path.join(root, "train", n)) for n in linked)
    assert os.path.samefile(os.path.join(root, "val"), data / "val")
    assert study_512.budget(args, "double_unet")[0] == root  # the same subset the second time
    root_c2f, epochs_c2f, _ = study_512.budget(args, "c2f")  # 40 iterations: 2x the epochs over all 10 pairs
    assert epochs_c2f == [2, 2] and root_c2f == str(data)
    assert study_512.budget(args, "baseline") == (str(data), [1, 1], 10.0)
    # with --max_dataset_size the baseline trains on the first 5 pairs: the arm's subset is drawn from those
    args.extra += " --max_dataset_size 5"
    root5, _, _ = study_512.budget(args, "double_unet")
    first5 = sorted(os.listdir(data / "train"))[:5]
    linked5 = os.listdir(os.path.join(root5, "train"))
    assert len(linked5) == 2 and set(linked5) <= set(first5)
    monkeypatch.undo()
    small = study_512.step_flops(["--netG", "unet_256", "--num_downs", "5", "--ngf", "4", "--ndf", "4"], 32)
    double = study_512.step_flops(["--netG", "double_unet_256", "--num_downs", "5", "--ngf", "4", "--ndf", "4"], 32)
    assert 0 < small < double


def test_generator_cost_prints_a_row_per_size_and_refuses_sizes_a_generator_does_not_take(tmp_path, capsys):
    import generator_cost

    out = tmp_path / "cost.json"
    argv = ["--netG", "unet_256", "double_unet_256", "--sizes", "64", "--ngf", "4", "--flags", "--num_downs 6"]
    assert generator_cost.main([*argv, "--time", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["netG"] for r in rows] == ["unet_256", "double_unet_256"]
    assert rows[1]["params_G_M"] > 2 * rows[0]["params_G_M"] and rows[1]["train_gflop"] > rows[0]["train_gflop"]
    assert all(r["activations_GB"] > 0 and r["s_per_step"] > 0 for r in rows)
    assert generator_cost.main(["--netG", "unet_256", "--sizes", "48", "--ngf", "4", "--flags", "--num_downs 5"]) == 0
    assert "refused: --crop_size 48 does not fit unet_256" in capsys.readouterr().out
