"""A small CNN classifier: the "judge" whose penultimate features give domain FID/KID offline.

VGG-style: two 3x3 conv + BN + ReLU per level, 2x2 max-pool between levels, global average pool, then
a linear layer. Features are the pooled activations (after ReLU), [N, feature_dim].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class Classifier(nn.Module):
    def __init__(self, resolution: int = 32, channels: int = 1, num_classes: int = 10, width: int = 32,
                 levels: int = 3, dropout: float = 0.3):
        super().__init__()
        self.config = dict(resolution=resolution, channels=channels, num_classes=num_classes, width=width,
                           levels=levels, dropout=dropout)
        if resolution % 2**levels:
            raise ValueError(f"resolution {resolution} must be divisible by 2**levels = {2**levels}")
        self.resolution, self.channels, self.num_classes = resolution, channels, num_classes
        layers: list[nn.Module] = []
        c_in = channels
        for level in range(levels):
            c_out = width * 2**level
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
            if level < levels - 1:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.dropout = dropout
        self.head = nn.Linear(c_in, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """[N, C, H, W] in [-1, 1] -> [N, feature_dim]."""
        assert x.ndim == 4 and tuple(x.shape[1:]) == (self.channels, self.resolution, self.resolution), \
            f"expected [N, {self.channels}, {self.resolution}, {self.resolution}], got {list(x.shape)}"
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """[N, C, H, W] in [-1, 1] -> class logits [N, num_classes]."""
        h = F.dropout(self.features(x), self.dropout, self.training)
        return self.head(h)

    @torch.no_grad()
    def predict(self, x: Tensor, batch: int = 500) -> tuple[Tensor, Tensor]:
        """Eval-mode (features [N, F], logits [N, K]) in batches."""
        self.eval()
        feats = torch.cat([self.features(x[i:i + batch]) for i in range(0, len(x), batch)])
        return feats, self.head(feats)
