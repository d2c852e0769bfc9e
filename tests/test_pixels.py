"""The pixel steps every network input goes through (data/pixels.py)."""

import torch

from cifarlab.data.pixels import normalize, resize, to_float


def test_to_float_leaves_the_callers_tensor_alone():
    pixels = torch.tensor([[0.0, 255.0]])
    out = to_float(pixels)
    assert torch.equal(pixels, torch.tensor([[0.0, 255.0]])) and out.tolist() == [[0.0, 1.0]]
    assert to_float(torch.tensor([255], dtype=torch.uint8)).dtype == torch.float32


def test_normalize_is_per_channel():
    x = torch.ones(2, 3, 4, 4)
    out = normalize(x, (0.0, 0.5, 1.0), (1.0, 0.5, 2.0))
    assert out[:, 0].eq(1).all() and out[:, 1].eq(1).all() and out[:, 2].eq(0).all()


def test_resize_is_a_no_op_at_the_size_and_antialiased_below_it():
    x = torch.rand(2, 3, 32, 32)
    assert resize(x, 32) is x
    checker = (torch.arange(32)[:, None] + torch.arange(32)) % 2  # finest possible detail
    small = resize(checker.float().expand(1, 3, 32, 32), 16)
    assert small.shape == (1, 3, 16, 16) and torch.allclose(small, torch.full_like(small, 0.5),
                                                            atol=0.05)
