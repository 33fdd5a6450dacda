"""Style control with StyleGAN2 snapshots: style mixing, latent arithmetic and interpolation, for seeds and for
real images projected with ``ganforge project``; and labelled synthetic datasets.

Every operation takes *latent specs*: a comma list whose items are seeds or seed ranges (``0-2``) or projection
folders written by ``ganforge project`` (``proj/``). A projection keeps its optimised noise images, so it is
re-drawn exactly and edits of it keep its fine detail.

Style mixing (Karras et al. 2019, sec. 3.1): the image of a "row" latent whose per-layer latents w in ``layers``
are taken from a "column" latent. Coarse layers (the lowest resolutions) carry pose and shape, middle layers
features, fine layers colour and texture.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganforge.core.files import atomic_write_text
from ganforge.core.grid import make_grid, save_image, to_uint8
from ganforge.core.latent import z_from_seeds
from ganforge.core.snapshot import snapshot_hash
from ganforge.infer.snapshot import LoadedGenerator
from ganforge.seeds import parse_seeds

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
    return torch.cat([G.net.synthesis(ws[i:i + 64].to(G.device), noise_mode="const")
                      for i in range(0, len(ws), 64)]).cpu()


Noise = dict[str, Tensor] | None  # a projection's optimised noise images; None = the snapshot's constant noise


@dataclass
class Latents:
    """Per-layer latents to draw or edit, one per seed or projected image."""
    ws: Tensor               # [N, num_ws, w_dim]
    names: list[str]         # "seed 3" or the projection folder
    noise: list[Noise]
    seeds: list[int | None]  # None for projections (they have no z)


def latents(G: LoadedGenerator, spec: str | Path | Sequence[int], labels=None, psi: float = 1.0) -> Latents:
    """Resolve a latent spec (seeds like ``0-2,7``, projection folders, or a mix) into :class:`Latents`.
    ``labels`` and ``psi`` apply to the seeds; projections carry their own."""
    from ganforge.infer.project import load_projection

    _require_style(G, "editing latents")
    items: list[int | Path] = []
    if isinstance(spec, (str, Path)):
        for part in str(spec).split(","):
            path = Path(part.strip()).expanduser()
            if path.name and (path.is_dir() or path.suffix == ".safetensors"):
                if not (path if path.suffix == ".safetensors" else path / "latent.safetensors").exists():
                    raise ValueError(f"{path}: no latent.safetensors here; make one with `ganforge project`")
                items.append(path)
            else:
                try:
                    items += parse_seeds(part)
                except ValueError as exc:
                    raise ValueError(f"{exc}: give seeds like 0-2 or projection folders written by "
                                     "`ganforge project`") from None
    else:
        items = [int(s) for s in spec]
    seeds = [s for s in items if isinstance(s, int)]
    seed_w = iter(seed_ws(G, seeds, labels, psi) if seeds else [])
    ws, names, noise = [], [], []
    for item in items:
        if isinstance(item, int):
            ws.append(next(seed_w))
            names.append(f"seed {item}")
            noise.append(None)
        else:
            w, nz, _ = load_projection(item)
            if tuple(w.shape[1:]) != (G.net.num_ws, G.net.w_dim):
                raise ValueError(f"{item}: its latent is {list(w.shape)}, this snapshot needs "
                                 f"[1, {G.net.num_ws}, {G.net.w_dim}]; was it projected with another snapshot?")
            ws.append(w[0].to(G.device))
            names.append(str(item))
            noise.append(nz)
    return Latents(torch.stack(ws), names, noise, [s if isinstance(s, int) else None for s in items])


def draw(G: LoadedGenerator, ws: Tensor, noise: Sequence[Noise]) -> Tensor:
    """``ws [N, num_ws, w_dim]`` -> images ``[N, C, H, W]`` on the CPU, each with its own noise (or the const)."""
    from ganforge.infer.project import synthesize_projection

    out: list[Tensor] = []
    i = 0
    while i < len(ws):
        j = i
        while j < len(ws) and noise[j] is None and j - i < 64:
            j += 1
        if j > i:  # a run of latents on the snapshot's constant noise: one batch
            out.append(synthesize_ws(G, ws[i:j]))
            i = j
        else:
            out.append(synthesize_projection(G, ws[i:i + 1], noise[i]))
            i += 1
    return torch.cat(out)


def style_mix(G: LoadedGenerator, rows, cols, styles: str = "coarse", labels=None, psi: float = 1.0) -> np.ndarray:
    """A grid image ``[H, W, C]`` uint8: top row the column latents, left column the row latents, and cell (r, c)
    the row's image with the ``styles`` layers taken from the column. Rows and columns are latent specs, so a
    projected photo can lend or receive styles; a cell keeps its row's noise."""
    _require_style(G, "style mixing")
    layers = style_layers(G.net.num_ws, styles)
    r, c = latents(G, rows, labels, psi), latents(G, cols, labels, psi)
    mixed = r.ws[:, None].repeat(1, len(c.ws), 1, 1)                       # [R, C, num_ws, w_dim]
    mixed[:, :, layers.start:layers.stop] = c.ws[None, :, layers.start:layers.stop]
    row_img, col_img = draw(G, r.ws, r.noise), draw(G, c.ws, c.noise)
    mix_img = draw(G, mixed.flatten(0, 1), [n for n in r.noise for _ in c.ws])
    blank = torch.full_like(row_img[:1], -1.0)
    cells = [blank, col_img]
    for i in range(len(r.ws)):
        cells += [row_img[i:i + 1], mix_img[i * len(c.ws):(i + 1) * len(c.ws)]]
    return make_grid(to_uint8(torch.cat(cells)), cols=len(c.ws) + 1)


# Latent arithmetic in W (Radford et al. 2015 sec. 6.3 in Z; Karras et al. 2019 / Shen et al. 2020 in W):
# direction = mean w(A) - mean w(B); each C moves along it by each scale s: w_C + s * direction.
def arithmetic(G: LoadedGenerator, a, b, c, scales: Sequence[float] = (0.0, 0.5, 1.0, 1.5), labels=None,
               psi: float = 1.0) -> tuple[np.ndarray, Tensor]:
    """Returns a grid (one row per C latent, one column per scale; scale 0 is C itself) and the direction
    ``[num_ws, w_dim]``."""
    la, lb, lc = latents(G, a, labels, psi), latents(G, b, labels, psi), latents(G, c, labels, psi)
    direction = la.ws.mean(0) - lb.ws.mean(0)
    ws = torch.stack([w + s * direction for w in lc.ws for s in scales])
    imgs = draw(G, ws, [n for n in lc.noise for _ in scales])
    return make_grid(to_uint8(imgs), cols=len(scales)), direction.cpu()


def interpolate(G: LoadedGenerator, a, b, frames: int, space: str = "w", labels=None, psi: float = 1.0) -> Tensor:
    """``frames`` images from latent ``a`` to ``b`` (one spec each): ``w`` interpolates the per-layer latents
    linearly (and a projection's noise images with them), ``z`` spherically between two seeds' z (White 2016),
    mapped through the network, which bends the path through W's typical set."""
    if space not in ("w", "z"):
        raise ValueError(f"space must be 'w' or 'z', got {space!r}")
    la, lb = latents(G, a, labels, psi), latents(G, b, labels, psi)
    if len(la.ws) != 1 or len(lb.ws) != 1:
        raise ValueError("interpolation takes exactly one latent at each end, e.g. 0,7 or proj/,7")
    t = torch.linspace(0, 1, frames)
    if space == "z":
        if la.seeds[0] is None or lb.seeds[0] is None:
            raise ValueError("a projected image has no z; interpolate it in w (--space w)")
        return G.interpolate(la.seeds[0], lb.seeds[0], frames, labels, psi=psi)
    ws = torch.stack([torch.lerp(la.ws[0], lb.ws[0], float(ti)) for ti in t])
    if la.noise[0] is None and lb.noise[0] is None:
        return draw(G, ws, [None] * frames)
    from ganforge.infer.project import noise_buffers

    const = {k: v.cpu() for k, v in noise_buffers(G).items()}
    na, nb = la.noise[0] or const, lb.noise[0] or const
    return draw(G, ws, [{k: torch.lerp(na[k], nb[k], float(ti)) for k in na} for ti in t])


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
