"""Frozen feature extractors for the perceptual loss, and verified weight downloads.

faceswap-GAN v2.2 (reference §2.5) compares fake and real faces in the feature space of a frozen
VGGFace2 ResNet-50 at four taps, weighted by ``w_pl`` in this order::

    [feat7, feat28, feat55, feat112]

Every extractor here takes images in ganlib's convention (RGB, NCHW, float in [-1, 1], any size),
does its own backbone preprocessing (bilinear resize to 224, colour order, mean/std) and returns
those four tensors. Its parameters are frozen and it stays in inference mode even when a parent
module calls ``.train()``, but gradients flow to the INPUT, i.e. to the generator.

Backbones, with the four taps as (C, H, W) for the internal 224x224 input:

- ``vggface2`` (the original's network, caffe layout)
    before_activ=False: conv5_3 ReLU (2048,7,7), conv3_4 ReLU (512,28,28),
                        conv2_3 ReLU (256,55,55), conv1 raw before BN (64,112,112)
    before_activ=True:  conv5_3 sum (2048,7,7), conv3_4 sum (512,28,28),
                        conv2_3 sum (256,55,55), conv2_1 sum (256,55,55) ("misnamed" in the original)
- ``resnet50`` (torchvision, ImageNet)
    before_activ=False: layer4 ReLU (2048,7,7), layer2 ReLU (512,28,28),
                        layer1 ReLU (256,56,56), conv1 raw before BN (64,112,112)
    before_activ=True:  layer4.2 sum (2048,7,7), layer2.3 sum (512,28,28),
                        layer1.2 sum (256,56,56), layer1.0 sum (256,56,56)
- ``vgg16`` (torchvision, ImageNet)
    before_activ=False: pool5 (512,7,7), relu4_3 (512,28,28), relu3_3 (256,56,56),
                        relu2_2 (128,112,112)
    before_activ=True:  maxpool(conv5_3) (512,7,7), conv4_3 (512,28,28), conv3_3 (256,56,56),
                        conv2_2 (128,112,112)
- ``none``: :func:`build_perceptual` returns None.

("sum" = a residual block's output before its final ReLU; "raw" = the convolution's output.)

Weights come from a file (a ``torch.save`` state_dict, or ``.safetensors`` when the safetensors
package is installed) given by path or URL, or, for the torchvision backbones, from torchvision's
own weights API. Nothing is downloaded at import time; gdown and torchvision are imported lazily.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FEATURE_NAMES",
    "KINDS",
    "FeatureExtractor",
    "VGGFace2ResNet50",
    "TorchvisionResNet50",
    "TorchvisionVGG16",
    "WeightsUnavailableError",
    "WeightsHashMismatchError",
    "build_perceptual",
    "default_cache_dir",
    "download",
    "is_google_drive_url",
    "load_state_dict_file",
    "resolve_weights",
    "sha256_file",
]

#: Order of the returned taps, the order of ``w_pl`` (reference §2.5).
FEATURE_NAMES = ("feat7", "feat28", "feat55", "feat112")
#: Every backbone here was trained on 224x224 crops; the original resized both images to it.
INPUT_SIZE = 224


# ----------------------------------------------------------------------------------------------
# Errors


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained or read.

    The message names the file, and where to put it so that ganlib uses it without downloading.
    """


class WeightsHashMismatchError(WeightsUnavailableError):
    """A weights file does not have the expected sha256 (nothing was saved or replaced)."""


# ----------------------------------------------------------------------------------------------
# Downloads


def default_cache_dir() -> Path:
    """Folder where weights given by URL are kept: ``~/.cache/ganlib/weights``."""
    return Path.home() / ".cache" / "ganlib" / "weights"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _normalise_sha256(sha256: str | None) -> str | None:
    if not sha256:  # None or "" (the config's "not given")
        return None
    s = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", s):
        raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
    return s


_DRIVE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")


def is_google_drive_url(url: str) -> bool:
    """True for Google Drive links, which need gdown (Drive answers big files with a confirm page)."""
    host = (urllib.parse.urlparse(url).hostname or "").lower()
    return host in _DRIVE_HOSTS


def _drive_file_id(url: str) -> str | None:
    """The file id of a Drive link (``/file/d/<id>/...`` or ``?id=<id>``), or None."""
    parsed = urllib.parse.urlparse(url)
    m = re.search(r"/file/d/([\w-]+)", parsed.path)
    if m:
        return m.group(1)
    ids = urllib.parse.parse_qs(parsed.query).get("id")
    return ids[0] if ids else None


def _filename_for_url(url: str) -> str:
    """Local file name for a URL: the last path component, or ``gdrive-<id>`` for Drive links."""
    if is_google_drive_url(url):
        file_id = _drive_file_id(url)
        if file_id is None:
            raise ValueError(f"Cannot find a file id in the Google Drive link {url!r}: "
                             "use a file's share link (https://drive.google.com/file/d/<id>/view).")
        return f"gdrive-{file_id}"
    name = urllib.parse.unquote(Path(urllib.parse.urlparse(url).path).name)
    if not name or name in (".", ".."):
        raise ValueError(f"Cannot name a local file after {url!r}: the URL must end with a file name.")
    return name


def _fetch_urllib(url: str, out: Path, progress: bool, timeout: float) -> None:
    from ganlib import __version__

    req = urllib.request.Request(url, headers={"User-Agent": f"ganlib/{__version__}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(out, "wb") as f:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=out.name)
        got = 0
        try:
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                got += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    # http.client may end a short body silently: a cut-off transfer must not pass for a file.
    if total is not None and got != total:
        raise ConnectionError(f"the transfer stopped after {got} of {total} bytes")


def _fetch_gdrive(url: str, out: Path, progress: bool) -> None:
    try:
        import gdown  # lazily: only Drive links need it
    except ImportError as e:
        raise RuntimeError("Google Drive links need the gdown package (pip install gdown)") from e
    file_id = _drive_file_id(url)
    # By id rather than URL: gdown >= 6 dropped `fuzzy`, and every version since 4 takes `id`.
    kwargs = {"id": file_id} if file_id else {"url": url}
    result = gdown.download(output=str(out), quiet=not progress, **kwargs)
    if result is None or not out.is_file():  # older gdown returns None instead of raising
        raise RuntimeError("gdown could not fetch the file (is it shared as 'Anyone with the link'?)")


def download(url: str, dest_path: str | os.PathLike, sha256: str | None = None, *,
             progress: bool = False, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest_path`` atomically, verified by ``sha256`` when given.

    Google Drive links go through gdown (imported only then), other http(s) URLs through urllib.
    The data is written under a temporary name in the destination folder and renamed to
    ``dest_path`` only once complete and verified; on any failure nothing is left behind.
    An existing ``dest_path`` is reused without downloading (after checking its sha256 when one
    is given); an existing file with a different sha256 is left untouched and refused.

    Raises:
        WeightsHashMismatchError: the downloaded (or existing) file has another sha256.
        WeightsUnavailableError: no connection, HTTP error, cut-off transfer, gdown failure; the
            message names the file and the local path to copy it to.
        ValueError: not an http(s) URL, or a malformed sha256.
    """
    expected = _normalise_sha256(sha256)
    dest = Path(dest_path).expanduser()
    if dest.exists():
        if expected is None:
            return dest
        actual = sha256_file(dest)
        if actual == expected:
            return dest
        raise WeightsHashMismatchError(
            f"{dest} already exists but its sha256 is {actual}, not the expected {expected}. "
            f"It was left untouched: delete or move it to download {url} again, or copy the "
            "right file there.")
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise ValueError(f"download() needs an http(s) URL, got {url!r}")

    dest.parent.mkdir(parents=True, exist_ok=True)
    # A private folder beside the destination: same filesystem (so the rename is atomic) and one
    # rmtree removes whatever the downloader left (gdown keeps its own partial files).
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        tmp = work / dest.name
        try:
            if is_google_drive_url(url):
                _fetch_gdrive(url, tmp, progress)
            else:
                _fetch_urllib(url, tmp, progress, timeout)
        except Exception as e:  # every failure here means "could not download"; say which file
            hint = f" (sha256 {expected})" if expected else ""
            raise WeightsUnavailableError(
                f"Could not download {dest.name!r} from {url}: {type(e).__name__}: {e}. "
                f"Get this file{hint} another way and copy it to {dest} — it is then used without "
                "downloading — or give its local path instead of the URL.") from e
        if expected is not None:
            actual = sha256_file(tmp)
            if actual != expected:
                raise WeightsHashMismatchError(
                    f"Downloaded {url} but its sha256 is {actual}, not the expected {expected}; "
                    f"nothing was saved to {dest}. The link may point to another or a changed "
                    "file: check the URL and the sha256.")
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def resolve_weights(weights: str | os.PathLike, sha256: str | None = None,
                    cache_dir: str | os.PathLike | None = None, *, progress: bool = False) -> Path:
    """Local path of a weights file given as a path or an http(s)/Google Drive URL.

    URLs are downloaded (once) into ``cache_dir`` (default :func:`default_cache_dir`) under the
    URL's file name. A local file is checked against ``sha256`` when one is given.
    """
    text = os.fspath(weights)
    if text.startswith(("http://", "https://")):
        folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        return download(text, folder / _filename_for_url(text), sha256, progress=progress)
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"Weights file {path} does not exist. Copy the weights file to that path, or pass its "
            "correct path or an http(s)/Google Drive URL.")
    expected = _normalise_sha256(sha256)
    if expected is not None:
        actual = sha256_file(path)
        if actual != expected:
            raise WeightsHashMismatchError(
                f"Weights file {path} has sha256 {actual}, not the expected {expected}: it is "
                "another or a damaged file. Replace it with the right file, or fix the sha256.")
    return path


# ----------------------------------------------------------------------------------------------
# Reading weight files


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    # safetensors: 8-byte little-endian header length, then a JSON header starting with "{".
    with open(path, "rb") as f:
        head = f.read(9)
    return (len(head) == 9 and head[8:9] == b"{"
            and int.from_bytes(head[:8], "little") < path.stat().st_size)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a state_dict (name -> tensor) from a ``torch.save`` or ``.safetensors`` file on CPU.

    ``torch.save`` files are read with ``weights_only=True``; a dict holding the state_dict under
    ``"state_dict"`` is unwrapped. Raises :class:`WeightsUnavailableError` naming the file when
    it cannot be read or holds something else.
    """
    path = Path(path)
    if _is_safetensors(path):
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise WeightsUnavailableError(
                f"{path} is a safetensors file, which needs the safetensors package: "
                "pip install safetensors (or re-save it with torch.save(state_dict, path)).") from e
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:
            raise WeightsUnavailableError(f"{path} is not a readable safetensors file "
                                          f"({type(e).__name__}: {e}).") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsUnavailableError(
            f"{path} could not be read as PyTorch weights ({type(e).__name__}: {e}). Expected a "
            "state_dict saved with torch.save(model.state_dict(), path); the file may be damaged "
            "or incomplete: copy it again.") from e
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsUnavailableError(
            f"{path} does not hold a state_dict (a dict of tensors) but a {type(obj).__name__}.")
    return dict(obj)


# ----------------------------------------------------------------------------------------------
# Feature-extractor interface


def _resize(x: Tensor) -> Tensor:
    if tuple(x.shape[-2:]) == (INPUT_SIZE, INPUT_SIZE):
        return x
    # No antialiasing, as the original's tf.image.resize_images (bilinear) had none.
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                         antialias=False)


class FeatureExtractor(nn.Module):
    """A frozen backbone returning the four perceptual taps ``[feat7, feat28, feat55, feat112]``.

    ``forward(x)`` takes RGB, NCHW, float images in [-1, 1] of any size and returns a list of
    four tensors in the order of ``w_pl``. Subclasses implement :meth:`preprocess` (ganlib
    images -> backbone input at 224x224) and :meth:`taps` (backbone input -> four tensors), keep
    the backbone in ``self.net`` and describe the taps in ``TAP_NAMES`` / ``TAP_SHAPES``
    (keyed by ``before_activ``; shapes are (C, H, W) for the 224 input).

    ``before_activ`` is read at every call, so it may be switched on a built extractor (the
    schedule changes ``PL_before_activ`` between chunks). The parameters never require grad and
    the module never leaves inference mode (:meth:`train` is overridden), so batch-norm layers use
    their stored statistics and are never updated; gradients still reach the input.
    """

    TAP_NAMES: dict[bool, tuple[str, str, str, str]] = {}
    TAP_SHAPES: dict[bool, tuple[tuple[int, int, int], ...]] = {}
    #: Key prefixes of a full checkpoint that the trunk does not use (classifier heads).
    IGNORED_KEY_PREFIXES: tuple[str, ...] = ()

    net: nn.Module

    def __init__(self, before_activ: bool = False) -> None:
        super().__init__()
        self.before_activ = bool(before_activ)

    @property
    def tap_names(self) -> tuple[str, str, str, str]:
        """Backbone layer behind each of ``feat7, feat28, feat55, feat112``, for this mode."""
        return self.TAP_NAMES[self.before_activ]

    @property
    def tap_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """(C, H, W) of each tap for the (internal) 224x224 input, for this mode."""
        return self.TAP_SHAPES[self.before_activ]

    def preprocess(self, x: Tensor) -> Tensor:
        """ganlib images (RGB, [-1, 1], any size) -> the backbone's 224x224 input."""
        raise NotImplementedError

    def taps(self, x: Tensor) -> list[Tensor]:
        """Preprocessed input -> ``[feat7, feat28, feat55, feat112]``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects RGB images shaped (N, 3, H, W) in "
                             f"[-1, 1], got shape {tuple(x.shape)}")
        return self.taps(self.preprocess(x))

    def train(self, mode: bool = True) -> FeatureExtractor:
        # A frozen loss network: the parent's .train() must not switch BN to batch statistics
        # (nor update its running averages), whatever `mode` asks for.
        return super().train(False)

    def freeze(self) -> FeatureExtractor:
        """Stop gradients to the parameters and enter inference mode. Returns self."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def load_backbone_weights(self, state_dict: Mapping[str, Tensor],
                              source: str = "the state_dict") -> FeatureExtractor:
        """Load a state_dict into the backbone ``self.net`` (strictly, after dropping
        ``IGNORED_KEY_PREFIXES`` and a ``net.``/``module.`` prefix common to all keys).

        Raises :class:`WeightsUnavailableError` naming ``source`` when the keys or shapes do not
        fit this backbone. Returns self.
        """
        sd = {k: v for k, v in state_dict.items() if not k.startswith(self.IGNORED_KEY_PREFIXES)}
        for prefix in ("net.", "module."):  # saved from an extractor, or from DataParallel
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
        what = f"{source} does not hold {type(self).__name__} weights"
        try:
            missing, unexpected = self.net.load_state_dict(sd, strict=False)
        except RuntimeError as e:  # shape mismatches raise even when strict=False
            raise WeightsUnavailableError(f"{what}: {e}") from e
        if missing or unexpected:
            raise WeightsUnavailableError(
                f"{what}: {len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} "
                f"unexpected keys (e.g. {unexpected[:3]}). Check the backbone kind; the key names "
                f"are listed in the {type(self).__name__} docstring.")
        return self


# ----------------------------------------------------------------------------------------------
# VGGFace2 ResNet-50 (caffe layout, keras-vggface)


def _caffe_bn(channels: int) -> nn.BatchNorm2d:
    # Keras' BatchNormalization epsilon (1e-3), not PyTorch's 1e-5: the weights were trained so.
    return nn.BatchNorm2d(channels, eps=1e-3)


class _CaffeBottleneck(nn.Module):
    """Caffe-style bottleneck: the stride sits on the first 1x1 conv (and the projection)."""

    def __init__(self, in_ch: int, mid_ch: int, stride: int, project: bool) -> None:
        super().__init__()
        out_ch = 4 * mid_ch
        self.reduce = nn.Conv2d(in_ch, mid_ch, 1, stride=stride, bias=False)
        self.reduce_bn = _caffe_bn(mid_ch)
        self.conv3x3 = nn.Conv2d(mid_ch, mid_ch, 3, padding=1, bias=False)
        self.conv3x3_bn = _caffe_bn(mid_ch)
        self.increase = nn.Conv2d(mid_ch, out_ch, 1, bias=False)
        self.increase_bn = _caffe_bn(out_ch)
        self.proj = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False) if project else None
        self.proj_bn = _caffe_bn(out_ch) if project else None

    def forward(self, x: Tensor) -> Tensor:
        """The residual sum BEFORE the block's final ReLU (the before_activ taps need it)."""
        y = F.relu(self.reduce_bn(self.reduce(x)))
        y = F.relu(self.conv3x3_bn(self.conv3x3(y)))
        y = self.increase_bn(self.increase(y))
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x))
        return y + shortcut


class _CaffeResNet50(nn.Module):
    """Trunk of keras-vggface's ResNet-50 (no pooling/classifier). Blocks are ``conv{s}_{b}``."""

    #: (stage, bottleneck width, blocks, stride of the first block): ResNet-50's 3/4/6/3.
    STAGES = ((2, 64, 3, 1), (3, 128, 4, 2), (4, 256, 6, 2), (5, 512, 3, 2))

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, bias=False)  # "same" padding done in taps()
        self.conv1_bn = _caffe_bn(64)
        in_ch = 64
        for stage, width, n_blocks, stride in self.STAGES:
            for b in range(1, n_blocks + 1):
                first = b == 1
                self.add_module(f"conv{stage}_{b}", _CaffeBottleneck(
                    in_ch, width, stride if first else 1, project=first))
                in_ch = 4 * width
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def blocks(self) -> list[tuple[str, _CaffeBottleneck]]:
        return [(n, m) for n, m in self.named_children() if isinstance(m, _CaffeBottleneck)]


class VGGFace2ResNet50(FeatureExtractor):
    """VGGFace2 ResNet-50 (keras-vggface ``resnet50``, caffe layout), the original's PL network.

    Layout (reference §2.5, §9.1): conv1 7x7/2 with TensorFlow "same" padding -> 112x112, BN,
    ReLU, max-pool 3x3/2 "valid" -> **55x55** (torchvision's padded pool gives 56); bottleneck
    stages conv2..conv5 with 3/4/6/3 blocks, the stride-2 of each stage's first block on its
    first **1x1** conv (and on the projection); every BN has eps 1e-3; convolutions have no bias.

    Preprocessing (the keras-vggface "version 2" caffe convention): bilinear resize to 224,
    ``x = (x + 1) / 2 * 255``, RGB -> BGR, subtract the per-channel means (B, G, R) =
    (91.4953, 103.8827, 131.0912); no division by a std.

    Taps for a 224 input, ``[feat7, feat28, feat55, feat112]``:

    - ``before_activ=False``: conv5_3 after ReLU (2048, 7, 7); conv3_4 after ReLU (512, 28, 28);
      conv2_3 after ReLU (256, 55, 55); conv1 raw output before BN (64, 112, 112).
    - ``before_activ=True``: the residual sums before the ReLU of conv5_3 (2048, 7, 7), conv3_4
      (512, 28, 28), conv2_3 (256, 55, 55), and conv2_1 (256, 55, 55) in the feat112 slot (the
      original's "misnamed, size 55" tap).

    conv4_x is not tapped; it is computed only because conv5 needs it.

    Weights: a state_dict with these keys (Keras layer -> key; BN gamma/beta/moving_mean/
    moving_variance -> weight/bias/running_mean/running_var; conv kernels HWIO -> OIHW):
    ``conv1/7x7_s2`` -> ``conv1.weight``; ``conv1/7x7_s2/bn`` -> ``conv1_bn.*``;
    ``conv{s}_{b}_1x1_reduce`` -> ``conv{s}_{b}.reduce.weight`` (its ``/bn`` -> ``.reduce_bn.*``);
    ``conv{s}_{b}_3x3`` -> ``.conv3x3``; ``conv{s}_{b}_1x1_increase`` -> ``.increase``;
    ``conv{s}_{b}_1x1_proj`` -> ``.proj`` (first block of each stage only), with ``_bn`` alike.
    """

    TAP_NAMES = {
        False: ("conv5_3_relu", "conv3_4_relu", "conv2_3_relu", "conv1_7x7_s2_raw"),
        True: ("conv5_3_sum", "conv3_4_sum", "conv2_3_sum", "conv2_1_sum"),
    }
    TAP_SHAPES = {
        False: ((2048, 7, 7), (512, 28, 28), (256, 55, 55), (64, 112, 112)),
        True: ((2048, 7, 7), (512, 28, 28), (256, 55, 55), (256, 55, 55)),
    }
    #: keras-vggface "version 2" (VGGFace2) channel means, B, G, R, on the 0..255 scale.
    MEAN_BGR = (91.4953, 103.8827, 131.0912)

    def __init__(self, before_activ: bool = False) -> None:
        super().__init__(before_activ)
        self.net = _CaffeResNet50()
        self.register_buffer("mean_bgr", torch.tensor(self.MEAN_BGR).view(1, 3, 1, 1),
                             persistent=False)

    def preprocess(self, x: Tensor) -> Tensor:
        x = (_resize(x) + 1.0) * 127.5  # [-1, 1] -> [0, 255], the original's (x + 1) / 2 * 255
        return x.flip(1) - self.mean_bgr  # RGB -> BGR: the caffe weights were trained on BGR

    def taps(self, x: Tensor) -> list[Tensor]:
        net = self.net
        # TensorFlow "same" for a 7x7/2 conv on 224 pads 2 before and 3 after (PyTorch's
        # symmetric padding=3 gives the same size but shifts the sampling grid by one pixel).
        raw1 = net.conv1(F.pad(x, (2, 3, 2, 3)))
        y = F.max_pool2d(F.relu(net.conv1_bn(raw1)), 3, 2)  # "valid": 112 -> 55
        keep = {"conv2_1", "conv2_3", "conv3_4", "conv5_3"}
        feats = {}
        for name, block in net.blocks():
            s = block(y)
            y = F.relu(s)
            if name in keep:
                feats[name] = s if self.before_activ else y
        feat112 = feats["conv2_1"] if self.before_activ else raw1
        return [feats["conv5_3"], feats["conv3_4"], feats["conv2_3"], feat112]


# ----------------------------------------------------------------------------------------------
# torchvision ImageNet backbones


class _ImageNetExtractor(FeatureExtractor):
    """ImageNet preprocessing (resize 224, [0, 1], RGB mean/std) and torchvision's weights API."""

    MEAN_RGB = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalisation
    STD_RGB = (0.229, 0.224, 0.225)
    #: (weights enum class name in torchvision.models, default member)
    WEIGHTS_ENUM: tuple[str, str] = ("", "")

    def __init__(self, before_activ: bool = False) -> None:
        super().__init__(before_activ)
        self.register_buffer("mean", torch.tensor(self.MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD_RGB).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: Tensor) -> Tensor:
        return ((_resize(x) + 1.0) * 0.5 - self.mean) / self.std

    @classmethod
    def weights_enum_member(cls, weights=None):
        """The torchvision weights enum member meant by ``weights``: None -> the default
        (``WEIGHTS_ENUM[1]``), a member of this backbone's enum, or a member name such as
        ``"IMAGENET1K_V1"``. Anything else (a path, a URL) gives None."""
        import torchvision.models

        enum_cls = getattr(torchvision.models, cls.WEIGHTS_ENUM[0])
        if weights is None:
            return enum_cls[cls.WEIGHTS_ENUM[1]]
        if isinstance(weights, enum_cls):
            return weights
        return enum_cls.__members__.get(weights) if isinstance(weights, str) else None

    @classmethod
    def pretrained_state_dict(cls, member, *,
                              progress: bool = False) -> tuple[dict[str, Tensor], str]:
        """ImageNet weights of a torchvision weights enum ``member``, through torchvision's API
        (downloaded once into the torch hub cache, hash-checked by torchvision).
        Returns (state_dict, description)."""
        url = member.url
        fname = url.rsplit("/", 1)[-1]
        cached = Path(torch.hub.get_dir()) / "checkpoints" / fname
        try:
            sd = member.get_state_dict(progress=progress, check_hash=True, weights_only=True)
        except Exception as e:
            raise WeightsUnavailableError(
                f"Could not get torchvision weights {cls.WEIGHTS_ENUM[0]}.{member.name} "
                f"({fname}, from {url}): {type(e).__name__}: {e}. Offline, copy {fname} to "
                f"{cached} (torchvision then uses it without downloading; delete a damaged copy "
                f"there first), or pass weights='/path/to/{fname}'.") from e
        return sd, f"{cls.WEIGHTS_ENUM[0]}.{member.name} ({cached})"


def _tv_bottleneck_sum(block: nn.Module, x: Tensor) -> Tensor:
    """A torchvision Bottleneck's residual sum before its final ReLU (its forward hides it, and
    applies an in-place ReLU that would overwrite a kept tap)."""
    y = F.relu(block.bn1(block.conv1(x)))
    y = F.relu(block.bn2(block.conv2(y)))
    y = block.bn3(block.conv3(y))
    return y + (x if block.downsample is None else block.downsample(x))


class TorchvisionResNet50(_ImageNetExtractor):
    """torchvision ResNet-50 (ImageNet, default ``ResNet50_Weights.IMAGENET1K_V2``).

    Not the original's network (ImageNet, not faces; stride on the 3x3 conv; padded max-pool ->
    56x56): taps are taken at the matching depths. For a 224 input:

    - ``before_activ=False``: layer4 output (2048, 7, 7); layer2 output (512, 28, 28); layer1
      output (256, 56, 56); conv1 raw output before BN (64, 112, 112) — as the original's feat112.
    - ``before_activ=True``: residual sums before the final ReLU of layer4.2 (2048, 7, 7),
      layer2.3 (512, 28, 28), layer1.2 (256, 56, 56), and layer1.0 (256, 56, 56) in the feat112
      slot — as the original's conv2_1 tap.

    Weights: torchvision's state_dict key names; ``fc.*`` is ignored (the trunk has no head).
    """

    TAP_NAMES = {
        False: ("layer4_relu", "layer2_relu", "layer1_relu", "conv1_raw"),
        True: ("layer4.2_sum", "layer2.3_sum", "layer1.2_sum", "layer1.0_sum"),
    }
    TAP_SHAPES = {
        False: ((2048, 7, 7), (512, 28, 28), (256, 56, 56), (64, 112, 112)),
        True: ((2048, 7, 7), (512, 28, 28), (256, 56, 56), (256, 56, 56)),
    }
    IGNORED_KEY_PREFIXES = ("fc.",)
    WEIGHTS_ENUM = ("ResNet50_Weights", "IMAGENET1K_V2")

    def __init__(self, before_activ: bool = False) -> None:
        super().__init__(before_activ)
        from torchvision.models import resnet50

        self.net = resnet50(weights=None)
        self.net.fc = nn.Identity()  # the classifier is never used

    def taps(self, x: Tensor) -> list[Tensor]:
        net = self.net
        raw1 = net.conv1(x)
        y = net.maxpool(F.relu(net.bn1(raw1)))
        feats: dict[str, Tensor] = {}
        for lname in ("layer1", "layer2", "layer3", "layer4"):
            for i, block in enumerate(getattr(net, lname)):
                s = _tv_bottleneck_sum(block, y)
                y = F.relu(s)
                if i == 0 and lname == "layer1":
                    first_sum = s  # the before_activ feat112, as the original's conv2_1 tap
            feats[lname] = s if self.before_activ else y
        feat112 = first_sum if self.before_activ else raw1
        return [feats["layer4"], feats["layer2"], feats["layer1"], feat112]


# torchvision's VGG16 "D" configuration; numbers are conv widths, "M" a 2x2 max-pool. Built here
# (trunk only) so that the indices of `features` match torchvision's state_dict keys.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M")


class _VGG16Trunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU()]
                in_ch = v
        self.features = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # torchvision's VGG init
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)


class TorchvisionVGG16(_ImageNetExtractor):
    """torchvision VGG16 (ImageNet, default ``VGG16_Weights.IMAGENET1K_V1``), trunk only.

    Taps at the original's scales, for a 224 input (``features`` indices in brackets):

    - ``before_activ=False``: pool5 [30] (512, 7, 7); relu4_3 [22] (512, 28, 28); relu3_3 [15]
      (256, 56, 56); relu2_2 [8] (128, 112, 112).
    - ``before_activ=True``: 2x2 max-pool of conv5_3 [28] (512, 7, 7) — pool5 without the ReLU,
      as max-pool and ReLU commute; conv4_3 [21] (512, 28, 28); conv3_3 [14] (256, 56, 56);
      conv2_2 [7] (128, 112, 112).

    Weights: torchvision's state_dict key names (``features.N.*``); ``classifier.*`` is ignored.
    """

    TAP_NAMES = {
        False: ("pool5", "relu4_3", "relu3_3", "relu2_2"),
        True: ("maxpool(conv5_3)", "conv4_3", "conv3_3", "conv2_2"),
    }
    TAP_SHAPES = {
        False: ((512, 7, 7), (512, 28, 28), (256, 56, 56), (128, 112, 112)),
        True: ((512, 7, 7), (512, 28, 28), (256, 56, 56), (128, 112, 112)),
    }
    IGNORED_KEY_PREFIXES = ("classifier.",)
    WEIGHTS_ENUM = ("VGG16_Weights", "IMAGENET1K_V1")
    #: `features` indices of [feat7, feat28, feat55, feat112] per mode.
    _TAP_INDEX = {False: (30, 22, 15, 8), True: (28, 21, 14, 7)}

    def __init__(self, before_activ: bool = False) -> None:
        super().__init__(before_activ)
        self.net = _VGG16Trunk()

    def taps(self, x: Tensor) -> list[Tensor]:
        index = self._TAP_INDEX[self.before_activ]
        kept: dict[int, Tensor] = {}
        for i, layer in enumerate(self.net.features[: index[0] + 1]):
            # Not in place: a kept pre-ReLU tap may be the very tensor this ReLU reads.
            x = F.relu(x) if isinstance(layer, nn.ReLU) else layer(x)
            if i in index:
                kept[i] = x
        feats = [kept[i] for i in index]
        if self.before_activ:
            feats[0] = F.max_pool2d(feats[0], 2, 2)
        return feats


# ----------------------------------------------------------------------------------------------
# Factory

_BACKBONES: dict[str, type[FeatureExtractor]] = {
    "vggface2": VGGFace2ResNet50,
    "resnet50": TorchvisionResNet50,
    "vgg16": TorchvisionVGG16,
}
#: Accepted ``kind`` values of :func:`build_perceptual`.
KINDS = ("none", *_BACKBONES)


def build_perceptual(kind: str = "none", weights: str | os.PathLike | None = None,
                     sha256: str | None = None, before_activ: bool = False,
                     cache_dir: str | os.PathLike | None = None, device=None, *,
                     random_init: bool = False, progress: bool = False) -> FeatureExtractor | None:
    """Build the frozen perceptual feature extractor, or None for ``kind="none"``.

    Args:
        kind: ``"none"``, ``"vggface2"`` (the original's network; needs ``weights``),
            ``"resnet50"`` or ``"vgg16"`` (torchvision ImageNet weights).
        weights: path or http(s)/Google Drive URL of a state_dict file (``torch.save`` or
            ``.safetensors``). URLs are downloaded once into ``cache_dir``. For the torchvision
            kinds, None means torchvision's default ImageNet weights (downloaded by torchvision
            into the torch hub cache); a member of their torchvision weights enum (e.g.
            ``torchvision.models.ResNet50_Weights.IMAGENET1K_V1``) or its name selects another.
            ``""`` counts as None.
        sha256: expected sha256 of the ``weights`` file (checked for paths and URLs).
        before_activ: the original's ``PL_before_activ`` taps (see the module docstring).
        cache_dir: where URL downloads go (default ``~/.cache/ganlib/weights``).
        device: moves the extractor there.
        random_init: keep the random initialisation and load nothing (tests, smoke runs).
        progress: show download progress.

    Raises:
        WeightsUnavailableError: the weights cannot be had or do not fit (the message says which
            file to provide and where); WeightsHashMismatchError for a wrong sha256.
        ValueError: unknown kind, or ``random_init`` together with ``weights``.
    """
    key = kind.strip().lower()
    if key not in KINDS:
        raise ValueError(f"Unknown perceptual backbone {kind!r}; choose one of {', '.join(KINDS)}.")
    if key == "none":
        return None
    weights = weights or None
    if random_init and weights is not None:
        raise ValueError("random_init=True keeps random weights: do not pass weights as well.")
    cls = _BACKBONES[key]
    if not random_init and weights is None and not issubclass(cls, _ImageNetExtractor):
        raise WeightsUnavailableError(
            "The VGGFace2 ResNet-50 weights are not bundled with ganlib or torchvision: pass "
            "weights=<path or URL> of a PyTorch state_dict file for VGGFace2ResNet50 (key "
            "names in its docstring), or use kind='resnet50' / 'vgg16' / 'none'.")
    extractor = cls(before_activ=before_activ)
    if not random_init:
        member = cls.weights_enum_member(weights) if issubclass(cls, _ImageNetExtractor) else None
        if member is not None:
            extractor.load_backbone_weights(*cls.pretrained_state_dict(member, progress=progress))
        elif isinstance(weights, (str, os.PathLike)):
            path = resolve_weights(weights, sha256, cache_dir, progress=progress)
            extractor.load_backbone_weights(load_state_dict_file(path), str(path))
        else:
            raise ValueError(f"weights for {kind!r} must be a path or a URL (or, for resnet50/"
                             f"vgg16, one of their torchvision weights), got {weights!r}")
    extractor.freeze()
    if device is not None:
        extractor.to(device)
    return extractor
