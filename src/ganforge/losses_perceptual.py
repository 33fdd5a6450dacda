"""The perceptual (feature) loss of SRGAN and ESRGAN: a distance between frozen network features of the output and
of the target.

Which feature network is used is decided once, offline, and recorded by the caller (``PerceptualLoss.name``):

    vgg19 (torchvision)   VGG19 conv5_4 before its ReLU (ESRGAN, Wang et al. 2018, sec. 3.3), ImageNet weights,
                          used only when torchvision is importable AND its weights file is already in the torch hub
                          cache; nothing is ever downloaded.
    random-vgg seed S     otherwise: a VGG-style conv stack (3 stages of 2 conv3x3, widths 32/64/128, max-pool
                          between stages, last conv before its ReLU) with a fixed-seed Kaiming initialisation,
                          frozen. Random conv features still carry perceptual/structural signal (Ulyanov et al. 2018,
                          "Deep Image Prior"; Gatys et al. 2015 style features from random nets).

torchvision is never imported at module load (it breaks next to a CPU-only torch, see ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1 file name in <hub>/checkpoints
VGG19_CONV54 = 35  # features[:35] ends with conv5_4, before its ReLU (features[35])
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RANDOM_WIDTHS = (32, 64, 128)


def vgg19_weights_path() -> Path | None:
    """The local VGG19 weights file when torchvision is importable and the file is in the hub cache, else None."""
    if importlib.util.find_spec("torchvision") is None:
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    return path if path.is_file() else None


def random_vgg(seed: int = 0) -> nn.Sequential:
    """The fallback feature network: a VGG-style stack with Kaiming-normal weights from ``seed``, zero biases."""
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    c_in = 3
    for k, w in enumerate(RANDOM_WIDTHS):
        if k > 0:
            layers.append(nn.MaxPool2d(2))
        for _ in range(2):
            conv = nn.Conv2d(c_in, w, 3, 1, 1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / (9 * c_in)) ** 0.5)
                conv.bias.zero_()
            layers += [conv, nn.ReLU(inplace=True)]
            c_in = w
    return nn.Sequential(*layers[:-1])  # the last conv before its activation, as conv5_4 in ESRGAN


def _vgg19(path: Path) -> nn.Sequential:
    import torchvision  # optional: only reached when vgg19_weights_path() found it and the weights

    net = torchvision.models.vgg19()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.features[:VGG19_CONV54]


class PerceptualLoss(nn.Module):
    """Feature distance ``criterion(phi(output), phi(target))`` for images [N, C, H, W] in [-1, 1], C = 1 or 3.

    ``name`` says which feature network is used (record it in the run). The network is frozen and kept outside the
    task's modules (it is neither trained nor checkpointed); it follows the input's device on first use.
    """

    def __init__(self, criterion: str = "l1", seed: int = 0):
        super().__init__()
        if criterion not in ("l1", "l2"):
            raise ValueError(f"perceptual criterion {criterion!r}; valid: l1, l2")
        path = vgg19_weights_path()
        if path is not None:
            self.features, self.name = _vgg19(path), "vgg19 (torchvision)"
        else:
            self.features = random_vgg(seed)
            self.name = f"random-vgg seed {seed} (no VGG19 weights found locally)"
        self.features.eval().requires_grad_(False)
        self.criterion = F.l1_loss if criterion == "l1" else F.mse_loss
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _phi(self, x: Tensor) -> Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x                           # [N, 3, H, W]
        return self.features(((x + 1) / 2 - self.mean) / self.std)                      # [N, F, H/4, W/4]

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        assert output.shape == target.shape and output.ndim == 4 and output.shape[1] in (1, 3), \
            f"expected output and target [N, 1 or 3, H, W] alike, got {list(output.shape)}, {list(target.shape)}"
        if self.mean.device != output.device:
            self.to(output.device)
        self.features.eval()  # never in training mode, whatever the caller's .train() did
        with torch.no_grad():
            phi_target = self._phi(target.detach())
        return self.criterion(self._phi(output).float(), phi_target.float())
