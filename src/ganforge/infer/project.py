"""Projection of a real image into the latent space of a StyleGAN2 snapshot (Karras et al. 2020, sec. 5).

Given a target image, find the per-layer latents ``ws`` (and the per-layer noise images) whose synthesis
reproduces it. The recipe follows NVlabs ``projector.py`` (stylegan2-ada-pytorch), rewritten here:

* start from the mean w, estimated from 10 000 mapped latents with a fixed seed; its spread ``w_std`` (the RMS
  distance of a sample w from the mean) scales the exploration noise;
* optimise w ("w": one vector broadcast to every layer, the paper's setting; "w+": one vector per layer,
  more expressive but further from the generator's distribution) with Adam, betas (0.9, 0.999);
  learning rate ``lr`` ramped up over the first 5 % of the steps and down (cosine) over the last 25 %;
* add Gaussian noise of ``0.05 * w_std * max(0, 1 - t / 0.75)^2`` to w at step fraction ``t`` (exploration early on);
* optimise the noise images too, starting from fresh Gaussian noise, with the multi-scale autocorrelation
  regulariser (for each noise image and each 2x average-pooled version of it down to 8x8, the squared mean
  product with its one-pixel shift along x and y), and renormalise each to zero mean and unit variance after
  every step, so that the noise cannot absorb the image content.

The loss is ``pixel_weight * MSE(pixels) + feature_weight * feature distance + noise_reg * regulariser``.
NVlabs uses the LPIPS distance on VGG16 features; ganforge ships no VGG weights, so the feature term here is
pluggable: any callable ``x [N, C, H, W] in [-1, 1] -> [N, D]``, compared as the squared distance between the
unit-normalised feature vectors (a cosine distance, in [0, 4]). **This is not LPIPS**: no per-channel learned
weights, no ImageNet network. ``metrics.judge.judge_features`` adapts a ganforge judge (the small domain classifier of
``metrics/judge.py``); without features the projection is pixel-only, which fits colours and layout well and
fine texture less well.

The snapshot's generator is never modified: the optimised noise images are passed to the synthesis network
with ``torch.func.functional_call`` and kept in the result (and in ``latent.safetensors``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ganforge.core import imagemath
from ganforge.core.files import atomic_write_bytes, atomic_write_text
from ganforge.core.grid import make_grid, save_gif, save_image, to_uint8
from ganforge.infer.snapshot import LoadedGenerator

SPACES = ("w", "w+")
W_AVG_SAMPLES = 10_000
W_STATS_SEED = 123  # NVlabs: np.random.RandomState(123)
INITIAL_NOISE_FACTOR = 0.05
LR_RAMPUP = 0.05  # fraction of the steps
LR_RAMPDOWN = 0.25
NOISE_RAMP = 0.75
NUM_FRAMES = 30  # about this many intermediate images for progress.gif

Features = Callable[[Tensor], Tensor]


@dataclass
class ProjectionResult:
    """``ws [1, num_ws, w_dim]`` and ``noise`` (buffer name -> ``[R, R]``) reproduce ``image [C, H, W]`` through
    :func:`synthesize_projection`. ``history``: one dict of losses per step; ``frames``: ``(step, image)`` pairs."""

    ws: Tensor
    image: Tensor
    target: Tensor
    noise: dict[str, Tensor]
    history: list[dict[str, float]]
    frames: list[tuple[int, Tensor]]
    space: str
    steps: int
    label: int | None
    start_image: Tensor = field(repr=False)

    @property
    def psnr(self) -> float:
        """PSNR of the projection (as saved: clamped to [-1, 1]) against the target, in dB."""
        return psnr(self.image.clamp(-1, 1), self.target)

    @property
    def start_psnr(self) -> float:
        """PSNR of the starting point (the mean w with the snapshot's own noise) against the target."""
        return psnr(self.start_image.clamp(-1, 1), self.target)


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of two images ``[C, H, W]`` in the [-1, 1] convention: ``core.imagemath.psnr`` with data range 2,
    in float64 (any channel count, alpha included; a batch ``[N, C, H, W]`` is taken as one image)."""
    a, b = (x.detach().cpu().double().reshape(1, -1, *x.shape[-2:]) for x in (a, b))  # [1, C, H, W]
    return float(imagemath.psnr(a, b, data_range=2.0)[0])


def load_target(path: str | Path, channels: int, resolution: int) -> Tensor:
    """Read any image file Pillow knows into ``[channels, resolution, resolution]`` in [-1, 1]: EXIF orientation
    applied, converted to gray / RGB / RGBA as the generator needs (transparent pixels over black when alpha is
    dropped, as for datasets), centre-cropped to a square and resized with Lanczos."""
    from ganforge.data.decode import DEFAULT_MAX_PIXELS, fit, read_image, skip_reason

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: {'is a folder, not' if path.is_dir() else 'no such'} image file")
    try:  # the pixel limit of training data, checked from the header before any pixel is decoded
        with warnings.catch_warnings():  # PIL's own bomb warning (from 89 MP) is superseded by the limit's error
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = fit(read_image(path, channels, max_pixels=DEFAULT_MAX_PIXELS), resolution, "crop")
    except Exception as exc:  # Pillow raises many types on bad data
        raise ValueError(f"{path}: cannot use it as the target image: {skip_reason(exc)}") from None
    pixels = np.asarray(image)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(pixels.copy()).float().div(127.5).sub(1.0)  # [C, R, R]


def noise_buffers(G: LoadedGenerator) -> dict[str, Tensor]:
    """The snapshot's constant noise images by buffer name (what a projection's noise replaces)."""
    return {name: buf for name, buf in G.net.synthesis.named_buffers() if name.endswith("noise_const")}


def synthesize_projection(G: LoadedGenerator, ws: Tensor, noise: dict[str, Tensor] | None = None) -> Tensor:
    """``ws [N, num_ws, w_dim]`` -> images ``[N, C, H, W]`` (on the CPU) with the given noise images in place of the
    snapshot's constant noise (the snapshot itself is not changed)."""
    with torch.no_grad():
        return _synthesize(G, ws.to(G.device), {k: v.to(G.device) for k, v in (noise or {}).items()}).cpu()


def _synthesize(G: LoadedGenerator, ws: Tensor, noise: dict[str, Tensor]) -> Tensor:
    return torch.func.functional_call(G.net.synthesis, noise, (ws,), {"noise_mode": "const"})


def _noise_regularizer(noise: Sequence[Tensor]) -> Tensor:
    """NVlabs: sum over noise images and their 2x-pooled pyramids (down to 8x8) of the squared mean products with
    the one-pixel shifts along x and y (wrap-around). Zero for spatially uncorrelated noise."""
    reg = noise[0].new_zeros([])
    for v in noise:
        n = v[None, None]  # [1, 1, H, W]
        while True:
            reg = reg + (n * torch.roll(n, shifts=1, dims=3)).mean().square()
            reg = reg + (n * torch.roll(n, shifts=1, dims=2)).mean().square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return reg


@torch.no_grad()
def w_stats(G: LoadedGenerator, label: int | None = None, samples: int = W_AVG_SAMPLES) -> tuple[Tensor, float]:
    """Mean w ``[w_dim]`` and the RMS distance of a w from it, from ``samples`` mapped latents (fixed seed)."""
    g = torch.Generator().manual_seed(W_STATS_SEED)
    z = torch.randn(samples, G.z_dim, generator=g)
    c = G.check_labels(label, samples)
    ws = torch.cat([G.net.mapping(z[i:i + 1000].to(G.device), None if c is None else c[i:i + 1000])[:, 0]
                    for i in range(0, samples, 1000)])  # [samples, w_dim]
    avg = ws.mean(dim=0)
    return avg, float((ws - avg).square().sum(dim=1).mean().sqrt())


def project(G: LoadedGenerator, target: Tensor, steps: int = 500, space: str = "w", label: int | None = None,
            lr: float = 0.1, noise_reg: float = 1e5, features: Features | None = None, feature_weight: float = 1.0,
            pixel_weight: float = 1.0, seed: int = 0, log: Callable[[str], None] | None = None) -> ProjectionResult:
    """Find ``ws`` (and noise) such that ``G.synthesis(ws)`` reproduces ``target [C, H, W]`` in [-1, 1].

    ``space``: "w" (one w for all layers) or "w+" (one per layer). ``label``: the class for a conditional snapshot
    (it picks the mean w to start from). ``features``: see the module docstring (None = pixel loss only).
    ``seed`` fixes the initial noise images and the exploration noise on w. ``log`` gets ~10 progress lines.
    """
    if not G.is_style:
        raise ValueError(f"projection needs a StyleGAN2 snapshot; this one is {G.meta.get('arch')}")
    if space not in SPACES:
        raise ValueError(f"space must be 'w' or 'w+', got {space!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if pixel_weight <= 0 and (features is None or feature_weight <= 0):
        raise ValueError("nothing to optimise: give pixel_weight > 0 or features with feature_weight > 0")
    net = G.net
    expected = (net.channels, net.resolution, net.resolution)
    if tuple(target.shape) != expected:
        raise ValueError(f"target must be [{', '.join(map(str, expected))}] for this snapshot, "
                         f"got {list(target.shape)}")
    label = None if label is None else int(label)
    dev = G.device
    w_avg, w_std = w_stats(G, label)
    target = target.detach().float().cpu()
    target_d = target[None].to(dev)  # [1, C, H, W]
    target_f = None
    if features is not None:
        with torch.no_grad():
            target_f = F.normalize(features(target_d).flatten(1), dim=1)
    start_image = synthesize_projection(G, w_avg[None, None].repeat(1, net.num_ws, 1))[0]

    gen = torch.Generator().manual_seed(seed)
    noise = {k: torch.randn(b.shape, generator=gen).to(dev).requires_grad_(True) for k, b in noise_buffers(G).items()}
    layers = 1 if space == "w" else net.num_ws
    w_opt = w_avg[None, None].repeat(1, layers, 1).clone().requires_grad_(True)  # [1, 1 | num_ws, w_dim]
    opt = torch.optim.Adam([w_opt, *noise.values()], lr=lr, betas=(0.9, 0.999))

    history: list[dict[str, float]] = []
    frames: list[tuple[int, Tensor]] = []
    every = max(1, steps // NUM_FRAMES)
    with torch.enable_grad():
        for step in range(steps):
            t = step / steps
            w_noise_scale = w_std * INITIAL_NOISE_FACTOR * max(0.0, 1.0 - t / NOISE_RAMP) ** 2
            ramp = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / LR_RAMPDOWN) * math.pi)
            step_lr = lr * ramp * min(1.0, t / LR_RAMPUP)
            for group in opt.param_groups:
                group["lr"] = step_lr
            w_noise = torch.randn(w_opt.shape, generator=gen).to(dev) * w_noise_scale
            ws = (w_opt + w_noise).expand(1, net.num_ws, -1)
            synth = _synthesize(G, ws, noise)  # [1, C, H, W]
            pixel = F.mse_loss(synth, target_d)
            feat = synth.new_zeros([])
            if target_f is not None:
                feat = (F.normalize(features(synth).flatten(1), dim=1) - target_f).square().sum()
            reg = _noise_regularizer(list(noise.values()))
            loss = pixel_weight * pixel + feature_weight * feat + noise_reg * reg
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():  # NVlabs: renormalise the noise images
                for buf in noise.values():
                    buf -= buf.mean()
                    buf *= buf.square().mean().rsqrt()
            rec = {"step": step + 1, "loss": loss.item(), "pixel": pixel.item(), "feature": feat.item(),
                   "noise_reg": reg.item(), "lr": step_lr}
            history.append(rec)
            if step % every == 0:
                frames.append((step, synth.detach()[0].cpu()))
            if log is not None and ((step + 1) % max(1, steps // 10) == 0 or step + 1 == steps):
                log(f"step {step + 1:>5d}/{steps}: loss {rec['loss']:.4f} (pixel {rec['pixel']:.4f}, "
                    f"feature {rec['feature']:.4f}, noise reg {rec['noise_reg']:.2e})")

    final_ws = w_opt.detach().expand(1, net.num_ws, -1).clone()
    final_noise = {k: v.detach().clone() for k, v in noise.items()}
    image = synthesize_projection(G, final_ws, final_noise)[0]
    frames.append((steps, image))
    return ProjectionResult(ws=final_ws.cpu(), image=image, target=target,
                            noise={k: v.cpu() for k, v in final_noise.items()}, history=history, frames=frames,
                            space=space, steps=steps, label=label, start_image=start_image)


def save_projection(result: ProjectionResult, out_dir: str | Path, snapshot: str | Path | None = None,
                    fps: float = 10.0) -> Path:
    """Write into ``out_dir``: ``latent.safetensors`` (``ws`` and the optimised noise images as ``noise.<name>``),
    ``latent.json`` (snapshot path and SHA-256, space, steps, label, final losses, PSNR), ``projected.png``,
    ``target.png`` and ``progress.gif`` (target | projection at ~30 points of the optimisation)."""
    from safetensors.torch import save as st_save

    from ganforge.core.snapshot import snapshot_hash

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {"ws": result.ws, **{f"noise.{k}": v for k, v in result.noise.items()}}
    atomic_write_bytes(out / "latent.safetensors",
                       st_save({k: v.detach().cpu().float().contiguous() for k, v in tensors.items()}))
    final = result.history[-1] if result.history else {}
    meta: dict[str, Any] = {
        "snapshot": None if snapshot is None else str(snapshot),
        "snapshot_sha256": None if snapshot is None else snapshot_hash(snapshot),
        "space": result.space, "steps": result.steps, "label": result.label,
        "final_losses": {k: v for k, v in final.items() if k not in ("step", "lr")},
        "psnr_db": round(result.psnr, 3), "start_psnr_db": round(result.start_psnr, 3),
        "noise_mode": "const, with the noise images stored in latent.safetensors",
    }
    atomic_write_text(out / "latent.json", json.dumps(meta, indent=2))
    target_u8 = to_uint8(result.target[None])
    save_image(to_uint8(result.image[None])[0].transpose(1, 2, 0), out / "projected.png")
    save_image(target_u8[0].transpose(1, 2, 0), out / "target.png")
    pairs = [make_grid(np.concatenate([target_u8, to_uint8(img[None])]), cols=2) for _, img in result.frames]
    save_gif(pairs, out / "progress.gif", fps)
    return out


def load_projection(path: str | Path) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
    """``out_dir`` (or its ``latent.safetensors``) -> (ws, noise, latent.json contents). Raises ValueError naming
    the file when either file is missing or damaged (nothing is ever unpickled)."""
    from safetensors.torch import load_file

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    weights, meta_path = folder / "latent.safetensors", folder / "latent.json"
    redo = "run `ganforge project` again to re-create the folder"
    for f in (weights, meta_path):
        if not f.is_file():
            raise ValueError(f"{f}: missing; a projection folder holds latent.safetensors and latent.json ({redo})")
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # a pickle renamed, a truncated copy: safetensors refuses it without unpickling
        raise ValueError(f"{weights}: not a readable safetensors file ({type(exc).__name__}: {str(exc)[:120]}); "
                         f"{redo}") from None
    ws = tensors.get("ws")
    if ws is None or ws.ndim != 3:
        raise ValueError(f"{weights}: no 'ws' tensor of shape [1, num_ws, w_dim]; {redo}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{meta_path}: unreadable ({exc}); {redo}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: holds a JSON {type(meta).__name__}, expected an object; {redo}")
    noise = {k.removeprefix("noise."): v for k, v in tensors.items() if k.startswith("noise.")}
    return ws, noise, meta
