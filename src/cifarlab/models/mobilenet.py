"""MobileNetV2 adapted to 32x32 inputs."""

from torch import nn

from cifarlab.models.registry import register_model

# (expansion t, channels c, blocks n, stride s) as in the paper's table 2, with the strides of the
# stem and of the 24-channel stage set to 1 so that 32x32 images end at 4x4, not 1x1.
_CIFAR_SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 1],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


@register_model("mobilenetv2")
def mobilenetv2_cifar(num_classes: int = 10, width_mult: float = 1.0,
                      dropout: float = 0.2) -> nn.Module:
    """MobileNetV2 for 32x32 inputs: stride-1 stem and first stage (2.2M parameters)."""
    from torchvision.models import mobilenet_v2  # torchvision takes a second to import

    model = mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width_mult,
                         inverted_residual_setting=_CIFAR_SETTING, dropout=dropout)
    model.features[0][0].stride = (1, 1)
    return model
