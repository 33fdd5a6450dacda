"""A procedural set of semantic label maps and the "photos" they describe, for label-map -> photo translation
(pix2pix's labels -> facades/cityscapes, pix2pixHD/GauGAN's semantic synthesis) without downloading anything.

Each scene is a horizon between sky and grass, maybe a lake, maybe a sun, and 0-3 trees (trunk + crown), drawn as
a label map of class indices (SCENE_CLASSES) and rendered as a textured RGB image: a sky gradient with noise, grass
with blades of darker noise, water with horizontal ripples, a sun with a glow, bark and leaves. Everything comes
from numpy's generator seeded by (seed, image index), so a set is a pure function of (count, size, seed).

``data.source = "scenes"`` (or ``scenes:COUNT`` / ``scenes:COUNT:SIZE``) writes the set once under
``$GANFORGE_CACHE/scenes/`` as A/ (label PNGs, 8-bit gray, value = class index) + B/ (photos), the pix2pix
A/ + B/ layout, and trains from there with ``data.label_classes`` = len(SCENE_CLASSES).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ganforge.data.builtin import DatasetError, cache_dir

SCENE_CLASSES = ("sky", "grass", "sun", "trunk", "crown", "water")
SKY, GRASS, SUN, TRUNK, CROWN, WATER = range(len(SCENE_CLASSES))
DEFAULT_COUNT, DEFAULT_SIZE = 200, 128
_MARKER = "scenes.json"


def parse_scenes(source: str) -> tuple[int, int, int] | None:
    """``scenes``, ``scenes:COUNT`` or ``scenes:COUNT:SIZE`` -> (count, size, seed 0); None for other sources.
    DatasetError for a malformed one."""
    if source != "scenes" and not source.startswith("scenes:"):
        return None
    match = re.fullmatch(r"scenes(?::(\d+))?(?::(\d+))?", source)
    count, size = (int(match.group(1) or DEFAULT_COUNT), int(match.group(2) or DEFAULT_SIZE)) if match else (0, 0)
    if not match or not 1 <= count <= 100_000 or not 16 <= size <= 1024:
        raise DatasetError(f"data.source={source!r}: write scenes, scenes:COUNT or scenes:COUNT:SIZE with COUNT in "
                           "1..100000 and SIZE in 16..1024 pixels")
    return count, size, 0


def render_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (label map uint8 [size, size] of class indices, photo uint8 [size, size, 3])."""
    s = size
    labels = Image.new("L", (s, s), SKY)
    draw = ImageDraw.Draw(labels)
    horizon = int(s * rng.uniform(0.4, 0.7))
    draw.rectangle([0, horizon, s, s], fill=GRASS)
    if rng.random() < 0.5:  # a lake: an ellipse below the horizon
        cx, w = rng.uniform(0.2, 0.8) * s, rng.uniform(0.2, 0.45) * s
        top = horizon + rng.uniform(0.05, 0.3) * (s - horizon)
        draw.ellipse([cx - w, top, cx + w, top + rng.uniform(0.1, 0.3) * s], fill=WATER)
    if rng.random() < 0.7:  # the sun, in the sky
        r = rng.uniform(0.05, 0.1) * s
        cx, cy = rng.uniform(0.1, 0.9) * s, rng.uniform(0.1, 0.6) * horizon
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=SUN)
    for _ in range(rng.integers(0, 4)):  # trees standing on the grass, nearer ones lower and bigger
        base = horizon + rng.uniform(0.05, 0.6) * (s - horizon)
        scale = 0.5 + (base - horizon) / max(s - horizon, 1)
        x, tw, th = rng.uniform(0.05, 0.95) * s, 0.02 * s * scale, 0.18 * s * scale
        draw.rectangle([x - tw, base - th, x + tw, base], fill=TRUNK)
        cr = 0.1 * s * scale
        draw.ellipse([x - cr, base - th - 1.5 * cr, x + cr, base - th + 0.5 * cr], fill=CROWN)
    index = np.asarray(labels, dtype=np.uint8)
    return index, _render(index, horizon, rng)


def _render(index: np.ndarray, horizon: int, rng: np.random.Generator) -> np.ndarray:
    s = index.shape[0]
    y = np.linspace(0.0, 1.0, s)[:, None, None]  # [s, 1, 1], top = 0
    noise = rng.normal(0.0, 1.0, (s, s, 1))
    streaks = np.repeat(rng.normal(0.0, 1.0, (s, 1, 1)), s, axis=1)  # horizontal ripples
    blades = np.repeat(rng.normal(0.0, 1.0, (1, s, 1)), s, axis=0)   # vertical grain
    dusk = rng.uniform(0.0, 1.0)  # time of day shifts the sky from blue to orange
    sky = (1 - dusk) * np.array([70, 130, 220]) + dusk * np.array([240, 150, 90])
    layers = {
        SKY: sky + (y * 90) + 4 * noise,
        GRASS: np.array([80, 150, 50]) - 50 * (y - horizon / s) + 18 * noise + 8 * blades,
        SUN: np.array([255, 230, 120]) + 6 * noise,
        TRUNK: np.array([100, 65, 35]) + 20 * blades + 5 * noise,
        CROWN: np.array([35, 105, 45]) + 25 * noise,
        WATER: 0.5 * sky + np.array([10, 40, 70]) + 12 * streaks + 4 * noise,
    }
    photo = np.zeros((s, s, 3))
    for k, layer in layers.items():
        photo = np.where((index == k)[:, :, None], np.broadcast_to(layer, (s, s, 3)), photo)
    image = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6))
    return np.asarray(image)


def is_scenes_folder(path: Path) -> bool:
    return (Path(path) / _MARKER).is_file()


def scenes_folder(count: int = DEFAULT_COUNT, size: int = DEFAULT_SIZE, seed: int = 0,
                  root: Path | None = None) -> Path:
    """The folder holding the set (A/ labels, B/ photos, scenes.json), written on first use. The folder appears
    whole or not at all (written to a temporary folder, then renamed), so concurrent or killed writers leave no
    half set."""
    out = (root or cache_dir() / "scenes") / f"n{count}-s{size}-seed{seed}"
    if is_scenes_folder(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    try:
        (tmp / "A").mkdir()
        (tmp / "B").mkdir()
        for i in range(count):
            labels, photo = render_scene(np.random.default_rng([seed, i]), size)
            Image.fromarray(labels, mode="L").save(tmp / "A" / f"{i:05d}.png")
            Image.fromarray(photo).save(tmp / "B" / f"{i:05d}.png")
        (tmp / _MARKER).write_text(json.dumps({"classes": list(SCENE_CLASSES), "count": count, "size": size,
                                               "seed": seed}))
        try:
            os.rename(tmp, out)
        except OSError:  # another process finished first: keep its set
            if not is_scenes_folder(out):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
