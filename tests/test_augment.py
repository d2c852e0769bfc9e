"""Batched augmentation (data/augment.py), checked against torchvision's formulas and against
what each step claims: a flip is the mirror image, a crop a translation; the caller's pixels
are never changed."""

import pytest
import torch
import torchvision.transforms.functional as TF

from cifarlab.data.augment import (
    Augmenter,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    cutout,
    hsv_to_rgb,
    mixup,
    random_crop,
    random_flip,
    random_rotation,
    rgb_to_hsv,
    rotate,
)

HALF = dict(mean=(0.5,) * 3, std=(0.5,) * 3)  # maps [0, 1] to [-1, 1]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def x():
    return torch.rand(16, 3, 32, 32, generator=gen(42))


def test_flip_gives_the_original_or_its_mirror_image(x):
    out = random_flip(x, gen())
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_crop_is_a_translation_within_the_padding(x):
    out = random_crop(x, 4, gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (4,) * 4)
    for i in range(len(x)):
        windows = [(dy, dx) for dy in range(9) for dx in range(9)
                   if torch.equal(out[i], padded[i, :, dy:dy + 32, dx:dx + 32])]
        assert windows, f"image {i} is not a window of the padded original"
    assert not torch.equal(out, x)
    assert torch.equal(random_crop(x, 0, gen()), x)


def test_rotation_turns_counter_clockwise_and_keeps_zero_angle(x):
    assert torch.allclose(rotate(x, torch.full((16,), 90.0)), torch.rot90(x, 1, (2, 3)),
                          atol=1e-5)
    assert torch.allclose(rotate(x, torch.zeros(16)), x, atol=1e-5)
    out = random_rotation(x, 10, gen())
    assert out.shape == x.shape and not torch.allclose(out, x)


@pytest.mark.parametrize("ours, theirs", [
    (adjust_brightness, TF.adjust_brightness),
    (adjust_contrast, TF.adjust_contrast),
    (adjust_saturation, TF.adjust_saturation),
])
def test_colour_adjustments_match_torchvision(x, ours, theirs):
    for f in (0.0, 0.6, 1.4):
        assert torch.allclose(ours(x, torch.full((16,), f)), theirs(x, f), atol=1e-4)


def test_hue(x):
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    assert torch.allclose(adjust_hue(x, torch.full((16,), 0.2)), TF.adjust_hue(x, 0.2),
                          atol=1e-4)
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1
    assert torch.allclose(adjust_hue(red, torch.tensor([1 / 3]))[0, :, 0, 0],
                          torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_jitter_factors_differ_per_image(x):
    same = x[:1].expand(16, -1, -1, -1).contiguous()
    out = color_jitter(same, (0.4, 0.4, 0.4, 0.1), gen())
    assert out.min() >= 0 and out.max() <= 1
    assert len({round(v, 4) for v in out.mean(dim=(1, 2, 3)).tolist()}) == 16


def test_cutout_paints_one_square_of_the_given_size(x):
    fill = torch.tensor([0.5, -1.0, 2.0])  # values that no pixel of x can have
    out = cutout(x, 8, gen(), fill)
    painted = out[:, 1] == -1.0
    sizes = painted.flatten(1).sum(1)
    assert (sizes <= 64).all() and (sizes > 0).all() and (sizes == 64).any()
    rows, cols = painted.any(2), painted.any(1)  # a full rectangle: rows x cols
    assert (sizes == rows.sum(1) * cols.sum(1)).all()
    assert torch.equal(out[~painted[:, None].expand_as(out)], x[~painted[:, None].expand_as(x)])


def test_mixup_blends_pairs(x):
    y = torch.arange(16)
    mixed, ya, yb, lam = mixup(x, y, 1.0, gen())
    assert 0 <= lam <= 1 and torch.equal(ya, y) and sorted(yb.tolist()) == list(range(16))
    for i in range(16):  # y = arange, so yb names each image's partner
        assert torch.allclose(mixed[i], lam * x[i] + (1 - lam) * x[int(yb[i])], atol=1e-6)


def test_augmenter_is_deterministic_under_a_seed_and_normalises():
    augment = Augmenter(**HALF, crop_padding=4, flip=True, rotation=10.0,
                        color_jitter=(0.2, 0.2, 0.2, 0.2), cutout=8)  # the seed's recipe
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=gen(1))
    a, b = augment(images, gen(5)), augment(images, gen(5))
    assert a.dtype == torch.float32 and a.shape == (32, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, augment(images, gen(6)))
    assert a.min() >= -1 - 1e-6 and a.max() <= 1 + 1e-6


def test_augmenter_with_everything_off_only_normalises():
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=gen(1))
    expected = (images.float() / 255 - 0.5) / 0.5
    assert torch.allclose(Augmenter(**HALF)(images, gen()), expected)


def test_reflect_crop_uses_mirrored_borders(x):
    out = random_crop(x, 2, gen(), mode="reflect")
    padded = torch.nn.functional.pad(x, (2,) * 4, mode="reflect")
    assert all(any(torch.equal(out[i], padded[i, :, dy:dy + 32, dx:dx + 32])
                   for dy in range(5) for dx in range(5)) for i in range(len(x)))


def test_flip_mask_replaces_the_random_flip(x):
    images = (x * 255).to(torch.uint8)
    mask = torch.arange(16) % 2 == 0
    out = Augmenter(**HALF, flip=True)(images, gen(), flip_mask=mask)
    plain = Augmenter(**HALF)(images, gen())
    assert torch.equal(out[mask], plain[mask].flip(3)) and torch.equal(out[~mask], plain[~mask])
