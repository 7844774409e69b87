"""16-bit, float and many-channel data (data/arrays.py, data/values.py, data/survey.py): read and written at full
precision, mapped by declared or measured value ranges, trained, tested and translated, scored in the data's units."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

import test as test_script
import train
import translate
from conftest import TINY_NET, aligned, prep, train_args
from data.arrays import encode, read_array
from data.image_io import BadImageError, inspect_image, read_file, scan
from data.values import ValueRange, to_output
from options.options import TrainOptions, parse

SHORT = ["--n_epochs", "1", "--n_epochs_decay", "0", "--print_freq", "100", "--no_html"]


def ramp16(seed: int, size: int = 32) -> np.ndarray:
    """A 16-bit ramp with a random offset: thousands of distinct values."""
    base = np.add.outer(np.arange(size), np.arange(size)) * (40000 // (2 * size))
    return (base + seed * 997).astype(np.uint16)


def write_png16(path, a: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(encode(a[:, :, None] if a.ndim == 2 else a, "png"))


def folders(root, phases: dict[str, int], make) -> str:
    """root/<phase>/A and B with make(i) -> (A file writer, B file writer) for each pair."""
    for phase, n in phases.items():
        for side in ("A", "B"):
            os.makedirs(root / phase / side, exist_ok=True)
        for i in range(n):
            make(root / phase, i)
    return str(root)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(data_range**2 / mse))


# ---- 16-bit in, 16-bit out, scored in the data's units -----------------------------------------------------------
def test_16_bit_pairs_train_and_test_to_16_bit_outputs_scored_in_data_units(tmp_path):
    def make(phase, i):
        a = ramp16(i)
        write_png16(phase / "A" / f"{i}.png", a)
        write_png16(phase / "B" / f"{i}.png", (65535 - a).astype(np.uint16))  # B a known function of A

    data = folders(tmp_path / "d", {"train": 3, "test": 2}, make)
    ck, res = str(tmp_path / "ck"), str(tmp_path / "res")
    args = train_args(data, ck, "r", *SHORT, "--input_nc", "1")
    assert train.main([*args, "--output_nc", "1"]) == 0
    saved = json.load(open(os.path.join(ck, "r", "train_opt.json")))["options"]
    assert (saved["range_A"], saved["range_B"], saved["output_dtype"]) == ("", "", "uint16")  # the type's range
    code = test_script.main(["--dataroot", data, "--checkpoints_dir", ck, "--name", "r", "--results_dir", res])
    assert code == 0
    web = os.path.join(res, "r", "test_latest")
    scores = json.load(open(os.path.join(web, "metrics.json")))
    assert scores["units"]["data_range"] == 65535 and scores["units"]["output_dtype"] == "uint16"
    for i in range(2):
        out = np.asarray(Image.open(os.path.join(web, "outputs", f"{i}_fake_B.png")))
        assert out.dtype == np.uint16 and out.shape == (32, 32)
        assert len(np.unique(out)) > 512  # far more than 256 levels, from an untrained net
        real_B = read_file(os.path.join(data, "test", "B", f"{i}.png"))[:, :, 0]
        # test.py resizes to 36 and crops 32 back: the test images are 32, so compare through the same crop
        want = psnr(out, real_B, 65535)
        assert abs(scores["per_image"][str(i)]["psnr"] - want) < 0.5, (scores["per_image"], want)
    page = open(os.path.join(web, "index.html")).read()
    assert "real_B values 0..65535 (uint16)" in page and "outputs/" in page


def test_metrics_in_data_units_agree_with_numpy_before_any_rounding(tmp_path):
    def make(phase, i):
        a = ramp16(i)
        write_png16(phase / "A" / f"{i}.png", a)
        write_png16(phase / "B" / f"{i}.png", (a // 2 + 5000).astype(np.uint16))

    data = folders(tmp_path / "d", {"train": 2, "test": 2}, make)
    ck, res = str(tmp_path / "ck"), str(tmp_path / "res")
    flags = ["--input_nc", "1", "--output_nc", "1", "--range_A", "0,40000", "--range_B", "0,30000"]
    assert train.main(train_args(data, ck, "r", *SHORT, *flags)) == 0
    test_flags = ["--preprocess", "none", "--score_input", "--eval"]
    assert test_script.main(["--checkpoints_dir", ck, "--name", "r", "--results_dir", res, *test_flags]) == 0
    web = os.path.join(res, "r", "test_latest")
    scores = json.load(open(os.path.join(web, "metrics.json")))
    assert scores["units"]["range_B"] == [0, 30000]
    for i in range(2):
        a = read_file(os.path.join(data, "test", "A", f"{i}.png"))[:, :, 0].astype(np.float64)
        b = read_file(os.path.join(data, "test", "B", f"{i}.png"))[:, :, 0].astype(np.float64)
        # the no-op baseline: real_A mapped by range_A, read back in range_B's units, against real_B
        a_as_b = ValueRange(0, 30000).from_unit(ValueRange(0, 40000).to_unit(a))
        assert scores["baseline"]["per_image"][str(i)]["psnr"] == pytest.approx(psnr(a_as_b, b, 30000), abs=1e-3)
        out = np.asarray(Image.open(os.path.join(web, "outputs", f"{i}_fake_B.png"))).astype(np.float64)
        # the output file is rounded to integers; the score is not: they agree to the rounding
        assert scores["per_image"][str(i)]["psnr"] == pytest.approx(psnr(out, b, 30000), abs=0.02)


# ---- float TIFF and signed CT values: the mapping and its inverse --------------------------------------------------
def test_float32_tiff_values_round_trip_through_the_range_exactly(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.uniform(-2.5, 7.25, (24, 40, 3)).astype(np.float32)
    path = str(tmp_path / "f.tif")
    tifffile.imwrite(path, values, photometric="minisblack", planarconfig="contig")  # (H, W, 3) as 3 samples
    a = read_file(path)
    assert a.dtype == np.float32 and a.shape == (24, 40, 3)
    r = ValueRange(-2.5, 7.25)
    back = to_output(r.to_unit(a), r, "float32")
    assert back.dtype == np.float32 and np.abs(back - values).max() <= 1e-6 * (r.hi - r.lo)
    with open(tmp_path / "o.tif", "wb") as f:
        f.write(encode(back, "tif"))
    assert np.array_equal(tifffile.imread(tmp_path / "o.tif"), back)  # written as it is


def test_32_bit_integer_tiffs_are_float_data_that_need_a_range(tmp_path):
    tifffile.imwrite(tmp_path / "i.tif", np.array([[0, 70000], [5, -3]], np.int32))
    a = read_file(str(tmp_path / "i.tif"))
    assert a.dtype == np.float32 and a.ravel().tolist() == [0, 70000, 5, -3]


def test_a_ct_window_is_one_flag_in_both_spellings_and_round_trips(tmp_path):
    for argv in (["--range_A=-1024,3071"], ["--range_A", "-1024,3071"]):
        spec = parse(TrainOptions, argv).values.range_A
        assert spec.range == ValueRange(-1024, 3071) and not spec.auto and str(spec) == "-1024,3071"
    hu = np.array([[-1024, -1000, 0], [40, 1500, 3071]], np.int16)[:, :, None]
    r = ValueRange(-1024, 3071)
    assert np.array_equal(to_output(r.to_unit(hu), r, "int16"), hu)
    tifffile.imwrite(tmp_path / "ct.tif", hu[:, :, 0])
    assert read_file(str(tmp_path / "ct.tif")).dtype == np.int16
    below = np.array([[-2000, 4000]], np.int16)[:, :, None]  # outside the window: clipped
    assert to_output(r.to_unit(below), r, "int16").ravel().tolist() == [-1024, 3071]
    holes = np.array([[np.nan, np.inf, -np.inf, 5.0]], np.float32)  # no-data pixels of float data
    assert r.to_unit(holes).ravel().tolist() == [-1, 1, -1, r.to_unit(np.float32(5.0)).item()]
    assert r.clipped(holes) == 3


def test_ct_slices_train_and_test_in_hounsfield_units(tmp_path):
    def make(phase, i):
        hu = (np.add.outer(np.arange(32), np.arange(32)) * 60 - 1024 + i * 7).astype(np.int16)
        tifffile.imwrite(phase / "A" / f"{i}.tif", hu)
        tifffile.imwrite(phase / "B" / f"{i}.tif", (hu // 2).astype(np.int16))

    data = folders(tmp_path / "d", {"train": 2, "test": 1}, make)
    ck, res = str(tmp_path / "ck"), str(tmp_path / "res")
    window = ["--range_A", "-1024,3071", "--range_B=-512,1536", "--input_nc", "1", "--output_nc", "1"]
    assert train.main(train_args(data, ck, "ct", *SHORT, *window)) == 0
    assert test_script.main(["--checkpoints_dir", ck, "--name", "ct", "--results_dir", res]) == 0
    out = tifffile.imread(os.path.join(res, "ct", "test_latest", "outputs", "0_fake_B.tif"))
    assert out.dtype == np.int16 and out.shape == (32, 32) and out.min() >= -512 and out.max() <= 1536


# ---- many channels: a 2-channel .npy input to a 1-channel output ---------------------------------------------------
def test_two_channel_npy_to_one_channel_trains_tests_and_translates(tmp_path, caplog):
    def make(phase, i):
        r = np.random.default_rng(i)
        t1, t2 = r.uniform(0, 1, (32, 32)), r.uniform(0, 3, (32, 32))  # two MR "modalities", float
        np.save(phase / "A" / f"{i}.npy", np.stack([t1, t2], axis=2).astype(np.float32))
        np.save(phase / "B" / f"{i}.npy", (t1 * 100 + t2 * 10).astype(np.float32))

    data = folders(tmp_path / "d", {"train": 3, "test": 2}, make)
    ck, res, out = str(tmp_path / "ck"), str(tmp_path / "res"), str(tmp_path / "out")
    flags = ["--input_nc", "2", "--output_nc", "1", "--range_A", "auto", "--aug_rotate", "10", "--cache_images"]
    caplog.set_level("INFO")
    assert train.main(train_args(data, ck, "mr", *SHORT, *flags)) == 0
    saved = json.load(open(os.path.join(ck, "mr", "train_opt.json")))["options"]
    lo, hi = (float(v) for v in saved["range_A"].split(","))
    assert 0 <= lo < 0.05 and 2.9 < hi <= 3  # the percentiles of both channels
    assert saved["range_B"] != "" and saved["output_dtype"] == "float32"
    assert "real_A: float32, 2 channels, range" in caplog.text and "measured" in caplog.text
    assert test_script.main(["--checkpoints_dir", ck, "--name", "mr", "--results_dir", res]) == 0
    web = os.path.join(res, "mr", "test_latest")
    fake = tifffile.imread(os.path.join(web, "outputs", "0_fake_B.tif"))
    assert fake.dtype == np.float32 and fake.shape == (32, 32)
    preview = Image.open(os.path.join(web, "images", "0_real_A.png"))
    assert preview.size == (32, 32)  # the first channel, shown grey
    inputs = [os.path.join(data, "test", "A", f"{i}.npy") for i in range(2)]
    assert translate.main(["--checkpoints_dir", ck, "--name", "mr", *inputs, "--out", out]) == 0
    assert sorted(os.listdir(out)) == ["0.tif", "1.tif"]
    assert tifffile.imread(os.path.join(out, "0.tif")).shape == (32, 32)
    npy = str(tmp_path / "npy")
    assert (
        translate.main(["--checkpoints_dir", ck, "--name", "mr", *inputs, "--out", npy, "--output_format", "npy"]) == 0
    )
    assert np.load(os.path.join(npy, "0.npy"), allow_pickle=False).dtype == np.float32


def test_channels_that_do_not_fit_and_colour_jitter_on_many_channels_are_refused(tmp_path, capsys):
    for i in range(2):
        os.makedirs(tmp_path / "train" / "A", exist_ok=True)
        os.makedirs(tmp_path / "train" / "B", exist_ok=True)
        np.save(tmp_path / "train" / "A" / f"{i}.npy", np.zeros((32, 32, 4), np.uint16))
        np.save(tmp_path / "train" / "B" / f"{i}.npy", np.zeros((32, 32), np.uint16))
    ds = aligned(str(tmp_path), preprocess=prep("none", 32, 32), input_nc=2, output_nc=1)
    with pytest.raises(ValueError, match=r"--input_nc 2: .*0\.npy has 4 channels, not 2"):
        ds.check(skip_bad=False, max_bad_fraction=0.0, workers=1)
    # a rule across configs (augment, generator): refused by train.py's resolve step, before any data is read
    jitter = ["--input_nc", "4", "--aug_color", "0.2", "--dataroot", str(tmp_path), "--checkpoints_dir"]
    with pytest.raises(SystemExit) as e:
        train.main([*jitter, str(tmp_path / "ck"), "--name", "j", *TINY_NET])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "train.py: error: --aug_color jitters" in err and "--input_nc is 4" in err


def test_a_sixteen_bit_cache_gives_the_same_samples(tmp_path):
    def make(phase, i):
        write_png16(phase / "A" / f"{i}.png", np.random.default_rng(i).integers(0, 65536, (36, 36), np.uint16))
        write_png16(phase / "B" / f"{i}.png", np.stack([ramp16(i + 1, 36)] * 3, axis=2))

    folders(tmp_path, {"train": 2}, make)
    kw = {"preprocess": prep("resize_and_crop", 40, 32), "input_nc": 1, "output_nc": 3}
    plain, cached = aligned(str(tmp_path), **kw), aligned(str(tmp_path), **kw)
    for ds in (plain, cached):
        ds.check(skip_bad=False, max_bad_fraction=0.0, workers=1)
    cached.cache_images(workers=1)
    for i in range(2):
        a, b = plain[(1, i)], cached[(1, i)]
        assert (a["A"] == b["A"]).all() and (a["B"] == b["B"]).all()
        assert a["B"].shape == (3, 32, 32) and len(np.unique(a["A"].numpy())) > 256


def test_dicom_slices_are_read_in_their_modality_units():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    a = read_file(path)
    assert a.shape == (*hu.shape, 1) and a.dtype == np.float32 and np.array_equal(a[:, :, 0], hu.astype(np.float32))


def test_sixteen_bit_colour_png_is_read_at_full_precision(tmp_path):
    a = (np.random.default_rng(1).integers(0, 65536, (8, 12, 3))).astype(np.uint16)
    write_png16(tmp_path / "c.png", a)
    got = read_file(str(tmp_path / "c.png"))
    assert got.dtype == np.uint16 and np.array_equal(got, a)
    with Image.open(tmp_path / "c.png") as im:
        assert np.array_equal(read_array(str(tmp_path / "c.png"), im), a)


@pytest.mark.parametrize("name", ["bad.npy", "bad.dcm", "short.npy"])
def test_broken_array_files_are_bad_files_named_at_the_check(tmp_path, name):
    pytest.importorskip("pydicom")
    path = tmp_path / name
    if name == "short.npy":
        np.save(path, np.zeros((32, 32), np.float32))
        path.write_bytes(path.read_bytes()[:200])  # truncated pixels
    else:
        path.write_bytes(b"not what the name says" * 10)
    with pytest.raises(BadImageError, match=f"cannot read image {path}"):
        inspect_image(str(path), decode=True)
    ok, bad, _ = scan([str(path)], decode=False)
    assert name == "short.npy" or str(path) in bad  # a header that reads is caught by the decoding check


# ---- one rule for a value type's own range, reading and writing ----------------------------------------------------
OWN = {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0), "int16": (-32768.0, 32767.0)}


@pytest.mark.parametrize("out", ["uint8", "uint16", "int16", "float32"])
@pytest.mark.parametrize("data_type", ["uint8", "uint16", "int16"])
def test_outputs_of_another_type_are_mapped_back_by_the_data_s_own_range(tmp_path, data_type, out):
    """real_B in its data type's own range (no --range_B): outputs written in another type are mapped back by that
    same range, not the output type's own (which shifted int16 outputs of uint16 data by 32768)."""
    from data.config import DataConfig, ValuesConfig
    from data.survey import settle_values
    from engine.inference import ImageTranslator
    from models.config import GeneratorConfig

    lo, hi = OWN[data_type]
    for side in ("A", "B"):
        os.makedirs(tmp_path / "train" / side)
        for i in range(2):
            np.save(tmp_path / "train" / side / f"{i}.npy", np.linspace(lo, hi, 64).reshape(8, 8).astype(data_type))
    g = GeneratorConfig(input_nc=1, output_nc=1)
    settled, types = settle_values(DataConfig(dataroot=str(tmp_path)), g, ValuesConfig(output_dtype=out))
    assert types == {"A": data_type, "B": data_type}
    values = ValuesConfig(**settled)
    assert values.output_dtype == out
    assert str(values.range_B) == ("" if out == data_type else f"{lo:g},{hi:g}")
    t = object.__new__(ImageTranslator)  # the output mapping reads the values alone
    t.values = values
    assert t.output_range == ValueRange(lo, hi)
    written = to_output(np.array([[[-1.0]], [[1.0]]]), t.output_range, out)  # the data's MIN and MAX
    info = np.iinfo(out) if out != "float32" else None
    want = [lo, hi] if info is None else [max(lo, info.min), min(hi, info.max)]
    assert written.ravel().tolist() == want


def test_float_outputs_of_16_bit_targets_without_a_range_test_in_the_data_s_units(tmp_path):
    def make(phase, i):
        write_png16(phase / "A" / f"{i}.png", ramp16(i))
        write_png16(phase / "B" / f"{i}.png", ramp16(i + 5))

    data = folders(tmp_path / "d", {"train": 2, "test": 1}, make)
    ck, res = str(tmp_path / "ck"), str(tmp_path / "res")
    args = train_args(data, ck, "f", *SHORT, "--input_nc", "1", "--output_nc", "1", "--output_dtype", "float32")
    assert train.main(args) == 0
    assert json.load(open(os.path.join(ck, "f", "train_opt.json")))["options"]["range_B"] == "0,65535"
    assert test_script.main(["--checkpoints_dir", ck, "--name", "f", "--results_dir", res, "--num_threads", "0"]) == 0
    out = tifffile.imread(os.path.join(res, "f", "test_latest", "outputs", "0_fake_B.tif"))
    assert out.dtype == np.float32 and 0 <= out.min() and out.max() <= 65535 and out.max() > 255


@pytest.mark.parametrize("channels", [2, 4])
def test_outputs_of_2_or_4_channels_read_back_as_they_were_written(tmp_path, capsys, channels):
    """A PNG's second or fourth band is alpha, which readers drop: such outputs go to TIFF, read back whole."""
    from engine import load_translator

    def make(phase, i):
        r = np.random.default_rng(i)
        np.save(phase / "A" / f"{i}.npy", r.integers(0, 65536, (32, 32, 2), np.uint16))
        np.save(phase / "B" / f"{i}.npy", r.integers(0, 65536, (32, 32, channels), np.uint16))

    data = folders(tmp_path / "d", {"train": 2}, make)
    ck, out = str(tmp_path / "ck"), str(tmp_path / "out")
    flags = ["--input_nc", "2", "--output_nc", str(channels)]
    assert train.main(train_args(data, ck, "c", *SHORT, *flags)) == 0
    src = os.path.join(data, "train", "A", "0.npy")
    assert translate.main(["--checkpoints_dir", ck, "--name", "c", "--eval", src, "--out", out]) == 0
    assert os.listdir(out) == ["0.tif"]
    back = read_file(os.path.join(out, "0.tif"))
    assert back.shape == (32, 32, channels) and back.dtype == np.uint16
    t = load_translator(os.path.join(ck, "c"), device="cpu", eval=True)
    assert np.array_equal(back, t.to_array(t.translate(t.read(src))))
    with pytest.raises(SystemExit) as e:
        translate.main(
            ["--checkpoints_dir", ck, "--name", "c", src, "--out", str(tmp_path / "p"), "--output_format", "png"]
        )
    assert (
        e.value.code == 2
        and f"PNG holds 1 (grey) or 3 (RGB) channels that read back as written, not {channels}"
        in (capsys.readouterr().err)
    )


@pytest.mark.parametrize("orientation", range(1, 9))
def test_one_orientation_rule_for_every_reader(tmp_path, orientation):
    """A TIFF's Orientation tag turns it as EXIF turns a PNG, whichever reader decodes it (Pillow for 8-bit and
    float, tifffile for int16, 16-bit RGB and several bands): an int16 A beside a float32 B stays aligned."""
    from PIL import ImageOps

    from data.image_io import inspect_file, load_image

    base = (np.arange(15).reshape(3, 5) * 10).astype(np.uint8)  # not square: the sides swap for 5 to 8
    png = tmp_path / "ref.png"
    im = Image.fromarray(base)
    exif = im.getexif()
    exif[274] = orientation
    im.save(png, exif=exif)
    want = np.asarray(ImageOps.exif_transpose(Image.open(png))).astype(np.int64)
    cases = {
        "uint8": (base, 0, 1, {}),
        "int16": (base.astype(np.int16) - 5, 5, 1, {}),
        "float32": (base.astype(np.float32), 0, 1, {}),
        "rgb16": (np.stack([base] * 3, 2).astype(np.uint16) * 257, 0, 257, {"photometric": "rgb"}),
        "2band": (
            np.stack([base] * 2, 2).astype(np.uint16),
            0,
            1,
            {"photometric": "minisblack", "planarconfig": "contig"},
        ),
    }
    for name, (a, shift, scale, kw) in cases.items():
        path = str(tmp_path / f"{name}.tif")
        tifffile.imwrite(path, a, extratags=[(274, "H", 1, orientation, True)], **kw)
        got = read_file(path)[:, :, 0].astype(np.int64)
        assert got.shape == want.shape and np.array_equal((got + shift) // scale, want), name
        assert inspect_file(path, decode=False)[0] == inspect_file(path, decode=True)[0] == want.shape[::-1], name
    eight_bit = np.asarray(load_image(str(tmp_path / "uint8.tif"), 1)).astype(np.int64)  # the 8-bit loader too
    assert np.array_equal(eight_bit, want)


def test_a_side_of_nan_only_names_its_flag(tmp_path, capsys):
    def make(phase, i):
        np.save(phase / "A" / f"{i}.npy", np.full((32, 32), np.nan, np.float32))
        np.save(phase / "B" / f"{i}.npy", np.ones((32, 32), np.float32))

    data = folders(tmp_path / "d", {"train": 2}, make)
    with pytest.raises(SystemExit) as e:
        train.main(train_args(data, str(tmp_path / "ck"), "n", *SHORT, "--input_nc", "1", "--output_nc", "1"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--range_A: no finite values" in err and "give --range_A MIN,MAX" in err
