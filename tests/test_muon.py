"""Muon (training/muon.py): its Newton-Schulz iteration on each singular value and two steps
of a conv filter against numbers worked out by hand; its other groups step exactly as torch's
SGD."""

import math

import torch
from torch import nn

from cifarlab.training.muon import NS_COEFFICIENTS, Muon, orthogonalize


def newton_schulz_scalar(s: float, steps: int = 3) -> float:
    """What the iteration does to one singular value s: s <- a s + b s^3 + c s^5."""
    a, b, c = NS_COEFFICIENTS
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


def test_orthogonalize_acts_on_each_singular_value_alone():
    # Rows 3*e0 and 4*e1: singular values 3 and 4 (Frobenius norm 5), so the result is
    # e0 * f(3/5) and e1 * f(4/5), with f the scalar iteration above.
    g = torch.zeros(2, 5)
    g[0, 0], g[1, 1] = 3.0, 4.0
    out = orthogonalize(g)
    expected = torch.zeros(2, 5)
    expected[0, 0], expected[1, 1] = newton_schulz_scalar(0.6), newton_schulz_scalar(0.8)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # A tall matrix is handled through its transpose: same singular values, same vectors.
    torch.testing.assert_close(orthogonalize(g.T), expected.T, atol=1e-5, rtol=1e-5)


def test_orthogonalize_brings_singular_values_near_one_and_keeps_the_vectors():
    g = torch.randn(16, 72, generator=torch.Generator().manual_seed(0))
    out = orthogonalize(g, steps=5)
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    inner = u.T @ out @ vh.T  # diagonal when out = U S' V^T
    off = inner - torch.diag(torch.diagonal(inner))
    assert off.abs().max() < 1e-4
    assert torch.diagonal(inner).min() > 0.6 and torch.diagonal(inner).max() < 1.25


def test_muon_step_on_a_conv_filter_by_hand():
    """Two Muon steps of a (2, 1, 1, 2) filter, lr 0.5, Nesterov momentum 0.5."""
    w = nn.Parameter(torch.tensor([[[[3.0, 4.0]]], [[[0.0, 2.0]]]]))  # norm sqrt(29)
    opt = Muon([{"params": [w], "muon": True}], lr=0.5, momentum=0.5, nesterov=True)
    g1 = torch.tensor([[[[3.0, 0.0]]], [[[0.0, 4.0]]]])
    w.grad = g1.clone()
    opt.step()
    # Weight rescaled to norm sqrt(2) (two filters): w * sqrt(2 / 29).
    w0 = torch.tensor([[3.0, 4.0], [0.0, 2.0]]) * math.sqrt(2 / 29)
    # Buffer b1 = g1; Nesterov direction g1 + 0.5 b1 = 1.5 g1: singular values 4.5, 6 -> 0.6, 0.8.
    step1 = torch.tensor([[newton_schulz_scalar(0.6), 0.0], [0.0, newton_schulz_scalar(0.8)]])
    w1 = w0 - 0.5 * step1
    torch.testing.assert_close(w.detach().view(2, 2), w1, atol=1e-5, rtol=1e-5)
    # Second step: gradient g2 = [[0, 0], [0, 4]], buffer b2 = 0.5 b1 + g2.
    w.grad = torch.tensor([[[[0.0, 0.0]]], [[[0.0, 4.0]]]])
    opt.step()
    # b2 = [[1.5, 0], [0, 6]]; direction g2 + 0.5 b2 = [[0.75, 0], [0, 7]].
    norm = math.hypot(0.75, 7.0)
    step2 = torch.tensor([[newton_schulz_scalar(0.75 / norm), 0.0],
                          [0.0, newton_schulz_scalar(7.0 / norm)]])
    w1 = w1 * math.sqrt(2) / w1.norm()
    torch.testing.assert_close(w.detach().view(2, 2), w1 - 0.5 * step2, atol=1e-5, rtol=1e-5)


def test_muon_other_groups_step_exactly_as_torch_sgd():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    ours = Muon(a.parameters(), lr=0.1, momentum=0.85, nesterov=True, weight_decay=0.01)
    ref = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.85, nesterov=True,
                          weight_decay=0.01)
    x = torch.randn(8, 4)
    for _ in range(3):
        for model, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def newton_schulz_reference(g: torch.Tensor, steps: int = 3) -> torch.Tensor:
    """The iteration written out on the whole matrix (wide), in float64."""
    a, b, c = NS_COEFFICIENTS
    x = g.double() / g.double().norm()
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x


def test_orthogonalize_skips_all_zero_columns_without_changing_the_result():
    # As a 3x3 filter's momentum on 1x1 maps: only the centre tap's columns are non-zero.
    g = torch.zeros(8, 4, 9)
    g[:, :, 4] = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    g = g.reshape(8, 36)
    out = orthogonalize(g)
    torch.testing.assert_close(out.double(), newton_schulz_reference(g), atol=1e-5, rtol=1e-5)
    assert out.view(8, 4, 9)[:, :, [0, 1, 2, 3, 5, 6, 7, 8]].abs().max() == 0
    assert orthogonalize(torch.zeros(3, 6)).abs().max() == 0  # nothing to orthogonalise


def test_newton_schulz_runs_in_bf16_when_asked():
    g = torch.randn(64, 576, generator=torch.Generator().manual_seed(0))
    low = orthogonalize(g, dtype=torch.bfloat16)
    assert low.dtype == torch.bfloat16
    ref = newton_schulz_reference(g)
    assert (low.double() - ref).norm() / ref.norm() < 0.05  # bf16: 8 bits of mantissa
