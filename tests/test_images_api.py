"""Images and the Python API at their edges: every pixel mode read one way (loader, data-set check, API), EXIF
orientation in the size scan and the decode, the decompression-bomb limit and --tile (translate.py's too), inference
that never changes the model's state, tensors of other dtypes, and crafted .safetensors metadata."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image, features

import train
import translate
from conftest import aligned, make_G, prep, randomized, train_args
from data.image_io import TILE_MAX_PIXELS, BadImageError, inspect_file, inspect_image, load_image, read_file, scan
from data.single_dataset import SingleDataset
from data.transforms import to_tensor
from data.values import RangeSpec
from engine import ImageTranslator, checkpoint, load_translator
from options.options import TrainOptions


def translator(eval: bool = True, **generator) -> ImageTranslator:
    """An ImageTranslator of a randomized tiny U-Net (5 levels, ngf 4) with the given generator flags."""
    o = TrainOptions.from_flat({"ngf": 4, "num_downs": 5, **generator})
    net = randomized(make_G(**dataclasses.asdict(o.generator)))
    ckpt = checkpoint.GeneratorCheckpoint(net.state_dict(), o.to_dict(), False, 1, "memory")
    return ImageTranslator.from_checkpoint(ckpt, torch.device("cpu"), "none", False, eval)


def gradient(mode: str, w: int = 40, h: int = 24) -> Image.Image:
    """A diagonal ramp over the mode's whole range (16-bit for I;16 and I, 0..1 for F), never flat."""
    ramp = np.add.outer(np.arange(h), np.arange(w)) / (h + w - 2)
    if mode == "I;16":
        return Image.fromarray((ramp * 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray((ramp * 65535).astype(np.int32))
    if mode == "F":
        return Image.fromarray(ramp.astype(np.float32))
    return Image.fromarray((ramp * 255).astype(np.uint8)).convert("RGB").convert(mode)


def state_bytes(net: torch.nn.Module) -> dict[str, bytes]:
    return {k: v.detach().cpu().numpy().tobytes() for k, v in net.state_dict().items()}


# ---- item 7: the API reads every mode as the loader does; inference leaves the model's state alone ----------
# Not "I": 32-bit integer TIFFs are float data, which need a range (test_values.py)
@pytest.mark.parametrize("mode", ["I;16", "L", "RGB", "RGBA", "LA", "P", "CMYK", "1"])
@pytest.mark.parametrize("input_nc", [1, 3])
def test_the_api_reads_every_image_mode_as_the_loader_reads_the_file(tmp_path, mode, input_nc):
    img = gradient(mode)
    path = str(tmp_path / ("im.tif" if mode in ("CMYK", "I") else "im.png"))
    img.save(path)
    t = translator(input_nc=input_nc, output_nc=input_nc)
    loader = SingleDataset(
        str(tmp_path),
        "-",
        input_nc=input_nc,
        preprocess=prep("none"),
        filter_A="bicubic",
        max_dataset_size=None,
        range_A=RangeSpec.parse("", "range_A"),
    )
    want = loader[0]["A"][None]  # 16-bit modes at full precision, 8-bit ones through Pillow as always
    if mode not in ("I;16", "I"):
        assert torch.equal(want, to_tensor(load_image(path, input_nc))[None])
    assert torch.equal(t.read(path), want)  # translate.py's way
    with Image.open(path) as opened:
        for given in (img, opened):  # in memory, and opened from the file as a user would
            x = t.to_tensor(given)
            assert torch.equal(x, want), mode
    if mode != "1":
        assert want.std() > 0.1, "the ramp became a blank image"
    assert t(img).size == img.size


def test_float_images_need_a_range_in_the_api_as_in_the_loader(tmp_path):
    img = gradient("F")
    img.save(tmp_path / "f.tif")
    with pytest.raises(BadImageError, match="mode F"):  # no 8-bit form
        load_image(str(tmp_path / "f.tif"), 3)
    with pytest.raises(ValueError, match="--range_A MIN,MAX"):  # a run that trained on 8-bit images
        translator()(img)
    t = translator()
    t.values = dataclasses.replace(t.values, range_A="0,1")  # a run trained on float data in 0..1
    x = t.to_tensor(img)
    ramp = np.asarray(img, dtype=np.float64) * 2 - 1
    assert np.abs(x[0, 0].numpy() - ramp).max() < 1e-6 and torch.equal(x[0, 0], x[0, 2])
    assert torch.equal(t.read(str(tmp_path / "f.tif")), x)


@pytest.mark.parametrize("generator", [{}, {"spectral_norm": "G"}, {"spectral_norm": "G", "norm": "instance"}])
@pytest.mark.parametrize("eval", [False, True])
def test_inference_never_changes_the_state_dict(generator, eval):
    t = translator(eval=eval, **generator)
    before = state_bytes(t.net)
    x = torch.rand(2, 3, 40, 48) * 2 - 1
    outs = []
    for tile in (None, None, 32):
        torch.manual_seed(7)  # the same dropout masks
        outs.append(t(x, tile=tile, overlap=8))
        assert state_bytes(t.net) == before, f"translating changed the state (tile {tile})"
    assert torch.equal(outs[0], outs[1]), "two equal calls gave different outputs"
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (33, 40, 3), dtype=np.uint8))
    t(img)
    assert state_bytes(t.net) == before
    assert t.net.training is not eval  # the mode is restored too (spectral norm's parametrizations included)
    assert all(m.training is not eval for m in t.net.modules())


def test_a_spectral_norm_generator_uses_its_saved_vectors_in_train_mode():
    """Instance norm and no dropout: train and eval mode differ only in spectral norm's power iteration."""
    flags = {"spectral_norm": "G", "no_dropout": True, "norm": "instance"}
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(translator(eval=False, **flags)(x), translator(eval=True, **flags)(x), rtol=0, atol=0)


# ---- item 15: tensors of other dtypes ---------------------------------------------------------------------------
def test_floating_tensors_of_any_precision_are_computed_in_fp32_and_integers_refused():
    t = translator()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64) * 2 - 1
    want = t(x.float())
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        got = t(x.to(dtype))
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, t(x.to(dtype).float()), rtol=0, atol=0)
    torch.testing.assert_close(t(x), want, rtol=0, atol=0)
    for dtype in (torch.uint8, torch.int64, torch.bool):
        with pytest.raises(TypeError, match="floating-point"):
            t(torch.zeros(3, 32, 32, dtype=dtype))
    with pytest.raises(TypeError, match="127.5"):
        t.translate(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


# ---- item 9: EXIF orientation in the size scan and the decode ---------------------------------------------------
FORMATS = ["jpg", "tif", "png"] + (["webp"] if features.check("webp") else [])


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_size_scan_and_decode_agree_on_every_orientation(tmp_path, ext, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = str(tmp_path / f"o.{ext}")
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(path, exif=exif)
    upright = (20, 40) if orientation >= 5 else (40, 20)
    assert inspect_image(path, decode=False) == upright
    assert inspect_image(path, decode=True) == upright
    assert load_image(path, 3).size == load_image(path, 1).size == upright


@pytest.mark.parametrize("ext", ["tif", "png", "jpg"])
def test_rotated_images_train_and_cache_without_a_size_mismatch(tmp_path, caplog, ext):
    """A|B images stored sideways with orientation 6: wider than tall once upright, cached at that size."""
    folder = tmp_path / "d" / "train"
    folder.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    rng = np.random.default_rng(0)
    for i in range(2):
        stored = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)  # 32 wide, 64 tall on disk: 64 x 32 upright
        Image.fromarray(stored).save(folder / f"p{i}.{ext}", exif=exif)
    ds = aligned(str(tmp_path / "d"), preprocess=prep("none", 32, 32))
    with caplog.at_level(logging.WARNING):
        ds.check(skip_bad=False, max_bad_fraction=0.0, workers=2)
    assert "narrower than tall" not in caplog.text
    assert set(ds.sizes.values()) == {(32, 32)}
    plain = [ds[i]["A"] for i in range(len(ds))]
    ds.cache_images(workers=2)
    for i, a in enumerate(plain):
        assert torch.equal(ds[i]["A"], a) and a.shape == (3, 32, 32)


# ---- item 12: what the loader cannot use is found by the check ------------------------------------------------
def write_mode(folder, mode: str) -> str | None:
    """An image of that mode in the first format that stores it (None if none does). Values over 65535 must come
    back: Pillow before 13 writes them to PNG clipped to 16 bits."""
    img = Image.fromarray(np.full((24, 40), 70000, np.int32)) if mode == "I>65535" else gradient(mode)
    for ext in ("png", "tif", "webp"):
        path = os.path.join(folder, f"m.{ext}")
        try:
            img.save(path)
        except (OSError, ValueError, KeyError):
            continue
        if mode != "I>65535" or np.asarray(Image.open(path)).max() == 70000:
            return path
        os.remove(path)
    return None


ALL_MODES = ["1", "L", "P", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA"]
ALL_MODES += ["I;16", "I", "I>65535", "F"]


@pytest.mark.parametrize("mode", ALL_MODES)
def test_the_decoding_check_refuses_exactly_what_the_loader_refuses(tmp_path, mode):
    path = write_mode(str(tmp_path), mode)
    if path is None:
        pytest.skip(f"Pillow writes mode {mode} to none of png, tiff, webp")

    def verdict(fn):
        try:
            fn()
            return "read"
        except BadImageError as e:
            assert "cannot read image" in str(e) and path in str(e)
            return "refused"

    check = verdict(lambda: inspect_image(path, decode=True))
    if mode in ("F", "I>65535"):  # read at full precision since issue 21 (float values, for a declared range)
        assert check == "read" and not inspect_file(path, decode=False)[1].eight_bit
        assert verdict(lambda: read_file(path)) == check
        assert read_file(path).dtype == np.float32
    else:
        assert verdict(lambda: load_image(path, 1)) == verdict(lambda: load_image(path, 3)) == check, mode


@pytest.mark.parametrize("other", ["F", "I>65535"])
def test_a_file_of_another_value_type_among_8_bit_ones_is_named_at_the_check(tmp_path, other):
    folder = tmp_path / "d" / "train"
    for sub in ("A", "B"):
        (folder / sub).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), 40 * i + 20, np.uint8)).save(folder / sub / f"{i}.png")
    path = write_mode(str(folder / "A"), other)
    os.replace(path, folder / "A" / "9.tif")
    Image.fromarray(np.full((24, 40, 3), 9, np.uint8)).save(folder / "B" / "9.png")
    ds = aligned(str(tmp_path / "d"), preprocess=prep("none", 32, 32))
    with pytest.raises(
        ValueError, match=r"9\.tif is (float32|16-bit), 1 channel, but .*0\.png is 8-bit.*one value type"
    ):
        ds.check(skip_bad=True, max_bad_fraction=0.5, workers=2)


def test_a_float_image_needs_a_range_and_is_read_with_one(tmp_path):
    folder = tmp_path / "d" / "train"
    folder.mkdir(parents=True)
    ramp = np.linspace(-3, 5, 32 * 64, dtype=np.float32).reshape(32, 64)
    Image.fromarray(ramp).save(folder / "f.tif")
    ds = aligned(str(tmp_path / "d"), preprocess=prep("none", 32, 32))
    with pytest.raises(ValueError, match="--range_A MIN,MAX"):
        ds.check(skip_bad=False, max_bad_fraction=0.0, workers=1)
    ranges = {k: RangeSpec.parse("-3,5", k) for k in ("range_A", "range_B")}
    ds = aligned(str(tmp_path / "d"), preprocess=prep("none", 32, 32), input_nc=1, **ranges)
    ds.check(skip_bad=False, max_bad_fraction=0.0, workers=1)
    A = ds[0]["A"]
    assert A.shape == (1, 32, 32) and np.allclose(A[0].numpy(), (ramp[:, :32] + 3) / 4 - 1, atol=1e-6)


# ---- item 14: the decompression-bomb limit, raised knowingly for --tile ------------------------------------------
def test_images_over_pillows_limit_are_read_with_a_raised_limit_and_refused_otherwise(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # Pillow refuses above 2 x 500 pixels
    path = str(tmp_path / "big.png")
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(path)  # 1920 pixels
    with pytest.raises(BadImageError, match="cannot read image .*--tile reads images of up to"):
        load_image(path, 3)
    assert scan([path], decode=False)[1][path].startswith(f"cannot read image {path}")
    assert load_image(path, 3, max_pixels=TILE_MAX_PIXELS).size == (48, 40)
    assert inspect_image(path, True, max_pixels=TILE_MAX_PIXELS) == (48, 40)
    assert scan([path, path], decode=False, workers=2, max_pixels=TILE_MAX_PIXELS)[:2] == ({path: (48, 40)}, {})
    with pytest.raises(BadImageError, match="1920 pixels, over the limit of 1000"):
        load_image(path, 3, max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == 500  # Pillow's own limit is left as it was


def test_translate_py_reads_images_over_pillow_s_limit_only_with_tile(tiny_data, tmp_path, monkeypatch):
    args = train_args(tiny_data, tmp_path / "ck", "t", "--no_html")
    assert train.main([*args, "--n_epochs", "1", "--n_epochs_decay", "0", "--stop_after_iters", "1"]) == 0
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 96 is over twice this: a "bomb" to Pillow
    run = ["--checkpoints_dir", str(tmp_path / "ck"), "--name", "t", "--eval", str(big)]
    assert translate.main([*run, "--out", str(tmp_path / "plain")]) == 1  # refused, naming --tile
    assert not (tmp_path / "plain" / "big.png").exists()
    assert translate.main([*run, "--out", str(tmp_path / "tiled"), "--tile", "64", "--overlap", "16"]) == 0
    assert Image.MAX_IMAGE_PIXELS == 1000  # Pillow's own limit is left as it was
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert Image.open(tmp_path / "tiled" / "big.png").size == (96, 64)


# ---- item 13: crafted .safetensors metadata ---------------------------------------------------------------------
def exported(tmp_path, **generator) -> tuple[str, dict, dict]:
    """A tiny generator exported as safetensors; returns (path, its tensors, its metadata)."""
    t = translator(**generator)
    path = str(tmp_path / "g.safetensors")
    checkpoint.save_safetensors(t.checkpoint, path)
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return path, {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def with_generator(meta: dict, **changes) -> str:
    options = json.loads(meta["options"])
    options["generator"].update(changes)
    return json.dumps(options)


CRAFTED = {
    "format 99": lambda m: {**m, "format": "99"},
    "format abc": lambda m: {**m, "format": "abc"},
    "options not JSON": lambda m: {**m, "options": "{not json"},
    "options a list": lambda m: {**m, "options": "[1, 2]"},
    "options groups not objects": lambda m: {**m, "options": '{"generator": 3}'},
    "ngf 100000": lambda m: {**m, "options": with_generator(m, ngf=100000)},
    "ngf a string": lambda m: {**m, "options": with_generator(m, ngf="64")},
    "ngf 0": lambda m: {**m, "options": with_generator(m, ngf=0)},
    "ngf 100000 with spectral norm": lambda m: {**m, "options": with_generator(m, ngf=100000, spectral_norm="G")},
    "dropout 2": lambda m: {**m, "options": with_generator(m, dropout=2.0)},
    "input_nc 2": lambda m: {**m, "options": with_generator(m, input_nc=2)},
    "num_downs 10**9": lambda m: {**m, "options": with_generator(m, num_downs=10**9)},
    "netG unknown": lambda m: {**m, "options": with_generator(m, netG="unet_9999")},
    "residual with other channels": lambda m: {**m, "options": with_generator(m, residual=True, output_nc=1)},
    "a resnet's options": lambda m: {**m, "options": with_generator(m, netG="resnet_9blocks", num_downs=None)},
    "no ema": lambda m: {k: v for k, v in m.items() if k != "ema"},
    "no epoch": lambda m: {k: v for k, v in m.items() if k != "epoch"},
    "no format": lambda m: {k: v for k, v in m.items() if k != "format"},
    "ema 2": lambda m: {**m, "ema": "2"},
    "epoch x": lambda m: {**m, "epoch": "x"},
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_safetensors_metadata_is_a_checkpoint_error(tmp_path, case):
    from safetensors.torch import save_file

    path, tensors, meta = exported(tmp_path)
    save_file(tensors, path, metadata=CRAFTED[case](meta))
    with pytest.raises(checkpoint.CheckpointError, match=f"cannot load {path}: "):
        load_translator(path, device="cpu")


@pytest.mark.parametrize("generator", [{}, {"spectral_norm": "G"}, {"netG": "resnet_6blocks", "num_downs": None}])
def test_exported_generators_still_load_and_translate_alike(tmp_path, generator):
    path, _, meta = exported(tmp_path, **generator)
    t, u = translator(**generator), load_translator(path, device="cpu", eval=True)
    assert u.options == t.options and meta["format"] == str(checkpoint.FORMAT)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(u(x), t(x), rtol=0, atol=0)


def test_one_pixel_limit_for_every_reader_from_the_header(tmp_path, monkeypatch):
    """Pillow's decompression-bomb limit (2 * MAX_IMAGE_PIXELS) for every reader, checked from the header before
    anything is allocated (a TIFF header may claim 60000 x 60000 x 2), with translate.py --tile's override."""
    import tifffile
    from PIL import Image

    from data.image_io import BadImageError, inspect_file, read_file

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # the limit: 1000 pixels
    files = {
        "two_bands.tif": lambda p: tifffile.imwrite(p, np.zeros((40, 40, 2), np.uint16), planarconfig="contig"),
        "rgb16.tif": lambda p: tifffile.imwrite(p, np.zeros((40, 40, 3), np.uint16), photometric="rgb"),
        "values.npy": lambda p: np.save(p, np.zeros((40, 40), np.float32)),
        "photo.png": lambda p: Image.fromarray(np.zeros((40, 40), np.uint8)).save(p),
    }
    for name, write in files.items():
        path = str(tmp_path / name)
        write(path)
        for read in (lambda p, m=None: inspect_file(p, decode=False, max_pixels=m), read_file):
            with pytest.raises(BadImageError, match=r"1600 pixels.* limit of 1000.*--tile"):
                read(path)
        assert inspect_file(path, decode=False, max_pixels=2000)[0] == (40, 40)  # --tile's limit reads it
        assert read_file(path, max_pixels=2000).shape[:2] == (40, 40)


def test_damaged_tiffs_and_missing_codecs_are_bad_files_with_a_reason(tmp_path):
    """A corrupt zlib strip, bands of mixed sample formats and a compression tifffile decodes only with imagecodecs
    (ZSTD here): one line each, naming the file and what to do, never tifffile's own exception."""
    import struct

    import tifffile

    from data.image_io import BadImageError, inspect_file, read_file

    corrupt = tmp_path / "corrupt.tif"
    tifffile.imwrite(corrupt, np.random.default_rng(0).integers(0, 65535, (64, 64, 3), np.uint16), compression="zlib")
    data = bytearray(corrupt.read_bytes())
    data[300:600] = bytes(b ^ 0xFF for b in data[300:600])
    corrupt.write_bytes(bytes(data))
    with pytest.raises(BadImageError, match=r"corrupt\.tif: a damaged or unsupported TIFF \(error: .*decompressing"):
        read_file(str(corrupt))
    mixed = tmp_path / "mixed.tif"  # two bands whose SampleFormat differ (float, then unsigned): a TypeError inside
    tifffile.imwrite(mixed, np.zeros((8, 8, 2), np.float32), planarconfig="contig", photometric="minisblack")
    with tifffile.TiffFile(mixed) as tif:
        offset = tif.pages[0].tags[339].valueoffset
    data = bytearray(mixed.read_bytes())
    data[offset + 2 : offset + 4] = struct.pack("<H", 1)
    mixed.write_bytes(bytes(data))
    for read in (read_file, lambda p: inspect_file(p, decode=False)):
        with pytest.raises(BadImageError, match=r"mixed\.tif: a damaged or unsupported TIFF \(TypeError"):
            read(str(mixed))
    zstd = tmp_path / "zstd.tif"  # written plain, then marked ZSTD (50000): what a ZSTD file is to tifffile
    tifffile.imwrite(zstd, np.zeros((8, 8, 2), np.uint16), planarconfig="contig", photometric="minisblack")
    with tifffile.TiffFile(zstd) as tif:
        offset = tif.pages[0].tags[259].valueoffset
    data = bytearray(zstd.read_bytes())
    data[offset : offset + 2] = struct.pack("<H", 50000)
    zstd.write_bytes(bytes(data))
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        with pytest.raises(
            BadImageError, match=r"zstd\.tif: its compression needs imagecodecs .*pip install imagecodecs"
        ):
            read_file(str(zstd))


def test_an_empty_image_is_said_to_be_empty(tmp_path):
    from data.arrays import as_hwc

    for shape in ((0, 5), (4, 0, 3), (3, 3, 0)):
        with pytest.raises(ValueError, match="the image is empty"):
            as_hwc(np.zeros(shape, np.float32))
