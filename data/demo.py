"""An offline demo set (edges -> photo) cut from the sample photographs that scikit-image ships."""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_DIR = os.path.join(REPO_ROOT, "datasets", "demo")
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
)


def _photos() -> list[np.ndarray]:
    try:
        import skimage.data
    except ImportError as e:
        raise RuntimeError("the demo set is built from scikit-image's sample photos: pip install scikit-image") from e
    out = []
    for name in PHOTOS:
        img = getattr(skimage.data, name)()
        out.append(img[0] if isinstance(img, tuple) else img)  # stereo_motorcycle: (left, right, disparity)
    return out


def edges_of(photo: np.ndarray) -> np.ndarray:
    """Black Canny edges on white, 3 channels, like the edges2* sets."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    edges = canny(rgb2gray(photo), sigma=2.0)
    return np.repeat(np.where(edges, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def build_demo_dataset(root: str = DEMO_DIR, size: int = 512, train_per_photo: int = 6, demo_seed: int = 0) -> str:
    """Write root/train and root/test A|B images (A = edges, B = photo, each size x size; the crops drawn with
    demo_seed)."""
    rng = np.random.default_rng(demo_seed)
    counts = {"train": train_per_photo, "test": 1}
    for phase in counts:
        os.makedirs(os.path.join(root, phase), exist_ok=True)
    for name, photo in zip(PHOTOS, _photos(), strict=False):
        h, w = photo.shape[:2]
        for phase, n in counts.items():
            for k in range(n):
                side = int(min(h, w) * rng.uniform(0.55, 1.0))
                y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
                crop = Image.fromarray(photo[y : y + side, x : x + side, :3]).resize(
                    (size, size), Image.Resampling.BICUBIC
                )
                arr = np.asarray(crop)
                pair = np.concatenate([edges_of(arr), arr], axis=1)
                Image.fromarray(pair).save(os.path.join(root, phase, f"{name}_{k}.jpg"), quality=95)
    return root


def ensure_demo_dataset(root: str = DEMO_DIR) -> str:
    """The demo set's path, building it first if needed (used when --dataroot is not given)."""
    if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "test")):
        return root
    log.info("no --dataroot given: building the offline demo set (edges -> photo) in %s", root)
    build_demo_dataset(root)
    return root
