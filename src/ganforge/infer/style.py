"""Style control with StyleGAN2 snapshots: style mixing between seeds, and labelled synthetic datasets.

Style mixing (Karras et al. 2019, sec. 3.1): the image of a "row" seed whose per-layer latents w from
``layers`` on are taken from a "column" seed. Coarse layers (the lowest resolutions) carry pose and shape,
middle layers features, fine layers colour and texture.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganforge.infer.images import make_grid, save_image, to_uint8, z_from_seeds
from ganforge.infer.snapshot import LoadedGenerator
from ganforge.train.checkpoint import atomic_write_text, resolve_snapshot

STYLE_RANGES = ("coarse", "middle", "fine")


def style_layers(num_ws: int, which: str) -> range:
    """Layer indices of the ws for ``coarse`` (4²-8²), ``middle`` (16²-32²), ``fine`` (64² up), or ``A-B``."""
    if which == "coarse":
        return range(0, min(4, num_ws))
    if which == "middle":
        return range(min(4, num_ws), min(8, num_ws))
    if which == "fine":
        return range(min(8, num_ws), num_ws)
    try:
        a, b = (int(v) for v in which.split("-", 1))
    except ValueError:
        raise ValueError(f"styles must be coarse, middle, fine or a layer range like 0-3, got {which!r}") from None
    if not 0 <= a <= b < num_ws:
        raise ValueError(f"layer range {which} is outside 0-{num_ws - 1} (this generator has {num_ws} ws)")
    return range(a, b + 1)


def _require_style(G: LoadedGenerator, what: str) -> None:
    if not G.is_style:
        raise ValueError(f"{what} needs a StyleGAN2 snapshot; this one is {G.meta.get('arch')}")


@torch.no_grad()
def seed_ws(G: LoadedGenerator, seeds: Sequence[int], labels=None, psi: float = 1.0) -> Tensor:
    """Per-layer latents ``[N, num_ws, w_dim]`` for seeds (truncated toward the mean w when psi < 1)."""
    _require_style(G, "mapping seeds to w")
    z = z_from_seeds(list(seeds), G.z_dim).to(G.device)
    c = G.check_labels(labels, len(seeds))
    return G.net.mapping(z, c, psi=psi)


@torch.no_grad()
def synthesize_ws(G: LoadedGenerator, ws: Tensor) -> Tensor:
    return torch.cat([G.net.synthesis(ws[i:i + 64], noise_mode="const") for i in range(0, len(ws), 64)]).cpu()


def style_mix(G: LoadedGenerator, row_seeds: Sequence[int], col_seeds: Sequence[int], styles: str = "coarse",
              labels=None, psi: float = 1.0) -> np.ndarray:
    """A grid image ``[H, W, C]`` uint8: top row the column seeds, left column the row seeds, and cell (r, c) the
    row seed's image with the ``styles`` layers taken from the column seed."""
    _require_style(G, "style mixing")
    layers = style_layers(G.net.num_ws, styles)
    rows, cols = seed_ws(G, row_seeds, labels, psi), seed_ws(G, col_seeds, labels, psi)
    mixed = rows[:, None].repeat(1, len(col_seeds), 1, 1)                       # [R, C, num_ws, w_dim]
    mixed[:, :, layers.start:layers.stop] = cols[None, :, layers.start:layers.stop]
    row_img, col_img = synthesize_ws(G, rows), synthesize_ws(G, cols)
    mix_img = synthesize_ws(G, mixed.flatten(0, 1))
    blank = torch.full_like(row_img[:1], -1.0)
    cells = [blank, col_img]
    for r in range(len(row_seeds)):
        cells += [row_img[r:r + 1], mix_img[r * len(col_seeds):(r + 1) * len(col_seeds)]]
    return make_grid(to_uint8(torch.cat(cells)), cols=len(col_seeds) + 1)


def snapshot_hash(snapshot: str | Path) -> str:
    """SHA-256 of the snapshot's weights file: names exactly which model made an image."""
    weights, _ = resolve_snapshot(snapshot)
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def synthesize_dataset(G: LoadedGenerator, snapshot: str | Path, out: Path, per_class: int, psi: float = 1.0,
                       first_seed: int = 0, ext: str = "png") -> Path:
    """Write ``per_class`` images per class as ``out/<class name>/<seed>.png`` (or ``out/<seed>.png`` for an
    unconditional model) plus ``out/manifest.jsonl``: file, seed, class, psi and snapshot hash per image, so
    every image can be regenerated. Class k uses seeds ``first_seed + k * per_class ...``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose a new folder so that the manifest matches its files")
    digest = snapshot_hash(snapshot)
    classes = range(G.num_classes) if G.num_classes else [None]
    records = []
    for k in classes:
        seeds = list(range(first_seed + (k or 0) * per_class, first_seed + ((k or 0) + 1) * per_class))
        name = _safe_dirname(G.class_names[k] if k is not None and k < len(G.class_names) else str(k))
        folder = out / name if k is not None else out
        for i in range(0, len(seeds), 256):
            chunk = seeds[i:i + 256]
            imgs = to_uint8(G.generate(chunk, k, psi=psi) if G.is_style else G.generate(chunk, k))
            for s, im in zip(chunk, imgs, strict=True):
                path = folder / f"seed{s:08d}.{ext}"
                save_image(im.transpose(1, 2, 0), path)
                records.append({"file": str(path.relative_to(out)), "seed": s, "class": k,
                                "class_name": None if k is None else name, "psi": psi, "snapshot_sha256": digest})
    atomic_write_text(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return out


def _safe_dirname(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._")
    return keep or "class"
