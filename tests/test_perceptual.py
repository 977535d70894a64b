"""Perceptual feature extractors and weight downloads (ganlib.perceptual).

Every backbone is built with random weights, saved with torch.save and loaded back through the
user-facing ``build_perceptual`` by path and by URL from a real HTTP server on 127.0.0.1.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from ganlib.perceptual import (
    FEATURE_NAMES,
    KINDS,
    VGGFace2ResNet50,
    WeightsHashMismatchError,
    WeightsUnavailableError,
    build_perceptual,
    download,
    is_google_drive_url,
    load_state_dict_file,
)

BACKBONES = ("vggface2", "resnet50", "vgg16")

# (C, H, W) of [feat7, feat28, feat55, feat112] for the internal 224 input (reference §2.5 for
# vggface2; torchvision's padded max-pool gives 56 where the caffe layout gives 55).
EXPECTED_SHAPES = {
    ("vggface2", False): [(2048, 7, 7), (512, 28, 28), (256, 55, 55), (64, 112, 112)],
    ("vggface2", True): [(2048, 7, 7), (512, 28, 28), (256, 55, 55), (256, 55, 55)],
    ("resnet50", False): [(2048, 7, 7), (512, 28, 28), (256, 56, 56), (64, 112, 112)],
    ("resnet50", True): [(2048, 7, 7), (512, 28, 28), (256, 56, 56), (256, 56, 56)],
    ("vgg16", False): [(512, 7, 7), (512, 28, 28), (256, 56, 56), (128, 112, 112)],
    ("vgg16", True): [(512, 7, 7), (512, 28, 28), (256, 56, 56), (128, 112, 112)],
}


def _images(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def _randomise_bn(module: nn.Module, seed: int) -> None:
    """Non-default BN statistics, so that saving/loading buffers is really checked."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """kind -> (path of a torch.save'd random backbone state_dict, that state_dict)."""
    folder = tmp_path_factory.mktemp("weights")
    out = {}
    for i, kind in enumerate(BACKBONES):
        torch.manual_seed(100 + i)
        ext = build_perceptual(kind, random_init=True)
        _randomise_bn(ext, seed=i)
        sd = {k: v.clone() for k, v in ext.net.state_dict().items()}
        path = folder / f"{kind}.pt"
        torch.save(sd, path)
        out[kind] = (path, sd)
    return out


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; logs each GET; ``/truncated.pt`` promises more bytes than it sends."""

    def __init__(self, *args, requests, **kwargs):
        self._requests = requests
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self._requests.append(self.path)
        if self.path == "/truncated.pt":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 100)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """(folder served, base URL, list of requested paths) of a threaded HTTP server."""
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []
    handler = functools.partial(_Handler, directory=str(root), requests=requests)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_state_equal(ext, sd):
    got = ext.net.state_dict()
    assert got.keys() == sd.keys()
    for k, v in sd.items():
        assert torch.equal(got[k], v), k


# ----------------------------------------------------------------------------------------------
# Caffe layout of the VGGFace2 ResNet-50


def test_vggface2_caffe_layout():
    ext = build_perceptual("vggface2", random_init=True)
    net = ext.net
    assert (net.conv1.kernel_size, net.conv1.stride) == ((7, 7), (2, 2))
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 53 and all(m.eps == 1e-3 for m in bns)  # 1 + 16 blocks x 3 + 4 projections
    assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d))
    blocks = net.blocks()
    counts = [sum(name.startswith(f"conv{s}_") for name, _ in blocks) for s in (2, 3, 4, 5)]
    assert counts == [3, 4, 6, 3]
    for stage, stride in ((2, 1), (3, 2), (4, 2), (5, 2)):
        first = getattr(net, f"conv{stage}_1")
        # the stride sits on the FIRST 1x1 conv (and the projection), never on the 3x3
        assert first.reduce.kernel_size == (1, 1) and first.reduce.stride == (stride, stride)
        assert first.conv3x3.stride == (1, 1)
        assert first.proj.stride == (stride, stride)
        assert getattr(net, f"conv{stage}_2").proj is None
    # conv1 "same" -> 112, then the valid 3x3/2 max-pool -> 55 (torchvision's pool would give 56)
    x = ext.preprocess(_images(1))
    raw1 = net.conv1(torch.nn.functional.pad(x, (2, 3, 2, 3)))
    assert raw1.shape[-2:] == (112, 112)
    pooled = torch.nn.functional.max_pool2d(torch.relu(net.conv1_bn(raw1)), 3, 2)
    assert pooled.shape[-2:] == (55, 55)


def test_vggface2_preprocess_rgb_to_bgr_minus_means():
    ext = build_perceptual("vggface2", random_init=True)
    x = torch.empty(1, 3, 224, 224)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, -1.0, 0.0  # R = 255, G = 0, B = 127.5
    y = ext.preprocess(x)
    expected_bgr = [127.5 - 91.4953, 0.0 - 103.8827, 255.0 - 131.0912]
    for c, v in enumerate(expected_bgr):
        assert torch.allclose(y[:, c], torch.full_like(y[:, c], v), atol=1e-4)
    assert ext.preprocess(_images(1, size=64)).shape == (1, 3, 224, 224)


def test_imagenet_preprocess_mean_std():
    ext = build_perceptual("resnet50", random_init=True)
    y = ext.preprocess(torch.zeros(1, 3, 32, 48))  # 0 in [-1, 1] is 0.5 in [0, 1]
    assert y.shape == (1, 3, 224, 224)
    for c, (m, s) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        assert torch.allclose(y[0, c], torch.full((224, 224), (0.5 - m) / s), atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Loading through build_perceptual: by path, by URL


@pytest.mark.parametrize("before_activ", [False, True])
@pytest.mark.parametrize("kind", BACKBONES)
def test_load_by_path_gives_documented_taps(saved, kind, before_activ):
    path, sd = saved[kind]
    ext = build_perceptual(kind, weights=str(path), before_activ=before_activ)
    _assert_state_equal(ext, sd)
    assert len(ext.tap_names) == 4
    assert ext.tap_names != type(ext).TAP_NAMES[not before_activ]
    n = 1
    with torch.no_grad():
        feats = ext(_images(n, size=48))
    assert len(feats) == len(FEATURE_NAMES) == 4
    shapes = [tuple(f.shape) for f in feats]
    assert shapes == [(n, *s) for s in EXPECTED_SHAPES[kind, before_activ]]
    assert [s[1:] for s in shapes] == list(ext.tap_shapes)
    assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize("kind", BACKBONES)
def test_before_activ_taps_are_the_pre_relu_of_the_after_activ_taps(saved, kind):
    path, _ = saved[kind]
    after = build_perceptual(kind, weights=path)
    before = build_perceptual(kind, weights=path, before_activ=True)
    x = _images(1)
    with torch.no_grad():
        fa, fb = after(x), before(x)
    # feat7/28/55 are the same layers with and without the ReLU (for vgg16 feat112 too)
    n_same = 4 if kind == "vgg16" else 3
    for a, b in zip(fa[:n_same], fb[:n_same]):
        assert (b < 0).any()
        assert torch.allclose(torch.relu(b), a, rtol=1e-5, atol=1e-5)
        assert (a >= 0).all()
    # the trainer switches PL_before_activ between chunks on the same extractor
    after.before_activ = True
    assert after.tap_names == before.tap_names
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(after(x), fb))


@pytest.mark.parametrize("kind", BACKBONES)
def test_load_by_url_downloads_once_and_verifies(saved, http_root, tmp_path, kind):
    path, sd = saved[kind]
    root, base, requests = http_root
    (root / path.name).write_bytes(path.read_bytes())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    url = f"{base}/{path.name}"

    ext = build_perceptual(kind, weights=url, sha256=digest, cache_dir=cache)
    _assert_state_equal(ext, sd)
    assert sorted(p.name for p in cache.iterdir()) == [path.name]  # no temp files left
    assert requests == [f"/{path.name}"]

    # the verified copy in the cache is reused: no second request
    build_perceptual(kind, weights=url, sha256=digest, cache_dir=cache)
    assert requests == [f"/{path.name}"]


def test_torchvision_weights_api_uses_hub_cache(saved, tmp_path, monkeypatch):
    """weights=None goes through torchvision's weights enum; a file already in the torch hub
    cache (as a user copies it there offline) is used without any download."""
    from torchvision.models import ResNet50_Weights, VGG16_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    hub = Path(torch.hub.get_dir())
    if hub != tmp_path / "hub":
        pytest.skip("torch.hub.set_dir() was called in this process; TORCH_HOME is ignored")
    path, sd = saved["resnet50"]
    cached = hub / "checkpoints" / ResNet50_Weights.IMAGENET1K_V2.url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    _assert_state_equal(build_perceptual("resnet50"), sd)
    _assert_state_equal(build_perceptual("resnet50", weights="IMAGENET1K_V2"), sd)
    _assert_state_equal(build_perceptual("resnet50", weights=ResNet50_Weights.IMAGENET1K_V2), sd)
    with pytest.raises(ValueError, match="VGG16_Weights"):  # another backbone's weights
        build_perceptual("resnet50", weights=VGG16_Weights.IMAGENET1K_V1)


# ----------------------------------------------------------------------------------------------
# Downloads: hashes, errors, nothing partial left


def test_wrong_sha256_is_refused_and_leaves_nothing(saved, http_root, tmp_path):
    path, _ = saved["vggface2"]
    root, base, _ = http_root
    (root / "w.pt").write_bytes(path.read_bytes())
    dest_dir = tmp_path / "dest"
    with pytest.raises(WeightsHashMismatchError, match="sha256"):
        download(f"{base}/w.pt", dest_dir / "w.pt", sha256="0" * 64)
    assert list(dest_dir.iterdir()) == []
    with pytest.raises(WeightsHashMismatchError):
        build_perceptual("vggface2", weights=f"{base}/w.pt", sha256="1" * 64, cache_dir=dest_dir)
    assert list(dest_dir.iterdir()) == []


def test_download_reuses_verified_file_and_keeps_a_mismatching_one(http_root, tmp_path):
    root, base, requests = http_root
    payload = b"some weights"
    (root / "f.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "d" / "f.bin"
    assert download(f"{base}/f.bin", dest, sha256=digest.upper()) == dest
    assert dest.read_bytes() == payload
    assert download(f"{base}/f.bin", dest, sha256=digest) == dest
    assert len(requests) == 1
    dest.write_bytes(b"the user's own file")
    with pytest.raises(WeightsHashMismatchError, match=str(dest)):
        download(f"{base}/f.bin", dest, sha256=digest)
    assert dest.read_bytes() == b"the user's own file"  # never silently replaced
    assert len(requests) == 1


def test_offline_error_names_the_file_and_where_to_put_it(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/vggface2_resnet50.pt"
    with pytest.raises(WeightsUnavailableError) as info:
        build_perceptual("vggface2", weights=url, cache_dir=tmp_path / "cache")
    msg = str(info.value)
    dest = tmp_path / "cache" / "vggface2_resnet50.pt"
    assert "vggface2_resnet50.pt" in msg and str(dest) in msg
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("name", ["missing.pt", "truncated.pt"])
def test_http_errors_and_cut_transfers_leave_nothing(http_root, tmp_path, name):
    _, base, _ = http_root
    dest = tmp_path / "d" / name
    with pytest.raises(WeightsUnavailableError, match=name) as info:
        download(f"{base}/{name}", dest)
    assert str(dest) in str(info.value)
    assert list(dest.parent.iterdir()) == []


def test_bad_sha256_argument_and_non_http_url(tmp_path):
    with pytest.raises(ValueError, match="64 hexadecimal"):
        download("http://127.0.0.1/x.pt", tmp_path / "x.pt", sha256="abc")
    with pytest.raises(ValueError, match="http"):
        download("ftp://example.org/x.pt", tmp_path / "x.pt")


def test_google_drive_links_are_recognised():
    assert is_google_drive_url("https://drive.google.com/file/d/1AbC-d_9/view?usp=sharing")
    assert is_google_drive_url("https://drive.google.com/uc?id=1AbC&export=download")
    assert not is_google_drive_url("https://example.org/drive.google.com/x.pt")
    assert not is_google_drive_url("http://127.0.0.1:8000/x.pt")


# ----------------------------------------------------------------------------------------------
# Local files: missing, damaged, wrong backbone, wrong hash


def test_missing_local_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "vggface2.pt"
    with pytest.raises(WeightsUnavailableError, match="nowhere"):
        build_perceptual("vggface2", weights=missing)


def test_vggface2_without_weights_says_what_to_pass():
    with pytest.raises(WeightsUnavailableError, match="weights="):
        build_perceptual("vggface2")


def test_damaged_or_foreign_file_is_refused_with_its_name(saved, tmp_path):
    bad = tmp_path / "damaged.pt"
    bad.write_bytes(saved["vggface2"][0].read_bytes()[:5000])
    with pytest.raises(WeightsUnavailableError, match="damaged.pt"):
        build_perceptual("vggface2", weights=bad)
    with pytest.raises(WeightsUnavailableError, match="resnet50.pt"):
        build_perceptual("vggface2", weights=saved["resnet50"][0])  # another backbone's keys


def test_local_file_with_wrong_sha256_is_refused_and_kept(saved):
    path, _ = saved["vgg16"]
    before = path.read_bytes()
    with pytest.raises(WeightsHashMismatchError, match="vgg16.pt"):
        build_perceptual("vgg16", weights=path, sha256="2" * 64)
    assert path.read_bytes() == before


def test_safetensors_files(saved, tmp_path):
    _, sd = saved["vggface2"]
    path = tmp_path / "w.safetensors"
    try:
        from safetensors.torch import save_file
    except ImportError:
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")
        with pytest.raises(WeightsUnavailableError, match="pip install safetensors"):
            load_state_dict_file(path)
        return
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    _assert_state_equal(build_perceptual("vggface2", weights=path), sd)


def test_kind_none_and_unknown_kinds(saved):
    assert KINDS == ("none", "vggface2", "resnet50", "vgg16")
    assert build_perceptual() is None
    assert build_perceptual("none", weights="ignored.pt") is None
    with pytest.raises(ValueError, match="vggface2"):
        build_perceptual("alexnet")
    with pytest.raises(ValueError, match="random_init"):
        build_perceptual("vgg16", weights=saved["vgg16"][0], random_init=True)


# ----------------------------------------------------------------------------------------------
# Frozen: no grads to the backbone, inference mode kept, grads reach the input


@pytest.mark.parametrize("kind", BACKBONES)
def test_gradient_reaches_input_not_backbone(kind):
    ext = build_perceptual(kind, random_init=True, before_activ=(kind == "resnet50"))
    assert not any(p.requires_grad for p in ext.parameters())
    x = _images(1).requires_grad_(True)
    sum(f.square().mean() for f in ext(x)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in ext.parameters())


def test_parent_train_keeps_batchnorm_in_inference_mode(saved):
    path, sd = saved["vggface2"]
    parent = nn.ModuleDict({"pl": build_perceptual("vggface2", weights=path),
                            "head": nn.Conv2d(3, 3, 1)})
    parent.train()
    assert parent["head"].training
    assert not any(m.training for m in parent["pl"].modules())
    with torch.no_grad():
        parent["pl"](_images(2))
    _assert_state_equal(parent["pl"], sd)  # running statistics were not updated
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        parent["pl"](torch.zeros(1, 4, 64, 64))


def test_import_downloads_nothing_and_loads_no_gdown():
    code = ("import sys, ganlib.perceptual; "
            "print(sorted(m for m in ('gdown', 'torchvision', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_vggface2_class_documents_taps():
    assert VGGFace2ResNet50.TAP_SHAPES[False] == tuple(EXPECTED_SHAPES["vggface2", False])
    assert VGGFace2ResNet50.TAP_SHAPES[True] == tuple(EXPECTED_SHAPES["vggface2", True])
    assert "55x55" in VGGFace2ResNet50.__doc__ and "1e-3" in VGGFace2ResNet50.__doc__
