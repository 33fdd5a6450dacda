"""Feature extractors for the distribution metrics (FID, KID, precision/recall, IS).

An extractor maps uint8 images ``[N, C, H, W]`` (numpy or torch, C = 1, 2, 3 or 4, any size) to float32
``features [N, D]`` and ``logits [N, K]`` (None when it has no classifier head), and states its protocol:
which weights (by SHA-256), at which input size, with which channel conversion and resize filter.

Spec strings, ``NAME[:PATH][:OPTION]`` (OPTION is recognised only when it is one of the extractor's words, so
``inception:/models/inception-2015-12-05.pt`` is a path; write ``./clean`` for a file named like an option):

    judge                    the Fashion-MNIST judge shipped with ganforge (metrics/assets/, package data)
    judge:PATH               a judge snapshot (safetensors + JSON) made by ganforge
    judge:PATH:pad           ... images smaller than the judge are centred on black instead of resized
    inception                NVlabs' TorchScript Inception-v3 at $GANFORGE_INCEPTION or the cache folder
    inception:clean          ... with clean-fid's resizing (PIL bicubic to 299x299) instead of NVlabs'
    inception:PATH[:nvlabs|:clean]

Nothing here imports torchvision: the judge is a ganforge network and Inception is a TorchScript file.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.nn import functional as F

from ganforge.core.files import file_sha256
from ganforge.data.builtin import cache_dir

Images = np.ndarray | Tensor  # uint8 [N, C, H, W]

# Package data (pyproject.toml, [tool.setuptools.package-data]): installed with the wheel, so `judge` works anywhere.
SHIPPED_JUDGE = Path(__file__).resolve().parent / "assets" / "judge-fashion-mnist"
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = f"https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/{INCEPTION_FILE}"
INCEPTION_RESOLUTION = 299


class Extractor(Protocol):
    """What the metrics need from a feature extractor (see the module docstring)."""

    name: str
    spec: str
    sha256: str
    feature_dim: int
    num_classes: int

    def protocol(self) -> dict[str, Any]: ...

    def __call__(self, images: Images, batch: int = 256) -> tuple[Tensor, Tensor | None]: ...


def check_images(images: Images) -> int:
    """Validate uint8 ``[N, C, H, W]`` with C in 1..4; returns N."""
    dtype_ok = images.dtype == (torch.uint8 if isinstance(images, Tensor) else np.uint8)
    if not dtype_ok or images.ndim != 4 or images.shape[1] not in (1, 2, 3, 4):
        raise ValueError(f"images must be uint8 [N, C, H, W] with C = 1, 2, 3 or 4, got {images.dtype} "
                         f"{list(images.shape)}")
    return int(images.shape[0])


def _batch(images: Images, start: int, size: int) -> Tensor:
    # One batch at a time as a writable CPU copy: a memmapped dataset is never loaded whole.
    x = images[start:start + size]
    return x.cpu() if isinstance(x, Tensor) else torch.from_numpy(np.array(x))


def to_rgb_uint8(x: Tensor) -> Tensor:
    """uint8 ``[N, C, H, W]`` -> ``[N, 3, H, W]``: gray repeated, alpha composited over black then dropped."""
    if x.shape[1] in (2, 4):
        x = (x[:, :-1].float() * (x[:, -1:].float() / 255)).round_().to(torch.uint8)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


# ---------------------------------------------------------------------------------------------------------
# judge: a ganforge classifier snapshot (metrics/judge.py), offline.


class JudgeExtractor:
    """A judge snapshot: features = pooled penultimate activations ``[N, feature_dim]``, logits ``[N, K]``.

    Images are converted by ``metrics.judge.judge_input``: to the judge's channels, then padded (``fit="pad"``)
    or bilinearly resized to its resolution. The default fit is the snapshot's ``input_fit`` field (the shipped
    Fashion-MNIST judge was trained on 28x28 images zero-padded to 32x32), else "resize".
    """

    name = "judge"
    OPTIONS = ("pad", "resize")

    def __init__(self, path: str | Path | None = None, option: str | None = None, *,
                 device: str | torch.device = "cpu", spec: str | None = None):
        from ganforge.core.files import CheckpointError
        from ganforge.core.snapshot import resolve_snapshot
        from ganforge.metrics.judge import load_judge

        if path is None:
            if not SHIPPED_JUDGE.with_suffix(".json").is_file():
                raise ValueError(
                    f"extractor 'judge': the shipped Fashion-MNIST judge ({SHIPPED_JUDGE}.safetensors/.json) is "
                    "missing from this installation (it is package data of ganforge; reinstall ganforge). Or "
                    "pass judge:PATH with a judge snapshot of your own (train one with `ganforge judge train "
                    "--data <labelled data>`)")
            path = SHIPPED_JUDGE
        try:
            weights, meta_path = resolve_snapshot(path)
            self.net = load_judge(path).to(device)
            meta = json.loads(meta_path.read_text())
        except CheckpointError as exc:
            raise ValueError(f"extractor judge:{path}: {exc}") from None
        self.fit = option or meta.get("input_fit", "resize")
        if self.fit not in self.OPTIONS:
            raise ValueError(f"{meta_path}: input_fit must be one of {', '.join(self.OPTIONS)}, got {self.fit!r}")
        self.spec = spec or f"judge:{path}"
        self.weights, self.device = weights, torch.device(device)
        self.sha256 = file_sha256(weights)
        self.feature_dim, self.num_classes = self.net.feature_dim, self.net.num_classes
        self.trained_on = (meta.get("dataset") or {}).get("name")

    def protocol(self) -> dict[str, Any]:
        """What the features depend on (JSON-ready)."""
        r = self.net.resolution
        return {
            "extractor": self.name, "spec": self.spec, "weights": str(self.weights), "sha256": self.sha256,
            "trained_on": self.trained_on, "input_resolution": r, "input_channels": self.net.channels,
            "channel_conversion": "gray repeated to RGB, RGB to gray by ITU-R 601 luma, alpha composited over "
                                  "black and dropped; an RGBA judge gets opaque alpha",
            "fit": self.fit,
            "resize_filter": (f"images up to {r}x{r} centred on black; larger ones " if self.fit == "pad" else "")
                             + "bilinear, align_corners=False, antialiased when shrinking",
            "features": f"pooled penultimate activations [N, {self.feature_dim}]",
            "logits": f"class logits [N, {self.num_classes}]",
        }

    def preprocess(self, x: Tensor) -> Tensor:
        """uint8 ``[N, C, H, W]`` -> the judge's input ``[N, channels, resolution, resolution]`` in [-1, 1]."""
        from ganforge.metrics.judge import judge_input, to_float

        return judge_input(to_float(x).to(self.device), self.net.channels, self.net.resolution, self.fit)

    @torch.no_grad()
    def __call__(self, images: Images, batch: int = 256) -> tuple[Tensor, Tensor]:
        """uint8 ``[N, C, H, W]`` -> (features float32 ``[N, feature_dim]``, logits float32 ``[N, num_classes]``)."""
        n = check_images(images)
        feats, logits = [torch.empty(0, self.feature_dim)], [torch.empty(0, self.num_classes)]
        for start in range(0, n, batch):
            f = self.net.features(self.preprocess(_batch(images, start, batch)))
            feats.append(f.float().cpu())
            logits.append(self.net.head(f).float().cpu())
        return torch.cat(feats), torch.cat(logits)


# ---------------------------------------------------------------------------------------------------------
# inception: Inception-v3 (Szegedy et al. 2016) with the 2015-12-05 TensorFlow weights that IS (Salimans et al.
# 2016) and FID (Heusel et al. 2017) were defined with, in NVlabs' TorchScript translation (stylegan2-ada-pytorch
# and clean-fid load this same file).


def default_inception_path() -> Path:
    """``$GANFORGE_INCEPTION``, else ``inception-2015-12-05.pt`` in ganforge's cache folder
    (``$GANFORGE_CACHE``, default ``~/.cache/ganforge``)."""
    env = os.environ.get("GANFORGE_INCEPTION")
    return Path(env).expanduser() if env else cache_dir() / INCEPTION_FILE


def clean_resize(x: Tensor) -> Tensor:
    """clean-fid's "clean" resize (Parmar et al. 2022): uint8 ``[N, 3, H, W]`` -> float32 ``[N, 3, 299, 299]``,
    each channel resized by PIL bicubic in float mode (antialiased, no quantisation), clipped to [0, 255]."""
    arr = x.numpy().astype(np.float32)
    r = INCEPTION_RESOLUTION
    out = np.empty((len(arr), arr.shape[1], r, r), np.float32)
    for i in range(len(arr)):
        for c in range(arr.shape[1]):
            out[i, c] = np.asarray(Image.fromarray(arr[i, c]).resize((r, r), Image.Resampling.BICUBIC))
    return torch.from_numpy(np.clip(out, 0, 255, out=out))


class InceptionExtractor:
    """The FID Inception-v3: features = pool3 ``[N, 2048]``; logits = pool3 times the output weights without
    the bias ``[N, 1008]`` (softmax of these is what NVlabs' Inception Score uses, ``no_output_bias=True``).

    ``resize="nvlabs"`` (stylegan2-ada-pytorch): uint8 RGB ``[N, 3, H, W]`` goes in and the network resizes it to
    299x299 itself (TensorFlow-style bilinear, no antialiasing), ``model(x, return_features=True)``.
    ``resize="clean"`` (clean-fid): :func:`clean_resize` first, then the network's layers on ``(x - 128) / 128``,
    as clean-fid's ``InceptionV3W`` does, so the network's own resize is skipped.
    """

    name = "inception"
    OPTIONS = ("nvlabs", "clean")

    def __init__(self, path: str | Path | None = None, option: str | None = None, *,
                 device: str | torch.device = "cpu", spec: str | None = None):
        self.weights = Path(path).expanduser() if path else default_inception_path()
        if not self.weights.is_file():
            raise ValueError(
                f"extractor 'inception': {self.weights} does not exist. Download {INCEPTION_FILE} (the "
                f"TorchScript Inception-v3 of stylegan2-ada-pytorch and clean-fid) from {INCEPTION_URL} and put "
                f"it at {cache_dir() / INCEPTION_FILE}, or point GANFORGE_INCEPTION at it, or pass "
                f"inception:/path/to/{INCEPTION_FILE}. The 'judge' extractor needs no download.")
        self.resize = option or "nvlabs"
        self.device = torch.device(device)
        try:
            # TorchScript: the archive holds TorchScript code and tensors, rebuilt by the TorchScript loader;
            # it cannot make arbitrary Python objects or run Python code the way an unrestricted pickle can.
            # torch.jit is deprecated in favour of torch.export, but this file exists only as TorchScript.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
                self.model = torch.jit.load(str(self.weights), map_location=self.device).eval()
            weight = self.model.output.weight  # [num_classes, feature_dim]
            if not hasattr(self.model, "layers"):  # clean mode calls it: fail now, not mid-run
                raise AttributeError("no 'layers' submodule")
        except Exception as exc:  # torch.jit raises RuntimeError / AttributeError / zip errors
            raise ValueError(f"extractor 'inception': {self.weights} is not NVlabs' {INCEPTION_FILE} TorchScript "
                             f"file ({type(exc).__name__}: {str(exc)[:200]}); download it again from "
                             f"{INCEPTION_URL}") from None
        self.num_classes, self.feature_dim = (int(s) for s in weight.shape)
        self.spec = spec or f"inception:{self.weights}:{self.resize}"
        self.sha256 = file_sha256(self.weights)

    def protocol(self) -> dict[str, Any]:
        """What the features depend on (JSON-ready)."""
        filters = {
            "nvlabs": "inside the network: TensorFlow-style bilinear to 299x299 (half-pixel alignment, no "
                      "antialiasing), input uint8",
            "clean": "clean-fid: PIL bicubic per channel in float32 to 299x299 (antialiased), clipped to [0, 255], "
                     "not quantised",
        }
        return {
            "extractor": self.name, "spec": self.spec, "weights": str(self.weights), "sha256": self.sha256,
            "input_resolution": INCEPTION_RESOLUTION, "input_channels": 3,
            "channel_conversion": "gray repeated to RGB; alpha composited over black (uint8, rounded) and dropped",
            "resize": self.resize, "resize_filter": filters[self.resize],
            "features": f"pool3 [N, {self.feature_dim}]",
            "logits": f"pool3 @ output.weight.T, no bias [N, {self.num_classes}]",
        }

    def preprocess(self, x: Tensor) -> Tensor:
        """uint8 ``[N, C, H, W]`` -> what the network receives: uint8 ``[N, 3, H, W]`` ("nvlabs") or float32
        ``[N, 3, 299, 299]`` in [0, 255] before the (x - 128) / 128 scaling ("clean")."""
        x = to_rgb_uint8(x)
        return clean_resize(x) if self.resize == "clean" else x

    @torch.no_grad()
    def __call__(self, images: Images, batch: int = 256) -> tuple[Tensor, Tensor]:
        """uint8 ``[N, C, H, W]`` -> (features float32 ``[N, 2048]``, logits float32 ``[N, 1008]``)."""
        n = check_images(images)
        weight = self.model.output.weight.float()
        feats, logits = [torch.empty(0, self.feature_dim)], [torch.empty(0, self.num_classes)]
        for start in range(0, n, batch):
            x = self.preprocess(_batch(images, start, batch)).to(self.device)
            if self.resize == "clean":
                f = self.model.layers((x - 128) / 128).reshape(len(x), -1)
            else:
                f = self.model(x, return_features=True)
            f = f.float()
            feats.append(f.cpu())
            logits.append(F.linear(f, weight).cpu())
        return torch.cat(feats), torch.cat(logits)


# ---------------------------------------------------------------------------------------------------------
# The registry

EXTRACTORS: dict[str, type[JudgeExtractor] | type[InceptionExtractor]] = {
    "judge": JudgeExtractor,
    "inception": InceptionExtractor,
}


def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``"NAME[:PATH][:OPTION]"`` -> (name, path or None, option or None); see the module docstring."""
    name, _, rest = spec.strip().partition(":")
    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r} in {spec!r}; valid: {', '.join(EXTRACTORS)} "
                         "(as NAME, NAME:PATH, NAME:OPTION or NAME:PATH:OPTION)")
    head, _, last = rest.rpartition(":")
    if last in EXTRACTORS[name].OPTIONS:
        return name, head or None, last
    return name, rest or None, None


def get_extractor(spec: str, device: str | torch.device = "cpu") -> Extractor:
    """Build the extractor a spec string names, e.g. ``judge``, ``judge:runs/j/snapshots/latest``,
    ``inception:clean``. Raises ValueError listing the valid names for an unknown one, and saying what to
    download (and from where) when weights are missing."""
    name, path, option = parse_spec(spec)
    return EXTRACTORS[name](path, option, device=device, spec=spec.strip())
