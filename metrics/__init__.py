"""Image-quality metrics: PSNR, SSIM, L1, pixel accuracy, LPIPS per image; FID, KID, SWD per set (docs/metrics.md)."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from util.config import FlagValue, OptionError

log = logging.getLogger(__name__)

METRICS = ("psnr", "ssim", "l1", "pixacc", "lpips", "fid", "kid", "swd")
HIGHER_IS_BETTER = {
    "psnr": True,
    "ssim": True,
    "l1": False,
    "pixacc": True,
    "lpips": False,
    "fid": False,
    "kid": False,
    "swd": False,
}
PER_IMAGE = ("psnr", "ssim", "l1", "pixacc", "lpips")
# pixacc: a pixel is right when every channel is within 5 levels of 256 of the target's (the tolerance used to score
# aerial -> map translations, whose flat map colours a good model hits exactly up to JPEG noise)
PIXACC_DELTA = 5 / 255

SSIM_WIN, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03  # scikit-image's structural_similarity defaults
# On the CPU, SSIM runs over strips of rows of about this many values per channel stack (x 4 statistics x 4 bytes:
# 2 MB, which stays in cache), at least 8 output rows each.
SSIM_STRIP_VALUES, SSIM_STRIP_ROWS_MIN = 1 << 17, 8
LPIPS_MIN_SIZE = 32  # AlexNet's feature stack (LPIPS 'alex') needs at least 31 pixels per side
SWD_MIN_RES, SWD_PATCH, SWD_PATCHES_PER_IMAGE = 16, 7, 128
SWD_DIRS, SWD_REPEATS, SWD_SCALE = 512, 4, 1e3
KID_SUBSETS, KID_MAX_SUBSET = 100, 1000

# The InceptionV3 weights torch-fidelity downloads (a port of the TF FID network). Its network also loads
# torchvision's Inception3 layout, in which pytorch-fid stores the same weights as pt_inception-...: both names
# are looked for in the hub cache.
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)
INCEPTION_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
# torchvision's ImageNet AlexNet, the backbone of LPIPS 'alex' (its linear heads ship inside torchmetrics).
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
PROBE_TIMEOUT_S = 3.0  # how long to wait for the download host before giving up
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation while downloading


def metric_names(given: Sequence[str]) -> list[str]:
    """['psnr', ' SSIM', ''] -> ['psnr', 'ssim'] (order kept, blanks and duplicates dropped); ValueError names a bad
    name."""
    names: list[str] = []
    for raw in given:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in METRICS:
            raise ValueError(f"unknown metric {raw.strip()!r}; valid metrics: {', '.join(METRICS)}")
        if name not in names:
            names.append(name)
    return names


class MetricList(tuple, FlagValue):
    """--metrics: metric names ('psnr, SSIM' -> psnr,ssim; see metric_names); may be empty."""

    @classmethod
    def parse(cls, text: str, flag: str) -> MetricList:
        try:
            return cls(metric_names(text.split(",")))
        except ValueError as e:
            raise OptionError(f"--{flag} {text!r}: {e}") from None

    def __str__(self) -> str:
        return ",".join(self)

    __repr__ = __str__

    @property
    def per_image(self) -> list[str]:
        """Those scored per image (the page's columns, --sort_by's choices)."""
        return [m for m in self if m in PER_IMAGE]


# ---------------------------------------------------------------------------------------------- per image


@torch.no_grad()
def psnr(fake: torch.Tensor, real: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(N,) PSNR in dB over all channels and pixels of each image, in the inputs' precision; +inf for identical
    images. A metric, not a loss: no gradient."""
    mse = (fake - real).square_().flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


@torch.no_grad()
def pixel_accuracy(fake: torch.Tensor, real: torch.Tensor, delta: float = PIXACC_DELTA) -> torch.Tensor:
    """(N,) share of pixels whose channels all lie within delta of real's; inputs in [0, 1]."""
    return ((fake - real).abs_().amax(1) <= delta).flatten(1).float().mean(1)


def _window_mean(x: torch.Tensor, win: int, dim: int) -> torch.Tensor:
    """The mean of every run of win values along dim (odd win), as the centre value plus the mean difference
    from it: exact where the run is constant, and elsewhere rounded relative to the run's spread, not its level."""
    n, half = x.shape[dim] - win + 1, win // 2
    centre = x.narrow(dim, half, n)
    total, diff = x.narrow(dim, 0, n) - centre, torch.empty_like(centre)
    for k in range(1, win):
        if k != half:
            total += torch.sub(x.narrow(dim, k, n), centre, out=diff)
    return total.mul_(1.0 / win).add_(centre)


def _ssim_sum(
    x: torch.Tensor, y: torch.Tensor, mx: torch.Tensor, my: torch.Tensor, win: int, c1: float, c2: float
) -> torch.Tensor:
    """(N,) sums of the SSIM map over the windows wholly inside x and y: (N, C, h, W) values less their
    per-channel means mx and my ((N, C, 1, 1))."""
    c = x.shape[1]
    # Four statistics, not five: SSIM needs the two variances only as their sum. Window means: rows, then columns.
    stats = torch.cat([x, y, x * x + y * y, x * y], 1)
    mf, mr, e2, efr = _window_mean(_window_mean(stats, win, -1), win, -2).split(c, 1)
    # The window means of a flat window are exact, and mf * mf + mr * mr rounds as x * x + y * y did, so flat
    # windows get variances of exactly 0; centred values keep the other windows' cancellation small. When fake
    # == real, var_f + var_r rounds as 2 cov does: SSIM 1 exactly.
    sample = win**2 / (win**2 - 1)  # scikit-image's sample (co)variances
    prod = mf * mr
    var2 = e2.sub_(mf * mf + mr * mr).mul_(sample)
    cov = efr.sub_(prod).mul_(sample)
    mf += mx  # the window means of the values themselves, for the luminance term
    mr += my
    num = prod.copy_(mf).mul_(mr).mul_(2).add_(c1).mul_(cov.mul_(2).add_(c2))
    den = mf.square_().add_(mr.square_()).add_(c1).mul_(var2.add_(c2))
    return num.div_(den).sum((1, 2, 3)).double()


@torch.no_grad()
def ssim(fake: torch.Tensor, real: torch.Tensor, data_range: float = 1.0, win: int = SSIM_WIN) -> torch.Tensor:
    """(N,) SSIM as scikit-image's structural_similarity(a, b, data_range, channel_axis=-1) computes it.

    Uniform win x win window, K1 0.01, K2 0.03, sample (co)variances (N/(N-1)); the mean over the windows that lie
    wholly inside the image (scikit-image filters everything and then crops (win-1)/2 pixels: the same set), then
    over channels. Needs H, W >= win.

    Computed in float32 (a float64 depthwise convolution made it cost more than the translation it scores), with
    care for E[x^2] - E[x]^2: each channel less its mean, and window means exact on flat windows. Separable window
    means; on the CPU, strips of rows small enough to stay in cache. Within 2e-5 of float64 (docs/metrics.md).
    A metric, not a loss: no gradient (the arithmetic is in place).
    """
    n, c, h, w = fake.shape
    x, y = fake.float(), real.float()
    mx, my = x.mean((2, 3), keepdim=True), y.mean((2, 3), keepdim=True)
    x, y = x - mx, y - my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    out_h = h - win + 1
    step = max(SSIM_STRIP_ROWS_MIN, SSIM_STRIP_VALUES // (n * c * w)) if x.device.type == "cpu" else out_h
    step = -(-out_h // -(-out_h // step))  # strips of even height: 250 rows as 125 + 125, not 170 + 80
    total = torch.zeros(n, dtype=torch.float64, device=x.device)
    for r0 in range(0, out_h, step):
        rows = slice(r0, min(out_h, r0 + step) + win - 1)
        total += _ssim_sum(x[:, :, rows], y[:, :, rows], mx, my, win, c1, c2)
    return total / (c * out_h * (w - win + 1))


# ---------------------------------------------------------------------------------------------- SWD


def _binomial_blur(x: torch.Tensor) -> torch.Tensor:
    """5x5 binomial ([1 4 6 4 1]/16 squared) low-pass, edge pixels replicated."""
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype, device=x.device) / 16
    c = x.shape[1]
    kernel = (k1[:, None] * k1[None, :]).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=c)


def laplacian_pyramid(x: torch.Tensor, min_res: int = SWD_MIN_RES) -> list[torch.Tensor]:
    """Band-pass levels from full resolution down, halving while the short side stays >= min_res; the last
    level is the remaining low-pass image (so a 256 px image gives 256, 128, 64, 32 and 16)."""
    levels = []
    while math.ceil(min(x.shape[-2:]) / 2) >= min_res:
        down = _binomial_blur(x)[..., ::2, ::2]
        up = torch.zeros_like(x)
        up[..., ::2, ::2] = 4 * down  # zero insertion; x4 restores the mean after the blur
        levels.append(x - _binomial_blur(up))
        x = down
    levels.append(x)
    return levels


def _patch_descriptors(
    fake: torch.Tensor, real: torch.Tensor, n: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """n random 7x7 patches per image, at the same places in fake and real -> two (N*n, C, 49) tensors."""
    b, c, h, w = fake.shape
    p = SWD_PATCH
    ys = torch.randint(0, h - p + 1, (b, n), generator=gen).to(fake.device)
    xs = torch.randint(0, w - p + 1, (b, n), generator=gen).to(fake.device)
    offs = torch.arange(p, device=fake.device)
    rows = (ys[..., None] + offs)[:, :, :, None]  # (B, n, p, 1)
    cols = (xs[..., None] + offs)[:, :, None, :]  # (B, n, 1, p)
    img = torch.arange(b, device=fake.device)[:, None, None, None]

    def take(x: torch.Tensor) -> torch.Tensor:
        # Advanced indices around the channel slice put their broadcast shape first: (B, n, p, p, C).
        return x[img, :, rows, cols].permute(0, 1, 4, 2, 3).reshape(b * n, c, p * p)

    return take(fake), take(real)


def sliced_wasserstein(
    a: torch.Tensor, b: torch.Tensor, gen: torch.Generator, n_dirs: int = SWD_DIRS, repeats: int = SWD_REPEATS
) -> float:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the projections of a and b
    ((M, D) each, equal M): sort both projections and average the absolute differences."""
    total = 0.0
    chunk = 128  # directions at a time: bounds the (chunk, M) projections
    for _ in range(repeats):
        dirs = torch.randn(n_dirs, a.shape[1], generator=gen, dtype=a.dtype).to(a.device)
        dirs /= dirs.norm(dim=1, keepdim=True)
        for d in dirs.split(chunk):
            # (chunk, M): each row one direction, sorted along its contiguous last dimension
            pa, pb = (d @ a.T).sort(dim=1).values, (d @ b.T).sort(dim=1).values
            total += float((pa - pb).abs().mean(1).sum())
    return total / (repeats * n_dirs)


def swd_level(fake_desc: torch.Tensor, real_desc: torch.Tensor, gen: torch.Generator) -> float:
    """SWD of two (M, C, 49) descriptor sets; each channel is normalised by the mean and std of both sets
    together, so a global colour or contrast shift between the sets still counts."""
    both = torch.cat([fake_desc, real_desc])
    mean = both.mean(dim=(0, 2), keepdim=True)
    std = both.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    a, b = ((d - mean) / std for d in (fake_desc, real_desc))
    return sliced_wasserstein(a.flatten(1), b.flatten(1), gen)


# ---------------------------------------------------------------------------------------------- weights


def _reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Can a TCP connection to url's host (or the https proxy) be made within timeout? The probe runs in a
    daemon thread because a name lookup ignores socket timeouts."""
    proxy = urllib.request.getproxies().get("https")
    target = urllib.parse.urlsplit(proxy if proxy else url)
    host, port = target.hostname, target.port or (443 if target.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(ok)


def _find_weights(url: str, file_names: Sequence[str]) -> tuple[str | None, str]:
    """A local copy of url's weights: the torch hub cache, else a download into it. (path, why not)."""
    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    for name in file_names:
        if os.path.isfile(os.path.join(cache, name)):
            return os.path.join(cache, name), ""
    host = urllib.parse.urlsplit(url).hostname
    if not _reachable(url):
        return None, f"{file_names[0]} is not in {cache} and {host} cannot be reached"
    dst = os.path.join(cache, os.path.basename(urllib.parse.urlsplit(url).path))
    log.info("downloading %s to %s", url, dst)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a stalled transfer fails instead of hanging
    try:
        os.makedirs(cache, exist_ok=True)
        torch.hub.download_url_to_file(url, dst, progress=False)
    except Exception as e:  # any failure means: no weights
        return None, f"downloading {url} failed ({type(e).__name__}: {e})"
    finally:
        socket.setdefaulttimeout(old)
    return dst, ""


class InceptionFeatures(nn.Module):
    """torch-fidelity's InceptionV3 (the TF FID network): (N, 3, H, W) images in [0, 1] -> (N, 2048) pool
    features. Images are quantised to 8 bits as saved PNGs are, then resized to 299 inside the network."""

    num_features = 2048

    def __init__(self, weights_path: str) -> None:
        super().__init__()
        import tempfile

        from torchmetrics.image.fid import NoTrainInceptionV3

        # torch-fidelity opens the file with torch.load(weights_only=False), which would run any code pickled in
        # it. So the file is read here, as tensors only (weights_only=True refuses anything else), and what
        # torch-fidelity opens is a private copy re-saved from those tensors.
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise ValueError("not a state dict of tensors")
        with tempfile.TemporaryDirectory() as tmp:
            vetted = os.path.join(tmp, "inception.pth")
            torch.save(dict(state), vetted)
            self.net = NoTrainInceptionV3(
                name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=vetted
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x * 255).round().to(torch.uint8))


class _Passthrough(nn.Module):
    """Hands already extracted (N, D) features to torchmetrics' FID and KID, so the network runs once."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def build_lpips(weights_path: str) -> nn.Module:
    """torchmetrics' LPIPS 'alex' with its linear heads and the AlexNet backbone loaded from weights_path
    (torchvision's alexnet state dict; only the `features.*` entries are used)."""
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    feats = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    net = _NoTrainLpips(net="alex", pnet_rand=True)  # random backbone, then ours: no download
    for name, block in net.net.named_children():  # slice1..slice5 keep torchvision's layer indices
        if name.startswith("slice"):
            block.load_state_dict({k: feats[k] for k in block.state_dict()})
    return net.eval()


# ---------------------------------------------------------------------------------------------- the suite


class MetricSuite:
    """Scores fake against real batches; per-image values from update(), set values and means from compute().

    Metrics whose weights cannot be had are dropped from `names` after one warning each. `feature_extractor`
    replaces InceptionV3 for FID and KID: a module from (N, 3, H, W) images in [0, 1] to (N, D) features.
    """

    def __init__(
        self,
        names: Sequence[str],
        device: torch.device | str,
        fid_weights: str | None,
        lpips_weights: str | None,
        seed: int,
        *,
        feature_extractor: nn.Module | None = None,
    ) -> None:
        names = metric_names(names)
        self.device = torch.device(device)
        self.seed = seed
        self.dtype = torch.float32  # the generator's precision; PSNR and SSIM stay within 2e-5 of float64
        self._lpips: nn.Module | None = None
        self._features: nn.Module | None = None
        self._warned: set[str] = set()
        if "lpips" in names:
            self._lpips = self._load_lpips(lpips_weights)
            if self._lpips is None:
                names.remove("lpips")
        if "fid" in names or "kid" in names:
            self._features = feature_extractor
            if feature_extractor is None:
                self._features = self._load_inception(fid_weights, [n for n in names if n in ("fid", "kid")])
            if self._features is None:
                names = [n for n in names if n not in ("fid", "kid")]
            else:
                self._features = self._features.to(self.device).eval()
        self.names: list[str] = names
        self.reset()

    # ---- weights

    def _load_lpips(self, path: str | None) -> nn.Module | None:
        why = ""
        if path is None:
            path, why = _find_weights(ALEXNET_URL, (os.path.basename(ALEXNET_URL),))
        if path is not None:
            try:
                return build_lpips(path).to(self.device)
            except Exception as e:  # a bad file or a changed torchmetrics: drop the metric
                why = f"{path} did not load as AlexNet weights ({type(e).__name__}: {e})"
        log.warning(
            "lpips: no AlexNet backbone weights: %s. LPIPS is skipped; download %s and give --lpips_weights PATH.",
            why,
            ALEXNET_URL,
        )
        return None

    def _load_inception(self, path: str | None, wanted: list[str]) -> nn.Module | None:
        why = ""
        if path is None:
            path, why = _find_weights(INCEPTION_URL, INCEPTION_FILES)
        if path is not None:
            try:
                return InceptionFeatures(path)
            except Exception as e:  # missing torch-fidelity, a bad file: drop FID and KID
                why = f"{path} did not load as torch-fidelity InceptionV3 weights ({type(e).__name__}: {e})"
        for name in wanted:
            log.warning(
                "%s: no InceptionV3 weights: %s. %s is skipped; download %s and give --fid_weights PATH "
                "(FID and KID share it).",
                name,
                why,
                name.upper(),
                INCEPTION_URL,
            )
        return None

    # ---- accumulation

    def reset(self) -> None:
        """Forget every image seen; the SWD patch positions start again from the seed."""
        self.n = 0
        self._sums = {k: 0.0 for k in PER_IMAGE}
        self._counts = {k: 0 for k in PER_IMAGE}
        self._fid = self._kid = None  # built on the first update, when the feature size is known
        self._swd_fake: list[list[torch.Tensor]] = []  # per level, a list of (M, C, 49) CPU tensors
        self._swd_real: list[list[torch.Tensor]] = []
        self._swd_res: list[int] = []  # short side of each level for the first images seen
        self._swd_channels: int | None = None
        self._swd_gen = torch.Generator().manual_seed(self.seed)

    def _warn_once(self, key: str, msg: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    @torch.no_grad()
    def update(self, fake: torch.Tensor, real: torch.Tensor) -> list[dict[str, float]]:
        """fake, real: (N, C, H, W) in [-1, 1], any C (LPIPS, FID and KID, which see RGB, need C 1 or 3). Returns
        each image's per-image metrics."""
        if fake.shape != real.shape or fake.dim() != 4:
            raise ValueError(f"fake and real must be equal (N, C, H, W); got {fake.shape}, {real.shape}")
        fake = fake.detach().to(self.device, self.dtype).clamp(-1, 1)
        real = real.detach().to(self.device, self.dtype).clamp(-1, 1)
        f01, r01 = fake.add(1).mul_(0.5), real.add(1).mul_(0.5)
        n, h, w = fake.shape[0], fake.shape[2], fake.shape[3]
        rows: list[dict[str, float]] = [{} for _ in range(n)]
        values: dict[str, list[float]] = {}
        pixel: dict[str, torch.Tensor] = {}  # the pixel metrics come back to the host together: one sync per batch
        if "psnr" in self.names:  # on [-1, 1], range 2: no rounding of (x + 1) / 2 in fake - real
            pixel["psnr"] = psnr(fake, real, data_range=2.0).double()
        if "ssim" in self.names:
            if min(h, w) >= SSIM_WIN:
                pixel["ssim"] = ssim(f01, r01)
            else:
                self._warn_once("ssim", "ssim: images smaller than %d px (%dx%d) get no SSIM (nan)", SSIM_WIN, h, w)
                pixel["ssim"] = torch.full((n,), math.nan, dtype=torch.float64, device=fake.device)
        if "l1" in self.names:  # mean absolute error on [0, 1]: a fraction of the value range
            pixel["l1"] = (f01 - r01).abs_().flatten(1).mean(1)
        if "pixacc" in self.names:
            pixel["pixacc"] = pixel_accuracy(f01, r01)
        if pixel:
            values.update(zip(pixel, torch.stack(list(pixel.values())).tolist(), strict=True))
        rgb_ok = fake.shape[1] in (1, 3)
        for name in ("lpips", "fid", "kid"):
            if name in self.names and not rgb_ok:
                self._warn_once(name, "%s: images of %d channels are not RGB; left out (nan)", name, fake.shape[1])
        if "lpips" in self.names and rgb_ok:
            if min(h, w) >= LPIPS_MIN_SIZE:
                rgb = (fake.float().expand(-1, 3, -1, -1), real.float().expand(-1, 3, -1, -1))
                values["lpips"] = self._lpips(*rgb).flatten().tolist()
            else:
                self._warn_once("lpips", "lpips: images smaller than %d px get no LPIPS (nan)", LPIPS_MIN_SIZE)
                values["lpips"] = [math.nan] * n
        for name, vals in values.items():
            for row, v in zip(rows, vals, strict=True):
                row[name] = float(v)
                if not math.isnan(v):
                    self._sums[name] += v
                    self._counts[name] += 1
        if self._features is not None and rgb_ok:
            self._update_features(f01, r01)
        if "swd" in self.names:
            self._update_swd(f01, r01)
        self.n += n
        return rows

    def _update_features(self, f01: torch.Tensor, r01: torch.Tensor) -> None:
        rgb = [x.float().expand(-1, 3, -1, -1) for x in (f01, r01)]
        # float32 features as torchmetrics keeps them (FID moves to float64 itself; KID's kernels stay fast)
        fake_feat, real_feat = (self._features(x).float().flatten(1) for x in rgb)
        if self._fid is None and self._kid is None:
            from torchmetrics.image.fid import FrechetInceptionDistance
            from torchmetrics.image.kid import KernelInceptionDistance

            dim = fake_feat.shape[1]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
                if "fid" in self.names:
                    self._fid = FrechetInceptionDistance(feature=_Passthrough(dim)).to(self.device)
                if "kid" in self.names:
                    self._kid = KernelInceptionDistance(
                        feature=_Passthrough(dim), subsets=KID_SUBSETS, subset_size=KID_MAX_SUBSET
                    ).to(self.device)
        for metric in (self._fid, self._kid):
            if metric is not None:
                metric.update(fake_feat, real=False)
                metric.update(real_feat, real=True)

    def _update_swd(self, f01: torch.Tensor, r01: torch.Tensor) -> None:
        c, h, w = f01.shape[1:]
        if min(h, w) < SWD_PATCH:
            self._warn_once("swd", "swd: images smaller than %d px are left out of SWD", SWD_PATCH)
            return
        if self._swd_channels is None:
            self._swd_channels = c
        elif c != self._swd_channels:
            raise ValueError(f"swd: images with {c} channels after images with {self._swd_channels}")
        fake_levels, real_levels = laplacian_pyramid(f01.float()), laplacian_pyramid(r01.float())
        for k, (fl, rl) in enumerate(zip(fake_levels, real_levels, strict=True)):
            if min(fl.shape[-2:]) < SWD_PATCH:
                break
            if k == len(self._swd_fake):
                self._swd_fake.append([])
                self._swd_real.append([])
                self._swd_res.append(min(fl.shape[-2:]) if k == 0 else math.ceil(self._swd_res[-1] / 2))
            df, dr = _patch_descriptors(fl, rl, SWD_PATCHES_PER_IMAGE, self._swd_gen)
            self._swd_fake[k].append(df.cpu())
            self._swd_real[k].append(dr.cpu())

    # ---- results

    def compute(self) -> dict[str, float]:
        """Means of the per-image metrics, the set metrics, and 'n', the number of images seen (nan for a metric
        that had no images; FID and KID need at least 2)."""
        out: dict[str, float] = {"n": self.n}
        for name in self.names:
            if name in PER_IMAGE:
                out[name] = self._sums[name] / self._counts[name] if self._counts[name] else math.nan
        if "fid" in self.names:
            out["fid"] = float(self._fid.compute()) if self.n >= 2 else math.nan
        if "kid" in self.names:
            out["kid"], out["kid_std"] = self._compute_kid() if self.n >= 2 else (math.nan, math.nan)
        if "swd" in self.names:
            out.update(self._compute_swd())
        return out

    def _compute_kid(self) -> tuple[float, float]:
        # KID's subset sets must fit in the data; torchmetrics draws them from the global CPU generator, which
        # belongs to training, so it is seeded here and put back afterwards.
        self._kid.subset_size = min(KID_MAX_SUBSET, self.n)
        state = torch.get_rng_state()
        torch.default_generator.manual_seed(self.seed)
        try:
            mean, std = self._kid.compute()
        finally:
            torch.set_rng_state(state)
        return float(mean), float(std)

    def _compute_swd(self) -> dict[str, float]:
        if not self._swd_fake:
            return {"swd": math.nan}
        gen = torch.Generator().manual_seed(self.seed + 1)
        per_level = {}
        for res, fakes, reals in zip(self._swd_res, self._swd_fake, self._swd_real, strict=True):
            fake_desc, real_desc = torch.cat(fakes).to(self.device), torch.cat(reals).to(self.device)
            per_level[f"swd_{res}"] = SWD_SCALE * swd_level(fake_desc, real_desc, gen)
        return {"swd": sum(per_level.values()) / len(per_level), **per_level}
