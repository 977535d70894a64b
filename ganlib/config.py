"""Configuration: plain dataclasses whose field metadata drives validation, the widget panel and the docs.

Every field carries ``metadata`` with at least ``help``; optional keys are ``choices``, ``min``,
``max``, ``group`` (widget panel section) and ``v22`` (False marks a ganlib extension that was not part
of faceswap-GAN v2.2). The option names and defaults of v2.2 keep their v2.2 meaning, so a setting
copied from the original notebook means what it meant there.

Normalisation names, kept as v2.2 used them (see ``ModelConfig.norm``):

* ``"instancenorm"`` normalises each sample over C, H and W *together* (population std, ``std + 1e-3``
  in the denominator) with ONE scalar gamma and beta. That is a LayerNorm over (C, H, W), not the
  per-channel instance norm of PyTorch's ``InstanceNorm2d``.
* ``"layernorm"`` is per-channel normalisation over H, W with per-channel affine: a true instance norm
  (v2.2 built it as GroupNormalization with one group per channel).
* ``"groupnorm"`` is GroupNorm with 16 groups; ``"batchnorm"`` is BatchNorm (momentum 0.99 in Keras terms,
  eps 1e-3); ``"hybrid"`` sends half the channels through a 1x1 conv and the other half through the
  v2.2 "instancenorm"; ``"none"`` disables normalisation.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the allowed values."""


def _f(default, help: str, **meta):
    """A dataclass field with ganlib metadata (help text, choices, bounds, panel group)."""
    meta["help"] = help
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    """Architecture. Comes from the checkpoint on resume (it cannot change within a run)."""

    resolution: int = _f(64, "Output resolution R (v2.2: 64, 128 or 256; 32 is a ganlib CPU test size).",
                         choices=[32, 64, 128, 256], group="model")
    model_capacity: str = _f("standard", "v2.2 capacity: 'standard' (pixel-shuffle upscales, wide) or "
                             "'lite' (nearest-neighbour upscales, half width).",
                             choices=["standard", "lite"], group="model")
    norm: str = _f("instancenorm", "Normalisation with v2.2's meanings: 'instancenorm' = per-sample over "
                   "C,H,W with scalar affine; 'layernorm' = per-channel instance norm; see module docs.",
                   choices=["none", "instancenorm", "batchnorm", "layernorm", "groupnorm", "hybrid"],
                   group="model")
    use_self_attn: bool = _f(True, "SAGAN self-attention blocks in encoder, decoders and discriminators.",
                             group="model")
    width: float = _f(1.0, "Channel width multiplier (ganlib extension for CPU presets; 1.0 = v2.2).",
                      min=0.03, max=4.0, group="model", v22=False)
    latent_dim: int = _f(0, "Encoder bottleneck size; 0 = v2.2's (1024, lite 2048 at R >= 128). A narrow "
                         "bottleneck makes the encoder keep pose/expression/light, not identity.",
                         min=0, max=8192, group="model", v22=False)


@dataclass
class LossConfig:
    """Loss flags (the original's loss_config) and weights. Flags may change between chunks."""

    gan_training: str = _f("mixup_LSGAN", "Adversarial loss.", choices=["mixup_LSGAN", "relativistic_avg_LSGAN"],
                           group="flags")
    use_PL: bool = _f(False, "Perceptual loss (needs a perceptual backbone).", group="flags")
    PL_before_activ: bool = _f(False, "Perceptual taps before the ReLU (Colab default True).", group="flags")
    use_mask_hinge_loss: bool = _f(False, "Hinge on alpha (push the mask on) instead of mask L1 (push it off).",
                                   group="flags")
    m_mask: float = _f(0.0, "Hinge margin for alpha (used with use_mask_hinge_loss).", min=0.0, max=1.0,
                       group="flags")
    lr_factor: float = _f(1.0, "Multiplies both learning rates (v2.2 used 1, 0.3, 0.1).", min=1e-4, max=10.0,
                          group="flags")
    use_cyclic_loss: bool = _f(False, "Cycle-consistency loss (weight 10).", group="flags")
    # Weights: §2.9 of the original, identical in its train notebook and Colab demo.
    w_D: float = _f(0.1, "Adversarial weight in the generator loss.", min=0.0, group="weights")
    w_recon: float = _f(1.0, "L1 reconstruction weight (also each side output).", min=0.0, group="weights")
    w_edge: float = _f(0.1, "Edge (first-order difference) loss weight.", min=0.0, group="weights")
    w_eyes: float = _f(30.0, "Eye-region weight inside reconstruction and edge losses.", min=0.0, group="weights")
    w_pl: list = _f([0.01, 0.1, 0.3, 0.1], "Perceptual weights for taps (7, 28, 55, 112).", group="weights")
    # Hard-coded in v2.2 (§2.6, §2.7); exposed here with the same values.
    w_mask_l1: float = _f(0.01, "Mask L1 weight (when hinge is off).", min=0.0, group="weights")
    w_mask_hinge: float = _f(0.1, "Mask hinge weight (when hinge is on).", min=0.0, group="weights")
    w_tv: float = _f(0.1, "Total-variation weight on alpha.", min=0.0, group="weights")
    w_cyclic: float = _f(10.0, "Cyclic loss weight.", min=0.0, group="weights")
    w_l2: float = _f(1e-4, "L2 kernel regulariser (Keras l2 on conv kernels).", min=0.0, group="weights")
    # ganlib extension: supervise alpha with a face/person mask when the data has one (SyntheticFaces does).
    w_mask_face: float = _f(0.0, "Two-sided L1 between alpha and the data's face mask (0 = off, as v2.2).",
                            min=0.0, group="weights", v22=False)


@dataclass
class OptimConfig:
    """Optimisers (§3 of the original)."""

    optimizer: str = _f("v22", "'v22': four Adams (G_A and G_B each update the shared encoder); "
                        "'joint': one Adam for encoder+decoders on GA+GB (ganlib option).",
                        choices=["v22", "joint"], group="optim")
    lr_G: float = _f(1e-4, "Generator learning rate before lr_factor.", min=0.0, group="optim")
    lr_D: float = _f(2e-4, "Discriminator learning rate before lr_factor.", min=0.0, group="optim")
    beta1: float = _f(0.5, "Adam beta1.", min=0.0, max=1.0, group="optim")
    beta2: float = _f(0.999, "Adam beta2.", min=0.0, max=1.0, group="optim")
    eps: float = _f(1e-7, "Adam epsilon (Keras 2.1.5 used 1e-7).", min=0.0, group="optim")
    reset_on_phase_change: bool = _f(True, "Reset Adam moments when the loss config changes (v2.2 rebuilt "
                                     "its optimisers at every schedule change).", group="optim")


@dataclass
class DataConfig:
    """Where faces come from and how they are augmented (§5 of the original)."""

    dir_a: str = _f("", "Folder of aligned faces of person A (empty: use SyntheticFaces).", group="data")
    dir_b: str = _f("", "Folder of aligned faces of person B.", group="data")
    mask_dir_a: str = _f("", "Eye-mask folder for A, matched by file name (optional).", group="data")
    mask_dir_b: str = _f("", "Eye-mask folder for B (optional).", group="data")
    synthetic_n: int = _f(1000, "Images per identity when training on SyntheticFaces.", min=8, group="data",
                          v22=False)
    synthetic_size: int = _f(256, "Render size of SyntheticFaces images.", choices=[64, 128, 256], group="data",
                             v22=False)
    synthetic_seed: int = _f(0, "Seed of the SyntheticFaces nuisance samples.", group="data", v22=False)
    work_size: int = _f(256, "Size the images are cached and augmented at (v2.2: 256).", choices=[64, 128, 256],
                        group="data")
    use_bm_eyes: bool = _f(True, "Use eye masks in the eye-weighted losses.", group="data")
    prob_random_color_match: float = _f(0.5, "Probability of random colour matching.", min=0.0, max=1.0,
                                        group="data")
    color_match_target: bool = _f(True, "Colour-match the target too (v2.2). Off: only the input, so the "
                                  "encoder ignores skin tone and each decoder keeps its identity's colours.",
                                  group="data", v22=False)
    use_da_motion_blur: bool = _f(False, "Random motion blur augmentation.", group="data")


@dataclass
class TrainConfig:
    """The training loop, its schedule, logging and saving."""

    batch_size: int = _f(8, "Batch size (v2.2: 8 in the train notebook, 4 in the Colab demo).", min=2, max=512,
                         group="train")
    display_iters: int = _f(300, "Print the loss block, build the grids and save every N iterations.", min=1,
                            group="train")
    TOTAL_ITERS: int = _f(1500, "Chunk target: train until this iteration (1500, 2400, ... 5400).", min=1,
                          group="train")
    schedule: str = _f("manual", "'manual': the flags above; 'v22_train' / 'v22_colab': the automatic v2.2 "
                       "loss schedule as a function of the step.", choices=["manual", "v22_train", "v22_colab"],
                       group="train")
    schedule_total: int = _f(40000, "Total iterations the automatic schedule is laid out for "
                             "(v2.2: 40000 train notebook, 34000 Colab).", min=10, group="train")
    backup_iters: int = _f(5000, "Keep a milestone checkpoint every N iterations (0 = none).", min=0,
                           group="train")
    keep_last: int = _f(3, "Checkpoints kept besides milestones.", min=1, group="train")
    save_minutes: float = _f(15.0, "Also save every K minutes (Colab runtimes die on time).", min=0.0,
                             group="train")
    precision: str = _f("auto", "'auto': bf16 on GPUs that have it, fp16+GradScaler on T4-class, fp32 on CPU.",
                        choices=["auto", "fp32", "bf16", "fp16"], group="train", v22=False)
    seed: int = _f(0, "Random seed (weights, batches, augmentation).", group="train")
    preview_seed: int = _f(1234, "Seed of the fixed preview batch.", group="train", v22=False)
    perceptual: str = _f("none", "Perceptual backbone: 'vggface2' (needs weights), 'resnet50'/'vgg16' "
                         "(torchvision ImageNet weights) or 'none'.",
                         choices=["none", "vggface2", "resnet50", "vgg16"], group="train")
    perceptual_weights: str = _f("", "Path or URL of the perceptual weights file.", group="train")
    perceptual_sha256: str = _f("", "Expected sha256 of the perceptual weights (optional).", group="train")
    max_nan_retries: int = _f(3, "Roll back and retry this many times after a non-finite loss.", min=0,
                              group="train", v22=False)


@dataclass
class Config:
    """The whole ganlib configuration: model, loss, optim, data, train."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    SECTIONS = ("model", "loss", "optim", "data", "train")

    # ---- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict of str/int/float/bool/lists (safe for JSON and ``torch.load(weights_only=True)``)."""
        return {s: dataclasses.asdict(getattr(self, s)) for s in self.SECTIONS}

    @classmethod
    def from_dict(cls, d: dict, *, strict: bool = False) -> "Config":
        """Build from a dict; unknown keys warn (or raise if ``strict``), missing keys take defaults."""
        cfg = cls()
        for section, values in (d or {}).items():
            if section not in cls.SECTIONS:
                _unknown(f"{section}", strict)
                continue
            sub = getattr(cfg, section)
            names = {f.name for f in dataclasses.fields(sub)}
            for k, v in (values or {}).items():
                if k not in names:
                    _unknown(f"{section}.{k}", strict)
                    continue
                setattr(sub, k, v)
        cfg.validate()
        return cfg

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def copy(self) -> "Config":
        return Config.from_dict(self.to_dict())

    # ---- overrides -----------------------------------------------------------------------------
    def override(self, items: dict[str, Any] | None = None, **kw) -> "Config":
        """Set dotted keys in place (``{"loss.use_PL": True}``); a bare field name is looked up in every
        section (``{"use_PL": True}``). Strings are parsed to the field's type. Returns self."""
        for key, value in {**(items or {}), **kw}.items():
            section, name = self.locate(key)
            sub = getattr(self, section)
            setattr(sub, name, _coerce(getattr(sub, name), value, key))
        self.validate()
        return self

    def locate(self, key: str) -> tuple[str, str]:
        """``"loss.m_mask"`` or ``"m_mask"`` -> ("loss", "m_mask"); clear error for unknown keys."""
        if "." in key:
            section, name = key.split(".", 1)
            if section in self.SECTIONS and name in {f.name for f in dataclasses.fields(getattr(self, section))}:
                return section, name
        else:
            for section in self.SECTIONS:
                if key in {f.name for f in dataclasses.fields(getattr(self, section))}:
                    return section, key
        raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(self.keys())}")

    def keys(self) -> list[str]:
        return [f"{s}.{f.name}" for s in self.SECTIONS for f in dataclasses.fields(getattr(self, s))]

    def get(self, key: str):
        section, name = self.locate(key)
        return getattr(getattr(self, section), name)

    # ---- validation driven by metadata -----------------------------------------------------------
    def validate(self) -> "Config":
        """Check every field against its metadata (type, choices, min, max) and cross-field rules."""
        for section in self.SECTIONS:
            sub = getattr(self, section)
            for f in dataclasses.fields(sub):
                v = getattr(sub, f.name)
                key = f"{section}.{f.name}"
                meta = f.metadata
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                if isinstance(default, bool) and not isinstance(v, bool):
                    raise ConfigError(f"{key} must be True or False, got {v!r}")
                if isinstance(default, (int, float)) and not isinstance(default, bool):
                    if isinstance(v, bool) or not isinstance(v, (int, float)):
                        raise ConfigError(f"{key} must be a number, got {v!r}")
                    if isinstance(default, int) and not isinstance(default, bool) and not float(v).is_integer():
                        raise ConfigError(f"{key} must be a whole number, got {v!r}")
                    if isinstance(default, int):
                        setattr(sub, f.name, int(v))
                    else:
                        setattr(sub, f.name, float(v))
                if "choices" in meta and v not in meta["choices"]:
                    raise ConfigError(f"{key} = {v!r} is not one of {meta['choices']}")
                if "min" in meta and v < meta["min"]:
                    raise ConfigError(f"{key} = {v!r} is below the minimum {meta['min']}")
                if "max" in meta and v > meta["max"]:
                    raise ConfigError(f"{key} = {v!r} is above the maximum {meta['max']}")
        if len(self.loss.w_pl) != 4:
            raise ConfigError(f"loss.w_pl needs 4 weights (taps 7, 28, 55, 112), got {self.loss.w_pl!r}")
        if self.train.batch_size % 2:
            # v2.2 asserted an even batch: the preview grid splits each batch into two halves.
            raise ConfigError(f"train.batch_size must be even (got {self.train.batch_size}); the preview "
                              "grid shows each batch as two halves, as v2.2 did")
        if self.data.work_size < self.model.resolution:
            raise ConfigError(f"data.work_size ({self.data.work_size}) must be at least model.resolution "
                              f"({self.model.resolution})")
        return self

    def loss_flags(self) -> dict:
        """The seven loss-config values the original printed, in its order."""
        L = self.loss
        return {k: getattr(L, k) for k in LOSS_FLAG_NAMES}


LOSS_FLAG_NAMES = ("gan_training", "use_PL", "PL_before_activ", "use_mask_hinge_loss", "m_mask", "lr_factor",
                   "use_cyclic_loss")

# Fields that define the architecture: on resume they come from the checkpoint, never from the caller.
ARCHITECTURE_KEYS = tuple(f"model.{f.name}" for f in dataclasses.fields(ModelConfig))


def _unknown(key, strict):
    if strict:
        raise ConfigError(f"unknown config key {key!r}")
    warnings.warn(f"ignoring unknown config key {key!r} (written by another ganlib version?)", stacklevel=3)


def _coerce(current, value, key):
    """Parse ``value`` (often a string from the command line) to the type of ``current``."""
    if not isinstance(value, str) or isinstance(current, str):
        return value
    s = value.strip()
    try:
        if isinstance(current, bool):
            if s.lower() in ("1", "true", "yes", "on"):
                return True
            if s.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(current, int):
            return int(float(s)) if float(s).is_integer() else float(s)
        if isinstance(current, float):
            return float(s)
        if isinstance(current, list):
            return [float(x) for x in s.strip("[]()").split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"cannot read {value!r} as a value for {key} (expected {type(current).__name__})")
    return value


def field_info(cfg: Config | None = None) -> list[dict]:
    """One record per field: key, section, name, type, default, help, choices, min, max, group, v22.

    The widget panel and ``docs/config.md`` are generated from this.
    """
    cfg = cfg or Config()
    out = []
    for section in Config.SECTIONS:
        sub = getattr(cfg, section)
        for f in dataclasses.fields(sub):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append({
                "key": f"{section}.{f.name}", "section": section, "name": f.name,
                "type": type(default).__name__, "default": default, "value": getattr(sub, f.name),
                "help": f.metadata.get("help", ""), "choices": f.metadata.get("choices"),
                "min": f.metadata.get("min"), "max": f.metadata.get("max"),
                "group": f.metadata.get("group", section), "v22": f.metadata.get("v22", True),
            })
    return out


# ---- presets ------------------------------------------------------------------------------------
def _preset_v22_train() -> Config:
    """FaceSwap_GAN_v2.2_train_test.ipynb: standard, instancenorm, 64 px, batch 8."""
    c = Config()
    c.train.schedule_total = 40000
    return c


def _preset_v22_colab() -> Config:
    """The v2.2 Colab demo: lite, hybrid norm, 64 px, batch 4, PL before activation."""
    c = Config()
    c.model.model_capacity, c.model.norm = "lite", "hybrid"
    c.loss.PL_before_activ = True
    c.train.batch_size = 4
    c.train.schedule_total = 34000
    return c


def _preset_cpu_demo() -> Config:
    """The CPU demo on SyntheticFaces (ganlib, not v2.2), chosen by measurement on a 2-core CPU.

    32 px (about 0.2-0.3 s per iteration, so ~1500 iterations fit in a few minutes); the lite
    network at full width with a narrow 128-unit bottleneck, so the shared encoder keeps pose,
    expression and light rather than identity (measured: +1 dB swap PSNR at 400 iterations over the
    v2.2 bottleneck); the random colour match on EVERY input but never on the target
    (``color_match_target=False``): the encoder learns to ignore skin tone, each decoder keeps its own
    identity's colours (measured at 1200 iterations: swap margin +1.8 dB vs -4.5 dB with no colour match
    and about -6 dB with v2.2's input-and-target match, which taught decoder B to keep A's skin); alpha
    supervised by the renderer's face mask (v2.2's unsupervised mask terms let it collapse to all-input
    within ~100 iterations); both learning rates x3 and bf16 autocast (faster on this CPU).
    """
    c = Config()
    m = c.model
    m.resolution, m.model_capacity, m.norm, m.use_self_attn, m.width = 32, "lite", "none", False, 1.0
    m.latent_dim = 128
    c.loss.w_mask_face = 1.0
    c.loss.lr_factor = 3.0
    c.data.synthetic_n, c.data.synthetic_size, c.data.work_size = 600, 64, 64
    c.data.prob_random_color_match, c.data.color_match_target = 1.0, False
    c.train.batch_size, c.train.display_iters, c.train.TOTAL_ITERS = 8, 300, 2400
    c.train.precision = "bf16"
    c.train.save_minutes = 5.0
    c.train.backup_iters = 0
    return c


def _preset_smoke() -> Config:
    """A tiny model for tests and notebook smoke runs (seconds on a CPU)."""
    c = Config()
    m = c.model
    m.resolution, m.model_capacity, m.norm, m.use_self_attn, m.width = 32, "lite", "instancenorm", True, 0.125
    c.data.synthetic_n, c.data.synthetic_size, c.data.work_size = 16, 64, 64
    c.train.batch_size, c.train.display_iters, c.train.TOTAL_ITERS = 4, 2, 4
    c.train.backup_iters = 0
    c.loss.w_mask_face = 1.0
    return c


PRESETS = {
    "v22_train": _preset_v22_train,
    "v22_colab": _preset_v22_colab,
    "cpu_demo": _preset_cpu_demo,
    "smoke": _preset_smoke,
}


def preset(name: str) -> Config:
    """A fresh Config for a named preset: v22_train, v22_colab, cpu_demo, smoke."""
    try:
        return PRESETS[name]().validate()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
