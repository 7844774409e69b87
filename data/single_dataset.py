"""A-only data for test.py --dataset_mode single: each whole image is an input."""

from __future__ import annotations

import os

import torch

from data.aligned_dataset import Side, drop_bad, settle_side, size_of, split_key
from data.image_folder import IMG_EXTENSIONS, make_dataset
from data.image_io import load_image, read_file, scan
from data.transforms import Preprocess, apply, apply_array, array_to_tensor, get_params, to_tensor
from data.values import RangeSpec


class SingleDataset(torch.utils.data.Dataset):
    """Yields {'A', 'A_paths'} from images under dataroot/phase (or dataroot itself if it has no phase folder)."""

    raw = False  # its samples are always finished by the loader (--device_preprocess is for training)

    def __init__(
        self,
        dataroot: str,
        phase: str,
        *,
        input_nc: int,
        preprocess: Preprocess,
        filter_A: str,
        max_dataset_size: int | None,
        range_A: RangeSpec,
    ) -> None:
        folder = os.path.join(dataroot, phase)
        folder = folder if os.path.isdir(folder) else dataroot
        self.paths = make_dataset(folder, max_dataset_size)
        if not self.paths:
            raise FileNotFoundError(f"no images in {folder} (accepted extensions: {', '.join(IMG_EXTENSIONS)})")
        self.input_nc, self.preprocess, self.filter_A, self.range_A = input_nc, preprocess, filter_A, range_A
        self.side: Side | None = None  # settled by check()

    def check(self, skip_bad: bool, max_bad_fraction: float, workers: int) -> None:
        """Stop at the first unreadable file, or with skip_bad drop them (see AlignedDataset.check)."""
        sizes, errors, kinds = scan(self.paths, decode=skip_bad, workers=workers)
        self.paths = [a for a, _ in drop_bad([(p, None) for p in self.paths], errors, skip_bad, max_bad_fraction)]
        self.sizes = {p: sizes[p] for p in self.paths}
        self.side = settle_side(self.paths, kinds, self.input_nc, self.range_A, "range_A", "input_nc")

    def __len__(self) -> int:
        return len(self.paths)

    def input_path(self, index: int) -> str:
        """The file that sample index's real_A comes from."""
        return self.paths[index]

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        _, index = split_key(key)
        path = self.paths[index]
        if self.side is None:  # check() not called: settled from the headers
            self.side = settle_side(
                self.paths, scan(self.paths, False)[2], self.input_nc, self.range_A, "range_A", "input_nc"
            )
        if self.side.full:
            a = self.side.unit(read_file(path))
            params = get_params(self.preprocess, *size_of(a), None)
            return {"A": array_to_tensor(apply_array(a, self.preprocess, params, self.filter_A)), "A_paths": path}
        img = load_image(path, self.input_nc)
        params = get_params(self.preprocess, *img.size, None)
        return {"A": to_tensor(apply(img, self.preprocess, params, self.filter_A)), "A_paths": path}
