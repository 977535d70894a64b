"""Invariants of the batched v2.2 augmentation (ganlib.augment). Tiny tensors, CPU, seconds."""
import pytest
import torch
import torch.nn.functional as F

from ganlib.augment import (Augmenter, apply_affine, color_match, compose_affine, invert_affine, motion_blur,
                            motion_blur_kernels, random_transform_params, random_warp, umeyama_batch)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def smooth_faces(b=4, s=64, seed=0):
    """Smooth, asymmetric uint8 test images: low-frequency sinusoids per channel."""
    g = gen(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, s), torch.linspace(0, 1, s), indexing="ij")
    ph = torch.rand(b, 3, 2, generator=g) * 6.28
    f = 1 + torch.rand(b, 3, 2, generator=g) * 2
    img = 0.5 + 0.25 * torch.sin(f[..., 0, None, None] * 3 * xx + ph[..., 0, None, None]) \
        + 0.2 * torch.cos(f[..., 1, None, None] * 2 * yy + ph[..., 1, None, None])
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def to_unit(x):
    return x.float() / 127.5 - 1


# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("r,s", [(32, 64), (64, 64), (32, 128)])
def test_identity_mode_is_a_plain_resize(r, s):
    x = smooth_faces(3, s)
    masks = (torch.rand(3, 1, s, s, generator=gen(1)) * 255).to(torch.uint8)
    warped, target, m = Augmenter.identity(r, s)(x, masks, gen())
    ref = F.interpolate(to_unit(x), size=r, mode="bilinear", align_corners=False)
    ref_m = F.interpolate(masks.float() / 255, size=r, mode="bilinear", align_corners=False)
    assert torch.allclose(warped, target, atol=1e-4)
    assert torch.allclose(warped, ref, atol=1e-4)
    assert torch.allclose(m, ref_m, atol=1e-4)


def test_identity_mode_with_coverage_resizes_the_central_crop():
    s, r = 64, 32
    x = smooth_faces(2, s)
    # coverage 64 (256-px units) = a quarter of the side on each side of the centre: crop [16:48] of 64.
    warped, target, _ = Augmenter.identity(r, s, coverage=64)(x, None, gen())
    crop = to_unit(x[:, :, 16:48, 16:48])
    assert torch.allclose(warped, crop, atol=1e-4)
    assert torch.allclose(target, crop, atol=1e-4)


def test_same_seed_same_batch_different_seed_different():
    x, pool = smooth_faces(4, 64), smooth_faces(6, 64, seed=3)
    aug = Augmenter(resolution=32, work_size=64, motion_blur=True, motion_blur_prob=0.5)
    a = aug(x, None, gen(5), pool)
    b = aug(x, None, gen(5), pool)
    c = aug(x, None, gen(6), pool)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.allclose(a[0], c[0]) and not torch.allclose(a[1], c[1])


@pytest.mark.parametrize("r,s", [(32, 64), (64, 128), (128, 128), (256, 256)])
def test_shapes_and_ranges(r, s):
    b = 2
    x = smooth_faces(b, s)
    masks = torch.zeros(b, 1, s, s, dtype=torch.uint8)
    masks[:, :, s // 4:s // 2, s // 4:3 * s // 4] = 255
    warped, target, m = Augmenter(resolution=r, work_size=s, motion_blur=True)(x, masks, gen(), pool=x)
    assert warped.shape == target.shape == (b, 3, r, r) and m.shape == (b, 1, r, r)
    assert warped.dtype == target.dtype == m.dtype == torch.float32
    assert warped.min() >= -1 and warped.max() <= 1 and target.min() >= -1 and target.max() <= 1
    assert m.min() >= 0 and m.max() <= 1 and m.max() > 0.5


def test_inputs_at_another_size_are_resized_to_work_size():
    x = smooth_faces(2, 96)
    warped, target, m = Augmenter(resolution=32, work_size=64)(x, None, gen())
    assert warped.shape == (2, 3, 32, 32) and m.shape == (2, 1, 32, 32) and m.abs().max() == 0


def test_eye_mask_follows_the_target_geometry():
    b, s, r = 6, 64, 32
    x = torch.full((b, 3, s, s), 40, dtype=torch.uint8)
    masks = torch.zeros(b, 1, s, s, dtype=torch.uint8)
    x[:, :, 20:36, 24:44] = 230  # an off-centre bright rectangle ...
    masks[:, :, 20:36, 24:44] = 255  # ... and a mask of exactly it
    _, target, m = Augmenter(resolution=r, work_size=s)(x, masks, gen(2))
    bright = target.mean(1, keepdim=True) > 0.1  # halfway between the two grey levels
    inside = m > 0.5
    iou = (bright & inside).sum((1, 2, 3)).float() / (bright | inside).sum((1, 2, 3)).float()
    assert iou.min() > 0.95, iou  # the warped path would give ~0.8, an untransformed mask ~0.6


def test_extra_mask_channels_follow_the_target_too():
    s = 64
    x = smooth_faces(2, s)
    eyes = torch.zeros(2, 1, s, s, dtype=torch.uint8)
    eyes[:, :, 20:30, 15:50] = 255
    face = torch.zeros(2, 1, s, s, dtype=torch.uint8)
    face[:, :, 10:60, 12:52] = 255
    aug = Augmenter(resolution=32, work_size=s)
    _, _, both = aug(x, torch.cat([eyes, face], 1), gen(4))
    _, _, only_eyes = aug(x, eyes, gen(4))
    _, _, only_face = aug(x, face, gen(4))
    assert both.shape == (2, 2, 32, 32)
    assert torch.allclose(both[:, :1], only_eyes) and torch.allclose(both[:, 1:], only_face)


def test_warped_differs_from_target_by_a_smooth_small_field():
    b, s, r = 8, 64, 64
    grid, theta = random_warp(b, r, gen(3))
    rigid = F.affine_grid(theta, [b, 1, r, r], align_corners=False)
    disp = (grid - rigid) * 128  # in pixels of a 256 image
    mean = disp.norm(dim=-1).mean()
    assert 1.0 < mean < 15.0, mean  # noise σ ~ 5-6 px at 256: a few px, not zero, not huge
    # smooth: bilinear over a 16r-px cell, neighbouring output pixels move almost together
    step = max((disp[:, 1:] - disp[:, :-1]).abs().max(), (disp[:, :, 1:] - disp[:, :, :-1]).abs().max())
    assert step < 2.0, step

    x = smooth_faces(b, s)
    warped, target, _ = Augmenter(resolution=r, work_size=s)(x, None, gen(3))
    diff = (warped - target).abs().mean()
    shuffled = (target - target.roll(1, 0)).abs().mean()
    assert 0.002 < diff < 0.1 and diff < shuffled / 3, (diff, shuffled)


def test_dense_map_is_the_bilinear_5x5_map_at_pixel_centres():
    """Independent formulation: interpolate the 5x5 maps at g = (k + 0.5)/(16r) (grid units)."""
    r = 32
    g1, g2 = gen(7), gen(7)
    grid, _ = random_warp(2, r, g1)
    u = torch.rand(2, 2, generator=g2)  # same draws as random_warp: coverage, sigma, then noise
    noise = torch.randn(2, 2, 5, 5, generator=g2)
    half = (78 + torch.floor(u[:, 0] * 20)) / 128
    sigma = (5 + u[:, 1] * 1.2) / 128
    base = torch.linspace(-1, 1, 5)
    pts = torch.stack([base.view(1, 5).expand(5, 5), base.view(5, 1).expand(5, 5)])
    pts = pts * half.view(-1, 1, 1, 1) + noise * sigma.view(-1, 1, 1, 1)
    g = (torch.arange(r) + 0.5) / (16 * r / 64)  # 0..4 in control-point units
    c = g / 2 - 1  # align_corners=True normalised coordinate of the 5x5 map
    where = torch.stack(torch.meshgrid(c, c, indexing="xy"), -1).expand(2, r, r, 2)
    ref = F.grid_sample(pts, where, mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
    assert torch.allclose(grid, ref, atol=1e-5)


def test_flip_flips_image_and_mask_together():
    s, r = 64, 64
    x = smooth_faces(2, s)
    masks = torch.zeros(2, 1, s, s, dtype=torch.uint8)
    masks[:, :, 10:30, 5:20] = 255
    plain = Augmenter.identity(r, s)
    flipper = Augmenter.identity(r, s)
    flipper.flip = 1.0
    w0, t0, m0 = plain(x, masks, gen())
    w1, t1, m1 = flipper(x, masks, gen())
    assert torch.allclose(w1, w0.flip(-1), atol=1e-4)
    assert torch.allclose(t1, t0.flip(-1), atol=1e-4)
    assert torch.allclose(m1, m0.flip(-1), atol=1e-4)
    assert not torch.allclose(m1, m0, atol=0.1)


@pytest.mark.parametrize("xyz", [False, True])
def test_color_match_moves_channel_means_toward_the_reference(xyz):
    s, margin = 64, 15
    g = gen(4)
    src = 80 + 20 * torch.rand(2, 3, s, s, generator=g)
    ref = torch.tensor([150.0, 110.0, 60.0]).view(1, 3, 1, 1) + 10 * torch.rand(2, 3, s, s, generator=g)

    def means(t):
        return t[..., margin:-margin, margin:-margin].mean((-2, -1))

    full = color_match(src, ref, torch.ones(2), torch.tensor([xyz, xyz]), margin=margin)
    half = color_match(src, ref, torch.full((2,), 0.5), xyz, margin=margin)
    none = color_match(src, ref, torch.zeros(2), xyz, margin=margin)
    assert torch.allclose(means(full), means(ref), atol=0.5)
    assert torch.allclose(means(half), (means(src) + means(ref)) / 2, atol=0.5)
    assert torch.allclose(none, src, atol=1e-3)
    assert full.min() >= 0 and full.max() <= 255


def test_color_match_keeps_range_and_handles_a_flat_image():
    src = torch.full((1, 3, 32, 32), 100.0)
    ref = torch.rand(1, 3, 32, 32, generator=gen()) * 255
    out = color_match(src, ref, torch.ones(1), False, margin=8)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 255
    bright = color_match(torch.rand(1, 3, 32, 32, generator=gen(1)) * 255, ref + 200, torch.ones(1), False, margin=8)
    assert bright.max() <= 255 and bright.min() >= 0


def test_augmenter_color_match_uses_the_pool():
    s = 64
    x = torch.full((4, 3, s, s), 60, dtype=torch.uint8) + (torch.rand(4, 3, s, s, generator=gen()) * 20).byte()
    pool = torch.full((3, 3, s, s), 200, dtype=torch.uint8) + (torch.rand(3, 3, s, s, generator=gen(1)) * 20).byte()
    aug = Augmenter.identity(32, s)
    aug.prob_color_match = 1.0
    _, target, _ = aug(x, None, gen(), pool)
    _, plain, _ = Augmenter.identity(32, s)(x, None, gen(), pool)
    assert target.mean() > plain.mean() + 0.3  # every face pulled towards the brighter pool by u ~ U(0,1)


def test_color_match_input_only_keeps_the_target_colours():
    """ganlib option: colour-match the warped input only; the target keeps the face's own colours."""
    s = 64
    x = torch.full((4, 3, s, s), 60, dtype=torch.uint8) + (torch.rand(4, 3, s, s, generator=gen()) * 20).byte()
    pool = torch.full((3, 3, s, s), 200, dtype=torch.uint8) + (torch.rand(3, 3, s, s, generator=gen(1)) * 20).byte()
    aug = Augmenter.identity(32, s)
    aug.prob_color_match, aug.color_match_target = 1.0, False
    warped, target, _ = aug(x, None, gen(), pool)
    _, plain, _ = Augmenter.identity(32, s)(x, None, gen(), pool)
    assert torch.equal(target, plain)  # untouched
    assert warped.mean() > plain.mean() + 0.3  # the input was matched to the brighter pool


@pytest.mark.parametrize("length", [1, 5, 7, 9, 11])
def test_motion_blur_kernels_sum_to_one(length):
    angles = torch.tensor([-180.0, -45.0, 0.0, 30.0, 90.0])
    k = motion_blur_kernels(torch.full((5,), length), angles, size=11)
    assert k.shape == (5, 1, 11, 11)
    assert torch.allclose(k.sum((-2, -1)), torch.ones(5, 1), atol=1e-5)
    assert k.min() >= 0
    nonzero = (k[2, 0] > 1e-6).sum()  # angle 0: exactly the horizontal line
    assert nonzero == length and torch.allclose(k[2, 0, 5], torch.where(
        (torch.arange(11) - 5).abs() <= length // 2, 1.0 / length, 0.0), atol=1e-6)


def test_motion_blur_keeps_constants_and_blurs_edges():
    img = torch.full((2, 3, 24, 24), 0.3)
    k = motion_blur_kernels(torch.tensor([9, 1]), torch.tensor([0.0, 0.0]))
    assert torch.allclose(motion_blur(img, k), img, atol=1e-6)
    edge = torch.zeros(2, 1, 24, 24)
    edge[..., 12:] = 1
    out = motion_blur(edge, k)
    assert 0 < out[0, 0, 5, 11] < 1 and torch.allclose(out[1], edge[1], atol=1e-6)  # length 1 = no blur


def test_umeyama_recovers_a_similarity_and_matches_the_closed_form():
    g = gen(9)
    b = 4
    src = torch.randn(b, 25, 2, generator=g, dtype=torch.float64)
    ang = torch.rand(b, generator=g, dtype=torch.float64) * 6
    sc = 0.5 + torch.rand(b, generator=g, dtype=torch.float64)
    rot = torch.stack([torch.stack([ang.cos(), -ang.sin()], -1), torch.stack([ang.sin(), ang.cos()], -1)], -2)
    t = torch.randn(b, 2, generator=g, dtype=torch.float64)
    dst = sc.view(b, 1, 1) * src @ rot.transpose(1, 2) + t.unsqueeze(1)
    m = umeyama_batch(src, dst)
    assert torch.allclose(m[..., :2], sc.view(b, 1, 1) * rot, atol=1e-9)
    assert torch.allclose(m[..., 2], t, atol=1e-9)
    # noisy points: least-squares similarity as complex a·z + c (an independent derivation)
    noisy = dst + 0.1 * torch.randn(b, 25, 2, generator=g, dtype=torch.float64)
    m = umeyama_batch(src, noisy)
    z = torch.complex(src[..., 0], src[..., 1])
    w = torch.complex(noisy[..., 0], noisy[..., 1])
    zc, wc = z - z.mean(1, keepdim=True), w - w.mean(1, keepdim=True)
    a = (wc * zc.conj()).sum(1) / (zc.abs() ** 2).sum(1)
    assert torch.allclose(m[:, 0, 0], a.real, atol=1e-9) and torch.allclose(m[:, 1, 0], a.imag, atol=1e-9)


def test_random_transform_params_ranges():
    b = 64
    th = random_transform_params(b, gen(), rotation=10, scale=0.1, shift=0.05, flip=0.5)
    det = torch.linalg.det(th[..., :2].double())
    flipped = det < 0
    assert 0.2 < flipped.float().mean() < 0.8
    s = det.abs().sqrt()  # 1/zoom
    assert (s > 1 / 1.1 - 1e-6).all() and (s < 1 / 0.9 + 1e-6).all()
    # Translation: at most 0.05 of the side each way = 0.1 in [-1, 1] units, times 1/zoom.
    assert th[..., 2].abs().max() < 0.1 / 0.9 + 1e-6
    # Rotation angle from the unflipped matrices
    a = th[~flipped]
    ang = torch.rad2deg(torch.atan2(a[:, 1, 0], a[:, 0, 0])).abs()
    assert ang.max() <= 10 + 1e-4 and ang.max() > 3
    none = random_transform_params(3, gen(), rotation=0, scale=0, shift=0, flip=0)
    assert torch.allclose(none, torch.eye(2, 3).expand(3, 2, 3))


def test_affine_helpers_compose_and_invert():
    th = random_transform_params(3, gen(1)).double()
    ident = compose_affine(th, invert_affine(th))
    assert torch.allclose(ident, torch.eye(2, 3, dtype=torch.float64).expand(3, 2, 3), atol=1e-9)
    x = smooth_faces(1, 32).float()
    out = apply_affine(x, torch.eye(2, 3).unsqueeze(0))
    assert torch.allclose(out, x, atol=1e-3)


def test_config_validation_and_dict():
    with pytest.raises(ValueError):
        Augmenter(resolution=40)
    with pytest.raises(ValueError):
        Augmenter(flip=1.5)
    with pytest.raises(ValueError):
        Augmenter(motion_blur_lengths=(4,))
    d = Augmenter().to_dict()
    assert d["coverage"] == 78.0 and d["noise_sigma"] == [5.0, 6.2] and d["motion_blur_lengths"] == [5, 7, 9, 11]


def test_cpu_generator_drives_the_same_draws_whatever_the_batch_content():
    """Parameters depend on the generator only, not on pixel values."""
    a, b = smooth_faces(2, 64, seed=1), smooth_faces(2, 64, seed=2)
    aug = Augmenter(resolution=32, work_size=64)
    mask = torch.zeros(2, 1, 64, 64, dtype=torch.uint8)
    mask[:, :, 30:40, 10:20] = 255
    _, _, ma = aug(a, mask, gen(11))
    _, _, mb = aug(b, mask, gen(11))
    assert torch.equal(ma, mb)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_with_a_cpu_generator():
    x = smooth_faces(2, 64)
    aug = Augmenter(resolution=32, work_size=64)
    cpu = aug(x, None, gen(1), x)
    cuda = aug(x.cuda(), None, gen(1), x)
    for u, v in zip(cpu, cuda):
        assert v.device.type == "cuda" and torch.allclose(u, v.cpu(), atol=1e-3)
