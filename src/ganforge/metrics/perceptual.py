"""A learned perceptual distance from a ganforge judge: the LPIPS recipe without LPIPS's learned weights.

LPIPS (Zhang et al. 2018, eq. 1) compares two images through a pretrained network: at several layers l the
activations are unit-normalised along channels at every position, the difference is weighted per channel by a
learned vector w_l, squared, averaged over the positions and summed over the layers. Here the network is the
judge (``nets/classifier.py``, a small VGG-style classifier that ganforge trains on the user's labelled domain),
the layers are the last ReLU of each of its levels, and **there are no learned weights** (w_l = 1) and the
layers are averaged rather than summed, so the distance lies in [0, 4]:

    d(x, x0) = 1/L sum_l 1/(H_l W_l) sum_{h,w} || y^l_hw - y0^l_hw ||^2
    y^l_hw = f^l_hw / sqrt(||f^l_hw||^2 + delta_l^2)

One more departure, for smoothness: LPIPS divides by ||f|| itself (delta = 0 up to a 1e-10 guard), so a feature
vector with every ReLU but one off jumps between 0 and a unit vector as that last channel crosses zero. A small
judge (few channels, flat backgrounds) has many such positions, and Perceptual Path Length, which divides by eps^2
= 1e-8, turns each jump into an outlier: its value then depends on eps (PPL in z of a 16 px test snapshot under a
4-channel random judge: 2082 at eps 1e-4, 166 at 1e-3, 26 at 1e-2; with the floor: 12.8, 12.8, 10.9). The soft
floor ``delta_l = floor * RMS_hw ||f^l||`` (RMS over both images of the pair, so it is symmetric and invariant to
the judge's feature scale; ``floor`` = 0.1 by default) makes y continuous: a vector much weaker than a tenth of
the layer's typical one shrinks smoothly to 0, a typical one stays within 0.5 % of unit length. ``floor=0`` gives
the plain LPIPS normalisation.

**This is not LPIPS**: no ImageNet network, no weights calibrated on human judgements. It is a structural
distance in the judge's feature space; even a randomly initialised judge gives a usable one (random
convolutional features respond to edges and textures), a trained judge makes it attend to what separates the
domain's classes. Numbers are comparable only between measurements made with the same judge and floor (both in
``protocol``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ganforge.core.files import CheckpointError
from ganforge.core.snapshot import snapshot_hash
from ganforge.metrics.judge import judge_input, load_judge
from ganforge.nets.classifier import Classifier

DISTANCE_NAME = "judge-feature distance (not LPIPS)"
FLOOR = 0.1  # soft normalisation floor, as a fraction of the layer's RMS feature norm (see the module docstring)
_NORM_EPS = 1e-10  # as LPIPS's normalize_tensor: guards all-zero feature maps


def _to_judge_input(x: Tensor, net: Classifier) -> Tensor:
    # The same adaptation as the projector's feature loss and the judge extractor (metrics.judge.judge_input).
    return judge_input(x, net.channels, net.resolution)


def level_activations(net: Classifier, x: Tensor) -> list[Tensor]:
    """The judge's body run on ``x [N, C, R, R]`` (the judge's input): the output of the last ReLU of every level,
    ``[N, C_l, H_l, W_l]`` per level (as LPIPS's relu1_2, relu2_2, ... of VGG)."""
    layers = list(net.body)
    taps = []
    for i, layer in enumerate(layers):
        x = layer(x)
        # A level ends at a max-pool or at the end of the body.
        if isinstance(layer, nn.ReLU) and (i + 1 == len(layers) or isinstance(layers[i + 1], nn.MaxPool2d)):
            taps.append(x)
    return taps


class PerceptualDistance:
    """``d(a, b) -> [N]``: the judge-feature distance (see the module docstring) between images ``a`` and ``b``,
    ``[N, C, H, W]`` in [-1, 1] (any channel count and size, each converted to the judge's channels and resolution
    as ``judge_features`` does). Differentiable in both arguments, so usable as a loss; the judge itself is frozen.
    ``floor``: the soft normalisation floor (0: LPIPS's plain unit normalisation). ``name`` and ``protocol`` say
    what was measured, the latter with the judge's SHA-256."""

    def __init__(self, judge: str | Path, device: str | torch.device = "cpu", floor: float = FLOOR):
        try:
            self.net = load_judge(judge).to(device)
        except CheckpointError as exc:
            raise ValueError(f"perceptual distance: {exc}") from None
        if not floor >= 0:
            raise ValueError(f"floor must be >= 0, got {floor}")
        self.device = torch.device(device)
        self.floor = float(floor)
        self.judge = str(judge)
        self.sha256 = snapshot_hash(judge)
        self.name = DISTANCE_NAME
        probe = torch.zeros(1, self.net.channels, self.net.resolution, self.net.resolution, device=self.device)
        with torch.no_grad():
            widths = [f.shape[1] for f in level_activations(self.net, probe)]
        self.num_layers = len(widths)
        self.protocol = (f"{DISTANCE_NAME}: judge sha256 {self.sha256}; input {self.net.channels} ch at "
                         f"{self.net.resolution} px; last ReLU of each of {self.num_layers} levels "
                         f"({', '.join(map(str, widths))} channels), unit-normalised over channels with soft floor "
                         f"{self.floor:g} x the layer's RMS norm, squared difference, spatial mean, unweighted "
                         f"mean over levels; range [0, 4]")

    def __repr__(self) -> str:
        return f"PerceptualDistance({self.judge!r}, sha256={self.sha256[:12]})"

    def _features(self, x: Tensor) -> list[Tensor]:
        assert x.ndim == 4, f"expected images [N, C, H, W], got {list(x.shape)}"
        x = _to_judge_input(x.to(self.device, torch.float32), self.net)  # [N, jc, jr, jr]
        return level_activations(self.net, x)

    # Zhang et al. 2018, eq. 1 with w_l = 1, averaged over the layers.
    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"a and b must hold the same number of images, got {a.shape[0]} and {b.shape[0]}")
        # Two passes rather than one on cat([a, b]): identical inputs then give bitwise-identical features.
        d = torch.zeros(a.shape[0], device=self.device)
        layers = list(zip(self._features(a), self._features(b), strict=True))
        for fa, fb in layers:  # [N, C_l, H_l, W_l] each
            sq_a, sq_b = fa.square().sum(dim=1, keepdim=True), fb.square().sum(dim=1, keepdim=True)  # [N, 1, H, W]
            if self.floor > 0:
                rms2 = (sq_a + sq_b).mean(dim=(1, 2, 3), keepdim=True) / 2  # [N, 1, 1, 1], symmetric in a and b
                delta2 = self.floor**2 * rms2 + _NORM_EPS**2
                ya, yb = fa * (sq_a + delta2).rsqrt(), fb * (sq_b + delta2).rsqrt()
            else:
                ya, yb = F.normalize(fa, dim=1, eps=_NORM_EPS), F.normalize(fb, dim=1, eps=_NORM_EPS)
            d = d + (ya - yb).square().sum(dim=1).mean(dim=(1, 2))
        return d / len(layers)  # [N]


def image_distance(a, b, judge: str | Path | PerceptualDistance, device: str | torch.device = "cpu") -> Tensor:
    """:class:`PerceptualDistance` for restoration metrics: ``a`` and ``b`` as the image metrics take them (uint8 numpy
    ``[H, W]``, ``[H, W, C]`` or ``[N, C, H, W]``; torch ``[N, C, H, W]`` uint8 or float in [0, 1]; 1 or 3 channels).
    ``judge``: a judge snapshot path, or a ready ``PerceptualDistance`` to avoid reloading it per call.
    Returns float32 ``[N]`` on the CPU, without gradient."""
    from ganforge.metrics.image import _to_nchw255

    dist = judge if isinstance(judge, PerceptualDistance) else PerceptualDistance(judge, device)
    x, y = (_to_nchw255(v).float().div(127.5).sub(1.0) for v in (a, b))  # [N, C, H, W] in [-1, 1]
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {list(x.shape)} and {list(y.shape)}")
    with torch.no_grad():
        return dist(x, y).float().cpu()

