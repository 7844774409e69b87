"""Datasets and the deterministic data loader built from options."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data.aligned_dataset import AlignedDataset
from data.config import AugmentConfig, DataConfig, PreprocessConfig, TrainDataConfig, ValuesConfig
from data.device_preprocess import DeviceLoader, DevicePreprocess, collate_raw
from data.single_dataset import SingleDataset
from data.transforms import Augment, Preprocess


class EpochSampler(Sampler):
    """Yields (epoch, index) keys; the order depends only on (seed, epoch), so a resumed run can skip
    the batches it already did and see exactly the same data as an uninterrupted one."""

    def __init__(self, n: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch `epoch`, skipping its first `start` samples."""
        self.epoch, self.start = epoch, start

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        state = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(state)).tolist()

    def shard(self, epoch: int) -> list[int]:
        """This process's share of the epoch: with several processes (torchrun) the order is padded by
        wrapping round to a multiple of world_size and dealt out, so every process gets as many samples and
        the union of a step's batches is the single-process batch at world_size times the batch size."""
        order = self.order(epoch)
        if self.world_size == 1:
            return order
        per = -(-self.n // self.world_size)
        order = (order * self.world_size)[: per * self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.shard(self.epoch)[self.start :]:
            yield (self.epoch, i)

    def __len__(self) -> int:
        return max(-(-self.n // self.world_size) - self.start, 0)


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C goes to the whole process group; workers ignore it and the main process shuts them down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def create_dataset(
    data: DataConfig,
    preprocess: PreprocessConfig,
    generator: Any,
    augment: AugmentConfig | None,
    seed: int,
    train: bool,
    values: ValuesConfig | None = None,
) -> Dataset:
    """The dataset of --dataset_mode. generator: a models.config.GeneratorConfig (direction and channels);
    augment None: no augmentation; values: the ranges of real_A and real_B (None: the value types' own).
    Test-time datasets (train False) use centre crops and no flips; a training set's samples are raw for
    --device_preprocess (data.device_preprocess finishes them)."""
    values = values or ValuesConfig()
    pre = Preprocess(preprocess.preprocess, preprocess.load_size, preprocess.crop_size, not data.no_flip, train)
    if data.dataset_mode == "single":
        return SingleDataset(
            data.dataroot,
            data.phase,
            input_nc=generator.input_nc,
            preprocess=pre,
            filter_A=preprocess.filter_A,
            max_dataset_size=data.max_dataset_size,
            range_A=values.range_A,
        )
    aug = Augment()
    if augment is not None and train:
        nearest = "nearest" in (preprocess.filter_A, preprocess.filter_B)
        aug = Augment(augment.aug_scale, augment.aug_rotate, augment.aug_color, augment.aug_color_on, nearest)
    return AlignedDataset(
        data.dataroot,
        data.phase,
        direction=generator.direction,
        input_nc=generator.input_nc,
        output_nc=generator.output_nc,
        preprocess=pre,
        filter_A=preprocess.filter_A,
        filter_B=preprocess.filter_B,
        seed=seed if train else 0,
        max_dataset_size=data.max_dataset_size,
        aug=aug,
        range_A=values.range_A,
        range_B=values.range_B,
        raw=train and isinstance(data, TrainDataConfig) and data.device_preprocess,
    )


def create_dataloader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    sampler: Sampler,
    device: torch.device | None = None,
) -> DataLoader | DeviceLoader:
    """The loader of dataset's batches, in pinned memory for a CUDA device. A dataset whose `raw` is set
    (--device_preprocess) gives raw samples, batched by collate_raw and finished on `device` by a DeviceLoader."""
    raw = dataset.raw
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=collate_raw if raw else None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device is not None and device.type == "cuda",
        persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        # A private generator keeps the loader from drawing on the global RNG (dropout's stream).
        generator=torch.Generator(),
    )
    return DeviceLoader(loader, DevicePreprocess.of(dataset, device or torch.device("cpu"))) if raw else loader
