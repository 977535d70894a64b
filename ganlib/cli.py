"""``python -m ganlib``: demo, train, bench (quality, speed, crash), extract, convert."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .config import ConfigError, preset


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _threads(n: int | None):
    import torch

    if n:
        torch.set_num_threads(n)


# ---- demo ------------------------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    """CPU-sized preset on SyntheticFaces; each call resumes the run folder and continues to --until."""
    from .quality import evaluate_trainer, quality_line
    from .trainer import Trainer

    _threads(args.threads)
    cfg = preset(args.preset)
    overrides = _parse_sets(args.set)
    trainer = Trainer.resume_or_start(args.run_dir, cfg, overrides=overrides, device=args.device)
    until = args.until if args.until is not None else trainer.cfg.train.TOTAL_ITERS
    summary = trainer.train(until=until, progress=not args.no_progress)
    r = evaluate_trainer(trainer)
    print(f"demo: iteration {trainer.step}, {summary['sec_per_iter']:.3f} s/iteration this chunk, "
          f"grids and checkpoints in {trainer.run_dir}")
    print(quality_line(r))
    return 0


# ---- train -----------------------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from .trainer import Trainer

    _threads(args.threads)
    cfg = preset(args.preset)
    overrides = _parse_sets(args.set)
    overrides.update({"data.dir_a": str(args.a), "data.dir_b": str(args.b)})
    if args.mask_a:
        overrides["data.mask_dir_a"] = str(args.mask_a)
    if args.mask_b:
        overrides["data.mask_dir_b"] = str(args.mask_b)
    trainer = Trainer.resume_or_start(args.run_dir, cfg, overrides=overrides, device=args.device,
                                      publish_to=args.publish_to)
    s = trainer.train(until=args.until, seconds=args.minutes * 60 if args.minutes else None,
                      progress=not args.no_progress)
    print(f"train: {s['status']} at iteration {s['step']} ({s['iterations']} iterations, "
          f"{s['sec_per_iter']:.3f} s/iteration); run folder {trainer.run_dir}")
    return 0


# ---- bench -----------------------------------------------------------------------------------------------------
def cmd_bench_quality(args) -> int:
    """Train the demo preset and report the ground-truth margin at the given minutes."""
    import tempfile

    from .quality import SwapBenchmark, evaluate_trainer
    from .trainer import Trainer

    _threads(args.threads)
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="ganlib-bench-quality-")
    cfg = preset(args.preset)
    cfg.override(_parse_sets(args.set))
    cfg.train.display_iters = 10 ** 9  # no displays inside the benchmark: scoring is explicit
    cfg.train.TOTAL_ITERS = 10 ** 9
    cfg.train.save_minutes = 0
    trainer = Trainer(cfg, run_dir, device=args.device, log=lambda *_: None)
    bench = SwapBenchmark(cfg.model.resolution, cfg.data.synthetic_size, n=args.n)
    marks = sorted(float(m) for m in args.minutes.split(","))
    rows, t_train = [], 0.0
    print(f"bench quality: preset {args.preset}, {args.n} held-out nuisances, run folder {run_dir}")
    print("%7s %6s %9s %9s %9s %9s %9s %10s %9s" % ("minutes", "iter", "swap_psnr", "input_bl", "meanB_bl",
                                                    "margin", "face_marg", "swap_ssim", "recon"))
    for m in marks:
        t0 = time.monotonic()
        trainer.train(until=10 ** 9, seconds=m * 60 - t_train, progress=False)
        t_train += time.monotonic() - t0
        r = evaluate_trainer(trainer, bench)
        rows.append({"minutes": m, "iter": trainer.step, **r})
        print("%7.1f %6d %9.2f %9.2f %9.2f %+9.2f %+9.2f %10.3f %9.2f" % (
            m, trainer.step, r["swap_psnr"], r["input_baseline_psnr"], r["mean_b_baseline_psnr"], r["margin_db"],
            r["margin_face_db"], r["swap_ssim"], r["recon_psnr"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def cmd_bench_speed(args) -> int:
    from .bench import speed_table

    _threads(args.threads)
    speed_table(presets=args.presets.split(","), resolutions=[int(r) for r in args.resolutions.split(",")],
                iters=args.iters, device=args.device)
    return 0


def cmd_bench_crash(args) -> int:
    from .bench import crash_harness

    return crash_harness(kills=args.kills, run_dir=args.run_dir, seed=args.seed, target=args.until,
                         publish_faults=args.publish_faults)


# ---- parser ----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ganlib", description="faceswap-GAN v2.2 in PyTorch")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, preset_default):
        sp.add_argument("--preset", default=preset_default, help="config preset (v22_train, v22_colab, cpu_demo, smoke)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set use_PL=true --set loss.m_mask=0.5")
        sp.add_argument("--device", default=None, help="cuda, cpu, ... (default: best available)")
        sp.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser("demo", help="train on built-in SyntheticFaces (CPU-sized), resumable")
    d.add_argument("--until", type=int, default=None, help="train until this iteration (default: the preset's)")
    d.add_argument("--run-dir", default="runs/demo", help="run folder (default runs/demo)")
    common(d, "cpu_demo")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train on two folders of aligned faces")
    t.add_argument("--a", required=True, type=Path, help="folder of aligned faces of person A")
    t.add_argument("--b", required=True, type=Path, help="folder of aligned faces of person B")
    t.add_argument("--mask-a", type=Path, default=None, help="eye masks for A (same file names)")
    t.add_argument("--mask-b", type=Path, default=None, help="eye masks for B")
    t.add_argument("--run-dir", required=True, help="run folder (resumed when it has checkpoints)")
    t.add_argument("--until", type=int, required=True, help="chunk target iteration (TOTAL_ITERS)")
    t.add_argument("--minutes", type=float, default=None, help="stop the chunk after this many minutes")
    t.add_argument("--publish-to", default=None, help="also publish checkpoints safely to this folder (Drive)")
    common(t, "v22_train")
    t.set_defaults(func=cmd_train)

    b = sub.add_parser("bench", help="benchmarks: quality, speed, crash")
    bsub = b.add_subparsers(dest="bench", required=True)
    q = bsub.add_parser("quality", help="ground-truth swap quality on SyntheticFaces")
    q.add_argument("--minutes", default="3,6,10", help="comma-separated scoring times")
    q.add_argument("--n", type=int, default=64, help="held-out nuisances")
    q.add_argument("--run-dir", default=None)
    q.add_argument("--json", default=None, help="also write the rows to this JSON file")
    common(q, "cpu_demo")
    q.set_defaults(func=cmd_bench_quality)
    s = bsub.add_parser("speed", help="ms per iteration, FLOPs and augmentation throughput")
    s.add_argument("--presets", default="cpu_demo,v22_colab")
    s.add_argument("--resolutions", default="64,128")
    s.add_argument("--iters", type=int, default=5)
    s.add_argument("--device", default=None)
    s.add_argument("--threads", type=int, default=None)
    s.set_defaults(func=cmd_bench_speed)
    c = bsub.add_parser("crash", help="SIGKILL training at random moments and check every resume")
    c.add_argument("--kills", type=int, default=20)
    c.add_argument("--run-dir", default=None)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--until", type=int, default=None, help="iteration target of the crash run")
    c.add_argument("--publish-faults", action="store_true",
                   help="also publish to a fault-injecting destination (the Google Drive path)")
    c.set_defaults(func=cmd_bench_crash)

    for mod, fn in (("faces", "add_extract_parser"), ("convert", "add_convert_parser")):
        try:
            module = __import__(f"ganlib.{mod}", fromlist=[fn])
            getattr(module, fn)(sub)
        except (ImportError, AttributeError) as e:  # keep the other commands usable
            sp = sub.add_parser(mod if mod == "convert" else "extract", help=f"(unavailable: {e})")
            sp.set_defaults(func=lambda a, e=e: _unavailable(e))
    return p


def _unavailable(e) -> int:
    print(f"error: this command is unavailable: {e}", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError
    from .data import DataError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
