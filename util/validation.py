"""Validation during training: the held-out data, the metrics, val_log.jsonl and best_net_G.pth."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os

import numpy as np
import torch

from data import EpochSampler, create_dataloader, create_dataset
from models.networks import frozen_batchnorm
from util import checkpoint
from util.metrics import MetricSuite

log = logging.getLogger(__name__)


def split_validation(opt: argparse.Namespace, dataset) -> object | None:
    """The validation set: dataroot/<val_phase>, or a seeded --val_split of the training pairs, which are then
    removed from `dataset`. Test-time preprocessing (centre crops, no flips). None without validation."""
    if opt.val_phase:
        val_opt = copy.copy(opt)
        val_opt.phase, val_opt.max_dataset_size = opt.val_phase, opt.val_max
        val = create_dataset(val_opt, train=False)
        val.check(opt.skip_bad_images, opt.max_bad_fraction, workers=max(1, opt.num_threads))
        return val
    if opt.val_split <= 0:
        return None
    n = len(dataset.pairs)
    k = max(1, round(n * opt.val_split))
    if k >= n:
        raise ValueError(f"--val_split {opt.val_split} leaves no training images out of {n}")
    # Depends on the seed only, so a resumed run holds out the same images.
    order = np.random.default_rng([opt.seed, 2024]).permutation(n)
    held, kept = sorted(order[:k].tolist()), sorted(order[k:].tolist())
    val = copy.copy(dataset)
    val.preprocess = dataclasses.replace(dataset.preprocess, random=False)
    val.pairs = [dataset.pairs[i] for i in held][: opt.val_max]
    dataset.pairs = [dataset.pairs[i] for i in kept]
    return val


class Validator:
    """Translates the validation set, scores it, logs it and keeps best_net_G.pth by opt.best_metric."""

    def __init__(self, opt: argparse.Namespace, val_set, device: torch.device) -> None:
        self.opt, self.device = opt, device
        self.run_dir = os.path.join(opt.checkpoints_dir, opt.name)
        sampler = EpochSampler(len(val_set), seed=0, shuffle=False)
        self.loader = create_dataloader(val_set, 1, 0, sampler)  # batch 1: sizes may differ; no workers kept
        self.n = len(val_set)
        self.suite = MetricSuite(opt.metric_list, device, opt.fid_weights, opt.lpips_weights, seed=opt.seed)
        self.best: dict | None = None  # {"metric", "value", "epoch"}, saved in latest.pth

    def is_better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best["value"] if self.opt.best_higher else value < self.best["value"]

    def __call__(self, model, epoch: int, total_iters: int) -> dict[str, float]:
        netG = model.netG
        # Like test.py: train-mode normalisation and dropout with a fixed seed, but the running statistics
        # must not move (frozen_batchnorm) and training's RNG stream must not change (fork_rng).
        self.suite.reset()
        devices = [self.device] if self.device.type == "cuda" else []
        # Only rank 0 validates under torchrun: use the bare generator, not its DDP wrapper, whose forward
        # would wait for the other processes.
        run_G, model.runG = model.runG, model.netG
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad(), frozen_batchnorm(netG):
                torch.manual_seed(self.opt.seed)
                for batch in self.loader:
                    model.set_input(batch)
                    model.forward()
                    self.suite.update(model.fake_B, model.real_B)
        finally:
            model.runG = run_G
        scores = self.suite.compute()
        with open(os.path.join(self.run_dir, "val_log.jsonl"), "a") as f:
            f.write(json.dumps({"epoch": epoch, "total_iters": total_iters, "metrics": scores}) + "\n")
        name = self.opt.best_metric
        summary = ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if not k.startswith("swd_"))
        log.info("validation after epoch %d on %d images: %s", epoch, self.n, summary)
        if name in scores and np.isfinite(scores[name]) and self.is_better(scores[name]):
            self.best = {"metric": name, "value": float(scores[name]), "epoch": epoch}
            snap = {
                **model.generator_weights(),
                "options": self.opt.saved_options,
                "epoch": epoch,
                "total_iters": total_iters,
                "best": self.best,
            }
            checkpoint.atomic_save(snap, os.path.join(self.run_dir, "best_net_G.pth"))
            log.info("new best %s %.4g: saved best_net_G.pth", name, scores[name])
        return scores
