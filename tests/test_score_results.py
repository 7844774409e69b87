"""scripts/score_results.py: L1, PSNR and SSIM of a result folder, cross-checked by hand."""

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import score_results  # noqa: E402


def test_scores(tmp_path):
    img = tmp_path / "images"
    img.mkdir()
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(real).save(img / "a_real_B.png")
    Image.fromarray(real).save(img / "a_fake_B.png")
    Image.fromarray(np.zeros_like(real)).save(img / "b_real_B.png")
    Image.fromarray(np.full_like(real, 51)).save(img / "b_fake_B.png")  # off by 0.2 everywhere
    out = score_results.score(str(tmp_path))
    assert out["n"] == 2
    a, b = out["per_image"]["a"], out["per_image"]["b"]
    assert a["L1"] == 0 and a["SSIM"] == pytest.approx(1.0)
    assert b["L1"] == pytest.approx(0.2) and b["PSNR"] == pytest.approx(-10 * np.log10(0.04))
    assert score_results.main([str(tmp_path), "--json", str(tmp_path / "s.json")]) == 0
    assert json.load(open(tmp_path / "s.json"))["mean"]["L1"] == pytest.approx(0.1)
