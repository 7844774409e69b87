"""Data: pairing of halves, shared random crop/flip, direction, channels, folders, determinism."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import aligned, make_pairs, prep
from data import EpochSampler, create_dataloader
from data.image_folder import make_dataset
from data.single_dataset import SingleDataset
from data.values import OWN_RANGE


def test_halves_pair_and_share_crop_and_flip(tmp_path):
    make_pairs(str(tmp_path / "train"), 3, w=40, h=40)
    ds = aligned(str(tmp_path), "train", preprocess=prep("resize_and_crop", 48, 32), seed=3)
    flips = set()
    for epoch in range(6):
        for i in range(3):
            s = ds[(epoch, i)]
            assert s["A"].shape == s["B"].shape == (3, 32, 32)
            # B = 255 - A on disk, so after the same resize/crop/flip A + B is the constant 255 -> 0 in [-1, 1].
            assert torch.allclose(s["A"] + s["B"], torch.zeros(3, 32, 32), atol=2 / 127.5)
            flips.add(tuple(s["A"][0, 0, :2].tolist()))
    assert len(flips) > 3  # crops and flips really vary


def test_direction_swaps_sides(tmp_path):
    (path,) = make_pairs(str(tmp_path / "train"), 1, w=16, h=16)
    left = np.array(Image.open(path))[:, :16]
    pre = prep("none", flip=False, random=False)
    a2b = aligned(str(tmp_path), "train", "AtoB", preprocess=pre)[0]
    b2a = aligned(str(tmp_path), "train", "BtoA", preprocess=pre)[0]
    expected_left = torch.from_numpy(left).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(a2b["A"], expected_left) and torch.allclose(b2a["B"], expected_left)
    assert torch.equal(a2b["A"], b2a["B"]) and torch.equal(a2b["B"], b2a["A"])


def test_one_channel_conversion(tmp_path):
    make_pairs(str(tmp_path / "train"), 1)
    pre = prep("none", random=False)
    s = aligned(str(tmp_path), "train", "AtoB", input_nc=1, output_nc=3, preprocess=pre)[0]
    assert s["A"].shape == (1, 32, 32) and s["B"].shape == (3, 32, 32)
    s = aligned(str(tmp_path), "train", "BtoA", input_nc=3, output_nc=1, preprocess=pre)[0]
    assert s["A"].shape == (3, 32, 32) and s["B"].shape == (1, 32, 32)


def test_values_in_minus_one_to_one(tmp_path):
    make_pairs(str(tmp_path / "train"), 1)
    s = aligned(str(tmp_path), "train", preprocess=prep("none", random=False))[0]
    assert s["A"].min() >= -1 and s["A"].max() <= 1 and s["A"].dtype == torch.float32


def test_sample_depends_only_on_seed_epoch_index(tmp_path):
    make_pairs(str(tmp_path / "train"), 2, w=40, h=40)
    pre = prep("resize_and_crop", 64, 32)
    ds1 = aligned(str(tmp_path), "train", preprocess=pre, seed=7)
    ds2 = aligned(str(tmp_path), "train", preprocess=pre, seed=7)
    assert torch.equal(ds1[(3, 1)]["A"], ds2[(3, 1)]["A"])
    assert not all(torch.equal(ds1[(e, 1)]["A"], ds1[(e + 1, 1)]["A"]) for e in range(4))


def test_test_time_crop_is_centre_without_flip(tmp_path):
    make_pairs(str(tmp_path / "test"), 1, w=40, h=40)
    full = aligned(str(tmp_path), "test", preprocess=prep("none", random=False))[0]["A"]
    pre = prep("crop", crop_size=32, flip=True, random=False)
    ds = aligned(str(tmp_path), "test", preprocess=pre)
    assert torch.equal(ds[(0, 0)]["A"], full[:, 4:36, 4:36]) and torch.equal(ds[(5, 0)]["A"], ds[(0, 0)]["A"])


def test_a_b_folders_without_combining(tmp_path):
    for side, value in (("A", 10), ("B", 200)):
        for sub in ("x", "y"):
            os.makedirs(tmp_path / "train" / side, exist_ok=True)
            Image.new("RGB", (16, 16), (value,) * 3).save(tmp_path / "train" / side / f"{sub}.png")
    ds = aligned(str(tmp_path), "train", preprocess=prep("none", random=False))
    assert len(ds) == 2
    s = ds[0]
    assert s["A_paths"].endswith(os.path.join("A", "x.png")) and s["B_paths"].endswith(os.path.join("B", "x.png"))
    assert s["A"].mean() < 0 < s["B"].mean()
    os.remove(tmp_path / "train" / "B" / "y.png")
    with pytest.raises(FileNotFoundError, match="no partner of the same name"):
        aligned(str(tmp_path), "train")


def test_recursive_any_case_extensions(tmp_path):
    for rel in ("a.JPG", "sub/b.png", "sub/deeper/c.WebP", "notes.txt", "d.TIFF"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt"):
            p.write_text("x")
        else:
            Image.new("RGB", (4, 2)).save(
                p, format={"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "tiff": "TIFF"}[rel.rsplit(".", 1)[1].lower()]
            )
    names = [os.path.relpath(p, tmp_path) for p in make_dataset(str(tmp_path), None)]
    assert names == ["a.JPG", "d.TIFF", os.path.join("sub", "b.png"), os.path.join("sub", "deeper", "c.WebP")]


def test_missing_folders_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'train' folder"):
        aligned(str(tmp_path), "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no images in .*accepted extensions: .jpg"):
        aligned(str(tmp_path), "train")


def test_crop_larger_than_image(tmp_path):
    make_pairs(str(tmp_path / "train"), 1, w=16, h=16)
    ds = aligned(str(tmp_path), "train", preprocess=prep("crop", crop_size=32))
    with pytest.raises(ValueError, match="smaller than --crop_size 32"):
        ds[0]


def test_nearest_filter_keeps_label_colours(tmp_path):
    label = np.zeros((16, 16, 3), np.uint8)
    label[:, 8:] = (255, 0, 0)
    os.makedirs(tmp_path / "train")
    Image.fromarray(np.concatenate([label, label], 1)).save(tmp_path / "train" / "l.png")
    pre = prep("resize_and_crop", 37, 32, flip=False)
    s = aligned(str(tmp_path), "train", preprocess=pre, filter_A="nearest", filter_B="bicubic")[0]
    colours = lambda t: {tuple(c) for c in t.flatten(1).T.tolist()}  # noqa: E731
    assert colours(s["A"]) <= {(-1.0, -1.0, -1.0), (1.0, -1.0, -1.0)}
    assert len(colours(s["B"])) > 2  # bicubic blends new colours in


def test_single_dataset(tmp_path):
    make_pairs(str(tmp_path / "test"), 2, w=20, h=12)
    ds = SingleDataset(
        str(tmp_path),
        "test",
        input_nc=3,
        preprocess=prep("none", random=False),
        filter_A="bicubic",
        max_dataset_size=None,
        range_A=OWN_RANGE,
    )
    assert len(ds) == 2 and ds[0]["A"].shape == (3, 12, 40) and "B" not in ds[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_sampler_order_and_resume_skip(tiny_data, workers):
    sampler = EpochSampler(4, seed=5, shuffle=True)
    assert sampler.order(1) == EpochSampler(4, seed=5, shuffle=True).order(1)
    assert any(sampler.order(e) != sampler.order(1) for e in range(2, 6))
    assert EpochSampler(4, seed=5, shuffle=False).order(3) == [0, 1, 2, 3]
    ds = aligned(tiny_data, "train", preprocess=prep("resize_and_crop", 40, 32), seed=5)
    loader = create_dataloader(ds, 1, workers, sampler)
    sampler.set_epoch(2)
    full = [b["A"] for b in loader]
    sampler.set_epoch(2, start=2)
    rest = [b["A"] for b in loader]
    assert len(full) == 4 and len(rest) == 2
    assert all(torch.equal(a, b) for a, b in zip(full[2:], rest, strict=False))


def _samples(ds, epochs=(1, 2)):
    return [ds[(e, i)] for e in epochs for i in range(len(ds))]


@pytest.mark.parametrize("layout", ["combined", "folders"])
@pytest.mark.parametrize("direction, input_nc", [("AtoB", 3), ("BtoA", 1)])
def test_cached_images_give_the_same_samples(tmp_path, layout, direction, input_nc):
    if layout == "combined":
        make_pairs(str(tmp_path / "train"), 3, w=40, h=36, ext="jpg")
    else:
        for side in ("A", "B"):
            make_pairs(str(tmp_path / "train" / side), 3, w=40, h=36, seed=ord(side))
    kw = {"direction": direction, "input_nc": input_nc, "preprocess": prep("resize_and_crop", 40, 32), "seed": 3}
    plain, cached = aligned(str(tmp_path), **kw), aligned(str(tmp_path), **kw)
    for ds in (plain, cached):
        ds.check(False, 0.05, workers=2)
    cached.cache_images(workers=2)
    assert cached.cache.buffer.is_shared() and cached.cache.nbytes > 0
    for a, b in zip(_samples(plain), _samples(cached), strict=True):
        assert a["A_paths"] == b["A_paths"] and torch.equal(a["A"], b["A"]) and torch.equal(a["B"], b["B"])
    assert plain[(1, 0)]["A"].shape[0] == input_nc
    # Loader workers read the one shared buffer and deliver the same batches.
    batches = []
    for ds in (plain, cached):
        sampler = EpochSampler(len(ds), 0, True)
        sampler.set_epoch(2)
        batches.append([b["A"] for b in create_dataloader(ds, 2, 2, sampler)])
    assert all(torch.equal(x, y) for x, y in zip(*batches, strict=True))


def test_cache_that_does_not_fit_stops_at_start(tiny_data, tmp_path, monkeypatch, capsys):
    import train
    from conftest import TINY
    from data import image_cache

    monkeypatch.setattr(image_cache, "cache_budget", lambda: (1000, "a test's limit"))
    args = ["--dataroot", tiny_data, "--checkpoints_dir", str(tmp_path), *TINY, "--cache_images"]
    with pytest.raises(SystemExit) as e:
        train.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert (
        "--cache_images: the 4 decoded images need 24 KB, more than the 1 KB the cache may use (a test's limit)" in err
    )
