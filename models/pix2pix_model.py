"""The pix2pix training model: D on (A, B) pairs, then G with GAN + lambda_L1 * L1, in one step function."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable

import torch
from torch import nn

from models.layers import frozen_batchnorm, load_weights
from models.loss import Pix2PixLoss
from models.runner import Runner
from models.translator import Translator
from util.distributed import mean_over_ranks

LR_POLICIES = ("linear", "step", "cosine")  # --lr_policy, implemented by lr_factor


def lr_factor(epoch: int, policy: str, n_epochs: int, n_epochs_decay: int, lr_decay_iters: int) -> float:
    """Multiplier of the initial lr during epoch `epoch` (1-based).

    linear: 1 for epochs 1..n_epochs, then 1 - (epoch - n_epochs) / (n_epochs_decay + 1), so the last
    epoch trains at lr / (n_epochs_decay + 1) and the rate would reach zero one epoch later.
    step: 0.1 ** ((epoch - 1) // lr_decay_iters). cosine: half a cosine from 1 to 0 over all epochs.
    """
    if policy == "linear":
        return 1.0 - max(0, epoch - n_epochs) / float(n_epochs_decay + 1)
    if policy == "step":
        return 0.1 ** ((epoch - 1) // lr_decay_iters)
    if policy == "cosine":
        total = n_epochs + n_epochs_decay
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / total))
    raise ValueError(f"lr_policy must be one of {', '.join(LR_POLICIES)}, not {policy!r}")


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


class Pix2PixModel:
    """G (through its Translator), D, the loss, both optimisers and their lr schedules, fp16 loss scalers and an
    optional EMA of G; train_step() is one optimisation step.

    Losses stay on the device and are summed there; pop_losses() reads them back (one host sync), so the
    training loop syncs only every print_freq steps.
    """

    def __init__(
        self,
        translate: Translator,
        D: Runner,
        loss: Pix2PixLoss,
        optimizer_G: torch.optim.Optimizer,
        optimizer_D: torch.optim.Optimizer,
        lr_lambda: Callable[[int], float],
        ema_decay: float,
        skip_nonfinite: bool,
        fix_global_epochs: int,
    ) -> None:
        self.translate, self.G, self.D, self.loss = translate, translate.G, D, loss
        self.device = self.G.device
        self.optimizer_G, self.optimizer_D = optimizer_G, optimizer_D
        # fp16 needs loss scaling, one scaler per network; bf16 has fp32's range and needs none.
        fp16 = self.G.amp_dtype == torch.float16
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_D = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lr_lambda) for o in (optimizer_G, optimizer_D)]
        for s in self.schedulers:  # plain numbers even where the rate is a tensor (--cuda_graph): filled into it
            s.base_lrs = [float(b) for b in s.base_lrs]
        # each group's rate as built (a float, or a device tensor under --cuda_graph): a loaded optimiser state
        # brings the saving run's kind, which load_state_dict puts back to this run's
        self._lrs = {id(o): [g["lr"] for g in o.param_groups] for o in (optimizer_G, optimizer_D)}
        # An exponential moving average of G's weights (and buffers), which test.py prefers when present.
        # It is stored as an AveragedModel (its state dict is the checkpoint's netG_ema_avg) but updated by
        # _update_ema, which does what AveragedModel.update_parameters does without reading n_averaged on the host.
        self.netG_ema = None
        self.ema_decay = ema_decay
        self._ema_started = False  # the first update copies G
        if ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel

            self.netG_ema = AveragedModel(self.netG, use_buffers=True)
        # A skipped step is undone on the device (torch.where), so skipping costs copies but no host sync.
        self.skip_nonfinite = skip_nonfinite
        self._skipped = torch.zeros((), dtype=torch.int64, device=self.device)
        self.loss_names = loss.names
        self._loss_sum = torch.zeros(len(self.loss_names), device=self.device)  # in loss_names order
        self._loss_steps = torch.zeros((), device=self.device)  # steps summed (skipped steps are not)
        self.real_A = self.real_B = self.fake_B = torch.empty(0)
        self.first_B: torch.Tensor | None = None  # a Double U-Net's first output, for its L1 term
        self.image_paths: list[str] = []
        self.fix_global_epochs = fix_global_epochs

    @property
    def netG(self) -> nn.Module:
        return self.G.net

    @property
    def netD(self) -> nn.Module:
        return self.D.net

    @property
    def compiled(self) -> bool:
        return self.G.compiled or self.D.compiled

    def served_generator(self) -> nn.Module:
        """The generator test.py will use from this run's files: the EMA when there is one."""
        return self.netG_ema.module if self.netG_ema is not None else self.netG

    def served_translator(self) -> Translator:
        """A Translator over served_generator(), with training's precision and layout, never through DDP or
        torch.compile (for validation)."""
        G = Runner(self.served_generator(), self.device, self.G.amp, self.G.channels_last, compile=None)
        return Translator(G, self.translate.pad_multiple, self.translate.residual)

    def wrap_ddp(self) -> None:
        """DistributedDataParallel for G and D (torchrun). While a coarse-to-fine G's global generator is fixed, its
        parameters get no gradients: DDP is told to expect that."""
        self.G.wrap_ddp(find_unused=self.fix_global_epochs > 0)
        self.D.wrap_ddp()

    def set_epoch(self, epoch: int) -> None:
        """What changes with the epoch inside the networks: a coarse-to-fine G trains its enhancer alone during
        epochs 1..fix_global_epochs (--fix_global_epochs), then everything."""
        if hasattr(self.netG, "fix_global"):
            self.netG.fix_global(epoch <= self.fix_global_epochs)

    def set_input(self, batch: dict) -> None:
        """batch['A'] (N, input_nc, H, W) is the input; batch['B'] (N, output_nc, H, W) the target."""
        self.real_A = self.translate.to_device(batch["A"])
        self.real_B = self.translate.to_device(batch["B"])
        self.image_paths = list(batch["A_paths"])

    @property
    def skipped_steps(self) -> int:
        """Steps skipped for a non-finite loss so far (a host sync: read it at print time)."""
        return int(self._skipped)

    # ---- one training step --------------------------------------------------------------------
    def train_step(self, batches: list[dict]) -> None:
        """One optimiser step of D, then of G against the updated D, over the micro-batches `batches` (one, or
        --accum_steps of them: then equal to one step on their union when the normalisation is per image).

        With one batch, G's forward graph from the D phase is reused by the G phase. With several, only one
        micro-batch's activations are alive at a time: G's forward runs without a graph in the D phase and is
        recomputed in the G phase with the same random state (the same dropout masks) and frozen batch-norm
        statistics. Under torchrun gradients are all-reduced once, after the last micro-batch.
        Nothing here reads a value back to the host. With --skip_nonfinite a step whose D or G loss is NaN or inf
        changes nothing (no weights, optimiser or scaler state, running statistics or EMA, of either network):
        see StepGuard.
        """
        k = len(batches)
        reuse = k == 1
        guard = StepGuard(self) if self.skip_nonfinite else None
        rng = []
        terms: list[dict[str, torch.Tensor]] = []  # every micro-batch's D and G terms, logged at the end

        set_requires_grad(self.netD, True)
        self.optimizer_D.zero_grad(set_to_none=True)
        for i, batch in enumerate(batches):
            self.set_input(batch)
            if not reuse:  # the G phase replays this micro-batch's dropout
                rng.append(self._rng_state())
            with torch.set_grad_enabled(reuse):
                self.fake_B = self.translate(self.real_A)
                self.first_B = self.translate.first_B
            with self.D.no_sync(i < k - 1):
                d = self.loss.discriminator(self.D, self.real_A, self.real_B, self.fake_B.detach())
                self.scaler_D.scale(d.total / k).backward()
            if guard is not None:
                guard.check(d.total)
            terms.append(d.terms)
        self.scaler_D.step(self.optimizer_D)
        self.scaler_D.update()

        set_requires_grad(self.netD, False)  # D's weights are frozen for G's backward
        self.optimizer_G.zero_grad(set_to_none=True)
        for i, batch in enumerate(batches):
            with self.G.no_sync(i < k - 1), frozen_batchnorm(self.netG):
                if not reuse:  # the second pass must not move batch norm's running statistics again
                    self.set_input(batch)
                    self._set_rng_state(rng[i])
                    self.fake_B = self.translate(self.real_A)
                    self.first_B = self.translate.first_B
                g = self.loss.generator(self.D, self.real_A, self.real_B, self.fake_B, self.first_B)
                total = g.total if guard is None else guard.check(g.total)
                self.scaler_G.scale(total / k).backward()
            terms.append(g.terms)
        if guard is not None:
            guard.step_G()
        else:
            self.scaler_G.step(self.optimizer_G)
        self.scaler_G.update()
        if self.netG_ema is not None:
            self._update_ema()
        ok = guard.finish() if guard is not None else None
        self._record(terms, k, ok)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """AveragedModel.update_parameters (use_buffers, the EMA rule), without its host reads of n_averaged:
        the first update copies G, later ones move each float tensor by (1 - decay) towards G's."""
        ema, decay = self.netG_ema, self.ema_decay
        pairs = list(
            zip(
                itertools.chain(ema.module.parameters(), ema.module.buffers()),
                itertools.chain(self.netG.parameters(), self.netG.buffers()),
                strict=True,
            )
        )
        if not self._ema_started:
            for e, p in pairs:
                e.copy_(p)
        else:
            floats = [(e, p) for e, p in pairs if e.is_floating_point()]
            torch._foreach_lerp_([e for e, _ in floats], [p for _, p in floats], 1 - decay)
            for e, p in pairs:
                if not e.is_floating_point():  # batch norm's step counters, rounded down as AveragedModel does
                    e.copy_(e * decay + p * (1 - decay))
        ema.n_averaged += 1
        self._ema_started = True

    def _record(self, terms: list[dict[str, torch.Tensor]], k: int, ok: torch.Tensor | None) -> None:
        """Add the step's mean terms to the running sums: a few ops on the device, no sync. A skipped step
        (ok false) adds nothing."""
        per_name = [[t[name] for t in terms if name in t] for name in self.loss_names]
        step = torch.stack([v[0] if len(v) == 1 else torch.stack(v).sum() for v in per_name]).detach()
        step = step if k == 1 else step / k
        if ok is None:
            self._loss_sum += step
            self._loss_steps += 1
        else:
            self._loss_sum += torch.where(ok, step, 0.0)
            self._loss_steps += ok

    def _rng_state(self):
        return (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None)

    def _set_rng_state(self, state) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    def pop_losses(self, dist=None) -> tuple[dict[str, float], bool]:
        """Mean losses by name since the last call and whether all were finite; one host-device sync. Under
        torchrun (dist given) every process's means are averaged: all processes must call this together."""
        mean = self._loss_sum / self._loss_steps.clamp(min=1)
        if dist is not None:
            mean = mean_over_ranks(dist, mean)
        values = mean.tolist()
        self._loss_sum.zero_()
        self._loss_steps.zero_()
        losses = dict(zip(self.loss_names, values, strict=True))
        return losses, all(math.isfinite(v) for v in values)

    def update_learning_rate(self) -> float:
        """Step the schedulers at the end of an epoch; returns the new lr."""
        with warnings.catch_warnings():
            # A run resumed at an epoch's last step steps the schedule before any optimiser step of this
            # process; the schedule is per epoch and restored from the checkpoint, so nothing is skipped.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            for s in self.schedulers:
                s.step()
        return self.current_lr()

    def current_lr(self) -> float:
        """G's learning rate now (a host read where it is a device tensor: call it at print time)."""
        return float(self.optimizer_G.param_groups[0]["lr"])

    # ---- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "netG": self.netG.state_dict(),
            "netD": self.netD.state_dict(),
            "optimizer_G": self.optimizer_G.state_dict(),
            "optimizer_D": self.optimizer_D.state_dict(),
            "scheduler_G": self.schedulers[0].state_dict(),
            "scheduler_D": self.schedulers[1].state_dict(),
            "scaler_G": self.scaler_G.state_dict(),
            "scaler_D": self.scaler_D.state_dict(),
            **({"netG_ema_avg": self.netG_ema.state_dict()} if self.netG_ema is not None else {}),
        }

    def _lr_kinds(self, optimizer: torch.optim.Optimizer) -> list:
        return self._lrs[id(optimizer)]

    def load_state_dict(self, state: dict) -> None:
        load_weights(self.netG, state["netG"], "generator")  # WeightsMismatch, not a raw dump, if they do not fit
        load_weights(self.netD, state["netD"], "discriminator")
        self.optimizer_G.load_state_dict(state["optimizer_G"])
        self.optimizer_D.load_state_dict(state["optimizer_D"])
        self.schedulers[0].load_state_dict(state["scheduler_G"])
        self.schedulers[1].load_state_dict(state["scheduler_D"])
        for s in self.schedulers:  # the rate of the current epoch under this run's schedule (--n_epochs may have grown)
            s.base_lrs = [float(b) for b in s.base_lrs]
            for group, base, factor, now in zip(
                s.optimizer.param_groups, s.base_lrs, s.lr_lambdas, self._lr_kinds(s.optimizer), strict=True
            ):
                rate = base * factor(s.last_epoch)
                group["lr"] = torch.tensor(rate, device=now.device) if torch.is_tensor(now) else rate
            s._last_lr = [float(group["lr"]) for group in s.optimizer.param_groups]
        if self.netG_ema is not None and "netG_ema_avg" in state:
            self.netG_ema.load_state_dict(state["netG_ema_avg"])
            self._ema_started = int(self.netG_ema.n_averaged) > 0
        if state.get("scaler_G") and self.scaler_G.is_enabled():  # empty when saved without --amp fp16
            self.scaler_G.load_state_dict(state["scaler_G"])
            self.scaler_D.load_state_dict(state["scaler_D"])

    def generator_weights(self) -> dict:
        """What a generator snapshot holds: netG, and netG_ema (the averaged weights) with --ema_decay."""
        out = {"netG": self.netG.state_dict()}
        if self.netG_ema is not None:
            out["netG_ema"] = self.netG_ema.module.state_dict()
        return out

    def current_visuals(self) -> dict[str, torch.Tensor]:
        return {"real_A": self.real_A, "fake_B": self.fake_B, "real_B": self.real_B}


class StepGuard:
    """--skip_nonfinite without a host sync. At the start of a step it copies what the step may change apart from
    G's weights and Adam state: D's weights, buffers and Adam state, G's buffers (the forward moves batch norm's
    statistics), the EMA and the fp16 scalers' state. check() gathers the finiteness of every loss on the device;
    step_G() has G's optimiser skip its update when a loss was not finite (fused Adam's found_inf; under fp16 the
    loss is made NaN so that the scaler skips); finish() puts the copies back where a loss was not finite, with
    torch.where, and returns the flag. Under torchrun every process skips when any does."""

    def __init__(self, model: Pix2PixModel) -> None:
        self.model = model
        self.ok = torch.ones((), dtype=torch.bool, device=model.device)
        opt_D = model.optimizer_D
        tensors = [*model.netD.parameters(), *model.netD.buffers(), *model.netG.buffers()]
        tensors += [v for st in opt_D.state.values() for v in st.values() if torch.is_tensor(v)]
        # Adam without the fused kernel cannot be told to skip (no found_inf): G's side is copied as well
        self.fused_G = bool(model.optimizer_G.defaults.get("fused"))
        if not self.fused_G:
            tensors += [*model.netG.parameters()]
            tensors += [v for st in model.optimizer_G.state.values() for v in st.values() if torch.is_tensor(v)]
        if model.netG_ema is not None:
            tensors += [*model.netG_ema.parameters(), *model.netG_ema.buffers()]
        for scaler in (model.scaler_D, model.scaler_G):
            # made on the scaler's first use; a disabled scaler has none
            tensors += [
                t for t in (getattr(scaler, "_scale", None), getattr(scaler, "_growth_tracker", None)) if t is not None
            ]
        self.saved = [(t, t.detach().clone()) for t in tensors]
        # D's Adam state is made on its first step: where that step is skipped, it goes back to zeros (as new)
        self.new_state = [(opt_D, p) for p in model.netD.parameters() if p not in opt_D.state]
        if not self.fused_G:
            self.new_state += [
                (model.optimizer_G, p) for p in model.netG.parameters() if p not in model.optimizer_G.state
            ]

    def _agree(self) -> None:
        """Under torchrun: ok everywhere only if ok in every process (an all-reduce, not a host read)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = self.ok.to(torch.int32)  # collectives do not all take bool tensors
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            self.ok = flag.bool()

    def check(self, loss: torch.Tensor) -> torch.Tensor:
        """Note whether loss is finite; returns loss, made NaN under fp16 once any loss of the step was not."""
        self.ok &= torch.isfinite(loss.detach())
        if self.model.scaler_G.is_enabled():
            return loss * torch.where(self.ok, 1.0, math.nan)
        return loss

    def step_G(self) -> None:
        m = self.model
        if m.scaler_G.is_enabled() or not self.fused_G:  # fp16: NaN gradients make the scaler skip the update
            m.scaler_G.step(m.optimizer_G)
            return
        self._agree()
        m.optimizer_G.found_inf = (~self.ok).float()  # fused Adam leaves weights and moments, and its step count
        try:
            m.optimizer_G.step()
        finally:
            del m.optimizer_G.found_inf

    @torch.no_grad()
    def finish(self) -> torch.Tensor:
        m = self.model
        if m.scaler_G.is_enabled() or not self.fused_G:  # step_G did not agree yet
            self._agree()
        ok = self.ok
        for t, old in self.saved:
            t.copy_(torch.where(ok, t, old))
        for opt, p in self.new_state:
            for v in opt.state.get(p, {}).values():
                if torch.is_tensor(v):
                    v.copy_(torch.where(ok, v, 0))
        m._skipped += (~ok).long()
        return ok
