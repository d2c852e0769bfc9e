import pytest
import torch

from cifarlab.models import create_model, describe_model, list_models
from cifarlab.runtime import compile_blocker


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes", [10, 100])
def test_every_model_maps_images_to_class_scores(name, num_classes):
    model = create_model(name, num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, num_classes) and torch.isfinite(out).all()


def test_expected_models_are_registered():
    assert {"tutorial-cnn", "resnet18", "resnet18-tv", "mobilenetv2", "fastnet"} <= \
        set(list_models())


def test_cifar_resnet_keeps_resolution_and_tv_resnet_is_torchvisions():
    cifar, tv = create_model("resnet18"), create_model("resnet18-tv")
    assert cifar.conv1.kernel_size == (3, 3) and isinstance(cifar.maxpool, torch.nn.Identity)
    assert tv.conv1.kernel_size == (7, 7) and tv.fc.out_features == 10


def test_model_arguments_and_unknown_names():
    small = create_model("fastnet", widths=(8, 16, 32), whiten_width=8)
    assert small.head.in_features == 32
    with pytest.raises(ValueError, match="unknown model 'resnet999'.*fastnet"):
        create_model("resnet999")
    with pytest.raises(ValueError, match="cannot be built with model_args"):
        create_model("resnet18", depth=50)


def test_models_are_described_by_their_docstrings():
    assert describe_model("fastnet").startswith("Speed-record style net")
    assert "torchvision" in describe_model("resnet18-tv")


def test_whitening_layer_whitens_patches_like_airbench():
    """After init_from_data, the 2x2 conv's outputs on the same images have ~identity second
    moment (uncentred, as airbench computes it; up to the +/- pairs); before, they are strongly
    correlated."""
    torch.manual_seed(0)
    base = torch.rand(200, 1, 32, 32)
    images = base + 0.1 * torch.rand(200, 3, 32, 32)  # channels nearly identical: correlated
    model = create_model("fastnet")
    model.init_from_data(images, eps=1e-6)
    with torch.no_grad():
        out = model.whiten(images) - model.whiten.bias.view(1, -1, 1, 1)
    k = model.whiten.out_channels // 2
    feats = out[:, :k].permute(0, 2, 3, 1).reshape(-1, k)
    moment = feats.T @ feats / len(feats)
    assert torch.allclose(moment, torch.eye(k), atol=0.05)
    assert torch.allclose(out[:, k:], -out[:, :k])  # the negated twins
    assert not model.whiten.weight.requires_grad


def test_fastnet_convs_start_as_identities():
    model = create_model("fastnet", widths=(8, 16, 16), whiten_width=8)
    conv = model.groups[1][4]  # second conv of the second group, 16 -> 16 channels
    x = torch.randn(1, 16, 5, 5)
    assert torch.allclose(conv(x), x, atol=1e-6)


def test_fastnet_batchnorm_eps_is_airbenchs():
    norms = [m for m in create_model("fastnet").modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-12 for m in norms)


@pytest.mark.skipif(compile_blocker(torch.device("cpu")) is not None,
                    reason="torch.compile on the CPU needs a C++ compiler; none here")
def test_compiled_fastnet_in_bf16_has_the_eager_gradients():
    # torch.compile on the CPU once gave NaN gradients here (a bf16 amax after fused GELU)
    torch.manual_seed(0)
    eager = create_model("fastnet", widths=(8, 16, 16), whiten_width=8)
    compiled = create_model("fastnet", widths=(8, 16, 16), whiten_width=8)
    compiled.load_state_dict(eager.state_dict())
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    for net in (eager, torch.compile(compiled)):
        with torch.autocast("cpu", torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(net(x).float(), y)
        loss.backward()
    for a, b in zip(eager.parameters(), compiled.parameters(), strict=True):
        if a.grad is not None:
            assert torch.isfinite(b.grad).all()
            # bf16 rounding differs between the fused and the eager kernels: close, not equal
            assert torch.cosine_similarity(a.grad.flatten(), b.grad.flatten(), dim=0) > 0.95


def test_fastnet_takes_its_groups_activation():
    kinds = {a: {type(m).__name__ for m in create_model("fastnet", activation=a).groups.modules()}
             for a in ("gelu", "silu", "relu")}
    assert "SiLU" in kinds["silu"] and "GELU" not in kinds["silu"]
    assert "ReLU" in kinds["relu"] and "GELU" in kinds["gelu"]
    with pytest.raises(ValueError, match="activation must be one of gelu, silu, relu"):
        create_model("fastnet", activation="tanh")
