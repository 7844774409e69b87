"""datasets/build_study_data.py on tiny synthetic stand-ins for the pix2pix maps archive and the PolyU download."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent


def _load():
    spec = importlib.util.spec_from_file_location("build_study_data", REPO_ROOT / "datasets" / "build_study_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bsd = _load()


def _solid(path: Path, size: tuple[int, int], value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path, quality=95)


def _mean(path: Path, box: tuple[int, int, int, int] | None = None) -> float:
    with Image.open(path) as im:
        return float(np.asarray(im.convert("L").crop(box) if box else im.convert("L"), dtype=np.float64).mean())


# --- maps600 ------------------------------------------------------------------------------------------------------


def _maps_source(root: Path, n_train: int, n_val: int) -> None:
    for phase, n in (("train", n_train), ("val", n_val)):
        for i in range(1, n + 1):
            _solid(root / phase / f"{i}.jpg", (1200, 600), 10 * i % 250)


def test_maps_takes_every_third_and_eleventh_file_in_numeric_order_unchanged(tmp_path):
    src, out = tmp_path / "maps", tmp_path / "maps600"
    _maps_source(src, n_train=11, n_val=23)
    assert bsd.main(["maps", "--source", str(src), "--out", str(out)]) == 0
    # numeric order: 1, 4, 7, 10 (a sort by name would give 1, 11, 4, 7: "1" < "10" < "11" < "2" ...)
    assert sorted((out / "train").iterdir()) == sorted(out / "train" / f"{i}.jpg" for i in (1, 4, 7, 10))
    assert sorted(p.name for p in (out / "val").iterdir()) == ["1.jpg", "12.jpg", "23.jpg"]
    for phase, name in (("train", "10.jpg"), ("val", "23.jpg")):
        assert (out / phase / name).read_bytes() == (src / phase / name).read_bytes()
    assert bsd.main(["maps", "--source", str(src), "--out", str(out)]) == 2  # never writes over an earlier build


def test_maps_refuses_files_that_are_not_1200x600(tmp_path):
    src = tmp_path / "maps"
    _maps_source(src, n_train=2, n_val=1)
    _solid(src / "val" / "1.jpg", (512, 256), 0)
    assert bsd.main(["maps", "--source", str(src), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


# --- polyu512 -----------------------------------------------------------------------------------------------------

# (name, noisy grey level, clean grey level): real PolyU names of train, validation and held-out scenes
CROPS = [
    ("Canon5D2_5_160_3200_chair_11", 40, 60),
    ("NikonD800_10_100_6400_planandsofa_1", 80, 100),
    ("Canon5D2_5_160_6400_desk_4", 120, 140),  # val scene canon5d2/desk
    ("Sony_4_200_3200_door_10", 160, 180),  # val scene sonya7ii/door
    ("Canon80D_8_8_3200_ball_1", 200, 220),  # held-out scene canon80d/ball
]


def _polyu_source(root: Path) -> tuple[Path, Path]:
    cropped, originals = root / "CroppedImages", root / "OriginalImages"
    for name, noisy, clean in CROPS:
        _solid(cropped / f"{name}_real.JPG", (512, 512), noisy)
        _solid(cropped / f"{name}_mean.JPG", (512, 512), clean)
    _solid(cropped / "Canon5D2_5_160_3200_plug_11_real.JPG", (512, 512), 0)  # no _mean partner: skipped
    # Full-size pairs 1100x600: a 2x1 grid of tiles; the right tile is brighter than the left one.
    for name in ("Nikon800_plaso", "Canon5D2_desk", "Nikon_800_carbi"):
        for kind, base in (("Real", 30), ("mean", 130)):
            pixels = np.full((600, 1100, 3), base, np.uint8)
            pixels[:, 512:] += 50
            originals.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(originals / f"{name}_{kind}.JPG", quality=95)
    (root / "License.txt").write_text("non-commercial use only\n")
    return cropped, originals


def test_scene_keys_unify_cameras_and_match_crops_with_their_originals():
    assert bsd.scene_key("Canon5D2_5_160_6400_desk_4") == bsd.scene_key("Canon5D2_desk") == "canon5d2/desk"
    assert bsd.scene_key("NikonD800_10_100_6400_planandsofa_1") == bsd.scene_key("Nikon800_plaso")
    assert bsd.scene_key("NikonD800_6-3_125_5000_plant__4") == bsd.scene_key("Nikon800_plant") == "nikond800/plant"
    assert bsd.scene_key("Nikon_800_carbi") == "nikond800/carbi"
    assert bsd.scene_key("Sony_4_200_3200_door_10") == bsd.scene_key("SonyA7II_door") == "sonya7ii/door"
    assert bsd.scene_key("Canon600D_4-5_125_1600_toy_1") == bsd.scene_key("Canon600_toy") == "canon600d/toy"
    assert bsd.scene_key("Canon80D_8_8_800_GO_1") == bsd.scene_key("Canon80D_GO") == "canon80d/go"
    with pytest.raises(bsd.BuildError):
        bsd.scene_key("IMG_8325")
    # every tile of the bundled list is of a known camera, and of a training scene
    tiles = bsd.read_tile_list(bsd.DEFAULT_TILE_LIST)
    assert sum(len(corners) for corners in tiles.values()) == 224
    skipped = set(bsd.VAL_SCENES) | set(bsd.HELD_OUT_SCENES)
    assert not {bsd.scene_key(stem) for stem in tiles} & skipped


def test_polyu_pairs_noisy_left_clean_right_and_splits_by_scene(tmp_path):
    cropped, _ = _polyu_source(tmp_path / "PolyU")
    out = tmp_path / "polyu512"
    assert bsd.main(["polyu", "--cropped", str(cropped), "--out", str(out)]) == 0
    names = {phase: sorted(p.stem for p in (out / phase).iterdir()) for phase in ("train", "val")}
    assert names["val"] == ["Canon5D2_5_160_6400_desk_4", "Sony_4_200_3200_door_10"]
    assert names["train"] == ["Canon5D2_5_160_3200_chair_11", "NikonD800_10_100_6400_planandsofa_1"]
    for phase in ("train", "val"):
        for name, noisy, clean in CROPS:
            path = out / phase / f"{name}.jpg"
            if path.exists():
                with Image.open(path) as im:
                    assert im.size == (1024, 512)
                assert abs(_mean(path, (0, 0, 512, 512)) - noisy) < 2  # A, the noisy shot, on the left
                assert abs(_mean(path, (512, 0, 1024, 512)) - clean) < 2  # B, the clean mean image, on the right
    assert (out / "LICENSE.txt").read_text() == "non-commercial use only\n"


def test_polyu_all_tiles_cuts_the_grid_of_training_scenes_only(tmp_path):
    cropped, originals = _polyu_source(tmp_path / "PolyU")
    out = tmp_path / "polyu512"
    args = ["polyu", "--cropped", str(cropped), "--originals", str(originals), "--out", str(out), "--all_tiles"]
    assert bsd.main(args) == 0
    train = sorted(p.stem for p in (out / "train").iterdir())
    tiles = [n for n in train if "_x" in n]
    assert tiles == [
        "Nikon800_plaso_x0_y0",
        "Nikon800_plaso_x512_y0",
        "Nikon_800_carbi_x0_y0",
        "Nikon_800_carbi_x512_y0",
    ]
    assert len(train) == 2 + 4 and len(list((out / "val").iterdir())) == 2
    left, right = out / "train" / "Nikon800_plaso_x0_y0.jpg", out / "train" / "Nikon800_plaso_x512_y0.jpg"
    assert abs(_mean(left, (0, 0, 512, 512)) - 30) < 2 and abs(_mean(left, (512, 0, 1024, 512)) - 130) < 2
    assert abs(_mean(right, (0, 0, 512, 512)) - 80) < 2 and abs(_mean(right, (512, 0, 1024, 512)) - 180) < 2
    jobs, _ = bsd.plan_polyu(str(cropped), str(originals), None)
    scenes = {phase: {bsd.scene_key(j.pair.stem) for j in jobs if j.phase == phase} for phase in ("train", "val")}
    assert scenes["val"] == {"canon5d2/desk", "sonya7ii/door"} and not scenes["train"] & scenes["val"]


def test_polyu_tile_list_picks_tiles_and_refuses_a_validation_scene(tmp_path):
    cropped, originals = _polyu_source(tmp_path / "PolyU")
    listed = tmp_path / "tiles.txt"
    listed.write_text("# two tiles\nNikon800_plaso_x512_y0\nNikon_800_carbi_x0_y0\n")
    out = tmp_path / "polyu512"
    args = ["polyu", "--cropped", str(cropped), "--originals", str(originals), "--out", str(out)]
    assert bsd.main([*args, "--tile_list", str(listed)]) == 0
    assert sorted(p.stem for p in (out / "train").iterdir() if "_x" in p.stem) == [
        "Nikon800_plaso_x512_y0",
        "Nikon_800_carbi_x0_y0",
    ]
    listed.write_text("Canon5D2_desk_x0_y0\n")  # the val scene's original: scenes would cross
    assert bsd.main([*args[:-1], str(tmp_path / "again"), "--tile_list", str(listed)]) == 2
    listed.write_text("Nikon800_map_x0_y0\n")  # an original that is not there: reported, exit status 1
    assert bsd.main([*args[:-1], str(tmp_path / "third"), "--tile_list", str(listed)]) == 1
    listed.write_text("Nikon800_plaso_x512_y512\n")  # outside a 1100x600 image
    assert bsd.main([*args[:-1], str(tmp_path / "again"), "--tile_list", str(listed)]) == 2
    assert not (tmp_path / "again" / "train").exists()


def test_polyu_reads_a_truncated_original_as_far_as_it_goes(tmp_path, caplog):
    cropped, originals = _polyu_source(tmp_path / "PolyU")
    clean = originals / "Nikon800_plaso_mean.JPG"
    data = clean.read_bytes()
    clean.write_bytes(data[: len(data) * 2 // 3])  # as PolyU's own Canon5D2_toy_mean.JPG: its last rows missing
    bsd.read_rgb.cache_clear()
    listed = tmp_path / "tiles.txt"
    listed.write_text("Nikon800_plaso_x0_y0\n")
    out = tmp_path / "polyu512"
    args = ["polyu", "--cropped", str(cropped), "--originals", str(originals), "--out", str(out)]
    assert bsd.main([*args, "--tile_list", str(listed)]) == 0
    assert "Nikon800_plaso_mean.JPG is truncated" in caplog.text
    assert abs(_mean(out / "train" / "Nikon800_plaso_x0_y0.jpg", (512, 0, 1024, 300)) - 130) < 2
    clean.write_bytes(b"not a JPEG")  # a damaged file is an error naming it
    bsd.read_rgb.cache_clear()
    assert bsd.main([*args[:-1], str(tmp_path / "again"), "--tile_list", str(listed)]) == 1
    assert "cannot read" in caplog.text and "Nikon800_plaso_mean.JPG" in caplog.text
