"""metrics/: PSNR and SSIM against scikit-image, SWD's ordering, FID/KID on known features, weights fallbacks."""

import logging
import math
import os
import socket
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage import data
from skimage.color import rgb2gray
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch.utils._python_dispatch import TorchDispatchMode

import metrics
from conftest import ROOT
from metrics import HIGHER_IS_BETTER, METRICS, MetricList, MetricSuite


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: a second thread only adds synchronisation (and on a busy 2-core machine, waiting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def to_tensor(img01: np.ndarray) -> torch.Tensor:
    """(H, W[, C]) array in [0, 1] -> (1, C, H, W) float64 tensor in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img01, dtype=np.float64))
    t = t[None] if t.dim() == 2 else t.permute(2, 0, 1)
    return t[None] * 2 - 1


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache and no reachable download host; counts the probes."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    probes = []
    monkeypatch.setattr(metrics, "_reachable", lambda url, timeout=None: probes.append(url) or False)
    return probes


def test_parse_metrics():
    assert MetricList.parse("psnr,ssim", "metrics") == ("psnr", "ssim")
    assert MetricList.parse(" SSIM, psnr ,ssim,", "metrics") == ("ssim", "psnr")
    assert set(METRICS) == set(HIGHER_IS_BETTER)
    with pytest.raises(ValueError) as e:
        MetricList.parse("psnr,fidd", "metrics")
    assert "'fidd'" in str(e.value) and "psnr, ssim, l1, pixacc, lpips, fid, kid, swd" in str(e.value)
    with pytest.raises(ValueError, match="fidd"):
        MetricSuite(["fidd"], "cpu", None, None, 0)


def test_psnr():
    rng = np.random.default_rng(0)
    real = rng.uniform(0, 0.9, (2, 3, 16, 16))
    suite = MetricSuite(["psnr"], "cpu", None, None, 0)
    same = suite.update(to_tensor(real[0].transpose(1, 2, 0)), to_tensor(real[0].transpose(1, 2, 0)))
    assert same == [{"psnr": math.inf}]
    rows = suite.update(torch.from_numpy(real + 0.1) * 2 - 1, torch.from_numpy(real) * 2 - 1)
    assert [r["psnr"] for r in rows] == pytest.approx([20.0, 20.0], abs=1e-9)  # 10 log10(1 / 0.1^2)
    assert all(type(r["psnr"]) is float for r in rows)
    assert suite.compute() == {"n": 3, "psnr": math.inf}  # one identical pair makes the mean inf
    suite.reset()
    empty = suite.compute()
    assert empty["n"] == 0 and math.isnan(empty["psnr"])


def test_l1_and_pixel_accuracy():
    """l1 is the mean absolute error on [0, 1]; pixacc counts a pixel right when all its channels are within 5/255."""
    real = torch.zeros(1, 3, 4, 4)
    fake = real.clone()
    fake[0, 0, 0, :] = 4 / 255  # row 0: within the tolerance in one channel
    fake[0, 2, 1, :] = 6 / 255  # row 1: one channel off by 6 levels: wrong
    fake[0, :, 2, :2] = 0.5  # two pixels of row 2: every channel far off: wrong
    suite = MetricSuite(["l1", "pixacc"], "cpu", None, None, 0)
    rows = suite.update(fake * 2 - 1, real * 2 - 1)
    assert rows[0]["pixacc"] == pytest.approx(10 / 16)
    assert rows[0]["l1"] == pytest.approx((4 * 4 + 4 * 6 + 6 * 127.5) / 255 / 48, rel=1e-5)
    assert suite.compute()["pixacc"] == pytest.approx(10 / 16)
    assert not HIGHER_IS_BETTER["l1"] and HIGHER_IS_BETTER["pixacc"]


def test_ssim_matches_scikit_image(caplog):
    rng = np.random.default_rng(1)
    astro = data.astronaut().astype(np.float64) / 255
    cases = []
    for y, x, sigma in ((40, 160, 0.02), (200, 220, 0.1), (300, 60, 0.05)):
        real = astro[y : y + 48, x : x + 40]
        cases.append((real, np.clip(real + rng.normal(0, sigma, real.shape), 0, 1)))
    gray = rgb2gray(astro[100:164, 180:236])
    cases.append((gray, np.clip(0.8 * gray + 0.1 + rng.normal(0, 0.03, gray.shape), 0, 1)))
    suite = MetricSuite(["ssim"], "cpu", None, None, 0)
    for real, fake in cases:
        expected = structural_similarity(fake, real, data_range=1, channel_axis=-1 if fake.ndim == 3 else None)
        (row,) = suite.update(to_tensor(fake), to_tensor(real))
        assert type(row["ssim"]) is float and row["ssim"] == pytest.approx(expected, abs=1e-4)
        assert suite.update(to_tensor(real), to_tensor(real))[0]["ssim"] == pytest.approx(1.0, abs=1e-12)
    # float32 input, as the generator gives it, still matches
    real, fake = cases[1]
    (row,) = suite.update(to_tensor(fake).float(), to_tensor(real).float())
    assert row["ssim"] == pytest.approx(structural_similarity(fake, real, data_range=1, channel_axis=-1), abs=1e-4)
    # smaller than the 7x7 window: nan, one warning, left out of the mean
    mean_before = suite.compute()["ssim"]
    with caplog.at_level(logging.WARNING, logger="metrics"):
        for _ in range(2):
            assert math.isnan(suite.update(torch.zeros(1, 3, 5, 9), torch.zeros(1, 3, 5, 9))[0]["ssim"])
    assert len([r for r in caplog.records if "ssim" in r.getMessage()]) == 1
    assert suite.compute()["ssim"] == pytest.approx(mean_before)


def as_generated(img01: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """(H, W[, C]) in [0, 1] -> the float32 (1, C, H, W) tensor in [-1, 1] a generator would give, and the float64
    [0, 1] image with exactly its values, for scikit-image."""
    x = to_tensor(img01).float()
    return x, ((x.double() + 1) / 2)[0].permute(1, 2, 0).numpy()


def skimage_ssim(fake: np.ndarray, real: np.ndarray) -> float:
    return structural_similarity(fake, real, data_range=1, channel_axis=-1)


def two_level(h: int, w: int, inside: np.ndarray, fake_levels, real_levels) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-flat (h, w, 3) images: level [0] where `inside`, level [1] elsewhere."""
    return tuple(np.where(inside[..., None], a, b) * np.ones((h, w, 3)) for a, b in (fake_levels, real_levels))


def hard_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(fake, real) pairs in [0, 1] where float32 sums of squares lose digits: flat regions, levels near 0 and
    1, 16-bit smooth gradients, 8-bit quantisation."""
    rng = np.random.default_rng(2)
    astro = data.astronaut()[:96, 200:296] / 255.0
    ys, xs = np.mgrid[:96, :96] / 96
    smooth = np.stack([0.2 + 0.6 * xs * ys, 0.5 + 0.3 * np.sin(3 * xs), 0.9 - 0.5 * ys**2], -1)
    partly_flat = np.full((96, 96, 3), 0.93)
    partly_flat[:24] = astro[:24]
    cases = {
        "16-bit gradient, blurred": (
            np.round(smooth * 65535) / 65535,
            np.round((smooth + 1e-3 * xs[..., None]) * 65535) / 65535,
        ),
        "8-bit noisy": (
            np.round(np.clip(astro + rng.normal(0, 0.02, astro.shape), 0, 1) * 255) / 255,
            np.round(astro * 255) / 255,
        ),
        "near white, low contrast": (
            0.98 + 0.02 * astro,
            np.clip(0.98 + 0.02 * astro + rng.normal(0, 0.002, astro.shape), 0, 1),
        ),
        "3/4 flat 0.93 vs 0.91": (partly_flat, np.where(partly_flat == 0.93, 0.91, partly_flat)),
        "flat 0.7 vs 0.6": (np.full((40, 40, 3), 0.7), np.full((40, 40, 3), 0.6)),
        "two flat levels": two_level(64, 64, np.mgrid[:64, :64][0] < 38, (0.99, 0.02), (0.97, 0.04)),
    }
    return cases


def test_ssim_float32_matches_scikit_image_on_hard_cases():
    suite = MetricSuite(["psnr", "ssim"], "cpu", None, None, 0)
    for name, (fake01, real01) in hard_cases().items():
        (fake, fake64), (real, real64) = as_generated(fake01), as_generated(real01)
        (row,) = suite.update(fake, real)
        assert row["ssim"] == pytest.approx(skimage_ssim(fake64, real64), abs=2e-6), name
        assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(real64, fake64, data_range=1), abs=1e-4), name
    # The worst found: two flat levels near 0 and 1, the real image with faint noise on a fifth of its pixels
    # (the flat fake's windows are exact, the real's are not): ~1e-5, within the documented 1e-4.
    rng = np.random.default_rng(3)
    fake01, real01 = two_level(48, 48, np.mgrid[:48, :48][0] < 27, (0.996, 0.009), (0.969, 0.012))
    real01 = np.clip(real01 + rng.normal(0, 1e-3, real01.shape) * (rng.random((48, 48, 1)) < 0.2), 0, 1)
    (fake, fake64), (real, real64) = as_generated(fake01), as_generated(real01)
    assert suite.update(fake, real)[0]["ssim"] == pytest.approx(skimage_ssim(fake64, real64), abs=1e-4)
    # fake == real: exactly 1, whatever the values
    assert suite.update(fake, fake)[0]["ssim"] == 1.0


def test_ssim_strips_cover_every_window_once(monkeypatch):
    # On the CPU SSIM runs over strips of rows; tiny strips (8 output rows, a ragged last one) give the same value.
    rng = np.random.default_rng(3)
    real01 = data.astronaut()[100:161, 150:190] / 255.0  # 61 rows: 55 rows of windows
    (fake, fake64), (real, real64) = (
        as_generated(x) for x in (np.clip(real01 + rng.normal(0, 0.05, real01.shape), 0, 1), real01)
    )
    whole = float(metrics.ssim((fake + 1) / 2, (real + 1) / 2)[0])
    monkeypatch.setattr(metrics, "SSIM_STRIP_VALUES", 1)
    strips = float(metrics.ssim((fake + 1) / 2, (real + 1) / 2)[0])
    assert strips == pytest.approx(whole, abs=1e-7) and whole == pytest.approx(skimage_ssim(fake64, real64), abs=2e-6)


class OpLog(TorchDispatchMode):
    """Records (op, dtype, numel) of every tensor each aten op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, torch.dtype, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.ops.append((str(func), t.dtype, t.numel()))
        return out


def test_psnr_ssim_run_in_float32_without_a_2d_convolution():
    # A float64 depthwise 7x7 convolution made the default metrics cost more than the translation they score
    # (1.5 s for a 1024x512 image on 2 CPU cores). The per-image metrics now run in float32 on separable window
    # means, and only the (N,) results are float64. Timings: docs/metrics.md.
    fake, real = (torch.rand(2, 3, 32, 40, dtype=torch.float64) * 2 - 1 for _ in range(2))  # float64 in, even
    suite = MetricSuite(["psnr", "ssim"], "cpu", None, None, 0)
    with OpLog() as log:
        rows = suite.update(fake, real)
    assert not [op for op, _, _ in log.ops if "conv" in op]
    # float64 only for the (N,) results (psnr and ssim of 2 images stacked: 4 values) and detach's view of the input
    assert not [(op, n) for op, dtype, n in log.ops if dtype == torch.float64 and n > 4 and "detach" not in op]
    assert rows[1]["ssim"] == pytest.approx(
        skimage_ssim(*(((x[1] + 1) / 2).permute(1, 2, 0).numpy() for x in (fake, real))), abs=2e-6
    )


def astronaut_set(n: int = 4, size: int = 32) -> torch.Tensor:
    """n crops of the astronaut photo, (n, 3, size, size) in [-1, 1]."""
    astro = torch.from_numpy(data.astronaut()).permute(2, 0, 1).double() / 127.5 - 1
    return torch.stack([astro[:, 40 * i : 40 * i + size, 30 * i : 30 * i + size] for i in range(n)])


def swd_of(fake: torch.Tensor, real: torch.Tensor, seed: int = 0) -> dict[str, float]:
    suite = MetricSuite(["swd"], "cpu", None, None, seed)
    suite.update(fake, real)
    return suite.compute()


def test_swd_orders_sets_and_repeats():
    real = astronaut_set()
    noisy = (real + 0.02 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    blurred = torch.nn.functional.avg_pool2d(real, 3, stride=1, padding=1, count_include_pad=False)
    shifted = (blurred + 0.2).clamp(-1, 1)
    same, light, bad = swd_of(real, real), swd_of(noisy, real), swd_of(shifted, real)
    assert set(same) == {"n", "swd", "swd_32", "swd_16"}  # 32 px: a band-pass level and the 16 px low-pass
    assert same["swd"] == 0  # identical sets, patches drawn at the same places
    assert 0 < light["swd"] < bad["swd"]
    assert light["swd"] < swd_of(blurred, real)["swd"] < bad["swd"]
    assert swd_of(noisy, real) == light  # same seed, same numbers
    assert swd_of(noisy, real, seed=1)["swd"] != light["swd"]


def test_swd_sizes_and_reset():
    suite = MetricSuite(["psnr", "ssim", "swd"], "cpu", None, None, 0)
    big, small = astronaut_set(2, 64), astronaut_set(2, 20)
    suite.update(big.flip(-1), big)
    suite.update(small.flip(-1), small)  # another size: pooled by pyramid level
    out = suite.compute()
    assert out["n"] == 4 and set(out) == {"n", "psnr", "ssim", "swd", "swd_64", "swd_32", "swd_16"}
    suite.reset()
    suite.update(big.flip(-1), big)
    suite.update(small.flip(-1), small)
    assert suite.compute() == out  # reset starts the patch positions from the seed again


class Unpack(torch.nn.Module):
    """Test feature extractor: the 12 values of a (3, 1, 4) image in [0, 1] are features / 20 + 0.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) * 20 - 10


def feature_images(n: int, mean: float, seed: int, exact: bool = False) -> torch.Tensor:
    """(n, 3, 1, 4) images in [-1, 1] carrying 12-d N(mean, I) features; exact: whitened so that the sample
    mean is exactly `mean` and the sample covariance exactly I."""
    f = torch.randn(n, 12, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if exact:
        f = f - f.mean(0)
        f = f @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(f.T))).T
    return ((f + mean) / 10).reshape(n, 3, 1, 4)


def test_fid_kid_on_known_features():
    # Equal covariances: FID = ||mu1 - mu2||^2 = 12 * 0.5^2, exactly, for the sample statistics.
    a, b = feature_images(300, 0.0, 1, exact=True), feature_images(300, 0.5, 2, exact=True)
    suite = MetricSuite(["fid", "kid"], "cpu", None, None, 0, feature_extractor=Unpack())
    assert suite.update(b, a) == [{}] * 300
    rng_before = torch.get_rng_state()
    diff = suite.compute()
    assert torch.equal(torch.get_rng_state(), rng_before)  # KID's subset draws leave training's RNG alone
    assert diff["fid"] == pytest.approx(3.0, abs=1e-3)
    assert set(diff) == {"n", "fid", "kid", "kid_std"} and diff["n"] == 300
    # Two samples of one distribution: FID is biased upwards (~ d^2 / n), KID is ~ 0 (unbiased).
    suite.reset()
    suite.update(feature_images(1000, 0.0, 3), feature_images(1000, 0.0, 4))
    same = suite.compute()
    assert 0 < same["fid"] < 0.2 and abs(same["kid"]) < 0.01 and diff["kid"] > 0.5
    few = MetricSuite(["kid"], "cpu", None, None, 0, feature_extractor=Unpack())
    few.update(b[:30], a[:30])
    assert few.compute()["kid"] > 0  # subset size min(1000, n)


def test_fid_without_weights_warns_once_and_drops(offline, caplog):
    with caplog.at_level(logging.WARNING, logger="metrics"):
        suite = MetricSuite(["psnr", "fid"], "cpu", None, None, 0)
    assert suite.names == ["psnr"] and offline  # it looked for a download host, once
    (record,) = caplog.records
    assert "--fid_weights PATH" in record.getMessage() and "FID is skipped" in record.getMessage()
    assert set(suite.update(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))[0]) == {"psnr"}
    assert "fid" not in suite.compute()


def test_fid_kid_bad_weights_file(tmp_path, caplog):
    bad = tmp_path / "inception.pth"
    bad.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="metrics"):
        suite = MetricSuite(["fid", "kid", "ssim"], "cpu", str(bad), None, 0)
    assert suite.names == ["ssim"]
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["fid", "kid"]  # one warning per metric
    assert all(str(bad) in r.getMessage() and "--fid_weights" in r.getMessage() for r in caplog.records)


def test_lpips_without_weights_warns_once_and_drops(offline, caplog):
    with caplog.at_level(logging.WARNING, logger="metrics"):
        suite = MetricSuite(["lpips", "ssim"], "cpu", None, None, 0)
    assert suite.names == ["ssim"]
    (record,) = caplog.records
    assert "--lpips_weights PATH" in record.getMessage() and "LPIPS is skipped" in record.getMessage()


def test_lpips_with_local_backbone(tmp_path):
    # A random AlexNet stands in for the ImageNet one: this checks the loading and the plumbing, not the values.
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "alexnet.pth"
    torch.save({f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}, path)
    suite = MetricSuite(["lpips"], "cpu", None, str(path), 0)
    assert suite.names == ["lpips"]
    real = astronaut_set(2, 32)
    rows = suite.update(real.flip(-1), real) + suite.update(real[:, :1], real[:, :1])  # RGB, then grayscale
    assert rows[0]["lpips"] > 0 and type(rows[0]["lpips"]) is float
    assert rows[2]["lpips"] == pytest.approx(0.0, abs=1e-6)


def test_weights_found_in_hub_cache(offline, tmp_path):
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "pt_inception-2015-12-05-6726825d.pth").write_bytes(b"")  # pytorch-fid's name for the weights
    path, why = metrics._find_weights(metrics.INCEPTION_URL, metrics.INCEPTION_FILES)
    assert path == str(cache / "pt_inception-2015-12-05-6726825d.pth") and not offline  # no network probe
    assert metrics._find_weights(metrics.ALEXNET_URL, ("alexnet-owt-7be5be79.pth",))[0] is None
    assert offline == [metrics.ALEXNET_URL]


def test_reachable_gives_up_fast(monkeypatch):
    # A name lookup that hangs (it ignores socket timeouts): the probe waits on an event only the test sets.
    release, calls, joins = threading.Event(), [], []

    def hang(address, timeout=None):
        calls.append(timeout)
        release.wait(60)  # a bound for the test only: should _reachable wait for the probe, it fails, not hangs
        raise OSError("late")

    class Probe(threading.Thread):
        def join(self, timeout=None):
            joins.append((self.daemon, timeout))
            assert timeout is not None, "an unbounded join waits as long as the lookup hangs"
            super().join(timeout)

    monkeypatch.setattr(socket, "create_connection", hang)
    monkeypatch.setattr(metrics, "threading", SimpleNamespace(Thread=Probe))
    try:
        assert not metrics._reachable("https://example.invalid/w.pth", timeout=0.2)
        assert calls == [0.2]  # the connection itself is bounded too
        [(daemon, waited)] = joins  # the lookup ran in a thread, waited for about the timeout, then left behind
        assert daemon and 0.2 <= waited <= 1.0
    finally:
        release.set()


class _Payload:
    """Pickled code: unpickling it creates a file. A weights_only load refuses it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", ["flag", "hub_cache"])
def test_fid_weights_holding_pickled_code_never_run(offline, tmp_path, caplog, where):
    marker = tmp_path / "ran"
    evil = {"conv.weight": torch.zeros(1), "x": _Payload(str(marker))}
    if where == "flag":
        path = tmp_path / "evil.pth"
    else:  # torch-fidelity's own file name in the torch hub cache: found without any flag
        path = tmp_path / "torch_home" / "hub" / "checkpoints" / metrics.INCEPTION_FILES[0]
        path.parent.mkdir(parents=True)
    torch.save(evil, path)
    with caplog.at_level(logging.WARNING, logger="metrics"):
        suite = MetricSuite(["psnr", "fid", "kid"], "cpu", str(path) if where == "flag" else None, None, 0)
    assert not marker.exists(), "the pickled code ran"
    assert suite.names == ["psnr"] and "did not load as torch-fidelity InceptionV3 weights" in caplog.text


def test_torch_fidelity_opens_only_a_vetted_copy(tmp_path, monkeypatch):
    # torch-fidelity loads with weights_only=False: it must get a file re-saved from tensors, never the user's.
    import torchmetrics.image.fid

    opened = []

    class FakeInception(torch.nn.Module):
        def __init__(self, name, features_list, feature_extractor_weights_path):
            super().__init__()
            opened.append(feature_extractor_weights_path)
            self.state = torch.load(feature_extractor_weights_path, weights_only=False)

    monkeypatch.setattr(torchmetrics.image.fid, "NoTrainInceptionV3", FakeInception)
    weights = {"a.weight": torch.arange(6.0).view(2, 3), "b.bias": torch.ones(2)}
    torch.save(weights, tmp_path / "inception.pth")
    net = metrics.InceptionFeatures(str(tmp_path / "inception.pth"))
    assert opened and opened[0] != str(tmp_path / "inception.pth") and not os.path.exists(opened[0])
    assert net.net.state.keys() == weights.keys() and all(torch.equal(net.net.state[k], v) for k, v in weights.items())


def test_ssim_speed_script_compares_against_a_plain_box_filter(capsys):
    """scripts/ssim_speed.py (the figures in docs/metrics.md): its plain separable box filter is SSIM too (the
    comparison is of like with like), and it prints a line per size."""
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import ssim_speed

    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 40, 56, generator=g), torch.rand(2, 3, 40, 56, generator=g)
    assert torch.allclose(ssim_speed.plain_ssim(x, y).double(), metrics.ssim(x, y), atol=1e-4)
    assert ssim_speed.main(["--sizes", "32x48", "16x16", "--repeats", "1", "--min_seconds", "0", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["32x48", "16x16"] and all("ratio" in ln for ln in lines)
