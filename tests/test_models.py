import pytest
import torch

from cifarlab.models import create_model, describe_model, list_models


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes", [10, 100])
def test_every_model_maps_images_to_class_scores(name, num_classes):
    model = create_model(name, num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, num_classes) and torch.isfinite(out).all()
    assert describe_model(name)


def test_expected_models_are_registered():
    assert {"tutorial-cnn", "resnet18", "resnet18-tv", "mobilenetv2", "fastnet"} <= \
        set(list_models())


def test_cifar_resnet_keeps_resolution_and_tv_resnet_is_torchvisions():
    cifar, tv = create_model("resnet18"), create_model("resnet18-tv")
    assert cifar.conv1.kernel_size == (3, 3) and isinstance(cifar.maxpool, torch.nn.Identity)
    assert tv.conv1.kernel_size == (7, 7) and tv.fc.out_features == 10


def test_model_arguments_and_unknown_names():
    small = create_model("fastnet", widths=(8, 16, 32), stem_width=8)
    assert small.head.in_features == 32
    with pytest.raises(KeyError, match="unknown model 'resnet999'.*fastnet"):
        create_model("resnet999")
    with pytest.raises(ValueError, match="does not accept"):
        create_model("resnet18", depth=50)
