"""An offline demo set (degraded photo -> clean photo) cut from the sample photographs that scikit-image ships."""

from __future__ import annotations

import io
import logging
import os

import numpy as np
from PIL import Image, ImageFilter

from util.util import atomic_write

log = logging.getLogger(__name__)
# Training crops come from these; the test photos are never trained on.
TRAIN_PHOTOS = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
    "camera",
    "grass",
)
TEST_PHOTOS = ("chelsea", "coffee")


def demo_dir() -> str:
    """Where the demo set goes, read at each call: <clone>/datasets/demo when this code runs from a clone (the
    folder above data/ holds train.py and datasets/), as always; installed (into site-packages, where datasets/
    is another package's folder), a user cache folder: $PIX2PIX_HOME/demo, else $XDG_CACHE_HOME/pix2pix/demo,
    else ~/.cache/pix2pix/demo."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(root, "train.py")) and os.path.isdir(os.path.join(root, "datasets")):
        return os.path.join(root, "datasets", "demo")
    home = os.environ.get("PIX2PIX_HOME")
    if home:
        return os.path.join(os.path.abspath(os.path.expanduser(home)), "demo")
    cache = os.environ.get("XDG_CACHE_HOME")
    if not cache or not os.path.isabs(cache):  # the XDG rule: a relative path is ignored
        cache = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "pix2pix", "demo")


def _photo(name: str) -> np.ndarray:
    """A sample photo as (H, W, 3) uint8 (gray ones repeated to three channels)."""
    try:
        import skimage.data
    except ImportError as e:
        raise RuntimeError("the demo set is built from scikit-image's sample photos: pip install scikit-image") from e
    img = getattr(skimage.data, name)()
    img = img[0] if isinstance(img, tuple) else img  # stereo_motorcycle: (left, right, disparity)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def degrade(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the network learns to undo: a slight blur, sensor-like Gaussian noise, then JPEG compression, each
    of a strength drawn from rng."""
    img = Image.fromarray(photo).filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.6, 1.2))))
    noisy = np.asarray(img, dtype=np.float64) + rng.normal(0.0, float(rng.uniform(18, 30)), photo.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)).save(
        buf, format="JPEG", quality=int(rng.integers(25, 50))
    )
    return np.asarray(Image.open(buf).convert("RGB"))


def build_demo_dataset(root: str | None = None, size: int = 256, train_per_photo: int = 10, demo_seed: int = 0) -> str:
    """Write root/train and root/test A|B images (A = degraded, B = clean, each size x size, PNG), the training
    crops from TRAIN_PHOTOS, the test crops (4 per photo) from TEST_PHOTOS; crops and degradations drawn with
    demo_seed. root: demo_dir() unless given."""
    root = demo_dir() if root is None else root
    rng = np.random.default_rng(demo_seed)
    for phase, names, n in (("train", TRAIN_PHOTOS, train_per_photo), ("test", TEST_PHOTOS, 4)):
        os.makedirs(os.path.join(root, phase), exist_ok=True)
        for name in names:
            photo = _photo(name)
            h, w = photo.shape[:2]
            for k in range(n):
                side = int(min(h, w) * rng.uniform(0.4, 1.0))
                y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
                crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.Resampling.LANCZOS)
                clean = np.asarray(crop)
                pair = np.concatenate([degrade(clean, rng), clean], axis=1)
                out = os.path.join(root, phase, f"{name}_{k}.png")  # never over an existing file or link
                atomic_write(out, lambda f, pair=pair: Image.fromarray(pair).save(f, format="PNG"), new=True)
    return root


def ensure_demo_dataset(root: str | None = None) -> str:
    """The demo set's path (demo_dir() unless given), building it first if needed (used when --dataroot is not
    given)."""
    root = demo_dir() if root is None else root
    if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
        return root
    log.info("no --dataroot given: building the offline demo set (degraded -> clean photos) in %s", root)
    build_demo_dataset(root)
    return root
