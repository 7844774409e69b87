"""Finding image files under a folder, recursively, with the accepted extensions in any letter case."""

from __future__ import annotations

import os

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".npy", ".dcm")


def is_image_file(filename: str) -> bool:
    return filename.lower().endswith(IMG_EXTENSIONS)


def _identity(path: str) -> tuple[int, int] | str:
    """What makes two paths one file: (device, inode), or the path itself when it cannot be stat'ed (a dangling
    link is kept, to be reported as unreadable by the data check)."""
    try:
        st = os.stat(path)
    except OSError:
        return path
    return (st.st_dev, st.st_ino)


def make_dataset(folder: str, max_dataset_size: int | None) -> list[str]:
    """Sorted paths of all images under folder (sub-folders included, links followed), at most max_dataset_size.
    Each file counts once whatever links lead to it (the first path in sorted order), and a link back to a folder
    already walked is not entered again, so the walk always ends."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder} is not a folder")
    paths = []
    seen_dirs = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        seen_dirs.add(_identity(root))
        dirs[:] = sorted(d for d in dirs if _identity(os.path.join(root, d)) not in seen_dirs)
        paths.extend(os.path.join(root, f) for f in sorted(files) if is_image_file(f))
    unique, seen = [], set()
    for p in sorted(paths):
        key = _identity(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique[:max_dataset_size] if max_dataset_size is not None else unique
