"""The GPU trainer: v2.2's iteration, loss schedule, printed block and grids, in resumable chunks.

One iteration (reference §4.2) = a D step for A and for B on one fresh batch pair, then a G step for
A and for B on another fresh batch pair. ``Trainer.train(until=N)`` runs one chunk; every
``display_iters`` it prints the original's block, writes the three grids and saves the complete
training state. ``Trainer.resume_or_start(run_dir)`` continues from the newest valid checkpoint.

Nothing in the inner loop syncs with the device: losses are summed on the device and read at
display time (or every ``NAN_CHECK_EVERY`` iterations to catch a non-finite loss early).
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .augment import Augmenter
from .checkpoint import CheckpointError, Publisher, SaveClock, load_latest, save_checkpoint
from .config import ARCHITECTURE_KEYS, Config, ConfigError
from .losses import discriminator_loss, generator_forward, generator_loss, sample_lambda
from .models import Generator, Discriminator, composite, split_output
from .schedule import events_due, phase_at
from .viz import GRID_FILES, GRID_TITLES, Report, format_block, format_flags, preview_grids

NAN_CHECK_EVERY = 50  # iterations between device syncs that look for a non-finite loss


class TrainingDiverged(RuntimeError):
    """Losses stayed non-finite after ``max_nan_retries`` roll-backs."""


# ---- device and precision ----------------------------------------------------------------------------
def pick_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def choose_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, use a GradScaler).

    'auto': bf16 on GPUs of compute capability >= 8 (L4, A100, H100: native bf16), fp16 with a
    GradScaler below that (T4: no fast bf16, and recent torch can report emulated bf16 there), fp32
    on CPU and other devices.
    """
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if precision == "fp16":
        return torch.float16, device.type == "cuda"
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return (torch.bfloat16, False) if major >= 8 else (torch.float16, True)
    return None, False


# ---- data ----------------------------------------------------------------------------------------------
def build_data(cfg: Config, run_dir: Path | None = None, log: Callable = print) -> dict:
    """The cached uint8 faces of both domains: {"a": {images, eye_masks, face_masks|None}, "b": ...}.

    Empty ``data.dir_a`` means SyntheticFaces (A and B get different nuisance samples); otherwise the
    face folders are audited and loaded (bad files are listed in ``<run_dir>/data_audit.*``).
    """
    d = cfg.data
    if not d.dir_a and not d.dir_b:
        from .synthetic import SyntheticFaces

        synth = SyntheticFaces(size=d.synthetic_size)
        t0 = time.monotonic()
        out = {}
        for dom, ident in (("a", 0), ("b", 1)):
            ds = synth.dataset(ident, d.synthetic_n, seed=d.synthetic_seed * 2 + ident, size=d.synthetic_size)
            out[dom] = {"images": ds["images"], "eye_masks": ds["eye_masks"], "face_masks": ds["face_masks"]}
        log(f"SyntheticFaces: {d.synthetic_n} images per identity at {d.synthetic_size} px "
            f"rendered in {time.monotonic() - t0:.1f} s")
        return out
    if not d.dir_a or not d.dir_b:
        raise ConfigError("set both data.dir_a and data.dir_b (folders of aligned faces of person A and B), "
                          "or neither to train on SyntheticFaces")
    from .data import load_face_folder, write_audit_report

    sets = {}
    for dom, folder, masks in (("a", d.dir_a, d.mask_dir_a), ("b", d.dir_b, d.mask_dir_b)):
        fs = load_face_folder(folder, mask_dir=(masks or None) if d.use_bm_eyes else None, size=d.work_size,
                              min_size=cfg.model.resolution // 2, log=log)
        sets[dom] = fs
    if run_dir is not None:
        write_audit_report(Path(run_dir) / "data_audit.json", [sets["a"], sets["b"]])
    for dom in ("a", "b"):
        sets[dom].require_min(cfg.train.batch_size)
    return {dom: {"images": fs.images, "eye_masks": fs.eye_masks, "face_masks": None} for dom, fs in sets.items()}


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _py_state(random.getstate()),
    }


def _py_state(state):
    return [state[0], list(state[1]), state[2]]


def _py_unstate(state):
    return (state[0], tuple(state[1]), state[2])


def _set_rng_state(s: dict):
    torch.set_rng_state(s["torch"])
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(_py_unstate(s["python"]))


# ---- trainer --------------------------------------------------------------------------------------------
class Trainer:
    """Trains the two-identity faceswap GAN in chunks and keeps the whole state in checkpoints.

    Args:
        cfg: the configuration (validated here).
        run_dir: the run folder: checkpoints, grids, ``stats.jsonl``, ``config.json``.
        device: torch device (default: CUDA, then MPS, then CPU).
        data: pre-built data (see :func:`build_data`); built from ``cfg.data`` when None.
        features: a perceptual extractor; built from ``cfg.train.perceptual`` when use_PL needs it.
        log: where text goes (``print`` by default).
        publish_to: a second run folder (e.g. on Google Drive) that every checkpoint and grid is
            published to safely; ``run_dir`` is then the local working copy.
    """

    def __init__(self, cfg: Config, run_dir, *, device=None, data: dict | None = None, features=None,
                 log: Callable[[str], None] = print, publish_to=None):
        self.cfg = cfg.validate()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # print through tqdm.write, so the block never lands in the middle of the progress bar's line
        self.log = _tqdm_print if log is print else log
        self.device = pick_device(device)
        self.amp_dtype, use_scaler = choose_precision(cfg.train.precision, self.device)
        self.publisher = Publisher(publish_to, log=log) if publish_to else None

        # Weight initialisation is reproducible; the global numpy / Python streams are seeded too so
        # that a run's whole RNG state (saved in every checkpoint) is a function of the seed.
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed)
        random.seed(cfg.train.seed)
        self.gen = Generator(cfg.model).to(self.device)
        self.disc = {"a": Discriminator(cfg.model).to(self.device), "b": Discriminator(cfg.model).to(self.device)}
        self.features = features
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)

        self.step = 0
        self.events_done: list[str] = []
        self.active_flags: dict | None = None  # the loss flags the optimisers were built for
        self.lr_scale = 1.0  # lowered after a non-finite loss
        self.history: list[dict] = []
        self.nan_retries = 0

        data = data if data is not None else build_data(cfg, self.run_dir, log)
        self._set_data(data)
        self.lam_rng = random.Random(cfg.train.seed)  # mixup / perceptual lambdas, host side
        # Augmentation parameters are drawn on the CPU (a few numbers per image; the image work runs on
        # the device), so CPU and GPU runs draw the same augmentations and the state is device-free.
        self.aug_gen = torch.Generator()
        self.aug_gen.manual_seed(cfg.train.seed)
        self._build_optimizers(self.flags_at(0))
        self._reset_window()
        self._preview = None
        self._last_saved_step = None

    # ---- data ------------------------------------------------------------------------------------------
    def _set_data(self, data: dict):
        from .data import BatchSampler

        cfg, dev = self.cfg, self.device
        self.faces = {}
        for dom in ("a", "b"):
            d = data[dom]
            masks = [d["eye_masks"] if cfg.data.use_bm_eyes else torch.zeros_like(d["eye_masks"])]
            self.has_face_masks = d.get("face_masks") is not None
            if self.has_face_masks:
                masks.append(d["face_masks"])
            self.faces[dom] = {"images": d["images"], "masks": torch.cat(masks, 1)}
        # The uint8 caches live on the training device when they take at most half of its free memory;
        # otherwise they stay in pinned CPU memory and each batch is copied over asynchronously.
        need = sum(t.numel() for f in self.faces.values() for t in f.values())
        fits = dev.type != "cuda" or need <= 0.5 * torch.cuda.mem_get_info(dev)[0]
        for f in self.faces.values():
            for k, t in f.items():
                f[k] = t.to(dev) if fits else t.pin_memory()
        if not fits:
            self.log(f"face cache ({need / 2 ** 30:.1f} GiB) kept in pinned CPU memory: it does not fit on {dev}")
        n_a, n_b = len(self.faces["a"]["images"]), len(self.faces["b"]["images"])
        bs = cfg.train.batch_size
        for dom, n in (("a", n_a), ("b", n_b)):
            if n < bs:
                raise ConfigError(f"domain {dom.upper()} has {n} usable images, fewer than the batch size {bs}: "
                                  "add faces or lower train.batch_size")
        self.samplers = {"a": BatchSampler(n_a, bs, seed=cfg.train.seed * 2 + 1),
                         "b": BatchSampler(n_b, bs, seed=cfg.train.seed * 2 + 2)}
        # Colour matching draws references from A and B together, as the original did.
        self.pool = torch.cat([self.faces["a"]["images"], self.faces["b"]["images"]])
        self.aug = Augmenter(resolution=cfg.model.resolution, work_size=cfg.data.work_size,
                             prob_color_match=cfg.data.prob_random_color_match,
                             color_match_target=cfg.data.color_match_target,
                             motion_blur=cfg.data.use_da_motion_blur)

    def _batch(self, dom: str, sampler=None, generator=None, aug=None) -> dict:
        f = self.faces[dom]
        idx = next(sampler or self.samplers[dom]).to(f["images"].device)
        images = f["images"][idx].to(self.device, non_blocking=True)
        masks = f["masks"][idx].to(self.device, non_blocking=True)
        warped, target, masks = (aug or self.aug)(images, masks, generator or self.aug_gen, pool=self.pool)
        batch = {"warped": warped, "target": target, "eye_mask": masks[:, :1]}
        batch["face_mask"] = masks[:, 1:2] if self.has_face_masks else None
        return batch

    # ---- loss configuration and optimisers --------------------------------------------------------------
    def flags_at(self, step: int) -> dict:
        """The seven loss flags in force for the iteration after ``step`` (manual or scheduled)."""
        flags = self.cfg.loss_flags()
        t = self.cfg.train
        if t.schedule != "manual":
            flags.update(phase_at(step, t.schedule, t.schedule_total, t.display_iters).flags())
        return flags

    def loss_cfg(self, flags: dict):
        return dataclasses.replace(self.cfg.loss, **flags)

    def _build_optimizers(self, flags: dict):
        """Fresh Adam optimisers (the original rebuilt its training functions, so its Adam moments
        restarted, at the start and at every loss-config change)."""
        o, lr = self.cfg.optim, flags["lr_factor"] * self.lr_scale
        adam = lambda params, base: torch.optim.Adam(params, lr=base * lr, betas=(o.beta1, o.beta2), eps=o.eps)
        enc = list(self.gen.encoder.parameters())
        self.opt = {"d_a": adam(self.disc["a"].parameters(), o.lr_D), "d_b": adam(self.disc["b"].parameters(), o.lr_D)}
        if o.optimizer == "v22":
            # Two independent Adams update the shared encoder, each with its own moments (as v2.2).
            self.opt["g_a"] = adam(enc + list(self.gen.decoder_a.parameters()), o.lr_G)
            self.opt["g_b"] = adam(enc + list(self.gen.decoder_b.parameters()), o.lr_G)
        else:
            self.opt["g"] = adam(self.gen.parameters(), o.lr_G)
        self.active_flags = dict(flags)

    def _set_lr(self, flags: dict):
        o, lr = self.cfg.optim, flags["lr_factor"] * self.lr_scale
        for name, opt in self.opt.items():
            for g in opt.param_groups:
                g["lr"] = (o.lr_D if name.startswith("d") else o.lr_G) * lr

    def _apply_flags(self, flags: dict, reason: str):
        """Called when the flags in force differ from the ones the optimisers were built for."""
        if self.cfg.optim.reset_on_phase_change:
            self._build_optimizers(flags)
        else:
            self._set_lr(flags)
            self.active_flags = dict(flags)
        self.log(f"{reason}\nBuilding new loss functions...\n{format_flags(flags)}\nDone.")
        if flags["use_PL"]:
            self._ensure_features(flags)

    def _ensure_features(self, flags: dict):
        if self.features is not None:
            if hasattr(self.features, "before_activ"):  # ganlib extractors switch taps at every call
                self.features.before_activ = bool(flags["PL_before_activ"])
            return
        t = self.cfg.train
        if t.perceptual == "none":
            raise ConfigError("use_PL is on but train.perceptual is 'none': choose 'resnet50' or 'vgg16' "
                              "(torchvision ImageNet weights) or 'vggface2' with train.perceptual_weights, "
                              "or turn use_PL off")
        from .perceptual import build_perceptual

        self.features = build_perceptual(t.perceptual, weights=t.perceptual_weights or None,
                                         sha256=t.perceptual_sha256 or None,
                                         before_activ=bool(flags["PL_before_activ"]), device=self.device)

    def _run_events(self):
        t = self.cfg.train
        if t.schedule == "manual":
            return
        for key in events_due(self.step, t.schedule, t.schedule_total, self.events_done, t.display_iters):
            if key.startswith("swap_decoders"):
                # v2.2 swapped the two decoders' weights late in training (reason never given, issue #142).
                sa = {k: v.clone() for k, v in self.gen.decoder_a.state_dict().items()}
                self.gen.decoder_a.load_state_dict(self.gen.decoder_b.state_dict())
                self.gen.decoder_b.load_state_dict(sa)
                self.log(f"[iter {self.step}] schedule event: decoders A and B swapped (v2.2 behaviour)")
            self.events_done.append(key)

    # ---- one iteration ------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _path(self, dom):
        return lambda x: self.gen(x, dom)

    def _d_step(self, dom: str, batch: dict, lcfg):
        lam = sample_lambda(self.lam_rng)
        disc, opt = self.disc[dom], self.opt[f"d_{dom}"]
        with self._autocast():
            with torch.no_grad():
                out = generator_forward(self._path(dom), batch["warped"])
            loss, parts = discriminator_loss(disc, batch, out, lcfg, lam)
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(opt)
        return loss.detach()

    def _g_loss(self, dom: str, batch: dict, lcfg):
        other = "b" if dom == "a" else "a"
        lam_pl = sample_lambda(self.lam_rng)
        with self._autocast():
            out = generator_forward(self._path(dom), batch["warped"])
            loss, parts = generator_loss(self.disc[dom], batch, out, lcfg, lam_pl=lam_pl, features=self.features,
                                         gen_self=self._path(dom), gen_other=self._path(other),
                                         l2_modules=[self.gen.encoder, self.gen.decoder(dom)])
        return loss, parts

    def _g_step(self, batches: dict, lcfg):
        results = {}
        if "g" in self.opt:  # joint: one Adam on GA + GB
            la, pa = self._g_loss("a", batches["a"], lcfg)
            lb, pb = self._g_loss("b", batches["b"], lcfg)
            self.opt["g"].zero_grad(set_to_none=True)
            self.scaler.scale(la + lb).backward()
            self.scaler.step(self.opt["g"])
            return {"a": (la.detach(), pa), "b": (lb.detach(), pb)}
        for dom in ("a", "b"):  # v2.2: G_A update, then G_B update (which sees the new encoder)
            loss, parts = self._g_loss(dom, batches[dom], lcfg)
            self.gen.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt[f"g_{dom}"])
            results[dom] = (loss.detach(), parts)
        return results

    def train_iteration(self):
        """One v2.2 iteration: D_A, D_B on a fresh batch pair, then G_A, G_B on another."""
        flags = self.flags_at(self.step)
        if flags != self.active_flags:
            self._apply_flags(flags, f"[iter {self.step}] loss configuration changed")
        self._run_events()
        lcfg = self.loss_cfg(flags)
        d_batches = {dom: self._batch(dom) for dom in ("a", "b")}
        d_loss = {dom: self._d_step(dom, d_batches[dom], lcfg) for dom in ("a", "b")}
        g_batches = {dom: self._batch(dom) for dom in ("a", "b")}
        g_res = self._g_step(g_batches, lcfg)
        self.scaler.update()
        w = self._window
        for dom, D in (("a", "A"), ("b", "B")):
            w["D" + D] += d_loss[dom].float()
            loss, parts = g_res[dom]
            w["G" + D] += loss.float()
            for k, v in parts.items():
                w[f"{k}_{D}"] += v.detach().float()
        self._window_n += 1

    # ---- window means and the printed block ------------------------------------------------------------------
    def _reset_window(self):
        keys = ["DA", "DB", "GA", "GB"] + [f"{k}_{D}" for k in ("adv", "recon", "edge", "pl", "mask", "tv", "cyclic",
                                                                "l2") for D in "AB"]
        self._window = {k: torch.zeros((), device=self.device) for k in keys}
        self._window_n = 0

    def _window_means(self) -> dict:
        n = max(1, self._window_n)
        vals = torch.stack(list(self._window.values())).cpu().tolist()  # the one host sync per display
        return {k: v / n for k, v in zip(self._window.keys(), vals)}

    def _window_finite(self) -> bool:
        return bool(torch.isfinite(torch.stack(list(self._window.values()))).all())

    # ---- previews (reference §4.5) -------------------------------------------------------------------------
    def preview_batch(self) -> dict:
        """A fixed batch per domain (chosen and augmented with ``preview_seed``), so every grid shows the
        same faces and previews never consume the training random streams."""
        if self._preview is None:
            from .data import BatchSampler

            seed = self.cfg.train.preview_seed
            gen = torch.Generator()
            gen.manual_seed(seed)
            self._preview = {}
            for i, dom in enumerate(("a", "b")):
                sampler = BatchSampler(len(self.faces[dom]["images"]), self.cfg.train.batch_size, seed=seed + i)
                self._preview[dom] = self._batch(dom, sampler=sampler, generator=gen)
        return self._preview

    @torch.no_grad()
    def preview_tensors(self) -> dict:
        """Tensors of the three grids: targets with masked self/swap outputs, alphas, and warped inputs
        with raw self/swap outputs."""
        pb = self.preview_batch()
        was_training = self.gen.training
        self.gen.eval()
        p = {}
        try:
            for dom, other in (("a", "b"), ("b", "a")):
                t, w = pb[dom]["target"], pb[dom]["warped"]
                with self._autocast():
                    rs, as_ = split_output(self.gen(t, dom)[-1])
                    rw, aw = split_output(self.gen(t, other)[-1])
                    raw_s, _ = split_output(self.gen(w, dom)[-1])
                    raw_w, _ = split_output(self.gen(w, other)[-1])
                f = lambda x: x.float()
                p[f"target_{dom}"], p[f"warped_{dom}"] = t, w
                p[f"masked_self_{dom}"] = composite(f(rs), f(as_), t)
                p[f"masked_swap_{dom}"] = composite(f(rw), f(aw), t)
                p[f"alpha_self_{dom}"], p[f"alpha_swap_{dom}"] = f(as_), f(aw)
                p[f"raw_self_{dom}"], p[f"raw_swap_{dom}"] = f(raw_s), f(raw_w)
        finally:
            self.gen.train(was_training)
        return p

    def preview(self) -> dict:
        """The three grids as PIL images: keys preprocessed, masked, reconstruction."""
        return preview_grids(self.preview_tensors())

    def _display(self, t0: float, callback):
        means = self._window_means()
        flags = self.active_flags or self.flags_at(self.step)
        text = format_block(self.step, flags, means, time.monotonic() - t0)
        self.log(text)
        grids = self.preview()
        paths = {}
        for key, img in grids.items():
            path = self.run_dir / GRID_FILES[key].format(step=self.step)
            _save_png_atomic(img, path)
            paths[key] = path
            self.log(f"{GRID_TITLES[key]} {path}")
            if self.publisher:
                self.publisher.publish_file(path)
        record = {"step": self.step, "time": time.time(), **{k: round(v, 6) for k, v in means.items()}}
        self.history.append(record)
        _append_jsonl(self.run_dir / "stats.jsonl", record)
        self._reset_window()
        report = Report(step=self.step, text=text, grids=grids, paths=paths, means=means)
        if callback is not None:
            if callback(self, report) is False:
                return False
        return True

    # ---- the chunk -----------------------------------------------------------------------------------------------
    def train(self, until: int | None = None, *, steps: int | None = None, seconds: float | None = None,
              callback: Callable | None = None, progress: bool = True) -> dict:
        """Train one chunk: up to iteration ``until`` (default ``train.TOTAL_ITERS``), or ``steps`` more
        iterations, or for ``seconds``, whichever comes first.

        Every ``display_iters``: the block is printed, the grids are written and handed to
        ``callback(trainer, report)`` (return False to stop), and the state is saved. The state is also
        saved every ``save_minutes`` and at the end. KeyboardInterrupt (Colab's stop button) saves and
        returns cleanly. Returns a summary dict.
        """
        t = self.cfg.train
        target = until if until is not None else (self.step + steps if steps is not None else t.TOTAL_ITERS)
        if steps is not None and until is not None:
            target = min(until, self.step + steps)
        start_step, t0 = self.step, time.monotonic()
        if target <= self.step:
            self.log(f"Already at iteration {self.step} (target {target}): nothing to train. "
                     "Raise the target (TOTAL_ITERS / --until) to continue.")
            return self._summary(start_step, t0, "target reached")
        flags = self.flags_at(self.step)
        if flags != self.active_flags:
            self._apply_flags(flags, "Loss configuration for this chunk:")
        elif flags["use_PL"]:
            self._ensure_features(flags)
        self.log(f"Training iterations {self.step + 1}..{target} on {self.device} "
                 f"({'fp32' if self.amp_dtype is None else str(self.amp_dtype).replace('torch.', '')}); "
                 f"run folder {self.run_dir}")
        clock = SaveClock(None, t.save_minutes, start_step=self.step)
        if self._last_saved_step is None and self.step == 0:
            self.save()  # a fresh run keeps its initial state: the roll-back point for a NaN
        bar = _progress(total=target, initial=self.step, enabled=progress)
        status = "target reached"
        self._reset_window()
        try:
            while True:
                status = self._train_loop(target, seconds, t0, callback, clock, bar)
                # The end-of-chunk save; if the state went non-finite since the last check, it
                # rolls back instead and the chunk continues (only to the target).
                if self._last_saved_step == self.step or self._checkpoint_now():
                    break
                bar.n = self.step
                if status != "target reached":
                    break
        except KeyboardInterrupt:
            bar.close()
            if self._state_finite():
                path = self.save()
                self.log(f"Interrupted at iteration {self.step}: saved to {path}. "
                         "Run the same cell or command again to continue from here.")
            else:
                self.log(f"Interrupted at iteration {self.step} with non-finite weights: NOT saved; the last "
                         f"good checkpoint (iteration {self._last_saved_step}) is where the next chunk resumes.")
            return self._summary(start_step, t0, "interrupted")
        finally:
            bar.close()
        return self._summary(start_step, t0, status)

    def _train_loop(self, target, seconds, t0, callback, clock, bar) -> str:
        t = self.cfg.train
        while self.step < target:
            if seconds is not None and time.monotonic() - t0 >= seconds:
                return "time budget used"
            self.train_iteration()
            self.step += 1
            bar.update(1)
            if self.step % NAN_CHECK_EVERY == 0 or self.step % t.display_iters == 0:
                if not self._window_finite():
                    self._recover_from_nan()
                    bar.n = self.step
                    continue
            if self.step % t.display_iters == 0:
                keep_going = self._display(t0, callback)
                if self._checkpoint_now():
                    clock.mark(self.step)
                if not keep_going:
                    return "stopped by callback"
            elif clock.due(self.step):
                if self._checkpoint_now():
                    clock.mark(self.step)
                else:
                    bar.n = self.step
        return "target reached"

    def _state_finite(self) -> bool:
        """Losses since the last check and every weight finite (one device sync; only at saves)."""
        if not self._window_finite():
            return False
        params = [p for m in (self.gen, self.disc["a"], self.disc["b"]) for p in m.parameters()]
        return bool(torch.stack([torch.isfinite(p).all() for p in params]).all())

    def _checkpoint_now(self) -> bool:
        """Save if the state is finite; otherwise roll back (a checkpoint never holds NaN weights,
        so pruning can never delete the last good one). Returns whether it saved."""
        if not self._state_finite():
            self._recover_from_nan()
            return False
        self.save()
        return True

    def _summary(self, start_step, t0, status):
        elapsed = time.monotonic() - t0
        done = self.step - start_step
        return {"step": self.step, "iterations": done, "seconds": elapsed,
                "sec_per_iter": elapsed / done if done else float("nan"), "status": status,
                "run_dir": str(self.run_dir)}

    # ---- NaN recovery ------------------------------------------------------------------------------------------
    def _recover_from_nan(self):
        """Roll back to the last good checkpoint, halve the learning rates, skip the offending batches."""
        self.nan_retries += 1
        bad_step = self.step
        if self.nan_retries > self.cfg.train.max_nan_retries:
            raise TrainingDiverged(
                f"losses became non-finite (NaN/inf) around iteration {bad_step} again after "
                f"{self.cfg.train.max_nan_retries} roll-backs. The checkpoints in {self.run_dir / 'checkpoints'} "
                "are intact. Try a lower loss.lr_factor, train.precision=fp32, or check the data audit report.")
        loaded = load_latest(self.run_dir, map_location=self.device, log=self.log)
        if loaded is None:
            raise TrainingDiverged(f"non-finite loss at iteration {bad_step} and no checkpoint to roll back to")
        lr_scale = self.lr_scale * 0.5
        self.load_state(loaded.state)
        self.lr_scale = lr_scale
        self._set_lr(self.active_flags)
        for s in self.samplers.values():  # skip the batches that led to the blow-up
            next(s)
        self.aug_gen.manual_seed(self.cfg.train.seed + 7919 * self.nan_retries)
        self._reset_window()
        self.log(f"Non-finite loss detected at iteration {bad_step}: rolled back to iteration {self.step} "
                 f"({loaded.path.name}), learning rates x{self.lr_scale:g}, skipping a batch "
                 f"(retry {self.nan_retries} of {self.cfg.train.max_nan_retries}).")

    # ---- state -----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The complete training state, tensors and plain Python types only."""
        return {
            "config": self.cfg.to_dict(),
            "step": self.step,
            "models": {"encoder": self.gen.encoder.state_dict(), "decoder_a": self.gen.decoder_a.state_dict(),
                       "decoder_b": self.gen.decoder_b.state_dict(), "disc_a": self.disc["a"].state_dict(),
                       "disc_b": self.disc["b"].state_dict()},
            "optim": {k: o.state_dict() for k, o in self.opt.items()},
            "scaler": self.scaler.state_dict(),
            "rng": {**_rng_state(), "lambda": _py_state(self.lam_rng.getstate()),
                    "augment": self.aug_gen.get_state()},
            "data": {dom: s.state_dict() for dom, s in self.samplers.items()},
            "schedule": {"events_done": list(self.events_done), "active_flags": dict(self.active_flags or {}),
                         "lr_scale": self.lr_scale},
            "history": list(self.history),
            "preview_seed": self.cfg.train.preview_seed,
        }

    def load_state(self, state: dict):
        """Restore everything :meth:`state_dict` saved (architecture must match)."""
        m = state["models"]
        self.gen.encoder.load_state_dict(m["encoder"])
        self.gen.decoder_a.load_state_dict(m["decoder_a"])
        self.gen.decoder_b.load_state_dict(m["decoder_b"])
        self.disc["a"].load_state_dict(m["disc_a"])
        self.disc["b"].load_state_dict(m["disc_b"])
        sched = state.get("schedule", {})
        self.step = int(state["step"])
        self.events_done = list(sched.get("events_done", []))
        self.lr_scale = float(sched.get("lr_scale", 1.0))
        saved_flags = sched.get("active_flags") or self.flags_at(self.step)
        self._build_optimizers(saved_flags)
        if set(state["optim"]) == set(self.opt):
            for k, o in self.opt.items():
                o.load_state_dict(state["optim"][k])
        else:
            self.log("Optimizer layout changed (optim.optimizer): Adam moments start fresh.")
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        _set_rng_state(rng)
        self.lam_rng.setstate(_py_unstate(rng["lambda"]))
        self.aug_gen.set_state(rng["augment"].cpu())
        for dom, s in self.samplers.items():
            s.load_state_dict(state["data"][dom])
        self.history = list(state.get("history", []))
        self._last_saved_step = self.step

    def save(self) -> Path:
        """Save the complete state now (atomic, verified; published when ``publish_to`` is set)."""
        t = self.cfg.train
        path = save_checkpoint(self.state_dict(), self.run_dir, self.step, keep_last=t.keep_last,
                               milestone_every=t.backup_iters, publisher=self.publisher, log=self.log)
        self._last_saved_step = self.step
        _write_text_atomic(self.run_dir / "config.json", self.cfg.to_json())
        return path

    # ---- construction from a run folder ---------------------------------------------------------------------------
    @classmethod
    def resume_or_start(cls, run_dir, cfg: Config | None = None, *, overrides: dict | None = None, device=None,
                        data: dict | None = None, features=None, log: Callable = print, publish_to=None):
        """Continue from the newest valid checkpoint in ``run_dir`` (or ``publish_to``), else start fresh.

        On resume the architecture (``model.*``) comes from the checkpoint; training fields (flags,
        lr_factor, TOTAL_ITERS, display_iters, data folders, ...) come from ``cfg`` and ``overrides``
        when given. A run folder whose checkpoints all fail to load stops with
        :class:`ganlib.checkpoint.CheckpointError`: ganlib never starts fresh over them.
        """
        run_dir = Path(run_dir)
        if publish_to and not Path(publish_to).parent.exists():
            # An unmounted Drive looks like "no checkpoints yet": refuse rather than start fresh.
            raise CheckpointError(f"the publishing folder {publish_to} is not reachable (its parent folder does "
                                  "not exist). Is Google Drive mounted? Mount it and run again.")
        loaded = load_latest(run_dir, log=log) if (run_dir / "checkpoints").exists() else None
        if publish_to and Path(publish_to, "checkpoints").exists():
            remote = load_latest(publish_to, log=log)
            if remote is not None and (loaded is None or remote.step > loaded.step):
                loaded = remote
        if loaded is None:
            cfg = (cfg or Config()).copy()
            if overrides:
                cfg.override(overrides)
            log(f"Starting a new run in {run_dir}")
            return cls(cfg, run_dir, device=device, data=data, features=features, log=log, publish_to=publish_to)
        saved = Config.from_dict(loaded.state["config"])
        merged = saved.copy()
        if cfg is not None:
            for key in cfg.keys():
                if key in ARCHITECTURE_KEYS:
                    if cfg.get(key) != saved.get(key):
                        log(f"{key} comes from the checkpoint ({saved.get(key)!r}); ignoring {cfg.get(key)!r}")
                    continue
                merged.override({key: cfg.get(key)})
        for key, value in (overrides or {}).items():
            section, name = merged.locate(key)
            if f"{section}.{name}" in ARCHITECTURE_KEYS:
                raise ConfigError(f"{key} is part of the architecture and comes from the checkpoint "
                                  f"({merged.get(key)!r}); start a new run folder to change it")
            merged.override({key: value})
        trainer = cls(merged, run_dir, device=device, data=data, features=features, log=log, publish_to=publish_to)
        trainer.load_state(loaded.state)
        log(f"Resumed from iteration {trainer.step} ({loaded.path})")
        return trainer


# ---- small file helpers ----------------------------------------------------------------------------------------------
def _progress(total, initial, enabled):
    from tqdm.auto import tqdm

    # Pass ``disable`` only to turn the bar off, so TQDM_DISABLE=1 in the environment still applies.
    kw = {} if enabled else {"disable": True}
    return tqdm(total=total, initial=initial, desc="iter", leave=True, dynamic_ncols=True, **kw)


def _tqdm_print(msg):
    from tqdm.auto import tqdm

    tqdm.write(str(msg))


def _save_png_atomic(img, path: Path):
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)


def _write_text_atomic(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _append_jsonl(path: Path, record: dict):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
