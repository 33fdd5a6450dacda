"""`ganforge inpaint`: fill the holes of images with an inpainting snapshot, one file or a folder of them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ganforge.cli.base import _fail, _user_errors, app

if TYPE_CHECKING:
    from ganforge.infer.inpaint import InpaintPipeline


@app.command()
def inpaint(
    image: Annotated[Path, typer.Option("--image", help="an image file, or a folder of images (searched "
                                                        "recursively)")],
    mask: Annotated[Path, typer.Option("--mask", help="the mask file (white or painted = hole), or a folder of "
                                                      "masks with the images' names (any image suffix)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output file (format from its suffix), or a folder for "
                                                          "folder input")],
    model: Annotated[str | None, typer.Option(help="inpainting snapshot, run folder (ganforge train --preset "
                                                   "deepfill-128 ...) or shipped name \\[default: inpaint-deepfill, "
                                                   "the shipped model]")] = None,
    feather: Annotated[int | None, typer.Option(min=0, max=256, help="colour-correction band inside the hole edge, "
                                                "in pixels \\[default: 2 model pixels for large images, else 0]")]
    = None,
    max_side: Annotated[int | None, typer.Option(min=8, max=8192, help="largest crop side (pixels) the model fills "
                                                 "without shrinking it first \\[default: 2 x the model's training "
                                                 "resolution; a Context Encoder: its resolution]")] = None,
    ext: Annotated[str | None, typer.Option(help="folder mode: output suffix, e.g. png \\[default: keep each "
                                                 "image's]")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "cpu",
) -> None:
    """Fill the hole (the mask's white or painted pixels) of an image; pixels outside the hole are kept exactly.

    ganforge inpaint --image photo.png --mask hole.png -o filled.png --model runs/00004-photos-deepfill-128

    ganforge inpaint --image photos/ --mask masks/ -o filled/ --model runs/00004-photos-deepfill-128
    """
    try:
        pipe = _load(model, device)
        pipe.max_side = pipe.check_max_side(max_side)
        if image.is_file():
            if not mask.is_file():
                raise FileNotFoundError(f"--mask {mask}: no such file (a file --image takes a mask file)")
            pipe.process_file(image, mask, out, feather=feather)
            typer.echo(f"wrote {out}")
            return
        if not image.is_dir():
            raise FileNotFoundError(f"--image {image}: no such file or folder")
        if not mask.is_dir():
            raise FileNotFoundError(f"--mask {mask}: not a folder (a folder --image takes a folder of masks with the "
                                    "same names)")
        _process_folder(pipe, image, mask, out, feather, ext)
    except _user_errors() as exc:
        _fail(str(exc), 1)


def _load(model: str | None, device: str) -> InpaintPipeline:
    """The inpaint pipeline of --model (a snapshot, run folder or shipped name), or of the shipped inpainting model."""
    from ganforge import pretrained
    from ganforge.core.files import CheckpointError
    from ganforge.infer.inpaint import InpaintPipeline
    from ganforge.infer.pipelines import load_pipeline

    model = str(pretrained.resolve_model(model, "inpaint"))  # None: the shipped model; a shipped name; a path
    pipe = load_pipeline(model, device=device)
    if not isinstance(pipe, InpaintPipeline):
        raise CheckpointError(f"{model} is a {pipe.meta.get('task')!r} model, not an inpainting one: train one with "
                              "--preset deepfill-128 (or context-encoder-64)")
    return pipe


def _process_folder(pipe: InpaintPipeline, images: Path, masks: Path, out: Path, feather: int | None,
                    ext: str | None) -> None:
    """Every image under ``images`` with the mask of the same relative path up to the suffix under ``masks``,
    written mirrored under ``out``. Images without a mask, unreadable files and size mismatches are skipped and
    named at the end (exit code 1)."""
    from ganforge.data import IMAGE_EXTENSIONS

    def listing(root: Path) -> dict[str, Path]:
        return {p.relative_to(root).with_suffix("").as_posix(): p for p in sorted(root.rglob("*"))
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()}

    image_files, mask_files = listing(images), listing(masks)
    if not image_files:
        raise ValueError(f"{images} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    failed, done = [], 0
    for key, src in image_files.items():
        if key not in mask_files:
            failed.append(f"{src}: no mask {key}.* in {masks}")
            continue
        dst = out / src.relative_to(images)
        dst = dst.with_suffix("." + ext.lstrip(".")) if ext else dst
        try:
            pipe.process_file(src, mask_files[key], dst, feather=feather)
            done += 1
        except ValueError as exc:  # one bad file does not stop the folder; it is named at the end
            failed.append(str(exc) if str(src) in str(exc) or str(mask_files[key]) in str(exc) else f"{src}: {exc}")
    unused = sorted(set(mask_files) - set(image_files))
    typer.echo(f"wrote {done} images to {out}" + (f" ({len(unused)} masks without an image: "
                                                   f"{', '.join(unused[:5])})" if unused else ""))
    if failed:
        _fail(f"{len(failed)} of {len(image_files)} images were not filled:\n  " + "\n  ".join(failed[:20]), 1)
