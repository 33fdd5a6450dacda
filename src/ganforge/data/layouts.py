"""Pair layouts of a source: which two folders hold partners, which files partner which, and whether their
sizes agree. Used by `pairs.py` to load pairs and by `dataset.inspect_source` to report them.

Folder names are matched case-insensitively, in this order:

    A/ + B/              aligned pairs, input A, target B (pix2pix)
    lq/ + gt/, LR/ + HR/ aligned pairs for restoration; the input may be smaller by an integer factor
    trainA/ + trainB/    unpaired domains (CycleGAN); testA/ + testB/ for split="test"
    images/ + masks/     images with inpainting masks

Partners share their path inside the two folders up to the extension (`A/x.png` <-> `B/x.jpg`). For lq/gt,
an input stem ending in `x2`, `x3`, `x4` ... also matches the stem without it (DIV2K's `0001x4.png`).
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from dataclasses import dataclass, field

from ganforge.data.sources import Entry, strip_top, top

# (layout kind, input folder, target folder); "{split}" is the split name ("train" or "test").
LAYOUTS = (
    ("A/B", "A", "B"),
    ("lq/gt", "lq", "gt"),
    ("lq/gt", "LR", "HR"),
    ("unpaired", "{split}A", "{split}B"),
    ("masked", "images", "masks"),
)
PAIRED_KINDS = ("A/B", "lq/gt", "masked")  # the kinds whose files are matched one to one
_SCALE_SUFFIX = re.compile(r"[_-]?x\d+$")


@dataclass
class Layout:
    kind: str  # "images" (no partner folders), or a kind from LAYOUTS
    folders: tuple[str, str] = ("", "")  # the two folder names as spelled in the source, input first
    sides: tuple[list[Entry], list[Entry]] = ([], [])  # the files of each folder, rel inside that folder
    outside: list[str] = field(default_factory=list)  # image files in neither folder (rel), ignored


def detect_layout(images: list[Entry], split: str = "train") -> Layout:
    """The first layout of `LAYOUTS` whose two folders are both top-level folders of the listing; or, when the
    listing is nothing but one folder of a layout (A/ and no B/), that layout with an empty side, so loaders
    can say what is missing. Image folders hold at least one image file to count."""
    tops = {top(e) for e in images if "/" in e.rel}
    by_lower = {name.lower(): name for name in sorted(tops)}
    alone = len(tops) == 1 and all("/" in e.rel for e in images)
    for kind, first, second in LAYOUTS:
        names = first.format(split=split), second.format(split=split)
        a, b = by_lower.get(names[0].lower()), by_lower.get(names[1].lower())
        if (a is None and b is None) or ((a is None or b is None) and not alone):
            continue
        a, b = a or names[0], b or names[1]
        sides = ([strip_top(e) for e in images if "/" in e.rel and top(e) == a],
                 [strip_top(e) for e in images if "/" in e.rel and top(e) == b])
        outside = [e.rel for e in images if "/" not in e.rel or top(e) not in (a, b)]
        return Layout(kind, (a, b), sides, outside)
    return Layout("images")


@dataclass
class Matching:
    pairs: list[tuple[int, int]]  # (index in the first side, index in the second), in the first side's order
    missing_second: list[str]  # files of the first side with no partner in the second (rel)
    missing_first: list[str]  # files of the second side with no partner in the first
    duplicates: list[str]  # files whose stem another file of the same folder already has (not used)


def _stem(rel: str) -> str:
    return posixpath.splitext(rel)[0]


def match_partners(first: list[Entry], second: list[Entry], scale_suffix: bool = False) -> Matching:
    """Pair files of two folders by their path up to the extension. With `scale_suffix`, a first-side stem
    that has no partner also tries itself without a trailing `x<digits>` (`0001x4` -> `0001`)."""
    duplicates: list[str] = []
    index_second: dict[str, int] = {}
    for j, entry in enumerate(second):
        if index_second.setdefault(_stem(entry.rel), j) != j:
            duplicates.append(entry.rel)
    pairs, missing_second, seen_first, used_second = [], [], set(), set()
    for i, entry in enumerate(first):
        stem = _stem(entry.rel)
        if stem in seen_first:
            duplicates.append(entry.rel)
            continue
        seen_first.add(stem)
        j = index_second.get(stem)
        if j is None and scale_suffix:
            j = index_second.get(_SCALE_SUFFIX.sub("", stem))
        if j is None or j in used_second:
            missing_second.append(entry.rel)
            continue
        used_second.add(j)
        pairs.append((i, j))
    duplicate_set = set(duplicates)
    missing_first = [e.rel for j, e in enumerate(second) if j not in used_second and e.rel not in duplicate_set]
    return Matching(pairs, missing_second, missing_first, duplicates)


def pair_scale(input_size: tuple[int, int], target_size: tuple[int, int]) -> int | None:
    """The integer s with input == target // s in both width and height, or None. Sizes are (width, height)."""
    (iw, ih), (tw, th) = input_size, target_size
    if iw < 1 or ih < 1:
        return None
    s = max(1, round(tw / iw))
    return s if tw // s == iw and th // s == ih else None


def common_scale(sizes: list[tuple[tuple[int, int], tuple[int, int]]]) -> int:
    """The most common `pair_scale` over (input size, target size) pairs (the smallest on ties); 1 if none."""
    counts = Counter(s for s in (pair_scale(a, b) for a, b in sizes) if s is not None)
    if not counts:
        return 1
    best = max(counts.values())
    return min(s for s, n in counts.items() if n == best)


def size_mismatch(name: str, folders: tuple[str, str], input_size, target_size, scale: int) -> str | None:
    """None when the partners' sizes agree with `scale`, else a line such as "x: A 64x48, B 60x48"."""
    if pair_scale(input_size, target_size) == scale:
        return None
    (iw, ih), (tw, th) = input_size, target_size
    expected = f" (expected {folders[0]} = {folders[1]} / {scale})" if scale > 1 else ""
    return f"{_stem(name)}: {folders[0]} {iw}x{ih}, {folders[1]} {tw}x{th}{expected}"


@dataclass
class PairCheck:
    pairs: list[int]  # indices of the pairs whose partners are both readable and agree in size
    scale: int  # target side / input side
    mismatches: list[str]  # one line per pair whose sizes disagree (see size_mismatch)


def check_pairs(
    names: list[str],
    input_sizes: list[tuple[int, int] | None],
    target_sizes: list[tuple[int, int] | None],
    folders: tuple[str, str],
    scale: int | None = None,
    allow_scale: bool = True,
) -> PairCheck:
    """Check pair k (named `names[k]`, the input's rel path) of (width, height) sizes; None marks an unreadable
    file, whose pair is dropped silently (intake reports the file). `scale` None infers the most common
    integer factor when `allow_scale`, else 1."""
    readable = [k for k in range(len(names)) if input_sizes[k] is not None and target_sizes[k] is not None]
    if scale is None:
        scale = common_scale([(input_sizes[k], target_sizes[k]) for k in readable]) if allow_scale else 1
    ok, mismatches = [], []
    for k in readable:
        line = size_mismatch(names[k], folders, input_sizes[k], target_sizes[k], scale)
        if line is None:
            ok.append(k)
        else:
            mismatches.append(line)
    return PairCheck(ok, scale, mismatches)
