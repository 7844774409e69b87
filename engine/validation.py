"""Validation during training: the held-out data, the metrics, val_log.jsonl and best_net_G.pth."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Callable

import numpy as np
import torch

from data import EpochSampler, create_dataloader, create_dataset
from data.config import DataConfig, PreprocessConfig, ValuesConfig
from engine.checkpoint import Saver
from metrics import HIGHER_IS_BETTER, MetricSuite
from models.config import GeneratorConfig
from models.translator import frozen_state
from options.groups import ValidationOptions
from util.util import append_text

log = logging.getLogger(__name__)


def split_validation(
    metrics: ValidationOptions,
    data: DataConfig,
    preprocess: PreprocessConfig,
    generator: GeneratorConfig,
    values: ValuesConfig,
    seed: int,
    dataset,
) -> tuple[object, object | None]:
    """(training set, validation set or None): dataroot/<val_phase> beside the training set as it is, or a seeded
    --val_split of its pairs held out of a copy of it (the dataset given is not changed). The validation set has
    test-time preprocessing (centre crops, no flips), done by the loader."""
    if metrics.val_phase:
        data = dataclasses.replace(data, phase=metrics.val_phase, max_dataset_size=metrics.val_max)
        val = create_dataset(data, preprocess, generator, None, seed, False, values)
        val.check(data.skip_bad_images, data.max_bad_fraction, workers=max(1, data.num_threads))
        return dataset, val
    if metrics.val_split <= 0:
        return dataset, None
    n = len(dataset.pairs)
    k = max(1, round(n * metrics.val_split))
    if k >= n:
        raise ValueError(f"--val_split {metrics.val_split} leaves no training images out of {n}")
    # Depends on the seed only, so a resumed run holds out the same images.
    order = np.random.default_rng([seed, 2024]).permutation(n)
    held, kept = sorted(order[:k].tolist()), sorted(order[k:].tolist())
    val, train = copy.copy(dataset), copy.copy(dataset)
    val.preprocess, val.raw = dataclasses.replace(dataset.preprocess, random=False), False
    val.pairs = [dataset.pairs[i] for i in held][: metrics.val_max]
    train.pairs = [dataset.pairs[i] for i in kept]
    return train, val


class Validator:
    """Translates the validation set with the generator test.py will serve (the EMA when the run keeps one),
    scores it, logs it to val_log.jsonl and keeps best_net_G.pth by --best_metric."""

    def __init__(self, metrics: ValidationOptions, seed: int, val_set, device: torch.device, saver: Saver) -> None:
        self.seed, self.device, self.saver = seed, device, saver
        self.metric = metrics.best_metric_name
        self.higher = HIGHER_IS_BETTER[self.metric]
        sampler = EpochSampler(len(val_set), seed=0, shuffle=False)
        self.loader = create_dataloader(val_set, 1, 0, sampler)  # batch 1: sizes may differ; no workers kept
        self.n = len(val_set)
        self.suite = MetricSuite(metrics.metrics, device, metrics.fid_weights, metrics.lpips_weights, seed=seed)
        self.best: dict | None = None  # {"metric", "value", "epoch"}, saved in latest.pth

    def is_better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best["value"] if self.higher else value < self.best["value"]

    def __call__(self, model, epoch: int, total_iters: int, stop: Callable[[], bool] | None = None) -> dict | None:
        """Score, log and keep the best; None, with nothing logged or kept, when stop() said so during the pass."""
        scores = self.score(model, stop)
        if scores is None:
            return None
        record = {"epoch": epoch, "total_iters": total_iters, "metrics": scores}
        append_text(os.path.join(self.saver.run_dir, "val_log.jsonl"), json.dumps(record) + "\n")
        summary = ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if not k.startswith("swd_"))
        log.info("validation after epoch %d on %d images: %s", epoch, self.n, summary)
        value = scores.get(self.metric)
        if value is not None and np.isfinite(value) and self.is_better(value):
            self.best = {"metric": self.metric, "value": float(value), "epoch": epoch}
            self.saver.generator(model, "best", epoch, total_iters, best=self.best)
            log.info("new best %s %.4g: saved best_net_G.pth", self.metric, value)
        return scores

    def score(self, model, stop: Callable[[], bool] | None = None) -> dict[str, float] | None:
        """The metrics of the served generator on the validation set. Like test.py: train-mode normalisation and
        dropout with a fixed seed, but nothing of the model's state may move (frozen_state: batch norm's running
        statistics, spectral norm's vectors) and training's RNG stream must not change (fork_rng). Only rank 0
        validates under torchrun, so no DDP."""
        translate = model.served_translator()
        self.suite.reset()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), frozen_state(translate.net):
            torch.manual_seed(self.seed)
            for batch in self.loader:
                if stop is not None and stop():  # Ctrl-C: no waiting for the rest of the pass
                    return None
                real_B = translate.to_device(batch["B"])
                self.suite.update(translate(translate.to_device(batch["A"]), sync=False), real_B)
        return self.suite.compute()
