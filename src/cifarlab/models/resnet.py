"""ResNet-18 twice: CIFAR-style (3x3 stem, no max-pool) and torchvision's ImageNet layout."""

from torch import nn

from cifarlab.models.registry import register_model


@register_model("resnet18")
def resnet18_cifar(num_classes: int = 10) -> nn.Module:
    """ResNet-18 for 32x32 inputs: 3x3 stride-1 stem, no max-pool (11M parameters, 0.56 GMACs)."""
    from torchvision.models import resnet18  # torchvision takes a second to import

    model = resnet18(weights=None, num_classes=num_classes)
    # The ImageNet stem (7x7 stride 2 + max-pool) shrinks 32x32 images to 8x8 before the first
    # block; CIFAR ResNets keep full resolution there instead.
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@register_model("resnet18-tv")
def resnet18_torchvision(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 unchanged (ImageNet stem), new fc: what the teaching script used."""
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=num_classes)
