"""Finding image files under a folder, recursively, with the accepted extensions in any letter case."""

from __future__ import annotations

import os

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(filename: str) -> bool:
    return filename.lower().endswith(IMG_EXTENSIONS)


def make_dataset(folder: str, max_dataset_size: int | None) -> list[str]:
    """Sorted paths of all images under folder (sub-folders included), at most max_dataset_size."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder")
    paths = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        paths.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f))
    paths.sort()
    return paths[:max_dataset_size] if max_dataset_size is not None else paths
