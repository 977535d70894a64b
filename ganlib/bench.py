"""Benchmarks that print figures (never timed assertions): training speed, FLOPs, augmentation
throughput, and the crash harness."""
from __future__ import annotations

import tempfile
import time

import torch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device, dtype=torch.float32, n: int = 2048, reps: int = 5) -> float:
    """Measured matmul throughput in FLOP/s (the reference for the model's FLOP utilisation)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def _synthetic_data(cfg, n):
    """Random uint8 faces are enough for speed (no rendering cost in the timing)."""
    g = torch.Generator().manual_seed(0)
    S = cfg.data.work_size
    mk = lambda c: torch.randint(0, 256, (n, c, S, S), dtype=torch.uint8, generator=g)
    return {d: {"images": mk(3), "eye_masks": mk(1), "face_masks": mk(1)} for d in ("a", "b")}


def measure(cfg, iters: int = 5, device=None, warmup: int = 2) -> dict:
    """Seconds per iteration, FLOPs per iteration and augmentation throughput for one config."""
    from torch.utils.flop_counter import FlopCounterMode

    from .trainer import Trainer

    run_dir = tempfile.mkdtemp(prefix="ganlib-speed-")
    n = max(4 * cfg.train.batch_size, 16)
    tr = Trainer(cfg, run_dir, device=device, data=_synthetic_data(cfg, n), log=lambda *_: None)
    dev = tr.device
    for _ in range(warmup):
        tr.train_iteration()
    _sync(dev)
    with FlopCounterMode(display=False) as fc:
        tr.train_iteration()
    flops = fc.get_total_flops()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(iters):
        tr.train_iteration()
    _sync(dev)
    sec = (time.perf_counter() - t0) / iters
    # Augmentation alone: images/s it can produce vs. what an iteration consumes (4 batches).
    f = tr.faces["a"]
    idx = torch.arange(cfg.train.batch_size, device=dev)
    reps = 10
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(reps):
        tr.aug(f["images"][idx], f["masks"][idx], tr.aug_gen, pool=tr.pool)
    _sync(dev)
    aug_ips = reps * cfg.train.batch_size / (time.perf_counter() - t0)
    need_ips = 4 * cfg.train.batch_size / sec
    peak = matmul_peak(dev, tr.amp_dtype or torch.float32)
    return {"sec_per_iter": sec, "iter_per_sec": 1 / sec, "gflop_per_iter": flops / 1e9,
            "achieved_gflops": flops / sec / 1e9, "peak_gflops": peak / 1e9, "peak_share": flops / sec / peak,
            "aug_images_per_sec": aug_ips, "step_images_per_sec": need_ips, "device": str(dev),
            "precision": {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[tr.amp_dtype]}


def speed_table(presets=("cpu_demo", "v22_colab"), resolutions=(64, 128), iters: int = 5, device=None) -> list:
    """Print ms/iteration, it/s, GFLOP/iteration, share of the measured matmul peak and the
    augmentation's images/s next to what the training step consumes, per preset and resolution."""
    from .config import preset

    rows = []
    print("%-10s %4s %6s %5s %9s %7s %10s %9s %7s %11s %11s" % (
        "preset", "R", "batch", "prec", "ms/iter", "it/s", "GFLOP/it", "GFLOP/s", "peak%", "aug img/s", "step img/s"))
    for name in presets:
        for R in resolutions:
            cfg = preset(name)
            cfg.model.resolution = R
            cfg.data.work_size = max(cfg.data.work_size, R)
            cfg.validate()
            r = measure(cfg, iters=iters, device=device)
            rows.append({"preset": name, "resolution": R, "batch": cfg.train.batch_size, **r})
            print("%-10s %4d %6d %5s %9.1f %7.2f %10.1f %9.1f %6.1f%% %11.0f %11.0f" % (
                name, R, cfg.train.batch_size, r["precision"], r["sec_per_iter"] * 1e3, r["iter_per_sec"], r["gflop_per_iter"],
                r["achieved_gflops"], 100 * r["peak_share"], r["aug_images_per_sec"], r["step_images_per_sec"]),
                flush=True)
    if rows:
        peaks = ", ".join(sorted({f"{r['precision']} {r['peak_gflops']:.0f}" for r in rows}))
        print(f"device {rows[0]['device']}; matmul peak (2048^2, measured in this run, GFLOP/s): {peaks}; "
              "peak% = counted FLOPs per second / that peak; aug img/s = augmentation alone, "
              "step img/s = images one training iteration consumes per second (4 batches)")
    return rows


def crash_harness(kills: int = 20, run_dir=None, seed: int = 0, target: int | None = None,
                  publish_faults: bool = False) -> int:
    """SIGKILL a training subprocess at random moments (saves included) and check every resume."""
    from .crash import run_crash_harness

    return run_crash_harness(kills=kills, run_dir=run_dir, seed=seed, target=target, publish_faults=publish_faults)
