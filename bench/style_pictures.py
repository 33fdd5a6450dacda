"""The pictures of docs/stylegan2.md, made with the public API from one StyleGAN2 Fashion-MNIST snapshot.

    python bench/style_pictures.py --snapshot bench/results/runs/<run>

Writes docs/img/sg2-{truncation,style-mix,walk,arithmetic,edit}.png (2x nearest-neighbour enlarged). The
arithmetic picture picks its seed sets with the shipped judge: A = seeds it calls "Sneaker", B = seeds it calls
"Ankle boot", C = other ankle boots; the edit picture projects Fashion-MNIST test image 0 (held out) and then
mixes and shifts its latents (rows: target, projection, projection + middle styles of seeds 5-9 / those seeds /
target, projection moved along the boot -> sneaker direction by 0, 0.5, 1, 1.5).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ganforge
from ganforge.core.grid import make_grid, save_image, to_uint8
from ganforge.data import load_dataset
from ganforge.infer.project import project, save_projection
from ganforge.infer.style import arithmetic, draw, interpolate, latents, style_layers, style_mix
from ganforge.metrics.extractors import SHIPPED_JUDGE
from ganforge.metrics.judge import judge_features, load_judge, to_float

HERE = Path(__file__).resolve().parent
JUDGE = SHIPPED_JUDGE  # package data: src/ganforge/metrics/assets/
IMG = HERE.parent / "docs" / "img"
SNEAKER, BOOT = 7, 9


def save(grid: np.ndarray, name: str) -> None:
    img = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    img = img.resize((img.width * 2, img.height * 2), Image.NEAREST)
    save_image(np.asarray(img).reshape(img.height, img.width, -1), IMG / name)
    print("wrote", IMG / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", required=True)
    ap.add_argument("--steps", type=int, default=300, help="projection steps for the edit picture")
    args = ap.parse_args()
    G = ganforge.load(args.snapshot)
    judge = load_judge(JUDGE)

    # Truncation: rows psi = 1, 0.7, 0.5, 0 (the tracked mean w) for seeds 0-9.
    rows = [G.generate(range(10), psi=psi) for psi in (1.0, 0.7, 0.5, 0.0)]
    save(make_grid(to_uint8(torch.cat(rows)), 10), "sg2-truncation.png")

    # Style mixing: coarse (4-8 px layers) and middle (16-32 px) styles of seeds 5-9 into seeds 0-3.
    coarse, middle = style_mix(G, "0-3", "5-9", "coarse"), style_mix(G, "0-3", "5-9", "middle")
    save(np.concatenate([coarse, np.zeros((8, *coarse.shape[1:]), np.uint8), middle]), "sg2-style-mix.png")

    # Walks from seed 1 to seed 2: spherical in z (top) and linear in w (bottom), 10 frames each.
    walks = [interpolate(G, "1", "2", 10, space) for space in ("z", "w")]
    save(make_grid(to_uint8(torch.cat(walks)), 10), "sg2-walk.png")

    # Latent arithmetic: judge-labelled seed sets.
    seeds = list(range(2000))
    pred = judge.predict(G.generate(seeds).clamp(-1, 1))[1].argmax(1)
    sneakers = [s for s, p in zip(seeds, pred.tolist(), strict=True) if p == SNEAKER]
    boots = [s for s, p in zip(seeds, pred.tolist(), strict=True) if p == BOOT]
    a, b, c = sneakers[:50], boots[:50], boots[50:56]
    spec = lambda xs: ",".join(map(str, xs))  # noqa: E731
    grid, _ = arithmetic(G, spec(a), spec(b), spec(c), scales=[0, 0.5, 1.0, 1.5])
    save(grid, "sg2-arithmetic.png")
    print(f"arithmetic: {len(sneakers)} sneakers, {len(boots)} ankle boots among {len(seeds)} seeds")

    # Editing a real (held-out) image: project test image 0; row 1: target, projection, the projection with the
    # middle styles of seeds 5-9 (row 2 shows those seeds); row 3: target, then the projection moved along the
    # ankle boot -> sneaker direction by 0, 0.5, 1, 1.5.
    target = to_float(load_dataset("fashion-mnist", 32, resize="pad", split="test").images[:1])[0]
    with tempfile.TemporaryDirectory() as tmp:
        r = project(G, target, steps=args.steps, space="w+", features=judge_features(JUDGE), seed=0)
        photo = latents(G, str(save_projection(r, Path(tmp) / "proj", snapshot=args.snapshot)))
    donors = latents(G, "5-9")
    layers = style_layers(G.net.num_ws, "middle")
    mixed = photo.ws.repeat(len(donors.ws), 1, 1)
    mixed[:, layers.start:layers.stop] = donors.ws[:, layers.start:layers.stop]
    _, direction = arithmetic(G, spec(a), spec(b), "0", scales=[0])
    moved = torch.stack([photo.ws[0] + s * direction.to(photo.ws) for s in (0, 0.5, 1.0, 1.5)])
    blank = torch.full_like(target[None], -1.0)
    cells = torch.cat([target[None], r.image[None], draw(G, mixed, photo.noise * len(mixed)),
                       blank, blank, draw(G, donors.ws, donors.noise),
                       target[None], draw(G, moved, photo.noise * len(moved)), blank, blank])
    save(make_grid(to_uint8(cells.clamp(-1, 1)), 7), "sg2-edit.png")
    print(f"projection PSNR {r.psnr:.2f} dB (mean-w start {r.start_psnr:.2f} dB)")


if __name__ == "__main__":
    main()
