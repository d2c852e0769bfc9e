"""The beginner's CNN of the PyTorch tutorials: conv+pool layers and a fully connected head."""

from torch import nn

from cifarlab.models.registry import register_model


@register_model("tutorial-cnn")
def tutorial_cnn(num_classes: int = 10, dropout: float = 0.25) -> nn.Module:
    """Beginner's CNN: three conv(3x3)+ReLU+max-pool layers, two linear layers, no BatchNorm."""

    def conv_pool(c_in: int, c_out: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                             nn.MaxPool2d(2))

    return nn.Sequential(
        conv_pool(3, 32), conv_pool(32, 64), conv_pool(64, 128),  # 32 -> 16 -> 8 -> 4
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(128 * 4 * 4, 256), nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(256, num_classes),
    )
