"""Shared test helpers: tiny aligned data sets written to tmp_path, and the repository root on sys.path."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny networks gain nothing from threads, and two OpenMP threads on two shared cores cost a lot.
torch.set_num_threads(1)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# Tiny networks (ngf 4) and 32-pixel crops: a training step takes milliseconds on the CPU.
_NET = ["--ngf", "4", "--ndf", "4", "--num_threads", "0", "--seed", "3"]
_SIZES = ["--netG", "unet_256", "--num_downs", "5", "--load_size", "36", "--crop_size", "32"]
TINY_NET = [*_NET, "--display_id", "0"]
TINY = [*TINY_NET, *_SIZES]
TINY_DISPLAYED = [*_NET, *_SIZES]  # TINY with the visdom display left at its default (on): the display's tests


def train_args(data, ck, name: str = "r", *extra: str) -> list[str]:
    """train.py's flags for a tiny run (TINY) on data, named name in the checkpoints folder ck, then extra."""
    return ["--dataroot", str(data), "--checkpoints_dir", str(ck), "--name", name, *TINY, *extra]


def gen_opts(**kw):
    """A GeneratorConfig: its defaults with kw."""
    from models.config import GeneratorConfig

    return GeneratorConfig(**kw)


def make_G(init: bool = True, **kw) -> torch.nn.Module:
    """The generator of GeneratorConfig's defaults with kw (netG, ngf, norm, ...), initialised as InitConfig's
    defaults say (init=False: as constructed)."""
    from models import build_generator
    from models.config import InitConfig

    return build_generator(gen_opts(**kw), InitConfig() if init else None, grad_checkpoint=False)


def randomized(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights and running statistics away from their initial values, so a wrong mapping shows and eval and
    train mode differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + (0.5 if "running_var" in name else -0.25))
    return net


def make_D(init_type: str | None = None, g=None, **kw) -> torch.nn.Module:
    """define_D with the config defaults and kw (netD, ndf, ...); g: a GeneratorConfig (channels, norm);
    init_type: InitConfig's unless given."""
    from models import define_D
    from models.config import DiscriminatorConfig, InitConfig

    init = InitConfig() if init_type is None else InitConfig(init_type=init_type)
    return define_D(DiscriminatorConfig(**kw), g or gen_opts(), init.init_type, init.init_gain, False)


def visualizer(run_dir: str, retry_seconds: float = 60.0, **display):
    """The Visualizer of a run named 'run' with the option defaults and display (display_id, ...)."""
    from engine.training import visualizer_for
    from options.options import TrainOptions

    assert set(display) <= TrainOptions.names(), set(display) - TrainOptions.names()  # from_flat drops the others
    vis = visualizer_for(TrainOptions.from_flat({"name": "run", **display}), run_dir)
    vis.retry_seconds = retry_seconds
    return vis


def prep(preprocess: str = "resize_and_crop", load_size: int = 286, crop_size: int = 256, **kw):
    """A Preprocess; flip and random default to training's (on)."""
    from data.transforms import Preprocess

    return Preprocess(preprocess, load_size, crop_size, flip=kw.get("flip", True), random=kw.get("random", True))


def aligned(dataroot: str, phase: str = "train", direction: str = "AtoB", **kw):
    """An AlignedDataset with the option defaults for what kw does not give (preprocess: a Preprocess)."""
    from data.aligned_dataset import AlignedDataset
    from data.transforms import Augment
    from options.options import TrainOptions

    o = TrainOptions()
    g, p, v = o.generator, o.preprocess, o.values
    args = {"input_nc": g.input_nc, "output_nc": g.output_nc, "filter_A": p.filter_A, "filter_B": p.filter_B}
    args.update(seed=0, max_dataset_size=None, aug=Augment(), preprocess=prep(), range_A=v.range_A, range_B=v.range_B)
    return AlignedDataset(dataroot, phase, direction=direction, **{**args, **kw})


def make_pairs(folder: str, n: int, w: int = 32, h: int = 32, seed: int = 0, ext: str = "png") -> list[str]:
    """Write n combined A|B images (each half w x h): A random noise, B = 255 - A, so pairing is checkable."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        a = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        ab = np.concatenate([a, 255 - a], axis=1)
        p = os.path.join(folder, f"img{i:03d}.{ext}")
        Image.fromarray(ab).save(p)
        paths.append(p)
    return paths


def make_dataroot(root, **phases: int) -> str:
    """root/<phase>/ with that many 32x32 pairs each (seeds 1, 2, ... in the order given)."""
    for seed, (phase, n) in enumerate(phases.items(), start=1):
        make_pairs(str(root / phase), n, seed=seed)
    return str(root)


@pytest.fixture
def tiny_data(tmp_path):
    """dataroot with train/ (4 pairs) and test/ (2 pairs) of 32x32 halves."""
    return make_dataroot(tmp_path / "data", train=4, test=2)


def run_script(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run train.py / test.py through its command line, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
