"""ResNet-18/34/50/101/152, from scratch, layer for layer as torchvision builds them (v1.5: the
stride of a bottleneck sits on its 3×3 convolution; ReLUs in place; BatchNorm after every
convolution; a 1×1 projection shortcut where the shape changes).

Shape letters: B batch, C channels, R image side (H = W = R); a stage k of total stride 2^k has
side ⌈R / 2^k⌉.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from complexo.presets import ResNetConfig


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(c_in, width, stride), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width), nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, c_in, s, s) -> (B, w, s', s')
        out = self.bn2(self.conv2(out))  # (B, w, s', s')
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = conv1x1(c_in, width), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv1x1(width, 4 * width), nn.BatchNorm2d(4 * width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(c_in, 4 * width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))  # (B, c_in, s, s) -> (B, w, s, s)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, w, s, s) -> (B, w, s', s')
        out = self.bn3(self.conv3(out))  # (B, w, s', s') -> (B, 4w, s', s')
        out += identity
        return self.relu(out)


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        block = Bottleneck if cfg.block == "bottleneck" else BasicBlock
        w = cfg.width
        self.conv1 = nn.Conv2d(cfg.channels, w, 7, stride=2, padding=3, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, c_in = [], w
        for i, depth in enumerate(cfg.depths):
            width, stride = w * 2**i, 1 if i == 0 else 2
            blocks = [block(c_in, width, stride)]
            c_in = width * block.expansion
            blocks += [block(c_in, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(c_in, cfg.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, C, R, R) -> (B, w, R/4, R/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # -> (B, 8w·exp, R/32, R/32)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 8w·exp)
        return self.fc(x)  # (B, 8w·exp) x (8w·exp, K) -> (B, K)
