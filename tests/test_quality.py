"""The ground-truth quality benchmark and the benchmark commands (figures printed, never timed)."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganlib.quality import SwapBenchmark, center_crop, mean_face, psnr, quality_line, ssim

ROOT = Path(__file__).resolve().parents[1]


def test_psnr_by_hand():
    a = torch.full((1, 3, 4, 4), -1.0)  # 0 on the [0,1] scale
    b = torch.full((1, 3, 4, 4), 0.0)  # 0.5
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.25))
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    c = b.clone()
    c[..., 2:, :] = -1  # errors only outside the mask
    assert psnr(c, b, mask) == pytest.approx(100.0)  # clamped: no error inside the mask


def test_ssim_identity_and_difference():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-5)
    assert ssim(x, torch.rand(2, 3, 32, 32) * 2 - 1) < 0.2


def test_center_crop_geometry():
    img = torch.zeros(1, 1, 256, 256)
    img[..., 128 - 87:128 + 88, 128 - 87:128 + 88] = 255
    out = center_crop(img, 64)
    assert out.shape == (1, 1, 64, 64) and out[..., 1:-1, 1:-1].min() > 250  # the crop is the central region
    img2 = torch.zeros(1, 1, 256, 256)
    img2[..., :30, :] = 255  # outside the crop: never seen
    assert center_crop(img2, 64).max() == 0


def test_benchmark_pairs_share_nuisance_and_baselines_are_consistent():
    bench = SwapBenchmark(32, render_size=64, n=6)
    assert bench.a.shape == bench.b.shape == (6, 3, 32, 32)
    assert (bench.a - bench.b).abs().mean() > 0.1  # the people differ
    assert 0.3 < float(bench.face.mean()) <= 1.0  # the face region is most of the crop

    class Oracle(torch.nn.Module):
        """Returns the ground truth with alpha 1: the perfect swap."""

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, to):
            idx = [int((x[i:i + 1] - bench.a).flatten(1).abs().sum(1).argmin()) for i in range(len(x))]
            src = bench.b if to == "b" else bench.a
            return [torch.cat([torch.ones(len(x), 1, 32, 32), src[idx]], 1)]

    r = bench.evaluate(Oracle(), device=torch.device("cpu"))
    assert r["swap_psnr"] == pytest.approx(100.0)
    assert r["margin_db"] > 50
    mf = mean_face((bench.b * 127.5 + 127.5).round().to(torch.uint8), 32)
    assert mf.shape == (1, 3, 32, 32)
    assert quality_line(r).startswith("quality: swap_psnr=100.00 swap_ssim=")


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "ganlib", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_bench_speed_prints_the_table():
    p = _cli("bench", "speed", "--presets", "smoke", "--resolutions", "32", "--iters", "1", "--threads", "1")
    assert p.returncode == 0, p.stderr
    assert "ms/iter" in p.stdout and "GFLOP/it" in p.stdout and "aug img/s" in p.stdout
    row = [l for l in p.stdout.splitlines() if l.startswith("smoke")][0].split()
    assert row[3] == "fp32" and float(row[4]) > 0 and float(row[6]) > 0  # precision, ms/iter, counted GFLOP/it


def test_bench_quality_prints_margins(tmp_path):
    p = _cli("bench", "quality", "--preset", "smoke", "--minutes", "0.05,0.1", "--n", "4", "--threads", "1",
             "--run-dir", str(tmp_path), "--json", str(tmp_path / "q.json"))
    assert p.returncode == 0, p.stderr
    assert "margin" in p.stdout and "face_marg" in p.stdout
    assert (tmp_path / "q.json").exists()
