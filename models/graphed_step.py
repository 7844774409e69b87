"""--cuda_graph: the whole training step captured once in a CUDA graph and replayed, for launch-bound small batches."""

from __future__ import annotations

import torch

from models.pix2pix_model import Pix2PixModel


class GraphedStep:
    """Calls model.train_step(batches) through one CUDA graph.

    Step 1 runs eagerly: it makes the optimisers' state, and the EMA's first update copies G. At step 2 the step
    is run WARMUP times on a side stream (cuDNN picks its kernels, the allocator settles), everything those runs
    changed is put back (weights, buffers, optimiser state, EMA, loss sums, random state), and the step is captured
    with static input tensors. From then on each batch is copied into them and the graph replayed: the same
    kernels, including dropout's random numbers (the CUDA generator is graph-safe) and the rate the schedule fills
    into the optimisers' lr tensors. A batch of another shape, such as an epoch's smaller last batch, runs
    eagerly. Replays keep the captured Python state: real_A, fake_B and real_B are the static tensors.
    """

    WARMUP = 2

    def __init__(self, model: Pix2PixModel) -> None:
        if model.device.type != "cuda":
            raise ValueError("--cuda_graph captures CUDA kernels: it needs a CUDA device")
        self.model = model
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: dict | None = None
        self.shapes: tuple | None = None
        self.steps = 0

    def __call__(self, batches: list[dict]) -> None:
        b = batches[0]
        shapes = (tuple(b["A"].shape), tuple(b["B"].shape))
        if len(batches) != 1 or self.steps == 0 or (self.graph is not None and shapes != self.shapes):
            self.model.train_step(batches)
        else:
            if self.graph is None:
                self._capture(b, shapes)
            self.static["A"].copy_(b["A"], non_blocking=True)
            self.static["B"].copy_(b["B"], non_blocking=True)
            self.model.image_paths = list(b["A_paths"])
            self.graph.replay()
        self.steps += 1

    def _capture(self, b: dict, shapes: tuple) -> None:
        m = self.model
        self.shapes = shapes
        # the inputs as set_input makes them (device, layout), so that it passes them through without a copy
        self.static = {**b, "A": m.translate.to_device(b["A"]).clone(), "B": m.translate.to_device(b["B"]).clone()}
        saved = self._save()
        side = torch.cuda.Stream(m.device)
        side.wait_stream(torch.cuda.current_stream(m.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                m.train_step([self.static])
        torch.cuda.current_stream(m.device).wait_stream(side)
        self._restore(saved)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):  # records the kernels; runs none of them
            m.train_step([self.static])

    def _tensors(self) -> list[torch.Tensor]:
        """Every tensor a training step changes in place."""
        m = self.model
        nets = [m.netG, m.netD] + ([m.netG_ema] if m.netG_ema is not None else [])
        out = [t for net in nets for t in (*net.parameters(), *net.buffers())]
        for opt in (m.optimizer_G, m.optimizer_D):
            out += [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)]
        return out + [m._loss_sum, m._loss_steps, m._skipped]

    @torch.no_grad()
    def _save(self) -> tuple:
        tensors = self._tensors()
        rng = (torch.get_rng_state(), torch.cuda.get_rng_state(self.model.device))
        return tensors, [t.detach().clone() for t in tensors], rng

    @torch.no_grad()
    def _restore(self, saved: tuple) -> None:
        tensors, copies, (cpu_rng, cuda_rng) = saved
        for t, c in zip(tensors, copies, strict=True):
            t.copy_(c)
        torch.set_rng_state(cpu_rng)
        torch.cuda.set_rng_state(cuda_rng, self.model.device)
