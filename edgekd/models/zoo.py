"""The built-in model zoo: a ResNet-style teacher and two mobile students, all for small images.

Every model takes ``in_channels`` and ``num_classes`` so one YAML works for grey or colour data. The building blocks
(Conv-BN-ReLU, global average pooling, one Linear head) are the ones every exporter and int8 kernel supports.
"""

from __future__ import annotations

from torch import nn

from edgekd.models.registry import register_model


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: type[nn.Module] | None = nn.ReLU):
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, 1, act=None))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else conv_bn(cin, cout, 1, stride, act=None)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class ResNetTeacher(nn.Module):
    """A CIFAR-style ResNet of basic blocks; the default (4 stages, widths 32-256, depth 2) has ~2.8 M parameters.

    ``stem_stride=2`` halves the resolution first (as ImageNet stems do), cutting the compute 4x on 32x32 inputs.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths=(32, 64, 128, 256),
        depth: int = 2,
        stem_stride: int = 2,
    ):
        super().__init__()
        self.stem = conv_bn(in_channels, widths[0], 3, stem_stride)
        blocks: list[nn.Module] = []
        cin = widths[0]
        for i, w in enumerate(widths):
            for j in range(depth):
                blocks.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.use_res else y


class MobileNetV2Student(nn.Module):
    """MobileNetV2-style student: inverted residuals with depthwise convolutions and ReLU6 (~0.3 M parameters).

    Sized so that int8 really pays: below ~0.25 M parameters the per-channel quantisation parameters and tensor
    names of a TFLite file outweigh the weights, and an int8 file stays near half the fp32 one.
    """

    # (expand, out_channels, repeats, first stride)
    DEFAULT_CFG = ((1, 16, 1, 1), (4, 32, 2, 2), (4, 64, 2, 2), (4, 128, 2, 2))

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        width: int = 16,
        cfg=DEFAULT_CFG,
        last: int = 320,
        stem_stride: int = 2,
    ):
        super().__init__()
        self.stem = conv_bn(in_channels, width, 3, stem_stride, act=nn.ReLU6)
        blocks: list[nn.Module] = []
        cin = width
        for expand, cout, reps, stride in cfg:
            for r in range(reps):
                blocks.append(InvertedResidual(cin, cout, stride if r == 0 else 1, expand))
                cin = cout
        self.features = nn.Sequential(*blocks, conv_bn(cin, last, 1, act=nn.ReLU6))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(self.stem(x))).flatten(1))


class TinyCNN(nn.Module):
    """Three Conv-BN-ReLU blocks with pooling: the smallest useful student."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, widths=(16, 32, 64)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i, w in enumerate(widths):
            layers.append(conv_bn(cin, w))
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


@register_model("resnet_teacher")
def resnet_teacher(**kw) -> nn.Module:
    return ResNetTeacher(**kw)


@register_model("mobilenetv2_student")
def mobilenetv2_student(**kw) -> nn.Module:
    return MobileNetV2Student(**kw)


@register_model("tiny_cnn")
def tiny_cnn(**kw) -> nn.Module:
    return TinyCNN(**kw)
