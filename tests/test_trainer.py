"""Trainer: exact resume across processes, schedule, printed block, grid layout, demo chunks."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ganlib.config import Config, ConfigError, preset
from ganlib.schedule import events_due, phase_at, phases
from ganlib.trainer import Trainer
from ganlib.viz import format_block, triplet_grid

ROOT = Path(__file__).resolve().parents[1]
QUIET = lambda *a: None


def tiny_cfg(**kw):
    c = preset("smoke")
    c.train.display_iters = 3
    c.data.synthetic_n = 8
    c.override(kw)
    return c


def tiny_data(cfg, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = cfg.data.work_size
    mk = lambda c: torch.randint(0, 256, (n, c, S, S), dtype=torch.uint8, generator=g)
    return {d: {"images": mk(3), "eye_masks": mk(1), "face_masks": mk(1)} for d in ("a", "b")}


def _compare(x, y, path=""):
    """Names of every differing leaf of two checkpoint states (ignoring save times)."""
    diffs = []
    if isinstance(x, torch.Tensor):
        return [] if torch.equal(x, y) else [path]
    if isinstance(x, dict):
        assert set(x) == set(y), (path, set(x) ^ set(y))
        for k in x:
            if k in ("saved_at", "time"):
                continue
            diffs += _compare(x[k], y[k], f"{path}/{k}")
        return diffs
    if isinstance(x, (list, tuple)):
        assert len(x) == len(y), path
        for i, (u, v) in enumerate(zip(x, y)):
            diffs += _compare(u, v, f"{path}[{i}]")
        return diffs
    return [] if x == y else [f"{path}: {x!r} != {y!r}"]


RESUME_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from ganlib.config import preset
    from ganlib.trainer import Trainer
    c = preset("smoke"); c.train.display_iters = 3; c.data.synthetic_n = 8
    t = Trainer.resume_or_start(sys.argv[1], c, log=lambda *a: None)
    t.train(until=int(sys.argv[2]), progress=False)
""")


def _run(run_dir, until):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(run_dir), str(until)], check=True, env=env, cwd=ROOT)


def test_exact_resume_in_a_new_process_is_bit_identical(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    _run(straight, 6)
    _run(split, 3)  # N/2, save, process ends
    _run(split, 6)  # a NEW process resumes and trains N/2 more
    a = torch.load(straight / "checkpoints" / "ckpt-000000006.pt", weights_only=True)
    b = torch.load(split / "checkpoints" / "ckpt-000000006.pt", weights_only=True)
    assert _compare(a["models"], b["models"]) == []
    assert _compare(a["optim"], b["optim"]) == []
    assert _compare(a, b) == []  # rng, samplers, schedule, history too


def test_state_is_complete_and_loads_weights_only(tmp_path):
    cfg = tiny_cfg()
    t = Trainer(cfg, tmp_path, data=tiny_data(cfg), log=QUIET)
    t.train(until=3, progress=False)
    ck = sorted((tmp_path / "checkpoints").glob("ckpt-*.pt"))[-1]
    s = torch.load(ck, weights_only=True)
    for key in ("config", "step", "models", "optim", "scaler", "rng", "data", "schedule", "history", "preview_seed",
                "format", "format_version"):
        assert key in s
    assert set(s["models"]) == {"encoder", "decoder_a", "decoder_b", "disc_a", "disc_b"}
    assert set(s["optim"]) == {"d_a", "d_b", "g_a", "g_b"}  # the original's four Adams
    assert s["step"] == 3 and s["history"][-1]["step"] == 3
    assert {"torch", "numpy", "python", "lambda", "augment"} <= set(s["rng"])


def test_four_adams_v22_hyperparameters(tmp_path):
    cfg = tiny_cfg(lr_factor=0.3)
    t = Trainer(cfg, tmp_path, data=tiny_data(cfg), log=QUIET)
    g = t.opt["g_a"].param_groups[0]
    d = t.opt["d_b"].param_groups[0]
    assert g["lr"] == pytest.approx(1e-4 * 0.3) and d["lr"] == pytest.approx(2e-4 * 0.3)
    assert g["betas"] == (0.5, 0.999) and g["eps"] == 1e-7
    enc = {id(p) for p in t.gen.encoder.parameters()}
    for name in ("g_a", "g_b"):  # both G optimisers update the shared encoder
        ids = {id(p) for p in t.opt[name].param_groups[0]["params"]}
        assert enc <= ids


# ---- schedule ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,total,expected", [
    ("v22_train", 40000, [0, 7850, 11850, 15850, 19850, 26516, 31850, 35850]),
    ("v22_colab", 34000, [0, 6650, 10050, 13450, 16850, 22516, 27050, 30450]),
])
def test_schedule_triggers(kind, total, expected):
    assert [p.start for p in phases(kind, total)] == expected


def test_schedule_flags_at_steps():
    p = phase_at(7849, "v22_train", 40000)
    assert (p.use_PL, p.use_mask_hinge_loss, p.m_mask, p.lr_factor) == (False, False, 0.0, 1.0)
    p = phase_at(7850, "v22_train", 40000)
    assert (p.use_PL, p.use_mask_hinge_loss) == (True, False)
    p = phase_at(12000, "v22_train", 40000)
    assert (p.use_mask_hinge_loss, p.m_mask) == (True, 0.5)
    p = phase_at(30000, "v22_train", 40000)
    assert (p.use_mask_hinge_loss, p.lr_factor) == (False, 0.3)
    p = phase_at(39999, "v22_train", 40000)
    assert (p.lr_factor, p.use_PL) == (0.1, True)
    p = phase_at(16850, "v22_colab", 34000)
    assert (p.m_mask, p.lr_factor) == (0.4, 0.3)  # Colab differs from the train notebook here
    p = phase_at(22516, "v22_colab", 34000)
    assert (p.m_mask, p.lr_factor, p.event) == (0.5, 1.0, "swap_decoders")
    assert events_due(31849, "v22_train", 40000, []) == []
    assert events_due(31850, "v22_train", 40000, []) == ["swap_decoders@31850"]
    assert events_due(35000, "v22_train", 40000, ["swap_decoders@31850"]) == []


def test_resumed_run_lands_in_the_right_phase_and_swaps_decoders_once(tmp_path):
    cfg = tiny_cfg(schedule="v22_train", schedule_total=40, display_iters=2)
    # T=40, offset 1: phases start at 0, 7, 11, 15, 19, 25, 31 (swap), 35
    t = Trainer(cfg, tmp_path, data=tiny_data(cfg), log=QUIET)
    t.cfg.train.perceptual = "none"
    t.cfg.loss.use_PL = False
    t.flags_at = lambda step, f=t.flags_at: {**f(step), "use_PL": False}  # no backbone on a CPU test
    t.step = 30
    t.save()
    r = Trainer.resume_or_start(tmp_path, cfg, data=tiny_data(cfg), log=QUIET)
    r.flags_at = lambda step, f=r.flags_at: {**f(step), "use_PL": False}
    assert r.step == 30 and r.flags_at(30)["m_mask"] == 0.0 and r.flags_at(30)["lr_factor"] == 0.3
    dec_a = {k: v.clone() for k, v in r.gen.decoder_a.state_dict().items()}
    dec_b = {k: v.clone() for k, v in r.gen.decoder_b.state_dict().items()}
    r.step = 31
    r._run_events()
    assert r.events_done == ["swap_decoders@31"]
    assert all(torch.equal(v, dec_b[k]) for k, v in r.gen.decoder_a.state_dict().items())
    assert all(torch.equal(v, dec_a[k]) for k, v in r.gen.decoder_b.state_dict().items())
    r._run_events()  # a one-time event
    assert r.events_done == ["swap_decoders@31"]
    assert r.flags_at(31)["m_mask"] == 0.1 and r.flags_at(31)["use_mask_hinge_loss"] is True


def test_flags_changed_between_chunks_take_effect(tmp_path):
    cfg = tiny_cfg()
    lines = []
    t = Trainer.resume_or_start(tmp_path, cfg, data=tiny_data(cfg), log=lines.append)
    t.train(until=3, progress=False)
    lines.clear()
    t2 = Trainer.resume_or_start(tmp_path, tiny_cfg(lr_factor=0.1, use_mask_hinge_loss=True, m_mask=0.5),
                                 data=tiny_data(cfg), log=lines.append)
    t2.train(until=6, progress=False)
    text = "\n".join(lines)
    assert "Building new loss functions..." in text
    assert "lr_factor = 0.1" in text and "m_mask = 0.5" in text
    assert t2.opt["g_a"].param_groups[0]["lr"] == pytest.approx(1e-5)


def test_architecture_comes_from_the_checkpoint(tmp_path):
    cfg = tiny_cfg()
    Trainer(cfg, tmp_path, data=tiny_data(cfg), log=QUIET).save()
    other = tiny_cfg()
    other.model.norm = "none"
    msgs = []
    t = Trainer.resume_or_start(tmp_path, other, data=tiny_data(cfg), log=msgs.append)
    assert t.cfg.model.norm == "instancenorm"
    assert any("comes from the checkpoint" in m for m in msgs)
    with pytest.raises(ConfigError, match="architecture"):
        Trainer.resume_or_start(tmp_path, cfg, overrides={"model.resolution": 64}, data=tiny_data(cfg), log=QUIET)


# ---- printed block and grids ----------------------------------------------------------------------------
GOLDEN = """gan_training = mixup_LSGAN
use_PL = True
PL_before_activ = True
use_mask_hinge_loss = False
m_mask = 0.0
lr_factor = 0.1
use_cyclic_loss = False
----------
[iter 1500] Loss_DA: 0.514674 Loss_DB: 0.573655 Loss_GA: 2.045384 Loss_GB: 1.867255 time: 658.915660
----------
Generator loss details:
[Adversarial loss]
GA: 0.0715 GB: 0.0715
[Reconstruction loss]
GA: 0.8642 GB: 0.7406
[Edge loss]
GA: 0.5377 GB: 0.4928
[Perceptual loss]
GA: 0.2616 GB: 0.2521
----------"""


def test_printed_block_matches_the_original_text():
    flags = {"gan_training": "mixup_LSGAN", "use_PL": True, "PL_before_activ": True, "use_mask_hinge_loss": False,
             "m_mask": 0.0, "lr_factor": 0.1, "use_cyclic_loss": False}
    means = {"DA": 0.514674, "DB": 0.573655, "GA": 2.045384, "GB": 1.867255, "adv_A": 0.0715, "adv_B": 0.0715,
             "recon_A": 0.8642, "recon_B": 0.7406, "edge_A": 0.5377, "edge_B": 0.4928, "pl_A": 0.2616,
             "pl_B": 0.2521}
    assert format_block(1500, flags, means, 658.91566) == GOLDEN
    no_pl = format_block(1500, {**flags, "use_PL": False}, means, 658.91566)
    assert "[Perceptual loss]" not in no_pl and no_pl.endswith("GA: 0.5377 GB: 0.4928\n----------")


def test_grid_tile_positions():
    """A known input lands in a known tile: (batch/2) rows x 12 tiles, groups A0, A1, B0, B1."""
    n, R = 4, 8
    # tile value encodes (domain, sample, tile-in-triplet) as a grey level
    def tiles(dom):
        return [torch.full((n, 3, R, R), 0.0).index_copy_(0, torch.arange(n), torch.stack(
            [torch.full((3, R, R), (dom * 40 + i * 10 + k) / 127.5 - 1) for i in range(n)])) for k in range(3)]
    img = triplet_grid(tiles(0), tiles(1))
    assert img.size == (12 * R, (n // 2) * R)
    px = lambda row, col: img.getpixel((col * R + R // 2, row * R + R // 2))[0]
    half = n // 2
    for row in range(half):
        for group, (dom, sample) in enumerate([(0, row), (0, half + row), (1, row), (1, half + row)]):
            for k in range(3):
                assert px(row, group * 3 + k) == dom * 40 + sample * 10 + k


def test_training_writes_grids_and_block(tmp_path):
    cfg = tiny_cfg()
    lines, reports = [], []
    t = Trainer(cfg, tmp_path, data=tiny_data(cfg), log=lines.append)
    t.train(until=3, callback=lambda tr, rep: reports.append(rep), progress=False)
    for name in ("train_preprocessed_3.png", "train_masked_3.png", "train_reconstruction_3.png"):
        assert (tmp_path / name).exists()
    assert reports[0].step == 3 and set(reports[0].grids) == {"preprocessed", "masked", "reconstruction"}
    w, h = reports[0].grids["preprocessed"].size
    assert (w, h) == (12 * 32, (cfg.train.batch_size // 2) * 32)
    text = "\n".join(lines)
    assert "[iter 3] Loss_DA:" in text and "Generator loss details:" in text
    assert (tmp_path / "stats.jsonl").read_text().count("\n") == 1


def test_time_budget_and_steps(tmp_path):
    cfg = tiny_cfg()
    t = Trainer(cfg, tmp_path, data=tiny_data(cfg), log=QUIET)
    s = t.train(steps=2, progress=False)
    assert s["step"] == 2
    s = t.train(until=100, seconds=0.0, progress=False)
    assert s["status"] == "time budget used" and s["step"] == 2


def test_precision_choice():
    from ganlib.trainer import choose_precision

    assert choose_precision("auto", torch.device("cpu")) == (None, False)
    assert choose_precision("bf16", torch.device("cpu")) == (torch.bfloat16, False)
    assert choose_precision("fp32", torch.device("cpu")) == (None, False)


def test_too_few_images_is_a_clear_error(tmp_path):
    cfg = tiny_cfg()
    with pytest.raises(ConfigError, match="fewer than the batch size"):
        Trainer(cfg, tmp_path, data=tiny_data(cfg, n=2), log=QUIET)


# ---- command line --------------------------------------------------------------------------------------------
def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "ganlib", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def test_demo_twice_resumes(tmp_path):
    run = tmp_path / "demo"
    first = _cli("demo", "--preset", "smoke", "--until", "4", "--run-dir", str(run), "--threads", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "[iter 4]" in first.stdout and "quality: swap_psnr=" in first.stdout
    second = _cli("demo", "--preset", "smoke", "--until", "8", "--run-dir", str(run), "--threads", "1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "Resumed from iteration 4" in second.stdout
    iters = [int(l.split("]")[0][6:]) for l in second.stdout.splitlines() if l.startswith("[iter ")]
    assert iters[0] == 6 and iters[-1] == 8  # follows the first call's last iteration (display every 2)
    assert (run / "train_preprocessed_8.png").exists()
