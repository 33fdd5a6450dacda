"""The offline photo set: redistributable photographs for training and benchmarking the restoration models.

    python bench/photos.py fetch [--out ~/.cache/ganforge/photos] [--debs DIR] [--no-update]
    python bench/photos.py check [--out ~/.cache/ganforge/photos]

`fetch` builds `<out>/train/`, `<out>/heldout/` and `<out>/manifest.json` from sources that need no download
beyond Debian's archive:

* Debian packages `plasma-workspace-wallpapers`, `ukui-wallpapers` and `lomiri-wallpapers-20.04`, fetched with
  `apt-get download` (after one `apt-get update`; `--debs DIR` reuses .deb files already there) and unpacked with
  `dpkg-deb -x`. Each package's `usr/share/doc/<pkg>/copyright` (DEP-5) is parsed and the licence of every kept
  file is taken from it (the last `Files:` stanza that matches, as DEP-5 says); for the Plasma wallpapers the
  upstream `metadata.json` (author, licence) is recorded too.
* The scikit-image sample photos that ship inside the installed wheel (`skimage/data/*`; nothing is fetched with
  pooch) and matplotlib's sample photo (`mpl-data/sample_data/grace_hopper.jpg`; matplotlib is a bench-only
  install, not a ganforge dependency). Their licences are those stated in scikit-image's `skimage.data`
  docstrings and matplotlib's sample-data notes; `fetch` checks that each docstring still states the licence
  phrase recorded here and refuses the image otherwise.

**Which images are photographs.** The rule is a list of files inspected by eye (`DEBIAN_PHOTOS`, `PYTHON_PHOTOS`):
a photograph of a real scene (camera or telescope), not vector art, a 3D render, a low-poly or flat illustration,
a painted or digitally composed picture. Of the 59 distinct images in the three packages 13 are photographs:
two of lomiri's four (the other two are renders), eleven of Plasma's (its other wallpapers are renders and
illustrations; its `images_dark/` and portrait files are variants of the same renders, its `screenshot.*` are
thumbnails and its size-named symlinks point at the one kept file), none of ukui's twelve (all renders and
vector art). Everything not kept is listed in the manifest's `excluded` with the reason.

**Licences.** Kept only when the licence allows redistribution and modification: CC0, public domain, CC-BY-SA,
GPL-2+ / LGPL-3 (Plasma). Excluded for an unclear licence: scikit-image's `moon`, `page` and the Middlebury
`motorcycle` pair (their docstrings state none). The `lfw_subset` faces are excluded on purpose: they are the
separate face-SR benchmark's data (and photos of identifiable people).

**Resize.** Wallpapers are 2560x1600 to 6028x3391. Each image whose short side exceeds 1024 px is reduced so the
short side is 1024 (the long side rounded), with Pillow's Lanczos filter (`Image.Resampling.LANCZOS`, a windowed
sinc with a support that widens with the reduction, so it anti-aliases). Why: at 4-6K a 64 px training patch
holds a few percent of an edge (wallpapers are shot soft and upsampled), while DIV2K, the usual SR training set,
is about 2K with a short side near 1,350 px; at a 1024 px short side the detail per patch is similar and
downscaling also averages away most JPEG blocking and sensor noise, which would otherwise become part of the
"clean" ground truth. Smaller images are kept at their size. All images are written as 8-bit RGB PNG (gray
photos are replicated to three channels, noted in `mode`), so nothing is re-compressed lossily.

**Split.** Deterministic and fixed: the names in `HELDOUT` (six photos chosen for variety: boats under an evening
sky, coloured cups, a bird on bark, a portrait, a cat, a coffee cup) go to `heldout/`, all others to `train/`.
Held-out photos are never trained on; the benchmarks read `heldout/` and the manifest.

The manifest holds no timestamp, so its SHA-256 identifies the photo set (the shipped checkpoints record it).
The folder is built beside `<out>` and renamed into place, so a reader polling for `manifest.json` never sees a
half-written set.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_OUT = Path.home() / ".cache" / "ganforge" / "photos"
SHORT_SIDE_MAX = 1024
RESIZE_FILTER = "PIL.Image.Resampling.LANCZOS"
PACKAGES = ("plasma-workspace-wallpapers", "ukui-wallpapers", "lomiri-wallpapers-20.04")
# The versions whose images were inspected (Debian bookworm); another version is used but reported.
INSPECTED_VERSIONS = {"plasma-workspace-wallpapers": "4:5.27.5-2", "ukui-wallpapers": "20.04.3-1.1",
                      "lomiri-wallpapers-20.04": "20.04.0-2"}


@dataclass(frozen=True)
class DebianPhoto:
    name: str        # output stem, unique over the set
    package: str
    path: str        # inside the package's file tree
    what: str        # what the photo shows (checked by eye)


_PW = "usr/share/wallpapers"
DEBIAN_PHOTOS: tuple[DebianPhoto, ...] = (
    DebianPhoto("lomiri-infinite-sea", "lomiri-wallpapers-20.04",
                "usr/share/backgrounds/Infinite-Sea_by_Aury88.jpg", "Milky Way over the sea at night (tinted)"),
    DebianPhoto("lomiri-kleiber", "lomiri-wallpapers-20.04",
                "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg", "a nuthatch on tree bark, blurred background"),
    DebianPhoto("plasma-bythewater", "plasma-workspace-wallpapers",
                f"{_PW}/BytheWater/contents/images/2560x1600.jpg", "wooden jetty planks at the water, shallow focus"),
    DebianPhoto("plasma-coldripple", "plasma-workspace-wallpapers",
                f"{_PW}/ColdRipple/contents/images/2560x1600.jpg", "a pier in fog, near monochrome"),
    DebianPhoto("plasma-colorfulcups", "plasma-workspace-wallpapers",
                f"{_PW}/ColorfulCups/contents/images/2560x1600.jpg", "stacked coloured plastic cups from above"),
    DebianPhoto("plasma-darkesthour", "plasma-workspace-wallpapers",
                f"{_PW}/DarkestHour/contents/images/2560x1600.jpg", "a lake at dusk, dark blue"),
    DebianPhoto("plasma-eveningglow", "plasma-workspace-wallpapers",
                f"{_PW}/EveningGlow/contents/images/2560x1600.jpg", "rowing boats on a lake under a sunset sky"),
    DebianPhoto("plasma-fallenleaf", "plasma-workspace-wallpapers",
                f"{_PW}/FallenLeaf/contents/images/2560x1600.jpg", "an autumn leaf on the ground, macro"),
    DebianPhoto("plasma-grey", "plasma-workspace-wallpapers",
                f"{_PW}/Grey/contents/images/2560x1600.jpg", "a curved facade, black and white"),
    DebianPhoto("plasma-kite", "plasma-workspace-wallpapers",
                f"{_PW}/Kite/contents/images/2560x1600.jpg", "a kite in a blue sky with clouds"),
    DebianPhoto("plasma-onestandsout", "plasma-workspace-wallpapers",
                f"{_PW}/OneStandsOut/contents/images/2560x1600.jpg", "green moss plants, one flower"),
    DebianPhoto("plasma-path", "plasma-workspace-wallpapers",
                f"{_PW}/Path/contents/images/2560x1600.jpg", "a path through a pine forest"),
    DebianPhoto("plasma-summer1am", "plasma-workspace-wallpapers",
                f"{_PW}/summer_1am/contents/images/2560x1600.jpg", "a calm lake under a violet night sky"),
)


@dataclass(frozen=True)
class PythonPhoto:
    name: str
    library: str          # "scikit-image" or "matplotlib"
    file: str             # relative to the library's data folder
    licence: str
    check: str            # the phrase the library's docs must still contain ("" for matplotlib, see docstring)
    doc: str              # skimage.data function whose docstring carries the licence
    what: str


PYTHON_PHOTOS: tuple[PythonPhoto, ...] = (
    PythonPhoto("skimage-astronaut", "scikit-image", "astronaut.png", "public domain (NASA)",
                "public domain", "astronaut", "portrait of astronaut Eileen Collins"),
    PythonPhoto("skimage-brick", "scikit-image", "brick.png", "CC0-1.0 (CC0Textures)",
                "CC0", "brick", "a brick wall, gray"),
    PythonPhoto("skimage-camera", "scikit-image", "camera.png", "CC0-1.0 (photographer Lav Varshney)",
                "CC0", "camera", "a man with a camera on a tripod, gray"),
    PythonPhoto("skimage-chelsea", "scikit-image", "chelsea.png", "CC0-1.0 (photographer Stefan van der Walt)",
                "CC0", "chelsea", "a cat"),
    PythonPhoto("skimage-coffee", "scikit-image", "coffee.png", "CC0-1.0 (photographer Rachel Michetti)",
                "CC0", "coffee", "a cup of coffee"),
    PythonPhoto("skimage-coins", "scikit-image", "coins.png",
                "no known copyright restrictions (Brooklyn Museum collection)",
                "No known copyright restrictions", "coins", "Greek coins, gray"),
    PythonPhoto("skimage-grass", "scikit-image", "grass.png", "CC0-1.0 (DeviantArt linolafett)",
                "CC0", "grass", "grass texture, gray"),
    PythonPhoto("skimage-gravel", "scikit-image", "gravel.png", "CC0-1.0 (CC0Textures)",
                "CC0", "gravel", "gravel texture, gray"),
    PythonPhoto("skimage-hubble", "scikit-image", "hubble_deep_field.jpg", "public domain (NASA)",
                "public domain", "hubble_deep_field", "Hubble eXtreme Deep Field"),
    PythonPhoto("skimage-ihc", "scikit-image", "ihc.png", "no known copyright restrictions (CMMI)",
                "No known copyright restrictions", "immunohistochemistry", "stained tissue, microscope"),
    PythonPhoto("skimage-microaneurysms", "scikit-image", "microaneurysms.png", "CC0-1.0 (Andreas Maier)",
                "CC0", "microaneurysms", "retina detail, gray"),
    PythonPhoto("skimage-retina", "scikit-image", "retina.jpg", "CC0-1.0 (Häggström, Wikimedia Commons)",
                "CC0", "retina", "fundus photograph of a retina"),
    PythonPhoto("skimage-rocket", "scikit-image", "rocket.jpg", "public domain (SpaceX)",
                "public domain", "rocket", "a Falcon 9 on the launch pad"),
    # matplotlib's sample photo of Grace Hopper is a U.S. Navy photograph (public domain as a work of the U.S.
    # federal government); matplotlib distributes it in sample_data under its own licence.
    PythonPhoto("matplotlib-grace-hopper", "matplotlib", "grace_hopper.jpg",
                "public domain (U.S. Navy photograph)", "", "", "portrait of Grace Hopper"),
)

HELDOUT = frozenset({"plasma-eveningglow", "plasma-colorfulcups", "lomiri-kleiber",
                     "skimage-astronaut", "skimage-chelsea", "skimage-coffee"})

# Files of the Python libraries' data folders that are not used, and why (the manifest lists them).
PYTHON_EXCLUDED = {
    ("scikit-image", "moon.png"): "licence unclear: skimage.data.moon states none",
    ("scikit-image", "page.png"): "licence unclear (none stated); scanned text, not a photograph",
    ("scikit-image", "motorcycle_left.png"): "licence unclear: Middlebury 2014 stereo, none stated in skimage",
    ("scikit-image", "motorcycle_right.png"): "licence unclear: Middlebury 2014 stereo, none stated in skimage",
    ("scikit-image", "lfw_subset.npy"): "reserved for the face-SR benchmark; photos of identifiable people",
    ("scikit-image", "cell.png"): "not a photograph (quantitative phase image from a hologram)",
    ("scikit-image", "horse.png"): "not a photograph (binary silhouette)",
    ("scikit-image", "text.png"): "not a photograph (text)",
    ("scikit-image", "logo.png"): "not a photograph (logo)",
    ("scikit-image", "color.png"): "not a photograph (synthetic colour chart)",
    ("scikit-image", "chessboard_GRAY.png"): "not a photograph (synthetic)",
    ("scikit-image", "chessboard_RGB.png"): "not a photograph (synthetic)",
    ("scikit-image", "clock_motion.png"): "not a photograph (synthetic motion blur test)",
    ("scikit-image", "phantom.png"): "not a photograph (synthetic phantom)",
    ("scikit-image", "no_time_for_that_tiny.gif"): "not a photograph (animation)",
    ("matplotlib", "Minduka_Present_Blue_Pack.png"): "not a photograph (128 px icon)",
    ("matplotlib", "logo2.png"): "not a photograph (logo)",
}


class PhotoSetError(RuntimeError):
    """A step of building the photo set failed; the message names the file or command and what to do."""


# ---------------------------------------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------------------------------------

def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise PhotoSetError(f"{cmd[0]} not found: this needs a Debian-based system (apt-get, dpkg-deb)") from e
    except subprocess.CalledProcessError as e:
        raise PhotoSetError(f"`{' '.join(cmd)}` failed ({e.returncode}): {e.stderr.strip()[-500:]}") from e
    return done.stdout


def download_debs(work: Path, debs: Path | None, update: bool) -> dict[str, Path]:
    """Each package's .deb: from `debs` when it holds one, else `apt-get download` into `work`."""
    found: dict[str, Path] = {}
    if debs is not None:
        for pkg in PACKAGES:
            hits = sorted(debs.glob(f"{pkg}_*.deb"))
            if hits:
                found[pkg] = hits[-1]
    missing = [p for p in PACKAGES if p not in found]
    if missing:
        if update:
            _run(["apt-get", "update"])
        _run(["apt-get", "download", *missing], cwd=work)
        for pkg in missing:
            hits = sorted(work.glob(f"{pkg}_*.deb"))
            if not hits:
                raise PhotoSetError(f"apt-get download {pkg} wrote no .deb into {work}")
            found[pkg] = hits[-1]
    return found


def parse_dep5(text: str) -> list[tuple[list[str], str, str]]:
    """The `Files:` stanzas of a DEP-5 copyright file as (patterns, copyright, licence short name)."""
    stanzas = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Files" in fields and "License" in fields:
            stanzas.append((fields["Files"].split(), " ".join(fields.get("Copyright", "").split()),
                            fields["License"].splitlines()[0].strip()))
    return stanzas


def licence_for(stanzas: list[tuple[list[str], str, str]], path: str) -> tuple[str, str] | None:
    """(copyright, licence) of the last stanza matching `path` (DEP-5: the last match wins). The stanzas name
    files as in the upstream source tree (`20.04/Kleiber_by_...jpg`), which the package installs elsewhere, so a
    pattern matches by its file-name part; `*` matches everything; `debian/*` is the packaging, never an image."""
    name = Path(path).name
    hit = None
    for patterns, copyright_, licence in stanzas:
        for pat in patterns:
            if pat.startswith("debian/"):
                continue
            if pat == "*" or fnmatch.fnmatchcase(name, Path(pat).name):
                hit = (copyright_, licence)
    return hit


def plasma_metadata(root: Path, path: str) -> dict[str, str]:
    """Author and licence from a Plasma wallpaper's upstream metadata.json (next to `contents/`)."""
    meta = root / Path(path).parents[2] / "metadata.json"
    if not meta.is_file():
        return {}
    plugin = json.loads(meta.read_text(encoding="utf-8")).get("KPlugin", {})
    authors = ", ".join(a.get("Name", "") for a in plugin.get("Authors", []))
    return {"author": authors, "upstream_licence": plugin.get("License", "")}


def deb_version(deb: Path) -> str:
    return _run(["dpkg-deb", "-f", str(deb), "Version"]).strip()


def image_files(root: Path) -> list[str]:
    """Every image file of an unpacked package (symlinks included), relative to its root."""
    exts = {".jpg", ".jpeg", ".png", ".svg", ".webp"}
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in exts)


def exclusion_reason(root: Path, rel: str) -> str:
    p = root / rel
    if p.is_symlink():
        return f"symlink to {os.readlink(p)} (a size name for the same image)"
    if "screenshot" in p.name:
        return "thumbnail of a wallpaper"
    if "images_dark" in rel:
        return "dark variant of a render (not a photograph)"
    return "not a photograph (render, vector art or illustration; inspected by eye)"


# ---------------------------------------------------------------------------------------------------------
# Python libraries
# ---------------------------------------------------------------------------------------------------------

def library_dir(library: str) -> Path:
    """The installed data folder of scikit-image or matplotlib (no download)."""
    if library == "scikit-image":
        import skimage.data
        return Path(skimage.data.__file__).parent
    try:
        import matplotlib
    except ImportError as e:
        raise PhotoSetError("matplotlib is not installed: pip install matplotlib (bench only)") from e
    return Path(matplotlib.get_data_path()) / "sample_data"


def check_python_licence(photo: PythonPhoto) -> None:
    """The skimage.data docstring must still state the licence phrase recorded in PYTHON_PHOTOS."""
    if photo.library != "scikit-image":
        return
    import skimage.data
    doc = inspect.getdoc(getattr(skimage.data, photo.doc)) or ""
    if photo.check.lower() not in doc.lower():
        raise PhotoSetError(f"skimage.data.{photo.doc}'s docstring no longer says {photo.check!r}: "
                            "re-check its licence before using it, or drop it from PYTHON_PHOTOS")


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------

def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare(src: Path, dst: Path) -> dict[str, object]:
    """Decode, convert to 8-bit RGB, reduce with Lanczos so the short side is at most SHORT_SIDE_MAX, save PNG."""
    with Image.open(src) as im:
        im.load()
        mode, size = im.mode, im.size
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGBA").convert("RGB") if "A" in im.mode else im.convert("RGB")
        rgb = im.convert("RGB")
    w, h = rgb.size
    short = min(w, h)
    if short > SHORT_SIDE_MAX:
        f = SHORT_SIDE_MAX / short
        new = (SHORT_SIDE_MAX, round(h * f)) if w == short else (round(w * f), SHORT_SIDE_MAX)
        rgb = rgb.resize(new, Image.Resampling.LANCZOS)
    arr = np.asarray(rgb)
    Image.fromarray(arr).save(dst, format="PNG", compress_level=6)
    return {"mode": mode, "original_size": list(size), "size": list(rgb.size),
            "resized": rgb.size != size}


def build(out: Path, debs: Path | None, update: bool) -> dict[str, object]:
    """Build the whole set in a sibling folder, then swap it into `out`. Returns the manifest."""
    out = out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-partial-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    stage.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the set from other users of a shared cache
    try:
        manifest = _build_into(stage, debs, update)
        old = out.with_name(f".{out.name}-old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        stage.rename(out)
        shutil.rmtree(old, ignore_errors=True)
        return manifest
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _build_into(stage: Path, debs: Path | None, update: bool) -> dict[str, object]:
    for split in ("train", "heldout"):
        (stage / split).mkdir()
    images: list[dict[str, object]] = []
    excluded: list[dict[str, str]] = []
    packages: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="ganforge-photos-") as tmp:
        work = Path(tmp)
        for pkg, deb in download_debs(work, debs, update).items():
            root = work / "x" / pkg
            root.mkdir(parents=True)
            _run(["dpkg-deb", "-x", str(deb), str(root)])
            version = deb_version(deb)
            copyright_file = root / "usr/share/doc" / pkg / "copyright"
            if not copyright_file.is_file():
                raise PhotoSetError(f"{pkg} {version} has no {copyright_file.relative_to(root)}: cannot check licences")
            stanzas = parse_dep5(copyright_file.read_text(encoding="utf-8"))
            packages[pkg] = {"version": version, "deb_sha256": sha256(deb),
                             "inspected_version": INSPECTED_VERSIONS[pkg],
                             "copyright": f"/usr/share/doc/{pkg}/copyright"}
            if version != INSPECTED_VERSIONS[pkg]:
                print(f"note: {pkg} is {version}; the photo list was made from {INSPECTED_VERSIONS[pkg]}",
                      file=sys.stderr)
            kept = {p.path: p for p in DEBIAN_PHOTOS if p.package == pkg}
            for rel in image_files(root):
                if rel not in kept:
                    excluded.append({"source": pkg, "original_path": "/" + rel,
                                     "reason": exclusion_reason(root, rel)})
            for rel, photo in kept.items():
                src = root / rel
                if not src.is_file():
                    excluded.append({"source": pkg, "original_path": "/" + rel,
                                     "reason": f"missing in {pkg} {version}"})
                    continue
                lic = licence_for(stanzas, rel)
                if lic is None:
                    excluded.append({"source": pkg, "original_path": "/" + rel,
                                     "reason": "licence unclear: no Files stanza of the copyright file matches"})
                    continue
                entry = _add(stage, photo.name, src, {
                    "source": pkg, "source_kind": "debian", "source_version": version,
                    "original_path": "/" + rel, "licence": lic[1], "copyright": lic[0], "what": photo.what})
                if pkg == "plasma-workspace-wallpapers":
                    entry.update(plasma_metadata(root, rel))
                images.append(entry)
    for photo in PYTHON_PHOTOS:
        folder = library_dir(photo.library)
        src = folder / photo.file
        if not src.is_file():
            excluded.append({"source": photo.library, "original_path": str(src),
                             "reason": "not on disk in the installed package (not downloaded)"})
            continue
        check_python_licence(photo)
        version = _library_version(photo.library)
        images.append(_add(stage, photo.name, src, {
            "source": photo.library, "source_kind": "python", "source_version": version,
            "original_path": f"{'skimage/data' if photo.library == 'scikit-image' else 'mpl-data/sample_data'}/"
                             f"{photo.file}",
            "licence": photo.licence, "what": photo.what}))
    for (library, file), reason in sorted(PYTHON_EXCLUDED.items()):
        excluded.append({"source": library, "original_path": file, "reason": reason})
    images.sort(key=lambda e: (e["split"] != "train", e["file"]))
    manifest: dict[str, object] = {
        "format": "ganforge-photos/1",
        "command": "python bench/photos.py fetch",
        "rule": "photographs kept by an inspected list (bench/photos.py DEBIAN_PHOTOS, PYTHON_PHOTOS)",
        "resize": {"short_side_max": SHORT_SIDE_MAX, "filter": RESIZE_FILTER, "output": "8-bit RGB PNG"},
        "split": {"heldout": sorted(HELDOUT), "rule": "fixed list bench/photos.py HELDOUT; the rest is train"},
        "packages": packages,
        "counts": {s: sum(e["split"] == s for e in images) for s in ("train", "heldout")},
        "images": images,
        "excluded": excluded,
    }
    (stage / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n",
                                         encoding="utf-8")
    return manifest


def _library_version(library: str) -> str:
    from importlib.metadata import version
    return version(library)


def _add(stage: Path, name: str, src: Path, fields: dict[str, object]) -> dict[str, object]:
    split = "heldout" if name in HELDOUT else "train"
    dst = stage / split / f"{name}.png"
    info = prepare(src, dst)
    return {"file": f"{split}/{name}.png", "split": split, **fields, **info,
            "original_sha256": sha256(src), "sha256": sha256(dst)}


def check(out: Path) -> list[str]:
    """Problems with an existing set: files missing, changed, or not listed in the manifest."""
    out = out.expanduser()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    problems = []
    listed = set()
    for e in manifest["images"]:
        p = out / e["file"]
        listed.add(e["file"])
        if not p.is_file():
            problems.append(f"{e['file']}: missing")
        elif sha256(p) != e["sha256"]:
            problems.append(f"{e['file']}: sha256 differs from the manifest")
    for split in ("train", "heldout"):
        for p in sorted((out / split).iterdir()):
            if f"{split}/{p.name}" not in listed:
                problems.append(f"{split}/{p.name}: not in the manifest")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download, select, resize and split the photos")
    f.add_argument("--out", type=Path, default=DEFAULT_OUT)
    f.add_argument("--debs", type=Path, default=None, help="folder with the .deb files already downloaded")
    f.add_argument("--no-update", action="store_true", help="skip `apt-get update`")
    c = sub.add_parser("check", help="verify an existing set against its manifest")
    c.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "fetch":
            m = build(args.out, args.debs, update=not args.no_update)
            out = args.out.expanduser()
            print(f"{m['counts']['train']} train + {m['counts']['heldout']} held-out photos, "
                  f"{len(m['excluded'])} files excluded -> {out}")
            print(f"manifest sha256 {sha256(out / 'manifest.json')}")
            return 0
        problems = check(args.out)
        for p in problems:
            print(p)
        print("ok" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    except (PhotoSetError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
