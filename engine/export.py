"""Export a trained generator: the network as it is exported (train-mode batch statistics and dropout made
explicit, the residual add inside), ONNX and TorchScript writers, and the check of each file against PyTorch."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from engine.checkpoint import GeneratorCheckpoint
from engine.inference import ImageTranslator
from options.groups import EXPORT_FORMATS

log = logging.getLogger("export")

# --format's values are declared with the flag (options can't import engine); each gets its file extension here.
EXTENSIONS = dict(zip(EXPORT_FORMATS, (".onnx", ".pt", ".safetensors"), strict=True))
# The exporter (torch.onnx's torch.export-based one needs onnxscript), the file's metadata, the check of the file.
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
ONNX_INSTALL = "pip install onnx onnxruntime onnxscript"
# --opset is 18 or newer (its bound in options/groups.py): torch.onnx.export's torch.export-based exporter writes
# 18 and newer; its conversion down fails for these networks (no onnx version adapter for Pad, Constant ...).
METADATA_FILE = "pix2pix.json"  # the TorchScript file's extra file, read with torch.jit.load(..., _extra_files=)
TOLERANCE = 1 / 255  # the file against PyTorch: half an 8-bit grey level of [-1, 1] (fp32 summation order)
PADDING = (
    "not in the graph: pad H and W at the bottom and right to multiples of size_multiple (reflect; replicate "
    "where the pad is not smaller than the side) and crop fake_B back, as engine.inference.ImageTranslator does"
)
DROPOUT_TYPES: tuple[type[nn.Module], ...]  # set below the classes


class ExportFailed(RuntimeError):
    """The network could not be exported, or the file does not compute what PyTorch does."""


def missing_packages(names: Sequence[str]) -> list[str]:
    """The packages of names that cannot be imported (absent, or broken), with the reason."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # ImportError, or a broken install raising anything on import
            missing.append(f"{name} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'not importable'})")
    return missing


def default_out(checkpoint: str, fmt: str) -> str:
    """Beside the checkpoint: checkpoints/RUN/latest.pth -> checkpoints/RUN/latest.onnx (.pt, .safetensors)."""
    return os.path.splitext(checkpoint)[0] + EXTENSIONS[fmt]


# ---- the network as it is exported ---------------------------------------------------------------------------
class BatchStatsNorm(nn.Module):
    """A BatchNorm2d as train mode computes it, without its side effect: each batch's own mean and biased
    variance, running statistics neither read nor updated."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = bn.weight, bn.bias, bn.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)


class SampledDropout(nn.Module):
    """Dropout written out as uniform noise, a threshold and a scale, for ONNX: ONNX Runtime's graph optimisations
    delete a Dropout node between convolutions even with training_mode true (onnxruntime 1.32), which would
    silently turn dropout off."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * keep * (1.0 / (1.0 - self.p))


DROPOUT_TYPES = (nn.modules.dropout._DropoutNd, SampledDropout)


class Exported(nn.Module):
    """real_A (N, input_nc, H, W) in [-1, 1], H and W multiples of the generator's size multiple -> fake_B: the
    generator, and real_A added back for a --residual run."""

    def __init__(self, net: nn.Module, residual: bool) -> None:
        super().__init__()
        self.net, self.residual = net, residual

    def forward(self, real_A: torch.Tensor) -> torch.Tensor:
        fake_B = self.net(real_A)
        return fake_B + real_A if self.residual else fake_B


def replace(module: nn.Module, kind: type | tuple[type, ...], make: Callable[[Any], nn.Module]) -> None:
    """Every submodule of that kind replaced by make(it), in place."""
    for name, child in module.named_children():
        if isinstance(child, kind):
            setattr(module, name, make(child))
        else:
            replace(child, kind, make)


def bake_parametrizations(net: nn.Module) -> None:
    """Spectral norm's weight computed once from the stored power-iteration vectors (as eval mode does) and kept
    as a plain weight: a train-mode forward would run another power iteration and change the vectors. By hand:
    parametrize.remove_parametrizations edits the parametrized class, which a deepcopy shares with the original."""
    net.eval()
    for m in list(net.modules()):
        if parametrize.is_parametrized(m):
            with torch.no_grad():
                values = {name: getattr(m, name).detach().clone() for name in m.parametrizations}
            plain = parametrize.type_before_parametrizations(m)
            del m.parametrizations
            m.__class__ = plain  # this instance only
            for name, value in values.items():
                m.register_parameter(name, nn.Parameter(value, requires_grad=False))


def export_module(net: nn.Module, residual: bool, eval: bool, sampled_dropout: bool) -> Exported:
    """A copy of net for export: fp32 on the CPU, no gradients, the residual add included; in eval mode, or in
    pix2pix's train-mode testing (batch statistics, dropout on) without train mode's side effects.

    Why not export net.train() as it is: torch.onnx.export of a train-mode network silently exports batch norm
    with the running statistics (folded into the convolutions, with only a UserWarning), and a traced train-mode
    BatchNorm2d writes its running statistics on every call. Batch norm as a plain function of the batch exports
    the same everywhere: each one becomes F.batch_norm(x, None, None, weight, bias, training=True), everything
    else is put in eval mode, and only dropout is left in train mode (sampled_dropout: as explicit ops, for
    ONNX). check_module verifies the copy against net itself in train mode."""
    m = copy.deepcopy(net).cpu().float()
    bake_parametrizations(m)
    if not eval:
        replace(m, nn.modules.batchnorm._BatchNorm, BatchStatsNorm)
        if sampled_dropout:
            replace(m, nn.modules.dropout._DropoutNd, lambda d: SampledDropout(d.p))
    m.requires_grad_(False)
    out = Exported(m, residual).eval()
    if not eval:
        for d in out.modules():
            if isinstance(d, DROPOUT_TYPES):
                d.train()
    return out


@contextlib.contextmanager
def dropout_off(*nets: nn.Module) -> Iterator[None]:
    """Dropout in eval mode for a while (comparisons that must be deterministic)."""
    drops = [m for net in nets for m in net.modules() if isinstance(m, DROPOUT_TYPES)]
    modes = [m.training for m in drops]
    for m in drops:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(drops, modes, strict=True):
            m.train(mode)


def has_active_dropout(module: nn.Module) -> bool:
    return any(isinstance(m, DROPOUT_TYPES) and m.training and m.p > 0 for m in module.modules())


def sample_inputs(input_nc: int, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The example the graph is traced with, and another size to check the dynamic shapes with. Batch 2 and 2x
    the multiple: torch.export specialises dimensions whose example is 1."""
    g = torch.Generator().manual_seed(0)
    example = torch.rand(2, input_nc, 2 * multiple, 2 * multiple, generator=g) * 2 - 1
    other = torch.rand(1, input_nc, 3 * multiple, 2 * multiple, generator=g) * 2 - 1
    return example, other


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise ExportFailed(f"output shape {tuple(a.shape)}, PyTorch's {tuple(b.shape)}")
    return float((a - b).abs().max())


def check_module(t: ImageTranslator, module: Exported, eval: bool, inputs: Sequence[torch.Tensor]) -> None:
    """The export copy against the network itself in the chosen mode (in train mode on a copy: its batch norm
    would update the running statistics), dropout off in both; spectral norm without a power iteration."""
    ref = copy.deepcopy(t.net).cpu().float().train(not eval)
    for m in ref.modules():
        if isinstance(m, parametrize.ParametrizationList):
            m.eval()
    with torch.no_grad(), dropout_off(ref, module):
        for x in inputs:
            want = ref(x) + x if module.residual else ref(x)
            diff = max_difference(module(x), want)
            if diff > 1e-5:
                raise ExportFailed(f"the export copy of the network differs from it by {diff:.2e} at {tuple(x.shape)}")


def check_file(run: Callable[[torch.Tensor], torch.Tensor], module: Exported, inputs: Sequence[torch.Tensor]) -> None:
    """The file's outputs against the module's at each input size (the example's and another: the dynamic
    shapes). Dropout draws differ between runtimes: with dropout on, two runs of the file must differ instead."""
    random = has_active_dropout(module)
    for x in inputs:
        got = run(x)
        if random:
            with torch.no_grad(), dropout_off(module):
                want = module(x)
            max_difference(got, want)  # the shape
            if not torch.isfinite(got).all() or torch.equal(got, run(x)):
                raise ExportFailed(f"dropout is on, yet two runs of the file at {tuple(x.shape)} gave the same output")
            continue
        with torch.no_grad():
            want = module(x)
        diff = max_difference(got, want)
        if not diff <= TOLERANCE:
            raise ExportFailed(f"the file's output differs from PyTorch's by {diff:.2e} at {tuple(x.shape)}")


@contextlib.contextmanager
def torch_warnings(what: str) -> Iterator[None]:
    """The exporters' warnings as log lines: one for TorchScript's deprecation, the rest at debug level."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    deprecated: dict[str, str] = {}  # function -> torch's advice
    seen = set()
    for w in caught:
        text = " ".join(str(w.message).split())
        if (text, w.filename, w.lineno) in seen:
            continue
        seen.add((text, w.filename, w.lineno))
        found = re.match(r"`(torch\.jit\.\w+)` is deprecated\. (.*)", text)
        if found:
            deprecated.setdefault(found.group(1), found.group(2))
        else:
            log.debug("%s export: %s (%s:%d): %s", what, w.category.__name__, w.filename, w.lineno, text[:500])
    if deprecated:
        log.warning(
            "torch %s deprecates TorchScript (%s: %s); the file still loads with torch.jit.load and in LibTorch",
            torch.__version__,
            ", ".join(deprecated),
            next(iter(deprecated.values())),
        )


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Loggers that report every optimisation pass at INFO (onnxscript's) at ERROR for a while, unless the root
    logger is at DEBUG (--verbose); what goes wrong reaches the user as ExportFailed."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    if logging.getLogger().level > logging.DEBUG:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


# ---- the formats ---------------------------------------------------------------------------------------------
def metadata(t: ImageTranslator, ckpt: GeneratorCheckpoint, module: Exported, eval: bool) -> dict[str, Any]:
    g = t.generator
    return {
        "producer": "pix2pix export.py",
        "input": "real_A (N, input_nc, H, W), float32",
        "output": "fake_B (N, output_nc, H, W), float32",
        "input_range": [-1, 1],
        "size_multiple": t.pad_multiple,
        "padding": PADDING,
        "input_nc": t.input_nc,
        "output_nc": t.output_nc,
        "direction": t.direction,
        "netG": g.netG,
        "residual": g.residual,
        "residual_included": g.residual,  # fake_B = G(real_A) + real_A inside the graph
        "mode": "eval" if eval else "train",
        "batch_statistics": any(isinstance(m, BatchStatsNorm) for m in module.modules()),
        "dropout": has_active_dropout(module),
        "ema": ckpt.ema,
        "epoch": ckpt.epoch,
        "checkpoint": os.path.basename(ckpt.path),
        "generator": dataclasses.asdict(g),
        # The data's units: real_A = (A - MIN_A) / (MAX_A - MIN_A) * 2 - 1 (clipped), B = (fake_B + 1) / 2 *
        # (MAX_B - MIN_B) + MIN_B; "" is the value type's range (0,255 for 8-bit, 0,65535 for 16-bit images).
        "range_A": str(t.values.range_A),
        "range_B": str(t.values.range_B),
        "output_dtype": t.output_dtype,
        "torch": torch.__version__,
    }


def to_onnx(module: Exported, example: torch.Tensor, multiple: int, unet: bool, opset: int, meta: dict) -> bytes:
    """The torch.export-based exporter (torch.onnx.export's default; the TorchScript-based one is deprecated),
    with dynamic batch, height and width. The metadata go into the model's metadata_props (values as JSON)."""
    import onnx

    Dim = torch.export.Dim
    # H = multiple * height. A ResNet needs 2 units: its blocks reflect-pad the 1/4-size features by 1 pixel.
    units = 1 if unet else 2
    height, width = Dim("height", min=units), Dim("width", min=units)
    shapes = {"real_A": {0: Dim("batch", min=1), 2: multiple * height, 3: multiple * width}}
    with torch_warnings("onnx"), quiet_loggers("onnxscript", "onnx_ir"):
        try:
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                dynamic_shapes=shapes,
                input_names=["real_A"],
                output_names=["fake_B"],
                opset_version=opset,
                verbose=False,
            )
        except Exception as e:  # torch.onnx raises its own error types, each with a long report
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ExportFailed(f"torch.onnx.export failed ({type(e).__name__}: {first})") from e
    model = program.model_proto
    written = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise ExportFailed(f"asked for opset {opset}, the exporter wrote opset {written}; try --opset {written}")
    for node in model.graph.node:  # the exporting machine's file paths, in every node: not for a shipped file
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"pix2pix.{key}", value if isinstance(value, str) else json.dumps(value)
    model.doc_string = f"pix2pix generator {meta['netG']}: real_A -> fake_B; H, W multiples of {multiple}"
    try:
        onnx.checker.check_model(model)
        return model.SerializeToString()
    except (ValueError, onnx.checker.ValidationError) as e:  # a model over protobuf's 2 GB, say
        raise ExportFailed(f"the ONNX model cannot be written: {str(e).splitlines()[0]}") from e


def onnx_runner(data: bytes) -> Callable[[torch.Tensor], torch.Tensor]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"real_A": x.numpy()})[0])


def to_torchscript(module: Exported, example: torch.Tensor, meta: dict) -> bytes:
    """torch.jit.trace: the generators have no Python control flow that depends on the input, so the trace holds
    for every size (check_file verifies another one). torch.jit.script cannot compile them (the U-Net's forward
    calls torch.utils.checkpoint). check_trace off: with dropout on, two traces differ by design."""
    with torch.no_grad():
        try:
            traced = torch.jit.trace(module, (example,), check_trace=False)
        except Exception as e:
            raise ExportFailed(f"torch.jit.trace failed ({type(e).__name__}: {str(e).strip()[:300]})") from e
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={METADATA_FILE: json.dumps(meta)})
    return buf.getvalue()


def torchscript_runner(data: bytes) -> Callable[[torch.Tensor], torch.Tensor]:
    loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return loaded(x)

    return run


def export_network(
    t: ImageTranslator, ckpt: GeneratorCheckpoint, fmt: str, eval: bool, opset: int
) -> tuple[bytes, dict]:
    """The ONNX (fmt "onnx") or TorchScript file's bytes, checked against PyTorch, and its metadata."""
    onnx = fmt == "onnx"
    module = export_module(t.net, t.translator.residual, eval, sampled_dropout=onnx)
    example, other = sample_inputs(t.input_nc, t.pad_multiple)
    check_module(t, module, eval, (example, other))
    meta = metadata(t, ckpt, module, eval)
    if onnx:
        unet = t.generator.is_unet
        data = to_onnx(module, example, t.pad_multiple, unet, opset, meta)
        check_file(onnx_runner(data), module, (example, other))
    else:
        with torch_warnings("torchscript"):
            data = to_torchscript(module, example, meta)
            check_file(torchscript_runner(data), module, (example, other))
    return data, meta


def describe(meta: dict) -> str:
    if meta["mode"] == "eval":
        return "eval mode (running batch-norm statistics, no dropout)"
    what = [w for w, on in (("batch statistics", meta["batch_statistics"]), ("dropout on", meta["dropout"])) if on]
    return f"train mode ({', '.join(what) or 'no batch norm, no dropout: as eval'})"


def size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"
