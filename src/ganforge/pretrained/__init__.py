"""The shipped models: small snapshots (restoration, inpainting, colorization, translation) installed with the
package, and how a ``--model`` value becomes a snapshot.

Each shipped model is a standard snapshot pair (``<stem>.safetensors`` + ``<stem>.json``, core/snapshot.py) in
this folder, trained by ``bench/pretrained.py`` on redistributable photos (docs/pretrained.md lists every image,
its source and licence, and the exact command). Tensors may be stored as float16 to keep the files small;
loading copies them into the float32 network (``load_state_dict`` casts), so inference runs in float32.

A copy of ganforge may lack some of the files (a source checkout before they were trained, a trimmed install):
``resolve_model`` then says which model is missing and the command that trains an equivalent one.

    PRETRAINED          name -> Pretrained (the table below)
    default_model       the model a command uses without --model (denoise with --sigma: the non-blind one)
    resolve_model       --model value (None, a shipped name, a snapshot path or run folder) -> snapshot path
    load_restorer       the same, loaded as a RestorePipeline
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from ganforge.core.files import CheckpointError
from ganforge.infer.pipelines import load_pipeline
from ganforge.infer.restore import RestorePipeline

__all__ = ["COMMANDS", "PRETRAINED", "PRETRAINED_DIR", "RESTORE_COMMANDS", "Pretrained", "PretrainedMissing",
           "default_model", "installed", "load_restorer", "resolve_model"]

# Where the shipped files live; tests point it at a temporary folder (the functions read it at call time).
PRETRAINED_DIR = Path(__file__).resolve().parent

Command = Literal["upscale", "denoise", "derain", "inpaint", "colorize", "translate"]
COMMANDS: tuple[str, ...] = ("upscale", "denoise", "derain", "inpaint", "colorize", "translate")
RESTORE_COMMANDS: tuple[str, ...] = ("upscale", "denoise", "derain")  # the RestorePipeline ones (load_restorer)

_PHOTOS = ("redistributable photos available offline: the scikit-image and matplotlib sample images and "
           "the photographs in Debian's plasma-workspace-wallpapers, ukui-wallpapers and lomiri-wallpapers-20.04 "
           "(held-out photos excluded); every image's source and licence is listed in docs/pretrained.md")


@dataclass(frozen=True)
class Pretrained:
    """One shipped model: what it is, which command uses it, and how to make it again."""

    name: str              # the registry key, what --model takes: "sr-x4-psnr"
    stem: str              # file stem in PRETRAINED_DIR: <stem>.safetensors + <stem>.json
    command: Command       # the ganforge command it belongs to
    default: bool          # the command's model when --model is not given (for denoise: per non_blind)
    scale: int             # output side / input side (1 for denoisers and de-raining)
    non_blind: bool        # takes a noise level: `ganforge denoise --sigma S` (FFDNet-style noise map)
    preset: str            # the training preset (`ganforge presets`); the snapshot's json holds the full config
    description: str
    reproduce: str         # the exact command that trains it and writes the files here
    data: str              # training data and licence summary (details: docs/pretrained.md)

    @property
    def path(self) -> Path:
        """The snapshot path (no suffix) for load_snapshot / load_pipeline / ganforge apply."""
        return PRETRAINED_DIR / self.stem

    @property
    def files(self) -> tuple[Path, Path]:
        return self.path.with_suffix(".safetensors"), self.path.with_suffix(".json")

    @property
    def installed(self) -> bool:
        """Both files of the pair are present in this copy."""
        return all(f.is_file() for f in self.files)

    @property
    def default_for(self) -> str:
        """The command line that uses this model without --model ('' if none does)."""
        if not self.default:
            return ""
        return f"ganforge {self.command}" + (" --sigma S" if self.non_blind else "")

    def snapshot_meta(self) -> dict[str, Any]:
        """The snapshot's JSON (what trained it: config, kimg, dataset, reproduce command); raises PretrainedMissing
        when the model is not installed."""
        _check_installed(self)
        return json.loads(self.files[1].read_text(encoding="utf-8"))


def _reproduce(name: str) -> str:
    return f"python bench/pretrained.py train {name} --photos ~/.cache/ganforge/photos"


PRETRAINED: dict[str, Pretrained] = {p.name: p for p in (
    Pretrained("sr-x4-psnr", "sr-x4-psnr", "upscale", True, 4, False, "srresnet-x4",
               "x4 super-resolution, PSNR-oriented (L1): faithful, slightly soft",
               _reproduce("sr-x4-psnr"), _PHOTOS),
    Pretrained("sr-x4-gan", "sr-x4-gan", "upscale", False, 4, False, "srgan-x4",
               "x4 super-resolution, GAN stage (perceptual + adversarial, from sr-x4-psnr): sharper textures, "
               "partly invented",
               _reproduce("sr-x4-gan"), _PHOTOS),
    Pretrained("denoise-blind", "denoise-blind", "denoise", True, 1, False, "unet-denoise-25",
               "blind Gaussian denoising (U-Net autoencoder trained on noise levels 0-55 of 255, "
               "--degrade noise:gaussian:0-55): one model for every level",
               _reproduce("denoise-blind"), _PHOTOS),
    Pretrained("denoise-nonblind", "denoise-nonblind", "denoise", True, 1, True, "denoise-nonblind",
               "non-blind Gaussian denoising (FFDNet-style noise map): told the noise level, 0-75 of 255",
               _reproduce("denoise-nonblind"), _PHOTOS),
    Pretrained("derain", "derain", "derain", True, 1, False, "derain",
               "removes rain streaks (U-Net trained on synthetic streaks, after ID-CGAN)",
               _reproduce("derain"), _PHOTOS),
    Pretrained("inpaint-deepfill", "inpaint-deepfill", "inpaint", True, 1, False, "deepfill-128",
               "fills holes (DeepFill v2 correcting an exact membrane + thin-plate interpolation, 128 px crops, any "
               "size; 8 kimg on a CPU: ahead of OpenCV's inpainting on our benchmark, by the interpolation's lead; "
               "smooth fills, docs/inpainting.md)",
               _reproduce("inpaint-deepfill"), _PHOTOS),
    Pretrained("inpaint", "inpaint", "inpaint", False, 1, False, "context-encoder-64",
               "fills holes (Context Encoder at 128 px, trained with free-form and box holes; the baseline, behind "
               "inpaint-deepfill on every benchmark measure, docs/inpainting.md)",
               _reproduce("inpaint"), _PHOTOS),
    Pretrained("colorize", "colorize", "colorize", True, 1, False, "colorize-64",
               "colours gray photos (pix2pix U-Net in Lab: keeps the lightness, predicts the colour)",
               _reproduce("colorize"), _PHOTOS),
    Pretrained("edges2photo", "edges2photo", "translate", False, 1, False, "pix2pix-64",
               "edges -> photo (pix2pix on soft Sobel edge maps of the photos, --pairs edges)",
               _reproduce("edges2photo"), _PHOTOS),
)}


class PretrainedMissing(FileNotFoundError):
    """A shipped model's files are not in this copy of ganforge; the message says how to make one."""


def _check_installed(p: Pretrained) -> None:
    if not p.installed:
        raise PretrainedMissing(
            f"the shipped model {p.name} is not installed in this copy of ganforge (no {p.files[0]}); train one "
            f"with `{p.reproduce}` (or `ganforge train --data PHOTOS --preset {p.preset}`) and pass "
            f"--model RUN_FOLDER, or --model any restoration snapshot"
            + (f"; without --sigma, `ganforge {p.command}` uses the blind shipped model" if p.non_blind else ""))


def default_model(command: str, sigma: bool = False) -> Pretrained:
    """The shipped model ``command`` uses without --model; ``sigma``: a noise level was given (denoise picks the
    non-blind model). Raises ValueError for a command without shipped models."""
    for p in PRETRAINED.values():
        if p.command == command and p.default and p.non_blind == sigma:
            return p
    for p in PRETRAINED.values():  # a command without a non-blind model: its one default
        if p.command == command and p.default:
            return p
    raise ValueError(f"no shipped model for {command!r}; commands with one: {', '.join(COMMANDS)}")


def installed() -> list[Pretrained]:
    """The shipped models present in this copy, in table order."""
    return [p for p in PRETRAINED.values() if p.installed]


def resolve_model(model: str | Path | None, command: str, sigma: bool = False) -> Path:
    """A --model value -> the snapshot path to load.

    ``None``: the command's default shipped model (see ``default_model``); a name in PRETRAINED: that model;
    anything else: a snapshot path (with or without .safetensors/.json) or a run folder, returned as given.
    Raises PretrainedMissing (a FileNotFoundError) when a shipped model's files are absent, and ValueError for a
    value that is neither a shipped name nor an existing path (listing the names)."""
    if model is None:
        p = default_model(command, sigma)
    elif str(model) in PRETRAINED:
        p = PRETRAINED[str(model)]
    else:
        path = Path(model).expanduser()
        looks_like_name = len(path.parts) == 1 and not path.suffix
        if looks_like_name and not path.exists() and not path.with_suffix(".json").exists():
            raise ValueError(f"--model {model}: not a shipped model ({', '.join(PRETRAINED)}) and no such snapshot "
                             "or run folder")
        return path
    _check_installed(p)
    return p.path


def load_restorer(model: str | Path | None, command: str, device: str | torch.device = "cpu",
                  sigma: bool = False) -> RestorePipeline:
    """``resolve_model`` + ``load_pipeline``: the RestorePipeline for a --model value. Raises CheckpointError when
    the snapshot is not an image-to-image model (e.g. a GAN generator)."""
    if str(model) in PRETRAINED and PRETRAINED[str(model)].command not in RESTORE_COMMANDS:
        p = PRETRAINED[str(model)]
        raise CheckpointError(f"--model {model} is the shipped {p.command} model, not a restoration one: use "
                              f"`ganforge {p.command}`")
    path = resolve_model(model, command, sigma)
    pipe = load_pipeline(path, device=device)
    if not isinstance(pipe, RestorePipeline):
        raise CheckpointError(f"{model or path} is a {pipe.meta.get('task')!r} model, not an image-to-image one: "
                              "use `ganforge generate` for generators")
    return pipe
