"""losses.jsonl on resume: util/run_folder.trim_logs drops the records past the checkpoint (parsed as JSON), and a
resumed run's file holds every print and validation once."""

import json

import numpy as np

import train
from conftest import train_args
from engine.run_folder import trim_logs
from reporting import run_log


def records_of(path) -> list[tuple]:
    return [(r["kind"], r["epoch"], r.get("total_iters")) for r in map(json.loads, open(path))]


def test_trim_drops_records_past_the_checkpoint(tmp_path):
    path = tmp_path / "losses.jsonl"
    lines = [
        {"kind": "loss", "epoch": 1, "iteration": 2, "total_iters": 2, "losses": {"G_GAN": 1.0}},
        {"kind": "loss", "epoch": 1, "iteration": 4, "total_iters": 4, "losses": {"G_GAN": None}},
        {"kind": "validation", "epoch": 1, "total_iters": 4, "metrics": {"psnr": 20.0}},
        {"kind": "loss", "epoch": 2, "iteration": 2, "total_iters": 6, "losses": {"G_GAN": 1.0}},
        {"kind": "validation", "epoch": 2, "total_iters": 6, "metrics": {"psnr": 21.0}},
    ]
    # "total_iters: 9," inside a record: a regex over the text would misread this line
    tricky = {"kind": "loss", "epoch": 1, "total_iters": 3, "losses": {"G_GAN": 1.0}, "note": "total_iters: 9,"}
    text = "".join(json.dumps(r) + "\n" for r in [*lines[:1], tricky, *lines[1:]])
    path.write_text(text + "not json\n" + '{"kind": "loss", "epoch": 2, "total_i')  # garbage, a torn last line
    trim_logs(str(tmp_path), 2, 4)  # resume at epoch 2, total_iters 4: the end of epoch 1 is kept
    assert records_of(path) == [("loss", 1, 2), ("loss", 1, 3), ("loss", 1, 4), ("validation", 1, 4)]
    trim_logs(str(tmp_path), 1, 4)  # killed in epoch 1's end work: its validation is done again
    assert records_of(path) == [("loss", 1, 2), ("loss", 1, 3), ("loss", 1, 4)]
    before = path.read_text()
    trim_logs(str(tmp_path), 1, 4)  # nothing past it: the file is left as it is
    assert path.read_text() == before


def test_records_are_strict_json_lines(tmp_path):
    path = str(tmp_path / "losses.jsonl")
    run_log.append(path, run_log.loss_record(1, 2, 2, {"G_GAN": np.float32(0.5), "G_L1": float("nan")}, 2e-4, 0.1, 5))
    run_log.append(path, run_log.validation_record(1, None, {"psnr": float("inf"), "n": np.int64(3)}, 6))
    lines = open(path).read().splitlines()
    assert json.loads(lines[0])["losses"] == {"G_GAN": 0.5, "G_L1": None}
    assert json.loads(lines[1])["metrics"] == {"psnr": None, "n": 3}
    (back,) = run_log.read(path, run_log.VALIDATION)
    assert (
        back["total_iters"] is None and back["metrics"]["n"] == 3 and back["metrics"]["psnr"] != back["metrics"]["psnr"]
    )


def test_resumed_run_writes_each_record_once(tiny_data, tmp_path):
    """A run stopped at iteration 3 whose losses.jsonl got records past its checkpoint (as a run killed after
    printing but before saving leaves it): the resumed run's file has every print and validation once."""
    args = train_args(tiny_data, tmp_path, "run", "--no_html")
    args += [*("--n_epochs", "1", "--n_epochs_decay", "1", "--print_freq", "1", "--val_phase", "test")]
    assert train.main([*args, "--stop_after_iters", "3"]) == 0
    path = tmp_path / "run" / "losses.jsonl"
    assert [r[2] for r in records_of(path)] == [1, 2, 3]
    run_log.append(str(path), run_log.loss_record(1, 4, 4, {"G_GAN": 9.0}, 2e-4, 0.1, 0))  # past the checkpoint
    run_log.append(str(path), run_log.validation_record(1, 4, {"psnr": 9.0}, 0))
    assert train.main([*args, "--continue_train"]) == 0
    loss = [("loss", 1, i) for i in range(1, 5)] + [("loss", 2, i) for i in range(5, 9)]
    assert records_of(path) == [*loss[:4], ("validation", 1, 4), *loss[4:], ("validation", 2, 8)]
    assert 9.0 not in [r["losses"]["G_GAN"] for r in run_log.read(str(path), run_log.LOSS)]
