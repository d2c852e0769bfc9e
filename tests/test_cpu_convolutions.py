"""Trimmed convolutions: the taps that only see padding are skipped, and nothing else changes."""

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.models import create_model
from cifarlab.models.cpu_convolutions import CpuConv2d, cpu_convolutions, used_taps


def test_used_taps_on_tiny_inputs():
    assert used_taps(1, 3, 1, 1) == (1, 2, 1)  # 1x1 map: the centre tap only
    assert used_taps(2, 3, 1, 2) == (1, 3, 1)  # ResNet's stride-2 conv from 2x2 to 1x1
    assert used_taps(2, 3, 1, 1) == (0, 3, 2)  # 2x2 map: every tap is used
    assert used_taps(8, 7, 3, 2) == (0, 7, 4)


def test_trimmed_conv_equals_conv2d_with_its_gradients():
    gen = torch.Generator().manual_seed(0)
    trimmed = 0
    for size, kernel, pad, stride, groups in itertools.product([1, 2, 3], [1, 3, 5], [0, 1, 2],
                                                               [1, 2], [1, 2]):
        if size + 2 * pad < kernel:
            continue
        conv = nn.Conv2d(4, 6, kernel, stride, pad, groups=groups, bias=True)
        ref = nn.Conv2d(4, 6, kernel, stride, pad, groups=groups, bias=True)
        ref.load_state_dict(conv.state_dict())
        cpu_convolutions(conv)
        x = torch.randn(5, 4, size, size + 1, generator=gen)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        out, expected = conv(x1), ref(x2)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        grad = torch.randn(expected.shape, generator=gen)
        out.backward(grad)
        expected.backward(grad)
        for a, b in [(x1.grad, x2.grad), (conv.weight.grad, ref.weight.grad),
                     (conv.bias.grad, ref.bias.grad)]:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        trimmed += used_taps(size, kernel, pad, stride)[:2] != (0, kernel)
    assert trimmed > 5  # the trimmed path was exercised, not only the plain one


def test_resnet18_at_32_pixels_trains_the_same_and_keeps_its_state_dict():
    torch.manual_seed(0)
    plain = create_model("resnet18-tv", 10)
    trimmed = create_model("resnet18-tv", 10)
    trimmed.load_state_dict(plain.state_dict())
    cpu_convolutions(trimmed)
    assert isinstance(trimmed.layer4[1].conv2, CpuConv2d)
    assert list(trimmed.state_dict()) == list(plain.state_dict())
    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 10, (6,))
    calls = []
    hook = trimmed.layer4[1].conv2.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    losses = [F.cross_entropy(m(x), y) for m in (plain, trimmed)]
    hook.remove()
    assert calls == [torch.Size([6, 512, 1, 1])]  # the 1x1 maps this is for
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=1e-6)
    for (name, a), b in zip(plain.named_parameters(), trimmed.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4, msg=name)


def test_depthwise_convolutions_run_in_float32_under_bf16_autocast():
    """oneDNN's bf16 depthwise backward is the slow path: grouped convolutions leave autocast
    (float32 out, float32 gradients), dense ones stay in bf16."""
    torch.manual_seed(0)
    depthwise = cpu_convolutions(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8)))[0]
    dense = cpu_convolutions(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1)))[0]
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, other = depthwise(x), dense(x)
    assert out.dtype == torch.float32 and other.dtype == torch.bfloat16
    torch.testing.assert_close(out, F.conv2d(x, depthwise.weight, depthwise.bias, padding=1,
                                             groups=8))
    out.sum().backward()
    assert depthwise.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
